//! Streams are relayed chunk by chunk, usage is read on the side, and a stream whose upstream
//! dies ends in an error or a cut, never a hang.

use crate::harness::*;
use futures::StreamExt;
use mock_gemini::KeyMode;
use std::time::{Duration, Instant};

async fn stream_request(s: &Setup, chunks: u32, delay_ms: u64) -> reqwest::Response {
    client()
        .post(s.proxy.url("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"))
        .header("x-goog-api-key", TOKEN)
        .header("x-mock-chunks", chunks.to_string())
        .header("x-mock-chunk-delay-ms", delay_ms.to_string())
        .json(&generate_body("tell me a story"))
        .send()
        .await
        .unwrap()
}

/// Reads an SSE body, returning each event's payload and when it arrived.
async fn events(r: reqwest::Response, within: Duration) -> (Vec<(String, Instant)>, Option<String>) {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut body = r.bytes_stream();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let next = tokio::time::timeout_at(deadline, body.next()).await.expect("the stream must end, not hang");
        match next {
            None => return (out, None),
            Some(Err(e)) => return (out, Some(e.to_string())),
            Some(Ok(bytes)) => {
                buf.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(end) = buf.find("\r\n\r\n").or_else(|| buf.find("\n\n")) {
                    let sep = if buf[end..].starts_with("\r\n\r\n") { 4 } else { 2 };
                    let event: String = buf[..end].to_owned();
                    buf.drain(..end + sep);
                    out.push((event.trim_start_matches("data: ").to_owned(), Instant::now()));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_chunks_arrive_as_they_are_produced() {
    let s = setup(&["AIzaK"]).await;
    let started = Instant::now();
    let r = stream_request(&s, 5, 200).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"].to_str().unwrap(), "text/event-stream");
    let (evs, err) = events(r, Duration::from_secs(10)).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(evs.len(), 5);
    // Each event reaches the client about when the mock sent it: no buffering.
    for (i, (_, at)) in evs.iter().enumerate().skip(1) {
        let since = at.duration_since(started);
        let produced = Duration::from_millis(200 * i as u64);
        assert!(since < produced + Duration::from_millis(150), "event {i} at {since:?}, produced at about {produced:?}");
    }
    let last: serde_json::Value = serde_json::from_str(&evs[4].0).unwrap();
    let usage = &last["usageMetadata"];
    let log = s.proxy.wait_for_records(1);
    assert_eq!(log[0]["stream"], true);
    assert_eq!(log[0]["tokens_in"], usage["promptTokenCount"]);
    assert_eq!(log[0]["tokens_out"], usage["candidatesTokenCount"]);
    assert!(log[0]["tokens_out"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_streams_are_relayed_with_usage() {
    let s = setup(&["AIzaK"]).await;
    let r = client()
        .post(s.proxy.url("/v1beta/openai/chat/completions"))
        .bearer_auth(TOKEN)
        .header("x-mock-chunks", "4")
        .json(&serde_json::json!({"model": "gemini-2.5-flash", "stream": true, "messages": [{"role": "user", "content": "count"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (evs, err) = events(r, Duration::from_secs(10)).await;
    assert!(err.is_none());
    assert_eq!(evs.last().unwrap().0, "[DONE]");
    let log = s.proxy.wait_for_records(1);
    assert!(log[0]["tokens_out"].as_u64().unwrap() > 0, "{:?}", log[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_whose_upstream_dies_ends_with_an_error_never_a_hang() {
    let s = setup(&["AIzaDYING"]).await;
    s.mock.set_key("AIzaDYING", KeyMode::DieMidstream { after_events: 2 }.into());
    let r = stream_request(&s, 6, 50).await;
    assert_eq!(r.status(), 200);
    let (evs, transport_error) = events(r, Duration::from_secs(10)).await;
    // Either the proxy closed the stream with an error event after the two good ones, or it
    // cut the connection so the client library reports an error: both are explicit.
    let error_event = evs.iter().any(|(e, _)| e.contains("\"error\""));
    assert!(error_event || transport_error.is_some(), "the client saw a clean-looking end: {evs:?}");
    assert!(evs.len() >= 2, "the events sent before the failure are delivered: {evs:?}");
    let log = s.proxy.wait_for_records(1);
    assert!(log[0]["error"].as_str().is_some(), "{:?}", log[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn non_sse_stream_and_plain_json_usage() {
    let s = setup(&["AIzaK"]).await;
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    let v: serde_json::Value = r.json().await.unwrap();
    let r = client()
        .post(s.proxy.url("/v1beta/models/gemini-2.5-flash:streamGenerateContent"))
        .header("x-goog-api-key", TOKEN)
        .json(&generate_body("array please"))
        .send()
        .await
        .unwrap();
    let arr: serde_json::Value = r.json().await.unwrap();
    assert!(arr.is_array());
    let log = s.proxy.wait_for_records(2);
    assert_eq!(log[0]["tokens_in"], v["usageMetadata"]["promptTokenCount"]);
    assert_eq!(log[1]["tokens_out"], arr.as_array().unwrap().last().unwrap()["usageMetadata"]["candidatesTokenCount"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_goes_silent_is_ended_after_the_idle_timeout() {
    let s = setup_with(&["AIzaK"], |t| t.replace("idle_timeout = \"5s\"", "idle_timeout = \"500ms\"")).await;
    let started = Instant::now();
    let r = stream_request(&s, 3, 2000).await;
    assert_eq!(r.status(), 200);
    let (evs, transport_error) = events(r, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(3), "ended after {:?}", started.elapsed());
    let error_event = evs.iter().any(|(e, _)| e.contains("\"error\""));
    assert!(error_event || transport_error.is_some(), "{evs:?}");
    let log = s.proxy.wait_for_records(1);
    assert!(log[0]["error"].as_str().unwrap().contains("sent nothing"), "{:?}", log[0]);
}
