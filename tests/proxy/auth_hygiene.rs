//! Client authentication, where the upstream key goes, and what never crosses the proxy.

use crate::harness::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_accepted_wherever_a_client_puts_its_key() {
    let s = setup(&["AIzaKEY1"]).await;
    let c = client();
    let body = generate_body("hi");
    let by_header = c.post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent")).header("x-goog-api-key", TOKEN).json(&body).send().await.unwrap();
    let by_query = c.post(s.proxy.url(&format!("/v1/models/gemini-2.5-flash:generateContent?key={TOKEN}"))).json(&body).send().await.unwrap();
    let by_bearer = c.post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    for r in [by_header, by_query, by_bearer] {
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(v["candidates"][0]["content"]["parts"][0]["text"].is_string(), "{v}");
    }
    // The client's credential never reaches Gemini; the pool key does, as x-goog-api-key.
    for r in s.mock.requests() {
        assert_eq!(r.key.as_deref(), Some("AIzaKEY1"));
        assert_eq!(r.header("x-goog-api-key"), Some("AIzaKEY1"));
        assert!(r.header("authorization").is_none(), "client Authorization forwarded: {r:?}");
        assert!(!r.query.clone().unwrap_or_default().contains("key="), "key parameter forwarded: {r:?}");
        assert!(!format!("{r:?}").contains(TOKEN));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_wrong_or_upstream_keys_get_401_in_gemini_shape() {
    let s = setup(&["AIzaKEY1"]).await;
    let c = client();
    for (token, msg) in [(None, "missing"), (Some("gp-wrong"), "invalid"), (Some("AIzaKEY1"), "invalid")] {
        let mut req = c.post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent")).json(&generate_body("x"));
        if let Some(t) = token {
            req = req.header("x-goog-api-key", t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], 401);
        assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
        assert!(v["error"]["message"].as_str().unwrap().contains(msg), "{v}");
    }
    // Refused requests never reach the upstream.
    assert!(s.mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_surface_gets_the_key_as_bearer() {
    let s = setup(&["AIzaKEY1"]).await;
    let r = client()
        .post(s.proxy.url("/v1beta/openai/chat/completions"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    let seen = s.mock.requests();
    assert_eq!(seen[0].header("authorization"), Some("Bearer AIzaKEY1"));
    assert!(seen[0].header("x-goog-api-key").is_none());
    let log = s.proxy.wait_for_records(1);
    assert_eq!(log[0]["model"], "gemini-2.5-flash", "the model is read from the OpenAI body");
}

#[tokio::test(flavor = "multi_thread")]
async fn revealing_and_hop_by_hop_headers_are_removed_both_ways() {
    let s = setup(&["AIzaKEY1"]).await;
    let r = client()
        .post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", TOKEN)
        .header("X-Forwarded-For", "203.0.113.7")
        .header("X-Real-IP", "203.0.113.7")
        .header("Via", "1.1 corp-proxy")
        .header("Forwarded", "for=203.0.113.7")
        .header("Connection", "keep-alive, X-Hop")
        .header("X-Hop", "secret-hop")
        .header("X-Custom", "kept")
        .json(&generate_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("server").is_none(), "server header leaked: {:?}", r.headers());
    let seen = &s.mock.requests()[0];
    for h in ["x-forwarded-for", "x-real-ip", "via", "forwarded", "x-hop"] {
        assert!(seen.header(h).is_none(), "{h} reached the upstream: {:?}", seen.headers);
    }
    assert_eq!(seen.header("x-custom"), Some("kept"));
    assert_eq!(seen.header("host"), Some(s.mock.addr().to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn both_api_versions_and_unknown_paths() {
    let s = setup(&["AIzaKEY1"]).await;
    let c = client();
    for path in ["/v1/models", "/v1beta/models", "/v1beta/models/gemini-2.5-flash", "/v1beta/openai/models"] {
        let r = c.get(s.proxy.url(path)).header("x-goog-api-key", TOKEN).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = c.get(s.proxy.url("/admin")).header("x-goog-api-key", TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_logs() {
    let s = setup(&["AIzaSECRETKEY1", "AIzaSECRETKEY2"]).await;
    s.mock.set_key("AIzaSECRETKEY1", mock_gemini::KeyMode::Invalid.into());
    for _ in 0..4 {
        generate(&s.proxy, "gemini-2.5-flash").await;
    }
    client().get(s.proxy.url("/v1beta/models?key=gp-not-a-token")).send().await.unwrap();
    let log = s.proxy.wait_for_records(5);
    assert_eq!(log.len(), 5);
    let everything = format!("{}{}", s.proxy.stdout(), s.proxy.stderr());
    for secret in ["AIzaSECRETKEY1", "AIzaSECRETKEY2", TOKEN, "gp-not-a-token"] {
        assert!(!everything.contains(secret), "{secret} appears in the proxy's output");
    }
}
