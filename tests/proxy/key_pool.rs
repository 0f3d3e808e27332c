//! Key-pool rules as a client sees them: rotation, 429 cooldowns per model, disabled keys,
//! server errors and breakers, pass-through of client errors, exhaustion answers, the prober.

use crate::harness::*;
use mock_gemini::KeyMode;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_spreads_requests_over_keys() {
    let s = setup(&["AIzaA", "AIzaB", "AIzaC"]).await;
    for _ in 0..30 {
        assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
    }
    let seen = keys_seen(&s.mock, "generateContent");
    for k in ["AIzaA", "AIzaB", "AIzaC"] {
        assert_eq!(seen.iter().filter(|x| *x == k).count(), 10, "{seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_strategy_follows_weights() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = config(addr, &mock.base_url(), &[]).replace(
        "keys = []",
        "strategy = \"weighted\"\nkeys = [{ key = \"AIzaLIGHT\", name = \"light\" }, { key = \"AIzaHEAVY\", name = \"heavy\", weight = 3 }]",
    );
    let proxy = Proxy::start_config(addr, &toml);
    for _ in 0..40 {
        assert_eq!(generate(&proxy, "gemini-2.5-flash").await.status(), 200);
    }
    let seen = keys_seen(&mock, "generateContent");
    assert_eq!(seen.iter().filter(|k| *k == "AIzaHEAVY").count(), 30);
    let log = proxy.wait_for_records(40);
    assert!(log.iter().any(|r| r["attempts"][0]["key"] == "heavy"), "key names appear in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_cools_that_key_for_that_model_and_the_request_moves_on() {
    let s = setup(&["AIzaBUSY", "AIzaFREE"]).await;
    s.mock.set_key("AIzaBUSY", KeyMode::rate_limited_on("30s", &["gemini-2.5-pro"]).into());
    for _ in 0..6 {
        let r = generate(&s.proxy, "gemini-2.5-pro").await;
        assert_eq!(r.status(), 200, "every request succeeds on the free key");
    }
    let pro = keys_seen(&s.mock, "gemini-2.5-pro");
    assert_eq!(pro.iter().filter(|k| *k == "AIzaBUSY").count(), 1, "the busy key is tried once, then cooled: {pro:?}");
    // Quotas are per model: the busy key still serves another model.
    for _ in 0..4 {
        assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
    }
    let flash = keys_seen(&s.mock, "gemini-2.5-flash");
    assert_eq!(flash.iter().filter(|k| *k == "AIzaBUSY").count(), 2, "{flash:?}");
    let log = s.proxy.wait_for_records(10);
    let retried = log.iter().find(|r| r["attempts"].as_array().unwrap().len() == 2).expect("a retried request is logged");
    assert_eq!(retried["attempts"][0]["outcome"], "rate_limited");
    assert_eq!(retried["attempts"][0]["status"], 429);
    assert_eq!(retried["attempts"][1]["outcome"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_suspended_and_leaked_keys_are_disabled() {
    let s = setup(&["AIzaINVALID", "AIzaSUSPENDED", "AIzaLEAKED", "AIzaGOOD"]).await;
    s.mock.set_key("AIzaINVALID", KeyMode::Invalid.into());
    s.mock.set_key("AIzaSUSPENDED", KeyMode::Suspended.into());
    s.mock.set_key("AIzaLEAKED", KeyMode::Leaked.into());
    for _ in 0..12 {
        assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
    }
    let seen = keys_seen(&s.mock, "generateContent");
    for bad in ["AIzaINVALID", "AIzaSUSPENDED", "AIzaLEAKED"] {
        assert_eq!(seen.iter().filter(|k| *k == bad).count(), 1, "{bad} used again after it was refused: {seen:?}");
    }
    // Disabled keys stay out for every model.
    assert_eq!(generate(&s.proxy, "gemini-2.5-pro").await.status(), 200);
    assert_eq!(keys_seen(&s.mock, "gemini-2.5-pro"), vec!["AIzaGOOD"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_retry_elsewhere_and_open_a_breaker() {
    let s = setup_with(&["AIzaFLAKY", "AIzaSTEADY"], |t| {
        in_section(t.replace("probe_interval = \"1s\"", "probe_interval = \"1h\""), "key_health", "breaker_threshold = 2\nbreaker_open = \"1h\"")
    })
    .await;
    s.mock.set_key("AIzaFLAKY", KeyMode::Overloaded.into());
    for _ in 0..8 {
        assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
    }
    let seen = keys_seen(&s.mock, "generateContent");
    assert_eq!(seen.iter().filter(|k| *k == "AIzaFLAKY").count(), 2, "two failures open the breaker: {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_whose_breakers_all_opened_serves_again_as_soon_as_the_upstream_does() {
    let s = setup_with(&["AIzaP", "AIzaQ"], |t| {
        in_section(t.replace("probe_interval = \"1s\"", "probe_interval = \"1h\""), "key_health", "breaker_threshold = 2\nbreaker_open = \"1h\"")
    })
    .await;
    for k in ["AIzaP", "AIzaQ"] {
        s.mock.set_key(k, KeyMode::Overloaded.into());
    }
    // Two requests, each trying both keys: two failures per key open both breakers.
    for _ in 0..2 {
        assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 503);
    }
    assert_eq!(keys_seen(&s.mock, "generateContent").len(), 4);
    // Every breaker is open: one trial call per request, not one per key, and not none.
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 503);
    assert_eq!(keys_seen(&s.mock, "generateContent").len(), 5, "one trial attempt");
    // The upstream recovers: the next request is served, an hour before the breakers close.
    for k in ["AIzaP", "AIzaQ"] {
        s.mock.set_key(k, KeyMode::Ok.into());
    }
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_out_of_its_own_quota_is_told_with_the_quota_delay() {
    let s = setup(&["AIzaQ1", "AIzaQ2", "AIzaQ3"]).await;
    for k in ["AIzaQ1", "AIzaQ2", "AIzaQ3"] {
        s.mock.set_key(k, KeyMode::rate_limited("60s").into());
    }
    for _ in 0..3 {
        let r = generate(&s.proxy, "gemini-2.5-flash").await;
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((59..=60).contains(&retry), "Retry-After {retry}: the keys' quota delay, not an egress pause");
    }
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["details"][0]["reason"], "ALL_KEYS_RATE_LIMITED", "{v}");
    assert_eq!(keys_seen(&s.mock, "generateContent").len(), 3, "each key asked once, then left to cool");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_errors_pass_through_untouched_without_retry() {
    let s = setup(&["AIzaA", "AIzaB"]).await;
    let r = generate(&s.proxy, "no-such-model").await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "NOT_FOUND");
    assert_eq!(keys_seen(&s.mock, "no-such-model").len(), 1, "a client error is not retried");
    // And the key was not blamed: it keeps serving.
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_error_that_quotes_the_key_reaches_the_client_redacted() {
    let key = format!("AIza{}", "Q".repeat(35));
    let s = setup(&[&key]).await;
    s.mock.set_key(&key, KeyMode::EchoKey.into());
    for openai in [false, true] {
        let r = if openai {
            client()
                .post(s.proxy.url("/v1beta/openai/chat/completions"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}]}))
                .send()
                .await
                .unwrap()
        } else {
            generate(&s.proxy, "gemini-2.5-flash").await
        };
        assert_eq!(r.status(), 400, "the client's error keeps its status");
        let text = r.text().await.unwrap();
        assert!(!text.contains(&key[4..]), "the key reached the client: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let error = if v.is_array() { &v[0]["error"] } else { &v["error"] };
        assert_eq!(error["status"], "INVALID_ARGUMENT", "{text}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("contents is not specified") && message.contains("[redacted key …"), "{message}");
    }
    let seen: Vec<Option<String>> = s.mock.requests().into_iter().map(|r| r.key).collect();
    assert_eq!(seen, [Some(key.clone()), Some(key.clone())], "one attempt per request, with the key the mock quoted");
    // A request error is not the key's fault: it still serves.
    s.mock.set_key(&key, KeyMode::Ok.into());
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
}

/// Any error answer may quote the key it was sent with, not only those that say something about
/// the key (400, 403, 429, 5xx): a 401, 404, 409 or 501 that does reaches the client redacted,
/// with its status, and one too large to check is not relayed.
#[tokio::test(flavor = "multi_thread")]
async fn every_error_status_is_checked_for_keys_before_it_is_relayed() {
    let key = format!("AIza{}", "R".repeat(35));
    let s = setup(&[&key]).await;
    for status in [401u16, 404, 409, 501] {
        s.mock.set_key(&key, KeyMode::HugeError { status, bytes: 2048, chunked: status == 404 }.into());
        let r = generate(&s.proxy, "gemini-2.5-flash").await;
        assert_eq!(r.status(), status, "the client's error keeps its status");
        let text = r.text().await.unwrap();
        assert!(!text.contains(&key[4..]), "{status}: the key reached the client: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], status, "{text}");
        assert!(v["error"]["message"].as_str().unwrap().contains("[redacted key …"), "{text}");

        s.mock.set_key(&key, KeyMode::HugeError { status, bytes: 320 * 1024, chunked: false }.into());
        let r = generate(&s.proxy, "gemini-2.5-flash").await;
        assert_eq!(r.status(), status);
        let text = r.text().await.unwrap();
        assert!(text.len() < 1024 && !text.contains(&key[4..]), "{status}: the upstream's body was relayed ({} bytes)", text.len());
    }
    // None of these is the key's fault: it still serves.
    s.mock.set_key(&key, KeyMode::Ok.into());
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
}

/// Checks the client's answer to an upstream error too large to check for keys: the upstream's
/// status, a small Gemini-style error saying so, nothing of the upstream's body (nor `key`).
async fn too_large_answer(r: reqwest::Response, status: u16, grpc: &str, key: &str) -> Value {
    assert_eq!(r.status(), status, "the client's error keeps its status");
    let text = r.text().await.unwrap();
    assert!(text.len() < 1024, "the upstream's body was relayed ({} bytes)", text.len());
    assert!(!text.contains(&key[4..]) && !text.contains("Request dump"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((v["error"]["code"].as_u64(), v["error"]["status"].as_str()), (Some(u64::from(status)), Some(grpc)), "{text}");
    assert!(v["error"]["message"].as_str().unwrap().contains("too large"), "{text}");
    assert_eq!(v["error"]["details"][0]["reason"], "UPSTREAM_ERROR_TOO_LARGE", "{text}");
    v
}

/// An upstream error answer larger than what is read to classify it (256 KiB) could quote a key
/// past that point: it is not relayed, whatever its framing. The client gets its status with a
/// Gemini-style error saying the answer was too large, and the record says so too.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_error_too_large_to_check_for_keys_is_not_relayed() {
    let key = format!("AIza{}", "L".repeat(35));
    let s = setup(&[&key]).await;
    for chunked in [false, true] {
        s.mock.set_key(&key, KeyMode::HugeError { status: 400, bytes: 320 * 1024, chunked }.into());
        too_large_answer(generate(&s.proxy, "gemini-2.5-flash").await, 400, "INVALID_ARGUMENT", &key).await;
    }
    assert_eq!(keys_seen(&s.mock, "generateContent").len(), 2, "a client error is not retried");
    let log = s.proxy.wait_for_records(2);
    for r in &log {
        assert_eq!(r["status"], 400, "{r}");
        assert!(r["error"].as_str().unwrap_or_default().contains("too large"), "{r}");
        assert_eq!((&r["attempts"][0]["status"], &r["attempts"][0]["outcome"]), (&serde_json::json!(400), &serde_json::json!("client_error")), "{r}");
    }
    let rows = s.proxy.wait_for_request_rows(2).await;
    assert!(rows.iter().all(|r| r["error"].as_str().unwrap_or_default().contains("too large")), "{rows:?}");
    // An error body of ordinary size is still relayed as it is.
    s.mock.set_key(&key, KeyMode::HugeError { status: 400, bytes: 4096, chunked: false }.into());
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Request dump"), "a small error without a key passes through");
    // A request error is not the key's fault: it still serves.
    s.mock.set_key(&key, KeyMode::Ok.into());
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
}

/// A too-large error answer says nothing the proxy read, so its key is judged by the status
/// alone: a 429 cools the key and the request moves on to the next (and when every key answers
/// so, the client gets the 429, with Retry-After); a 403 is the request's problem, passed back
/// without disabling the key.
#[tokio::test(flavor = "multi_thread")]
async fn too_large_error_answers_are_classified_by_their_status() {
    let keys = [format!("AIza{}", "M".repeat(35)), format!("AIza{}", "N".repeat(35))];
    // No probing: a 429 that says nothing is cooled for a guessed time, which the prober would
    // check (and lift, and clear the key's last error) at any moment.
    let s = setup_with(&[&keys[0], &keys[1]], |t| t.replace("probe_interval = \"1s\"", "probe_interval = \"1h\"")).await;
    let huge = |status, chunked| KeyMode::HugeError { status, bytes: 320 * 1024, chunked }.into();
    let key_views = || async { admin_get(&s.proxy, "/api/v1/keys").await["keys"].as_array().unwrap().clone() };

    // Every key answers a too-large 429 (one framing each): the client gets the 429.
    s.mock.set_key(&keys[0], huge(429, false));
    s.mock.set_key(&keys[1], huge(429, true));
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert!(r.headers().get("retry-after").is_some(), "a 429 still says when to come back");
    too_large_answer(r, 429, "RESOURCE_EXHAUSTED", &keys[0]).await;
    assert_eq!(keys_seen(&s.mock, "gemini-2.5-flash").len(), 2, "a 429 moves on to the other key");
    for k in key_views().await {
        let last = &k["last_error"];
        assert_eq!((&last["status"], &last["outcome"]), (&serde_json::json!(429), &serde_json::json!("rate_limited")), "{k}");
        assert!(last["message"].as_str().unwrap_or_default().contains("too large"), "the key's last error says why: {k}");
    }

    // On another model, only the first key does: it cools, and its requests move on.
    s.mock.set_key(&keys[1], KeyMode::Ok.into());
    while !keys_seen(&s.mock, "gemini-2.5-pro").contains(&keys[0]) {
        assert_eq!(generate(&s.proxy, "gemini-2.5-pro").await.status(), 200);
        assert!(s.mock.requests().len() < 10, "the first key was never tried");
    }
    let states: Vec<Value> = key_views().await.iter().map(|k| k["state"].clone()).collect();
    assert_eq!(states, ["cooling", "healthy"]);

    // On a third model, a 403 of the same size is the request's error.
    for k in &keys {
        s.mock.set_key(k, huge(403, false));
    }
    too_large_answer(generate(&s.proxy, "gemini-2.0-flash").await, 403, "PERMISSION_DENIED", &keys[0]).await;
    assert_eq!(keys_seen(&s.mock, "gemini-2.0-flash").len(), 1, "not retried");
    assert!(key_views().await.iter().all(|k| k["disabled"].is_null()), "no key is disabled by a body it could not read");
    for k in &keys {
        s.mock.set_key(k, KeyMode::Ok.into());
    }
    assert_eq!(generate(&s.proxy, "gemini-2.0-flash").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_usable_key_answers_429_with_retry_after_and_a_reason() {
    let s = setup(&["AIzaONLY"]).await;
    s.mock.set_key("AIzaONLY", KeyMode::rate_limited("40s").into());
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((39..=40).contains(&retry), "Retry-After {retry} should follow RetryInfo");
    // Now the key is cooling: the proxy answers without asking Gemini.
    let before = s.mock.requests().len();
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(v["error"]["message"].as_str().unwrap().contains("rate limited"), "{v}");
    assert_eq!(s.mock.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn all_keys_invalid_is_a_503_not_the_upstream_key_error() {
    let s = setup_with(&["AIzaX", "AIzaY"], |t| t.replace("probe_interval = \"1s\"", "probe_interval = \"1h\"")).await;
    s.mock.set_key("AIzaX", KeyMode::Invalid.into());
    s.mock.set_key("AIzaY", KeyMode::Invalid.into());
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("2 disabled") && msg.contains("invalid_key"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_wide_429_storm_is_treated_as_egress_throttling() {
    let s = setup_with(&["AIzaA", "AIzaB", "AIzaC"], |t| in_section(t, "key_health", "egress_pause = \"2s\"")).await;
    for k in ["AIzaA", "AIzaB", "AIzaC"] {
        s.mock.set_key(k, KeyMode::RateLimitedBare.into());
    }
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 429);
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry <= 2, "a short egress pause, not a per-key cooldown (Retry-After {retry})");
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("as a whole"), "{v}");
    // The throttle lifts: after the pause every key is usable again.
    for k in ["AIzaA", "AIzaB", "AIzaC"] {
        s.mock.set_key(k, KeyMode::Ok.into());
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prober_brings_a_disabled_key_back() {
    let s = setup(&["AIzaBACK"]).await;
    s.mock.set_key("AIzaBACK", KeyMode::Suspended.into());
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 503);
    s.mock.set_key("AIzaBACK", KeyMode::Ok.into());
    // probe_interval is 1s in the test config; wait (bounded) for the probe to land.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let probes = s.mock.requests().into_iter().filter(|r| r.method == "GET" && r.path.contains("/models/")).count();
        if probes > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no probe within 10s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = generate(&s.proxy, "gemini-2.5-flash").await.status();
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "key not back after a successful probe ({status})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probe = s.mock.requests().into_iter().find(|r| r.method == "GET").unwrap();
    assert_eq!(probe.path, "/v1beta/models/gemini-2.5-flash", "probes cost no quota");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_key_times_out_and_the_request_moves_on() {
    let s = setup_with(&["AIzaHANG", "AIzaOK"], |t| t.replace("first_byte_timeout = \"5s\"", "first_byte_timeout = \"500ms\"")).await;
    let proxy = &s.proxy;
    s.mock.set_key("AIzaHANG", KeyMode::Hang.into());
    let started = std::time::Instant::now();
    for _ in 0..2 {
        assert_eq!(generate(proxy, "gemini-2.5-flash").await.status(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let log = proxy.wait_for_records(2);
    assert!(log.iter().any(|r| r["attempts"][0]["outcome"] == "timeout"), "{log:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daily_quota_benches_the_key_until_the_pacific_reset() {
    let s = setup(&["AIzaDAILY", "AIzaFRESH"]).await;
    s.mock.set_key("AIzaDAILY", KeyMode::RateLimitedDaily { retry_delay: "5s".into(), models: None }.into());
    for _ in 0..6 {
        assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
    }
    assert_eq!(keys_seen(&s.mock, "generateContent").iter().filter(|k| *k == "AIzaDAILY").count(), 1);
    // With the fresh key gone too, the wait is until the reset, not Gemini's 5 s hint.
    s.mock.set_key("AIzaFRESH", KeyMode::Invalid.into());
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 60, "a daily quota waits for the reset (Retry-After {retry})");
    assert!(retry <= 25 * 3600);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_upstream_is_a_502_after_every_attempt() {
    let closed = free_port();
    let s = setup_with(&["AIzaA", "AIzaB"], |t| {
        t.replace("base_url = \"http://127.0.0.1:", &format!("base_url = \"http://127.0.0.1:{closed}\" # was ")).replace("#was", "")
    })
    .await;
    let started = std::time::Instant::now();
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_secs(3));
    let log = s.proxy.wait_for_records(1);
    let outcomes: Vec<_> = log[0]["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap().to_owned()).collect();
    assert!(outcomes.len() >= 2 && outcomes.iter().all(|o| o == "connect_error"), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn least_inflight_sends_concurrent_requests_to_idle_keys() {
    let s = setup_with(&["AIzaA", "AIzaB", "AIzaC"], |t| t.replace("keys = [", "strategy = \"least_inflight\"\nkeys = [")).await;
    for k in ["AIzaA", "AIzaB", "AIzaC"] {
        s.mock.set_key(k, KeyMode::Slow { first_byte_ms: 400 }.into());
    }
    // Three slow requests at once land on three different keys.
    let calls: Vec<_> = (0..3).map(|_| generate(&s.proxy, "gemini-2.5-flash")).collect();
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.status(), 200);
    }
    let mut seen = keys_seen(&s.mock, "generateContent");
    seen.sort();
    assert_eq!(seen, vec!["AIzaA", "AIzaB", "AIzaC"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn random_strategy_uses_every_usable_key() {
    let s = setup_with(&["AIzaA", "AIzaB", "AIzaC", "AIzaDEAD"], |t| t.replace("keys = [", "strategy = \"random\"\nkeys = [")).await;
    s.mock.set_key("AIzaDEAD", KeyMode::Leaked.into());
    for _ in 0..60 {
        assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
    }
    let seen = keys_seen(&s.mock, "generateContent");
    for k in ["AIzaA", "AIzaB", "AIzaC"] {
        assert!(seen.iter().filter(|x| *x == k).count() >= 5, "{k} barely used: {seen:?}");
    }
    assert!(seen.iter().filter(|x| *x == "AIzaDEAD").count() <= 1);
}
