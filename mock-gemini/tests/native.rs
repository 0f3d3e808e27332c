//! The native surface over real sockets: generation, streaming framing, key behaviours and Google's error bodies.

mod common;

use common::{post_json, send, sse_events, try_send};
use mock_gemini::{KeyBehaviour, KeyMode, MockConfig, MockGemini};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn prompt(text: &str) -> Value {
    json!({"contents":[{"role":"user","parts":[{"text": text}]}]})
}

async fn mock() -> MockGemini {
    MockGemini::start(MockConfig::default()).await.expect("start mock")
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_content_answers_like_gemini_on_both_versions() {
    let m = mock().await;
    for version in ["v1", "v1beta"] {
        let r = post_json(
            m.addr(),
            &format!("/{version}/models/gemini-2.5-flash:generateContent"),
            &[("x-goog-api-key", "AIzaA")],
            &prompt("0123456789"), // 10 bytes -> 3 prompt tokens
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")));
        let v = r.json();
        assert_eq!(v["candidates"][0]["content"]["role"], "model");
        assert_eq!(v["candidates"][0]["finishReason"], "STOP");
        let text = v["candidates"][0]["content"]["parts"][0]["text"].as_str().expect("text");
        let usage = &v["usageMetadata"];
        assert_eq!(usage["promptTokenCount"], 3);
        assert_eq!(usage["candidatesTokenCount"], text.split_whitespace().count());
        assert_eq!(
            usage["totalTokenCount"].as_u64(),
            Some(usage["promptTokenCount"].as_u64().unwrap_or(0) + usage["candidatesTokenCount"].as_u64().unwrap_or(0))
        );
        assert_eq!(v["modelVersion"], "gemini-2.5-flash");
        assert!(v["responseId"].as_str().is_some_and(|s| !s.is_empty()));
    }
    // ?key= works as well as the header, and tuned models exist.
    let r = post_json(m.addr(), "/v1beta/tunedModels/my-tune:generateContent?key=AIzaA", &[], &prompt("x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(m.requests().last().and_then(|r| r.model.clone()).as_deref(), Some("tunedModels/my-tune"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_models_and_paths_are_404_in_googles_envelope() {
    let m = mock().await;
    let key = [("x-goog-api-key", "AIzaA")];
    let r = post_json(m.addr(), "/v1beta/models/gemini-9:generateContent", &key, &prompt("x")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["status"], "NOT_FOUND");
    assert!(r.json()["error"]["message"].as_str().is_some_and(|s| s.starts_with("models/gemini-9 is not found")));
    // An embedding model does not generate.
    let r = post_json(m.addr(), "/v1/models/text-embedding-004:generateContent", &key, &prompt("x")).await;
    assert_eq!(r.status, 404);
    let r = send(m.addr(), "GET", "/v1/models/nope", &key, b"").await;
    assert_eq!(r.status, 404);
    for (method, path) in [("GET", "/v2/models"), ("GET", "/"), ("PATCH", "/v1beta/models"), ("POST", "/v1beta/models/gemini-2.5-flash:fly")] {
        let r = send(m.addr(), method, path, &key, b"").await;
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.json()["error"]["code"], 404, "{method} {path}");
    }
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &key, &json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");
    let r = send(m.addr(), "POST", "/v1beta/models/gemini-2.5-flash:generateContent", &key, b"{not json").await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn models_list_pages_and_costs_no_quota() {
    let m = mock().await;
    m.set_key("AIzaBusy", KeyMode::rate_limited("30s").into());
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/v1beta/models?pageSize=2&pageToken={t}"),
            None => "/v1beta/models?pageSize=2".to_string(),
        };
        let v = send(m.addr(), "GET", &path, &[("x-goog-api-key", "AIzaBusy")], b"").await.json();
        for model in v["models"].as_array().expect("models") {
            assert!(model["inputTokenLimit"].is_u64() && model["supportedGenerationMethods"].is_array());
            names.push(model["name"].as_str().unwrap_or_default().to_string());
        }
        token = v["nextPageToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    for want in ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash", "text-embedding-004", "gemini-embedding-001"] {
        assert!(names.contains(&format!("models/{want}")), "{want} missing from {names:?}");
    }
    let r = send(m.addr(), "GET", "/v1/models/gemini-2.5-pro", &[("x-goog-api-key", "AIzaBusy")], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["displayName"], "Gemini 2.5 Pro");
    // ...but the same key is limited on an actual call.
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-pro:generateContent", &[("x-goog-api-key", "AIzaBusy")], &prompt("x")).await;
    assert_eq!(r.status, 429);
    // Broken keys get their error even on metadata.
    m.set_key("AIzaBad", KeyMode::Invalid.into());
    let r = send(m.addr(), "GET", "/v1beta/models", &[("x-goog-api-key", "AIzaBad")], b"").await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_429_has_googles_details_and_no_retry_after() {
    let m = mock().await;
    m.set_key("AIzaL", KeyMode::rate_limited("37s").into());
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &[("x-goog-api-key", "AIzaL")], &prompt("x")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), None);
    let e = &r.json()["error"];
    assert_eq!(e["code"], 429);
    assert_eq!(e["status"], "RESOURCE_EXHAUSTED");
    assert!(e["message"].as_str().is_some_and(|m| m.ends_with("Please retry in 37s.")));
    let details = e["details"].as_array().expect("details");
    let types: Vec<&str> = details.iter().filter_map(|d| d["@type"].as_str()).collect();
    assert_eq!(types, ["type.googleapis.com/google.rpc.Help", "type.googleapis.com/google.rpc.QuotaFailure", "type.googleapis.com/google.rpc.RetryInfo"]);
    let violation = &details[1]["violations"][0];
    assert_eq!(violation["quotaId"], "GenerateRequestsPerMinutePerProjectPerModel-FreeTier");
    assert_eq!(violation["quotaMetric"], "generativelanguage.googleapis.com/generate_content_free_tier_requests");
    assert_eq!(violation["quotaDimensions"], json!({"location":"global","model":"gemini-2.5-flash"}));
    assert_eq!(violation["quotaValue"], "10");
    assert_eq!(details[2]["retryDelay"], "37s");

    m.set_key("AIzaD", KeyMode::RateLimitedDaily { retry_delay: "39600s".into(), models: None }.into());
    let r = post_json(m.addr(), "/v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse", &[("x-goog-api-key", "AIzaD")], &prompt("x")).await;
    assert_eq!(r.status, 429);
    let d = &r.json()["error"]["details"];
    assert_eq!(d[1]["violations"][0]["quotaId"], "GenerateRequestsPerDayPerProjectPerModel-FreeTier");
    assert_eq!(d[2]["retryDelay"], "39600s");

    m.set_key("AIzaB", KeyMode::RateLimitedBare.into());
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:countTokens", &[("x-goog-api-key", "AIzaB")], &prompt("x")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(r.json()["error"].get("details").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_per_model() {
    let m = mock().await;
    m.set_key("AIzaP", KeyMode::rate_limited_on("5s", &["gemini-2.5-pro"]).into());
    let key = [("x-goog-api-key", "AIzaP")];
    let pro = post_json(m.addr(), "/v1beta/models/gemini-2.5-pro:generateContent", &key, &prompt("x")).await;
    assert_eq!(pro.status, 429);
    assert_eq!(pro.json()["error"]["details"][1]["violations"][0]["quotaDimensions"]["model"], "gemini-2.5-pro");
    let flash = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &key, &prompt("x")).await;
    assert_eq!(flash.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_failure_modes_match_google() {
    let m = mock().await;
    let cases: [(KeyMode, u16, &str, Option<&str>, &str); 6] = [
        (KeyMode::Invalid, 400, "INVALID_ARGUMENT", Some("API_KEY_INVALID"), "API key not valid. Please pass a valid API key."),
        (KeyMode::Suspended, 403, "PERMISSION_DENIED", Some("CONSUMER_SUSPENDED"), "Permission denied: Consumer"),
        (KeyMode::Leaked, 403, "PERMISSION_DENIED", None, "Your API key was reported as leaked. Please use another API key."),
        (KeyMode::Blocked, 403, "PERMISSION_DENIED", Some("API_KEY_SERVICE_BLOCKED"), "Requests to this API"),
        (KeyMode::Overloaded, 503, "UNAVAILABLE", None, "The model is overloaded. Please try again later."),
        (KeyMode::Internal, 500, "INTERNAL", None, "An internal error has occurred"),
    ];
    for (mode, code, status, reason, message) in cases {
        m.set_key("AIzaK", mode.clone().into());
        let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &[("x-goog-api-key", "AIzaK")], &prompt("x")).await;
        assert_eq!(r.status, code, "{mode:?}");
        let e = &r.json()["error"];
        assert_eq!(e["code"], code, "{mode:?}");
        assert_eq!(e["status"], status, "{mode:?}");
        assert!(e["message"].as_str().is_some_and(|m| m.starts_with(message)), "{mode:?}: {e}");
        if let Some(reason) = reason {
            assert_eq!(e["details"][0]["reason"], reason, "{mode:?}");
            assert_eq!(e["details"][0]["domain"], "googleapis.com", "{mode:?}");
            assert_eq!(e["details"][0]["metadata"]["service"], "generativelanguage.googleapis.com", "{mode:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_key_is_403_and_foreign_authorization_is_401() {
    let m = mock().await;
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &[], &prompt("x")).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["error"]["message"].as_str().is_some_and(|s| s.starts_with("Method doesn't allow unregistered callers")));
    // A proxy that forwards its client's token gets Google's 401, even with a good key.
    let r = post_json(
        m.addr(),
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &[("x-goog-api-key", "AIzaA"), ("authorization", "Bearer gp-client-token")],
        &prompt("x"),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["status"], "UNAUTHENTICATED");
    assert!(r.json()["error"]["message"].as_str().is_some_and(|s| s.contains("Expected OAuth 2 access token")));
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_stream_is_framed_like_gemini_with_cumulative_usage() {
    let m = mock().await;
    let r = post_json(
        m.addr(),
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", "AIzaA"), ("x-mock-chunks", "5"), ("x-mock-chunk-bytes", "400")],
        &prompt("abcdefgh"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = sse_events(&r.text(), "\r\n\r\n");
    assert_eq!(events.len(), 5);
    let mut last_candidates = 0;
    for (i, e) in events.iter().enumerate() {
        let v: Value = serde_json::from_str(e).expect("event JSON");
        let text = v["candidates"][0]["content"]["parts"][0]["text"].as_str().expect("text");
        assert!((390..=400).contains(&text.len()), "chunk padded to ~400 bytes, got {}", text.len());
        let u = &v["usageMetadata"];
        assert_eq!(u["promptTokenCount"], 2);
        let c = u["candidatesTokenCount"].as_u64().expect("candidates");
        assert!(c > last_candidates, "usage is cumulative");
        last_candidates = c;
        assert_eq!(u["totalTokenCount"].as_u64(), Some(c + 2));
        let finish = v["candidates"][0].get("finishReason");
        if i == 4 {
            assert_eq!(finish, Some(&json!("STOP")));
        } else {
            assert_eq!(finish, None);
        }
    }
    assert!(!r.text().contains("[DONE]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_without_alt_sse_is_one_json_array() {
    let m = mock().await;
    let r = post_json(m.addr(), "/v1/models/gemini-2.0-flash:streamGenerateContent", &[("x-goog-api-key", "AIzaA")], &prompt("x")).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let chunks = v.as_array().expect("array");
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[2]["candidates"][0]["finishReason"], "STOP");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunk_delay_paces_the_stream() {
    let m = mock().await;
    let started = Instant::now();
    let r = post_json(
        m.addr(),
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", "AIzaA"), ("x-mock-chunks", "4"), ("x-mock-chunk-delay-ms", "60")],
        &prompt("x"),
    )
    .await;
    assert_eq!(sse_events(&r.text(), "\r\n\r\n").len(), 4);
    assert!(started.elapsed() >= Duration::from_millis(180), "3 gaps of 60 ms, took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn die_midstream_cuts_the_connection_without_terminating_chunk() {
    let m = mock().await;
    m.set_key("AIzaDie", KeyMode::DieMidstream { after_events: 2 }.into());
    let key = [("x-goog-api-key", "AIzaDie"), ("x-mock-chunks", "5")];
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", &key, &prompt("x")).await;
    assert_eq!(r.status, 200);
    assert!(!r.complete, "the zero-length terminating chunk must be missing");
    let events = sse_events(&r.text(), "\r\n\r\n");
    assert_eq!(events.len(), 2);
    // The JSON-array form dies the same way, leaving an unclosed array.
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:streamGenerateContent", &key, &prompt("x")).await;
    assert!(!r.complete);
    assert!(r.text().starts_with('[') && !r.text().ends_with(']'));
    // Non-streaming calls answer normally.
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &key, &prompt("x")).await;
    assert_eq!(r.status, 200);
    assert!(r.complete);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_midstream_sends_an_in_band_error_event() {
    let m = mock().await;
    m.set_key("AIzaErr", KeyMode::ErrorMidstream { after_events: 1 }.into());
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", &[("x-goog-api-key", "AIzaErr")], &prompt("x")).await;
    assert!(r.complete);
    let events = sse_events(&r.text(), "\r\n\r\n");
    assert_eq!(events.len(), 2);
    let err: Value = serde_json::from_str(&events[1]).expect("json");
    assert_eq!(err["error"]["code"], 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn hang_never_answers_and_slow_delays_the_first_byte() {
    let m = mock().await;
    m.set_key("AIzaHang", KeyMode::Hang.into());
    let r = try_send(m.addr(), "GET", "/v1beta/models", &[("x-goog-api-key", "AIzaHang")], b"", Duration::from_millis(300)).await;
    assert!(r.is_none(), "a hanging key must not answer");
    assert_eq!(m.requests().len(), 1, "the hung request was still recorded");

    m.set_key("AIzaSlow", KeyBehaviour::from(KeyMode::Slow { first_byte_ms: 250 }));
    let started = Instant::now();
    let r = send(m.addr(), "GET", "/v1beta/models", &[("x-goog-api-key", "AIzaSlow")], b"").await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_pause_after_some_events_and_a_per_request_first_byte_delay() {
    let m = mock().await;
    let started = Instant::now();
    let r = post_json(
        m.addr(),
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", "AIzaA"), ("x-mock-chunks", "3"), ("x-mock-pause-after", "2"), ("x-mock-pause-ms", "250")],
        &prompt("x"),
    )
    .await;
    assert_eq!(sse_events(&r.text(), "\r\n\r\n").len(), 3);
    assert!(started.elapsed() >= Duration::from_millis(250), "one pause of 250 ms, took {:?}", started.elapsed());
    let started = Instant::now();
    let r =
        post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &[("x-goog-api-key", "AIzaA"), ("x-mock-first-byte-ms", "250")], &prompt("x"))
            .await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// Waits (bounded) until the mock has noted `n` abandoned requests.
async fn wait_abandoned(m: &MockGemini, n: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while m.abandoned().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    m.abandoned()
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_whose_connection_closes_before_they_are_complete_are_noted_as_abandoned() {
    let m = mock().await;
    let key = ("x-goog-api-key", "AIzaA");
    // Complete answers are not: a JSON one, a stream, an empty one.
    post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &[key], &prompt("x")).await;
    post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", &[key], &prompt("x")).await;
    send(m.addr(), "HEAD", "/v1beta/models", &[key], b"").await;
    // Closed while the answer is held back...
    let started = Instant::now();
    let r = try_send(
        m.addr(),
        "POST",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &[key, ("x-mock-first-byte-ms", "30000")],
        b"{}",
        Duration::from_millis(100),
    )
    .await;
    assert!(r.is_none());
    assert_eq!(wait_abandoned(&m, 1).await, vec![3]);
    // ... or in a pause between two events of a stream.
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let headers = [key, ("x-mock-chunks", "3"), ("x-mock-pause-after", "1"), ("x-mock-pause-ms", "30000")];
    let r = try_send(m.addr(), "POST", path, &headers, &serde_json::to_vec(&prompt("x")).unwrap(), Duration::from_millis(300)).await;
    assert!(r.is_some_and(|r| r.status == 200 && !r.complete));
    assert_eq!(wait_abandoned(&m, 2).await, vec![3, 4]);
    assert!(started.elapsed() < Duration::from_secs(5), "noted at once, not when the answer would have gone on");
    assert_eq!(m.requests().len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn count_tokens_and_embeddings() {
    let m = mock().await;
    let key = [("x-goog-api-key", "AIzaA")];
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:countTokens", &key, &prompt("abcdefghi")).await;
    assert_eq!(r.json()["totalTokens"], 3);

    let body = json!({"content":{"parts":[{"text":"hello"}]}});
    let one = post_json(m.addr(), "/v1beta/models/text-embedding-004:embedContent", &key, &body).await.json();
    assert_eq!(one["embedding"]["values"].as_array().map(Vec::len), Some(768));

    let body = json!({"requests":[
        {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}]},"outputDimensionality":16},
        {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"b"}]},"output_dimensionality":16},
        {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"c"}]}}
    ]});
    let many = post_json(m.addr(), "/v1/models/gemini-embedding-001:batchEmbedContents", &key, &body).await.json();
    let lens: Vec<usize> = many["embeddings"].as_array().expect("embeddings").iter().map(|e| e["values"].as_array().map_or(0, Vec::len)).collect();
    assert_eq!(lens, [16, 16, 3072]);

    let r = post_json(m.addr(), "/v1beta/models/imagen-4.0-generate-001:predict", &key, &json!({"instances":[{"prompt":"cat"}]})).await;
    assert_eq!(r.json()["predictions"][0]["mimeType"], "image/png");
    let r = post_json(
        m.addr(),
        "/v1beta/models/gemini-2.5-flash:batchGenerateContent",
        &key,
        &json!({"batch":{"displayName":"b","inputConfig":{"requests":{"requests":[{"request":prompt("x")}]}}}}),
    )
    .await;
    assert!(r.json()["name"].as_str().is_some_and(|n| n.starts_with("batches/")));
}

#[tokio::test(flavor = "multi_thread")]
async fn default_mode_applies_to_unknown_keys() {
    let m = MockGemini::start(MockConfig { default_mode: KeyMode::Invalid, ..MockConfig::default() }).await.expect("start");
    m.set_key("AIzaGood", KeyMode::Ok.into());
    let bad = send(m.addr(), "GET", "/v1beta/models", &[("x-goog-api-key", "AIzaWho")], b"").await;
    assert_eq!(bad.status, 400);
    let good = send(m.addr(), "GET", "/v1beta/models", &[("x-goog-api-key", "AIzaGood")], b"").await;
    assert_eq!(good.status, 200);
    m.reset();
    let after = send(m.addr(), "GET", "/v1beta/models", &[("x-goog-api-key", "AIzaGood")], b"").await;
    assert_eq!(after.status, 400, "reset puts every key back to the default mode");
}
