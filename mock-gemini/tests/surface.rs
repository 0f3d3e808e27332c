//! The OpenAI-compatible surface, the `/__mock/` control API, request recording, and the mock's lifecycle.

mod common;

use common::{post_json, send, sse_events};
use mock_gemini::{KeyMode, MockConfig, MockGemini, RecordedRequest};
use serde_json::{json, Value};
use std::time::Duration;

async fn mock() -> MockGemini {
    MockGemini::start(MockConfig::default()).await.expect("start mock")
}

fn chat(stream: bool) -> Value {
    json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "abcdefgh"}], "stream": stream})
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_chat_completion_plain_and_streamed() {
    let m = mock().await;
    let auth = [("authorization", "Bearer AIzaO")];
    let r = post_json(m.addr(), "/v1beta/openai/chat/completions", &auth, &chat(false)).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(v["usage"]["total_tokens"].as_u64(), Some(2 + v["usage"]["completion_tokens"].as_u64().unwrap_or(0)));

    let r = post_json(m.addr(), "/v1beta/openai/chat/completions", &[auth[0], ("x-mock-chunks", "4")], &chat(true)).await;
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = sse_events(&r.text(), "\n\n");
    assert_eq!(events.len(), 5);
    assert_eq!(events[4], "[DONE]");
    let mut last = 0;
    for (i, e) in events[..4].iter().enumerate() {
        let v: Value = serde_json::from_str(e).expect("chunk json");
        assert_eq!(v["object"], "chat.completion.chunk");
        let done = v["usage"]["completion_tokens"].as_u64().expect("usage on every chunk");
        assert!(done > last);
        last = done;
        let finish = &v["choices"][0]["finish_reason"];
        let want = if i == 3 { json!("stop") } else { Value::Null };
        assert_eq!(finish, &want);
    }
    assert_eq!(m.requests().last().and_then(|r| r.model.clone()).as_deref(), Some("gemini-2.5-flash"));
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_embeddings_and_models() {
    let m = mock().await;
    let auth = [("authorization", "Bearer AIzaO")];
    let r = post_json(m.addr(), "/v1beta/openai/embeddings", &auth, &json!({"model":"text-embedding-004","input":["a","b"]})).await;
    let v = r.json();
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["data"][1]["object"], "embedding");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().map(Vec::len), Some(768));

    let list = send(m.addr(), "GET", "/v1beta/openai/models", &auth, b"").await.json();
    assert_eq!(list["object"], "list");
    assert!(list["data"].as_array().is_some_and(|d| d.iter().any(|m| m["id"] == "models/gemini-2.5-flash")));
    let one = send(m.addr(), "GET", "/v1beta/openai/models/gemini-2.5-pro", &auth, b"").await.json();
    assert_eq!(one["id"], "models/gemini-2.5-pro");
    let prefixed = send(m.addr(), "GET", "/v1beta/openai/models/models/gemini-2.5-pro", &auth, b"").await;
    assert_eq!(prefixed.status, 200);
    let missing = send(m.addr(), "GET", "/v1beta/openai/models/gpt-4", &auth, b"").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()[0]["error"]["status"], "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_errors_are_array_wrapped() {
    let m = mock().await;
    let r = post_json(m.addr(), "/v1beta/openai/chat/completions", &[], &chat(false)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()[0]["error"]["message"], "Missing Authorization header.");

    m.set_key("AIzaL", KeyMode::rate_limited("9s").into());
    let r = post_json(m.addr(), "/v1beta/openai/chat/completions", &[("authorization", "Bearer AIzaL")], &chat(true)).await;
    assert_eq!(r.status, 429);
    let e = &r.json()[0]["error"];
    assert_eq!(e["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(e["details"][2]["retryDelay"], "9s");
    assert_eq!(r.header("retry-after"), None);

    let r = send(m.addr(), "GET", "/v1beta/openai/nothing", &[("authorization", "Bearer AIzaO")], b"").await;
    assert_eq!(r.status, 404);
    assert!(r.json().is_array());

    m.set_key("AIzaDie", KeyMode::DieMidstream { after_events: 1 }.into());
    let r = post_json(m.addr(), "/v1beta/openai/chat/completions", &[("authorization", "Bearer AIzaDie")], &chat(true)).await;
    assert!(!r.complete);
    assert!(!r.text().contains("[DONE]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_recorded_with_key_headers_and_model() {
    let m = mock().await;
    let body = json!({"contents":[{"parts":[{"text":"x"}]}]});
    post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent?key=AIzaQ", &[("X-Custom-Thing", "yes"), ("x-dup", "1"), ("x-dup", "2")], &body).await;
    send(m.addr(), "GET", "/v1beta/models", &[("authorization", "Bearer gp-secret")], b"").await;
    let reqs = m.requests();
    assert_eq!(reqs.len(), 2);
    let first = &reqs[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(first.query.as_deref(), Some("key=AIzaQ"));
    assert_eq!(first.key.as_deref(), Some("AIzaQ"));
    assert_eq!(first.header("x-custom-thing"), Some("yes"));
    assert_eq!(first.header("X-Dup"), Some("1, 2"));
    assert_eq!(first.model.as_deref(), Some("gemini-2.5-flash"));
    assert_eq!(first.body_len, body.to_string().len());
    assert!(first.unix_ms > 0);
    // Authorization is not a key on native paths.
    assert_eq!(reqs[1].key, None);
    assert_eq!(reqs[1].header("authorization"), Some("Bearer gp-secret"));
    assert!(reqs[1].seq > first.seq);

    m.clear_requests();
    assert!(m.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_is_bounded() {
    let m = MockGemini::start(MockConfig { max_recorded: 3, ..MockConfig::default() }).await.expect("start");
    for i in 0..5 {
        send(m.addr(), "GET", &format!("/v1beta/models?n={i}"), &[("x-goog-api-key", "K")], b"").await;
    }
    let queries: Vec<String> = m.requests().into_iter().filter_map(|r| r.query).collect();
    assert_eq!(queries, ["n=2", "n=3", "n=4"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn control_api_over_http() {
    let m = mock().await;
    let r = send(m.addr(), "PUT", "/__mock/keys/AIzaC", &[], br#"{"mode":"rate_limited","retry_delay":"3s","project":"p"}"#).await;
    assert_eq!(r.status, 204);
    let b = send(m.addr(), "GET", "/__mock/keys/AIzaC", &[], b"").await.json();
    assert_eq!(b, json!({"mode":"rate_limited","retry_delay":"3s","quota_id":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","project":"p"}));
    let r = post_json(m.addr(), "/v1/models/gemini-2.5-flash:generateContent", &[("x-goog-api-key", "AIzaC")], &json!({"contents":[{"parts":[{"text":"x"}]}]}))
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(send(m.addr(), "PUT", "/__mock/keys/AIzaC", &[], br#"{"mode":"bogus"}"#).await.status, 400);

    let recorded: Vec<RecordedRequest> = serde_json::from_slice(&send(m.addr(), "GET", "/__mock/requests", &[], b"").await.body).expect("requests JSON");
    assert_eq!(recorded.len(), 1, "control calls are not recorded");
    assert_eq!(recorded[0].key.as_deref(), Some("AIzaC"));

    assert_eq!(send(m.addr(), "DELETE", "/__mock/requests", &[], b"").await.status, 204);
    assert!(m.requests().is_empty());
    assert_eq!(send(m.addr(), "DELETE", "/__mock/keys/AIzaC", &[], b"").await.status, 204);
    assert_eq!(m.key_behaviour("AIzaC").mode, KeyMode::Ok);
    m.set_key("AIzaC", KeyMode::Leaked.into());
    assert_eq!(send(m.addr(), "POST", "/__mock/reset", &[], b"").await.status, 204);
    assert_eq!(m.key_behaviour("AIzaC").mode, KeyMode::Ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_the_port_and_open_connections() {
    let m = mock().await;
    m.set_key("AIzaHang", KeyMode::Hang.into());
    let addr = m.addr();
    let hung =
        tokio::spawn(async move { common::try_send(addr, "GET", "/v1beta/models", &[("x-goog-api-key", "AIzaHang")], b"", Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    m.shutdown().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
    let outcome = tokio::time::timeout(Duration::from_secs(2), hung).await;
    assert!(outcome.is_ok(), "the hung connection was closed by shutdown, not left to time out");
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_mock_stops_it() {
    let m = mock().await;
    let addr = m.addr();
    assert_eq!(m.base_url(), format!("http://{addr}"));
    drop(m);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
