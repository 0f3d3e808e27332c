//! Access control: client limits at their exact numbers, JWT clients and every bad-token case,
//! network rules, abuse limits, and their visibility in metrics and the admin API.

use crate::harness::*;
use mock_gemini::KeyMode;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

/// Adds fields to client alice.
fn alice(t: String, fields: &str) -> String {
    t.replacen(&format!("token = \"{TOKEN}\"\n"), &format!("token = \"{TOKEN}\"\n{fields}\n"), 1)
}

async fn error_of(r: reqwest::Response) -> (u16, Option<u64>, Value) {
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry, r.json().await.unwrap())
}

fn reason(v: &Value) -> &str {
    v["error"]["details"][0]["reason"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_with_10_rpm_gets_its_11th_request_refused() {
    let s = setup_with(&["AIzaA"], |t| alice(t, "rpm = 10")).await;
    for i in 0..10 {
        assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200, "request {}", i + 1);
    }
    let (status, retry, v) = error_of(generate(&s.proxy, "gemini-2.5-flash").await).await;
    assert_eq!(status, 429);
    assert!(retry.is_some_and(|r| (55..=60).contains(&r)), "Retry-After {retry:?}");
    assert_eq!(reason(&v), "CLIENT_RPM_LIMIT");
    assert!(v["error"]["message"].as_str().unwrap().contains("10 requests per minute"), "{v}");
    assert_eq!(s.mock.requests().len(), 10, "a refused request never reaches the upstream");
    let log = s.proxy.wait_for_records(11);
    let refused = log.iter().find(|r| r["status"] == 429).expect("the refusal is logged");
    assert_eq!(refused["model"], "gemini-2.5-flash", "a refusal still names the model of its path: {refused}");
    // Another client has its own budget.
    assert_eq!(generate_as(&s.proxy, TOKEN_BOB, "gemini-2.5-flash").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_limits_refuse_the_next_request_once_spent() {
    let s = setup_with(&["AIzaA"], |t| alice(t, "tpm = 10")).await;
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
    let used = s.proxy.wait_for_records(1)[0]["tokens_out"].as_u64().unwrap();
    assert!(used >= 10, "one answer spends the budget ({used} tokens)");
    let (status, retry, v) = error_of(generate(&s.proxy, "gemini-2.5-flash").await).await;
    assert_eq!((status, reason(&v)), (429, "CLIENT_TPM_LIMIT"), "{v}");
    assert!(retry.is_some_and(|r| r <= 60));
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_per_day_hold_across_a_restart() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = alice(config(addr, &mock.base_url(), &["AIzaA"]), "tpd = 40");
    let p = Proxy::start_config(addr, &toml);
    let mut served = 0;
    loop {
        let r = generate(&p, "gemini-2.5-flash").await;
        if r.status() == 429 {
            break;
        }
        assert_eq!(r.status(), 200);
        served += 1;
        assert!(served < 20, "the daily limit never triggered");
    }
    let dir = p.stop();
    let p = Proxy::start_in(dir, addr, Some(&toml), &[], &[]);
    let (status, retry, v) = error_of(generate(&p, "gemini-2.5-flash").await).await;
    assert_eq!((status, reason(&v)), (429, "CLIENT_TPD_LIMIT"), "still spent after a restart: {v}");
    assert!(retry.unwrap() <= 86_400);
    assert_eq!(generate_as(&p, TOKEN_BOB, "gemini-2.5-flash").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_is_limited_per_client() {
    let s = setup_with(&["AIzaSLOW"], |t| alice(t, "concurrency = 1")).await;
    s.mock.set_key("AIzaSLOW", KeyMode::Slow { first_byte_ms: 600 }.into());
    let first = tokio::spawn({
        let url = s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent");
        async move { client().post(url).header("x-goog-api-key", TOKEN).json(&generate_body("a")).send().await.unwrap().status() }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.mock.requests().is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _, v) = error_of(generate(&s.proxy, "gemini-2.5-flash").await).await;
    assert_eq!((status, reason(&v)), (429, "CLIENT_CONCURRENCY_LIMIT"));
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200, "the slot is free again");
}

#[tokio::test(flavor = "multi_thread")]
async fn models_and_pools_are_restricted_per_client() {
    let s = setup_with(&["AIzaA"], |t| {
        let t = t.replace("[[clients]]\nname = \"alice\"", "[[pools]]\nname = \"batch\"\nkeys = [\"AIzaBATCH\"]\n\n[[clients]]\nname = \"alice\"");
        alice(t, "models = [\"gemini-2.5-*\"]\npools = [\"default\"]")
    })
    .await;
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
    let (status, _, v) = error_of(generate(&s.proxy, "gemini-2.0-flash").await).await;
    assert_eq!((status, reason(&v)), (403, "MODEL_NOT_ALLOWED"), "{v}");
    // OpenAI-surface requests name the model in the body: the same rule applies.
    let r = client()
        .post(s.proxy.url("/v1beta/openai/chat/completions"))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "gemini-2.0-flash", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let with_pool = |pool: &'static str| {
        client()
            .post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent"))
            .header("x-goog-api-key", TOKEN)
            .header("x-gemini-proxy-pool", pool)
            .json(&generate_body("x"))
            .send()
    };
    assert_eq!(with_pool("default").await.unwrap().status(), 200);
    let (status, _, v) = error_of(with_pool("batch").await.unwrap()).await;
    assert_eq!((status, reason(&v)), (403, "POOL_NOT_ALLOWED"));
    assert_eq!(with_pool("nope").await.unwrap().status(), 400);
    // Bob has no pool restriction: he may pick the batch pool.
    let r = client()
        .post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", TOKEN_BOB)
        .header("x-gemini-proxy-pool", "batch")
        .json(&generate_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "without a pools list a client uses the first pool only");
    assert!(s.mock.requests().iter().all(|r| r.header("x-gemini-proxy-pool").is_none()), "the pool header is not forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_address_and_global_rates() {
    let s = setup_with(&["AIzaA"], |t| in_section(t, "server", "").replace("[admin]", "[access]\nper_ip_rpm = 3\n\n[admin]")).await;
    for _ in 0..3 {
        assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
    }
    let (status, retry, v) = error_of(generate_as(&s.proxy, TOKEN_BOB, "gemini-2.5-flash").await).await;
    assert_eq!((status, reason(&v)), (429, "ADDRESS_RATE_LIMIT"), "the address is limited whoever the client");
    assert!(retry.is_some_and(|r| (19..=20).contains(&r)), "{retry:?}");

    let g = setup_with(&["AIzaA"], |t| t.replace("[admin]", "[access]\nglobal_rpm = 2\n\n[admin]")).await;
    assert_eq!(generate(&g.proxy, "gemini-2.5-flash").await.status(), 200);
    assert_eq!(generate_as(&g.proxy, TOKEN_BOB, "gemini-2.5-flash").await.status(), 200);
    let (status, _, v) = error_of(generate(&g.proxy, "gemini-2.5-flash").await).await;
    assert_eq!((status, reason(&v)), (429, "GLOBAL_RATE_LIMIT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_addresses_are_dropped_at_accept() {
    let s = setup_with(&["AIzaA"], |t| t.replace("[admin]", "[access]\ndeny = [\"127.0.0.0/8\"]\n\n[admin]")).await;
    let out =
        raw_exchange(s.proxy.addr, format!("GET /v1beta/models HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\n\r\n").as_bytes(), Duration::from_secs(3));
    assert!(out.is_empty(), "a denied peer gets no answer at all: {out:?}");
    assert!(s.mock.requests().is_empty());
    let access = client().get(s.proxy.admin_url("/api/v1/access")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json::<Value>().await.unwrap();
    assert!(access["refusals"]["ip_denied"].as_u64().unwrap() >= 1, "{access}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_clients_are_checked_behind_trusted_proxies_only() {
    let s = setup_with(&["AIzaA"], |t| t.replace("[admin]", "[access]\nallow = [\"198.51.100.0/24\"]\ntrusted_proxies = [\"127.0.0.1\"]\n\n[admin]")).await;
    let with_xff = |xff: &'static str| {
        client()
            .post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent"))
            .header("x-goog-api-key", TOKEN)
            .header("x-forwarded-for", xff)
            .json(&generate_body("x"))
            .send()
    };
    assert_eq!(with_xff("198.51.100.7").await.unwrap().status(), 200);
    assert_eq!(with_xff("203.0.113.1, 198.51.100.7").await.unwrap().status(), 200, "the nearest untrusted hop is the client");
    let (status, _, v) = error_of(with_xff("203.0.113.1").await.unwrap()).await;
    assert_eq!((status, reason(&v)), (403, "ADDRESS_DENIED"));
    assert_eq!(with_xff("::ffff:198.51.100.9").await.unwrap().status(), 200, "an IPv4-mapped IPv6 address is its IPv4 address");
    // A proxy in front may add its own line instead of extending the client's: the lines are
    // one list, read from the right, so a client's own line cannot pass for its address.
    let two_lines = |client_claim: &'static str, seen_by_proxy: &'static str| {
        client()
            .post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent"))
            .header("x-goog-api-key", TOKEN)
            .header("x-forwarded-for", client_claim)
            .header("x-forwarded-for", seen_by_proxy)
            .json(&generate_body("x"))
            .send()
    };
    let (status, _, v) = error_of(two_lines("198.51.100.7", "203.0.113.1").await.unwrap()).await;
    assert_eq!((status, reason(&v)), (403, "ADDRESS_DENIED"), "the address the front proxy saw decides");
    assert_eq!(two_lines("203.0.113.1", "198.51.100.7").await.unwrap().status(), 200);
    assert!(s.mock.requests().iter().all(|r| r.header("x-forwarded-for").is_none()));
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_and_stream_limits() {
    let s = setup_with(&["AIzaA"], |t| t.replace("[admin]", "[access]\nmax_connections = 2\nmax_streams = 1\n\n[admin]")).await;
    // One stream holds the only stream slot; a second stream is refused, a plain call is not.
    let stream = tokio::spawn({
        let url = s.proxy.url("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
        async move {
            let r = client()
                .post(url)
                .header("x-goog-api-key", TOKEN)
                .header("x-mock-chunks", "5")
                .header("x-mock-chunk-delay-ms", "200")
                .json(&generate_body("s"))
                .send()
                .await
                .unwrap();
            r.text().await.unwrap()
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.mock.requests().is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = serde_json::to_string(&generate_body("s2")).unwrap();
    let second = format!("POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    let out = raw_exchange(s.proxy.addr, second.as_bytes(), Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 429") && out.contains("STREAM_LIMIT"), "{out}");
    assert_eq!(stream.await.unwrap().matches("data: ").count(), 5);

    // Two idle connections fill the connection limit: a third is turned away with a 503.
    let open_connections = || async {
        let access: Value = client().get(s.proxy.admin_url("/api/v1/access")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
        access["open_connections"].as_u64().unwrap()
    };
    // The streaming client's connection closes on its own time: wait for it, so that it does
    // not take one of the two places.
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_connections().await != 0 {
        assert!(Instant::now() < deadline, "earlier connections are still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut a = TcpStream::connect(s.proxy.addr).unwrap();
    let mut b = TcpStream::connect(s.proxy.addr).unwrap();
    a.write_all(b"G").unwrap();
    b.write_all(b"G").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_connections().await != 2 {
        assert!(Instant::now() < deadline, "the proxy does not hold the two connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = raw_exchange(s.proxy.addr, b"GET /v1beta/models HTTP/1.1\r\nhost: x\r\n\r\n", Duration::from_secs(3));
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(out.contains("\"UNAVAILABLE\"") && out.contains("CONNECTION_LIMIT") && out.to_ascii_lowercase().contains("retry-after: 1"), "{out}");
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off() {
    let s = setup_with(&["AIzaA"], |t| in_section(t, "server", "header_timeout = \"2s\"\nbody_timeout = \"2s\"")).await;
    // Slowloris: one header byte a second.
    let started = Instant::now();
    let mut conn = TcpStream::connect(s.proxy.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut answer = Vec::new();
    for byte in b"POST /v1beta/models/x:generateContent HTTP/1.1\r\nhost: x\r\n".iter() {
        if conn.write_all(&[*byte]).is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(n) = conn.read(&mut buf) {
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || !answer.is_empty() {
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        assert!(started.elapsed() < Duration::from_secs(8), "the slow client was never cut off");
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body trickling in is cut off too.
    let mut conn = TcpStream::connect(s.proxy.addr).unwrap();
    write!(conn, "POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\ncontent-length: 100\r\n\r\n").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    for _ in 0..3 {
        let _ = conn.write_all(b"{");
        std::thread::sleep(Duration::from_millis(900));
    }
    let mut out = String::new();
    let _ = conn.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(s.mock.requests().is_empty());

    // Oversized heads get 431.
    let big = format!("GET /v1beta/models HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(70_000));
    let out = raw_exchange(s.proxy.addr, big.as_bytes(), Duration::from_secs(3));
    assert!(out.starts_with("HTTP/1.1 431"), "{}", &out[..out.len().min(100)]);
}

fn mint(args: &[&str]) -> String {
    let out = Command::new(binary()).arg("token").args(args).env("JWT_SECRET", JWT_SECRET).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn openssl(args: &[&str], dir: &std::path::Path) -> String {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The admin API's client list shows each JWT client with the limits its requests are held to:
/// its `[[clients]]` entry's when it has one (whatever the token carries), else its tokens'.
#[tokio::test(flavor = "multi_thread")]
async fn client_usage_shows_the_limits_enforced_on_jwt_clients() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = config(addr, &mock.base_url(), &["AIzaA"])
        .replace("[admin]", "[jwt]\nsecret_env = \"JWT_SECRET_FOR_TEST\"\npolicy_claim = \"gp\"\n\n[jwt.policy]\nrpm = 3\n\n[admin]")
        + "\n[[clients]]\nname = \"dave\"\nrpm = 1\n";
    let p = Proxy::start_cmd(addr, Some(&toml), &[], &[("JWT_SECRET_FOR_TEST", JWT_SECRET)]);
    let token = |sub: &str, claim: Option<&str>| {
        let mut a = vec!["--sub", sub, "--secret-env", "JWT_SECRET"];
        if let Some(c) = claim {
            a.extend(["--claim", c]);
        }
        mint(&a)
    };
    let status = |t: String| {
        let p = &p;
        async move { generate_as(p, &t, "gemini-2.5-flash").await.status().as_u16() }
    };
    let clients = || async {
        let r = client().get(p.admin_url("/api/v1/clients")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        r.json::<Value>().await.unwrap().as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap().to_owned(), c.clone())).collect::<Vec<_>>()
    };
    let view = |all: &[(String, Value)], name: &str| all.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());

    // erin has no entry: her token's claim (2 rpm) is what holds her.
    let claim = token("erin", Some("gp={\"rpm\":2}"));
    assert_eq!([status(claim.clone()).await, status(claim.clone()).await, status(claim.clone()).await], [200, 200, 429]);
    // dave's token claims 50 rpm, but his entry (1 rpm) is what holds him.
    let big = token("dave", Some("gp={\"rpm\":50}"));
    assert_eq!([status(big.clone()).await, status(big).await], [200, 429]);

    let all = clients().await;
    let erin = view(&all, "erin").unwrap_or_else(|| panic!("a JWT client without an entry is listed: {all:?}"));
    assert_eq!((&erin["auth"], &erin["limits_source"], &erin["limits"]["rpm"]), (&json!("jwt"), &json!("token_claim"), &json!(2)), "{erin}");
    assert_eq!(erin["usage"]["requests_last_minute"], 2, "{erin}");
    assert_eq!(erin["token_limits"].as_array().unwrap().len(), 1, "{erin}");
    let dave = view(&all, "dave").unwrap();
    assert_eq!((&dave["limits_source"], &dave["limits"]["rpm"], &dave["token_limits"]), (&json!("entry"), &json!(1), &json!([])), "{dave}");
    assert_eq!(dave["usage"]["requests_last_minute"], 1, "{dave}");
    assert_eq!(all.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["alice", "bob", "dave", "erin"], "configured clients first");

    // Another token of erin's without a claim gets [jwt.policy] (3 rpm): one more request fits.
    let plain = token("erin", None);
    assert_eq!([status(plain.clone()).await, status(plain).await], [200, 429]);
    let erin = view(&clients().await, "erin").unwrap();
    assert_eq!((&erin["limits_source"], &erin["limits"]["rpm"]), (&json!("jwt_default"), &json!(3)), "the latest token's limits: {erin}");
    assert_eq!(erin["usage"]["requests_last_minute"], 3, "{erin}");
    let seen: Vec<(&Value, &Value)> = erin["token_limits"].as_array().unwrap().iter().map(|t| (&t["source"], &t["limits"]["rpm"])).collect();
    assert_eq!(seen, [(&json!("jwt_default"), &json!(3)), (&json!("token_claim"), &json!(2))], "{erin}");
}

/// A JWT client's remembered token policies name the pools they were enforced with: a reload
/// that reorders the pools changes neither the names shown nor which policy a token's next
/// request is (the same token is not listed twice).
#[tokio::test(flavor = "multi_thread")]
async fn jwt_clients_keep_their_pool_names_across_a_reload_that_reorders_pools() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let default_pool = "[[pools]]\nname = \"default\"\nkeys = [\"AIzaA\"]\n";
    let batch_pool = "[[pools]]\nname = \"batch\"\nkeys = [\"AIzaB\"]\n";
    let (both, swapped) = (format!("{default_pool}\n{batch_pool}"), format!("{batch_pool}\n{default_pool}"));
    let toml = config(addr, &mock.base_url(), &["AIzaA"])
        .replace(default_pool, &both)
        .replace("[admin]", "[jwt]\nsecret_env = \"JWT_SECRET_FOR_TEST\"\npolicy_claim = \"gp\"\n\n[jwt.policy]\nrpm = 30\n\n[admin]");
    assert!(toml.contains(&both), "{toml}");
    let p = Proxy::start_cmd(addr, Some(&toml), &[], &[("JWT_SECRET_FOR_TEST", JWT_SECRET)]);
    // erin's token allows the batch pool only; frank's carries no claim, so [jwt.policy] holds
    // him to the first pool.
    let erin = mint(&["--sub", "erin", "--secret-env", "JWT_SECRET", "--claim", "gp={\"rpm\":30,\"pools\":[\"batch\"]}"]);
    let frank = mint(&["--sub", "frank", "--secret-env", "JWT_SECRET"]);
    for t in [&erin, &frank] {
        assert_eq!(generate_as(&p, t, "gemini-2.5-flash").await.status(), 200);
    }
    assert_eq!(keys_seen(&mock, "generateContent"), ["AIzaB", "AIzaA"], "erin is served by batch, frank by default");

    // The pools swap places: batch is now first.
    std::fs::write(&p.config_path, toml.replace(&both, &swapped)).unwrap();
    let r = client().post(p.admin_url("/api/v1/config/reload")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(admin_get(&p, "/api/v1/keys").await["pools"], json!(["batch", "default"]));

    let view = |all: &Value, name: &str| all.as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or_else(|| panic!("{name} listed: {all}"));
    let pools = |c: &Value| (c["pools"].clone(), c["token_limits"].as_array().unwrap().iter().map(|t| t["pools"].clone()).collect::<Vec<_>>());
    let all = admin_get(&p, "/api/v1/clients").await;
    assert_eq!(pools(&view(&all, "erin")), (json!(["batch"]), vec![json!(["batch"])]), "{all}");
    assert_eq!(pools(&view(&all, "frank")), (json!(["default"]), vec![json!(["default"])]), "the first pool when they were admitted: {all}");

    // The same tokens again, under the new order: the same policies, not new ones.
    for t in [&erin, &frank] {
        assert_eq!(generate_as(&p, t, "gemini-2.5-flash").await.status(), 200);
    }
    assert_eq!(keys_seen(&mock, "generateContent")[2..], ["AIzaB", "AIzaB"], "frank now gets the new first pool");
    let all = admin_get(&p, "/api/v1/clients").await;
    assert_eq!(pools(&view(&all, "erin")), (json!(["batch"]), vec![json!(["batch"])]), "one policy for one token: {all}");
    let frank_view = view(&all, "frank");
    assert_eq!(pools(&frank_view), (json!(["batch"]), vec![json!(["batch"]), json!(["default"])]), "enforced with batch now, default before: {all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_clients_and_every_bad_token() {
    let keys = tempfile::tempdir().unwrap();
    let d = keys.path();
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem"], d);
    openssl(&["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub.pem"], d);
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec.pem"], d);
    openssl(&["pkey", "-in", "ec.pem", "-pubout", "-out", "ec.pub.pem"], d);
    let rsa_pub = d.join("rsa.pub.pem");
    // The JWT secret comes from the environment: start the proxy with it.
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = config(addr, &mock.base_url(), &["AIzaA"]).replace(
        "[admin]",
        &format!(
            "[jwt]\nsecret_env = \"JWT_SECRET_FOR_TEST\"\npublic_key_file = \"{}\"\nissuer = \"https://auth.test\"\naudience = [\"gemini-proxy\"]\npolicy_claim = \"gp\"\nleeway = \"0s\"\n\n[jwt.policy]\nrpm = 2\n\n[admin]",
            rsa_pub.display()
        ),
    ) + "\n[[clients]]\nname = \"dave\"\nrpm = 1\n";
    let p = Proxy::start_cmd(addr, Some(&toml), &[], &[("JWT_SECRET_FOR_TEST", JWT_SECRET)]);
    let good = ["--iss", "https://auth.test", "--aud", "gemini-proxy"];
    let hs = |sub: &str, extra: &[&str]| {
        let mut a = vec!["--sub", sub, "--secret-env", "JWT_SECRET"];
        a.extend_from_slice(&good);
        a.extend_from_slice(extra);
        mint(&a)
    };

    // Good tokens, HS256 and RS256; the JWT default policy (2 rpm) applies to unknown subjects.
    assert_eq!(generate_as(&p, &hs("erin", &[]), "gemini-2.5-flash").await.status(), 200);
    let rs = {
        let mut a = vec!["--sub", "erin", "--alg", "RS256", "--private-key"];
        let key = d.join("rsa.pem");
        let key = key.to_str().unwrap().to_owned();
        a.push(&key);
        a.extend_from_slice(&good);
        mint(&a)
    };
    assert_eq!(generate_as(&p, &rs, "gemini-2.5-flash").await.status(), 200);
    let (status, _, v) = error_of(generate_as(&p, &hs("erin", &[]), "gemini-2.5-flash").await).await;
    assert_eq!((status, reason(&v)), (429, "CLIENT_RPM_LIMIT"), "jwt.policy rpm = 2: {v}");
    // A [[clients]] entry of the subject's name gives its policy (dave: 1 rpm).
    assert_eq!(generate_as(&p, &hs("dave", &[]), "gemini-2.5-flash").await.status(), 200);
    assert_eq!(generate_as(&p, &hs("dave", &[]), "gemini-2.5-flash").await.status(), 429);
    // A policy claim in the token.
    let frank = hs("frank", &["--claim", "gp={\"rpm\":1,\"models\":[\"gemini-2.5-pro\"]}"]);
    assert_eq!(generate_as(&p, &frank, "gemini-2.5-flash").await.status(), 403);
    assert_eq!(generate_as(&p, &frank, "gemini-2.5-pro").await.status(), 200);

    // Every bad token is a 401 in Gemini's shape.
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let claims = r#"{"sub":"erin","iss":"https://auth.test","aud":"gemini-proxy","exp":9999999999}"#;
    let alg_none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(claims));
    // Algorithm confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let confused = {
        std::fs::write(d.join("pub-as-secret"), std::fs::read(&rsa_pub).unwrap()).unwrap();
        let f = d.join("pub-as-secret");
        let mut a = vec!["--sub", "erin", "--secret-file", f.to_str().unwrap()];
        a.extend_from_slice(&good);
        mint(&a)
    };
    let es = {
        let key = d.join("ec.pem");
        let mut a = vec!["--sub", "erin", "--alg", "ES256", "--private-key", key.to_str().unwrap()];
        a.extend_from_slice(&good);
        mint(&a)
    };
    let bad = [
        ("alg none", alg_none),
        ("algorithm confusion", confused),
        ("expired", hs("erin", &["--expires-in", "-60"])),
        ("not yet valid", hs("erin", &["--valid-in", "3600"])),
        ("wrong audience", mint(&["--sub", "erin", "--secret-env", "JWT_SECRET", "--iss", "https://auth.test", "--aud", "someone-else"])),
        ("wrong issuer", mint(&["--sub", "erin", "--secret-env", "JWT_SECRET", "--iss", "https://evil.test", "--aud", "gemini-proxy"])),
        ("no key for ES256", es),
        ("tampered", {
            let t = hs("erin", &[]);
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            parts[1] = b64(&claims.replace("erin", "root"));
            parts.join(".")
        }),
    ];
    for (what, token) in bad {
        let (status, _, v) = error_of(generate_as(&p, &token, "gemini-2.5-flash").await).await;
        assert_eq!(status, 401, "{what}: {v}");
        assert_eq!(v["error"]["status"], "UNAUTHENTICATED", "{what}");
    }
    // Static tokens still work beside JWTs.
    assert_eq!(generate(&p, "gemini-2.5-flash").await.status(), 200);
    let metrics = client().get(p.admin_url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("gemini_proxy_refusals_total{reason=\"invalid_jwt\"} 8"),
        "{}",
        metrics.lines().filter(|l| l.contains("refusals")).collect::<Vec<_>>().join("\n")
    );
    assert!(metrics.contains("gemini_proxy_refusals_total{reason=\"client_rpm\"}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_change_at_once_over_the_admin_api() {
    let s = setup(&["AIzaA"]).await;
    let r = client()
        .patch(s.proxy.admin_url("/api/v1/clients/alice"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"rpm": 1, "models": ["gemini-*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200);
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 429);
    let clients: Value = client().get(s.proxy.admin_url("/api/v1/clients")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
    let alice = clients.as_array().unwrap().iter().find(|c| c["name"] == "alice").unwrap();
    assert_eq!(alice["limits"]["rpm"], 1);
    assert_eq!(alice["usage"]["requests_last_minute"], 1);
    let r = client().patch(s.proxy.admin_url("/api/v1/clients/alice")).bearer_auth(ADMIN_TOKEN).json(&json!({"rpm": null})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200, "the limit is gone");
}

const APP_ORIGIN: &str = "https://app.example.com";

async fn preflight(s: &Setup, origin: &str) -> reqwest::Response {
    client()
        .request(reqwest::Method::OPTIONS, s.proxy.url("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, x-goog-api-key, x-goog-api-client")
        .send()
        .await
        .unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_lets_pages_from_a_listed_origin_call_the_proxy() {
    let s = setup_with(&["AIzaA"], |t| t.replace("[admin]", &format!("[access]\ncors_origins = [\"{APP_ORIGIN}\"]\n\n[admin]"))).await;
    // The preflight carries no token: answered by the proxy, never by the upstream.
    let r = preflight(&s, APP_ORIGIN).await;
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "access-control-allow-origin"), APP_ORIGIN);
    assert!(header(&r, "access-control-allow-methods").contains("POST"));
    assert_eq!(header(&r, "access-control-allow-headers"), "content-type, x-goog-api-key, x-goog-api-client");
    assert!(header(&r, "vary").contains("origin"));
    assert!(s.mock.requests().is_empty(), "a preflight never reaches the upstream");
    // The answers themselves say who may read them, errors included.
    let r = client()
        .post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("origin", APP_ORIGIN)
        .header("x-goog-api-key", TOKEN)
        .json(&generate_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), APP_ORIGIN);
    assert!(header(&r, "access-control-expose-headers").contains("x-goog-upload-url"));
    let r = client()
        .post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("origin", APP_ORIGIN)
        .header("x-goog-api-key", "wrong")
        .json(&generate_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "access-control-allow-origin"), APP_ORIGIN, "the page can read why it was refused");
    // Another origin gets no grant: a refused preflight that says what to configure.
    let r = preflight(&s, "https://evil.example.net").await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "access-control-allow-origin"), "");
    let v: Value = r.json().await.unwrap();
    assert_eq!(reason(&v), "CORS_ORIGIN_NOT_ALLOWED");
    assert!(v["error"]["message"].as_str().unwrap().contains("access.cors_origins"), "{v}");
    let r = client()
        .post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("origin", "https://evil.example.net")
        .header("x-goog-api-key", TOKEN)
        .json(&generate_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_is_off_by_default_and_a_star_allows_every_origin() {
    let s = setup(&["AIzaA"]).await;
    let r = preflight(&s, APP_ORIGIN).await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "access-control-allow-origin"), "");
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert_eq!(header(&r, "access-control-allow-origin"), "");
    drop(s);

    let s = setup_with(&["AIzaA"], |t| t.replace("[admin]", "[access]\ncors_origins = [\"*\"]\n\n[admin]")).await;
    let r = preflight(&s, "http://localhost:5173").await;
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
    // The upstream's own verdict is replaced by the proxy's, never doubled.
    s.mock.set_key("AIzaA", KeyMode::Ok.into());
    let r = client()
        .post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("origin", "http://localhost:5173")
        .header("x-goog-api-key", TOKEN)
        .json(&generate_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get_all("access-control-allow-origin").iter().count(), 1);
}
