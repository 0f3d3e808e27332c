//! Streams are relayed chunk by chunk, usage is read on the side, and a stream whose upstream
//! dies ends in an error or a cut, never a hang.

use crate::harness::*;
use futures::StreamExt;
use mock_gemini::KeyMode;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
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

/// A client that walks away from a stream midway is logged as 499, and the tokens of the usage
/// metadata already relayed were spent all the same: they are in its record and request-log row,
/// and charged to the key, to the client's token counts and to the usage tables.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_the_client_walks_away_from_is_a_499_charged_with_the_tokens_relayed() {
    let s = setup(&["AIzaK"]).await;
    let key_name = admin_get(&s.proxy, "/api/v1/keys").await["keys"][0]["name"].as_str().expect("a key name").to_owned();
    // Forty events 300 ms apart, each with the cumulative usageMetadata: the client reads two,
    // then closes its connection while the upstream is between events.
    let addr = s.proxy.addr;
    let (read, prompt, candidates) = tokio::task::spawn_blocking(move || read_events_then_leave(addr, 2)).await.unwrap();
    assert!(prompt > 0 && candidates > 0, "{read}");

    // The proxy finds the client gone when it relays the next events: the row says 499.
    let rows = s.proxy.wait_for_request_rows(1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!((&row["status"], &row["key"], &row["stream"]), (&json!(499), &json!(key_name), &json!(true)), "{row}");
    assert!(row["error"].as_str().unwrap_or_default().starts_with("client went away"), "{row}");
    // The proxy may have relayed an event or two more than the client read before it noticed:
    // at least what the client read is counted, and never more than the whole answer.
    let (tokens_in, tokens_out) = (row["tokens_in"].as_u64().unwrap_or(0), row["tokens_out"].as_u64().unwrap_or(0));
    assert_eq!(tokens_in, prompt, "{row}");
    assert!(tokens_out >= candidates, "tokens out {tokens_out}, the client read {candidates}: {row}");
    let log = s.proxy.wait_for_records(1);
    assert_eq!((&log[0]["status"], &log[0]["tokens_in"], &log[0]["tokens_out"]), (&json!(499), &row["tokens_in"], &row["tokens_out"]), "{}", log[0]);
    assert_eq!(s.mock.requests().len(), 1, "one upstream call");

    // Charged to the key (its live counters and the usage tables) and to the client.
    let key = &admin_get(&s.proxy, "/api/v1/keys").await["keys"][0];
    assert_eq!((&key["usage"]["input_tokens"], &key["usage"]["output_tokens"]), (&json!(tokens_in), &json!(tokens_out)), "{key}");
    for filter in [format!("key={key_name}"), "client=alice".to_owned()] {
        let totals = admin_get(&s.proxy, &format!("/api/v1/stats/totals?range=today&{filter}")).await;
        assert_eq!((&totals["input_tokens"], &totals["output_tokens"]), (&json!(tokens_in), &json!(tokens_out)), "{filter}: {totals}");
    }
    let clients = admin_get(&s.proxy, "/api/v1/clients").await;
    let alice = clients.as_array().unwrap().iter().find(|c| c["name"] == "alice").expect("alice");
    assert_eq!(alice["usage"]["tokens_today"], json!(tokens_in + tokens_out), "{alice}");
}

/// Sends a streamGenerateContent call of forty events 300 ms apart on a raw connection, reads
/// until `wanted` whole events have arrived, and closes the connection. Returns what it read and
/// the prompt and candidates token counts of the last event's usageMetadata.
fn read_events_then_leave(addr: std::net::SocketAddr, wanted: usize) -> (String, u64, u64) {
    let body = serde_json::to_string(&generate_body("tell me a long story")).unwrap();
    let req = format!(
        "POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\n\
         x-mock-chunks: 40\r\nx-mock-chunk-delay-ms: 300\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(req.as_bytes()).expect("write");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let events = loop {
        let n = conn.read(&mut buf).expect("read the stream");
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received);
        // Whole events only: `data: {json}` up to its blank line.
        let events: Vec<Value> =
            text.split("data: ").skip(1).filter_map(|e| e.split_once("\r\n\r\n")).map(|(json, _)| serde_json::from_str(json).expect("an event")).collect();
        if events.len() >= wanted {
            break events;
        }
    };
    drop(conn);
    let usage = &events.last().expect("events")["usageMetadata"];
    let count = |k: &str| usage[k].as_u64().expect("a token count");
    (String::from_utf8_lossy(&received).into_owned(), count("promptTokenCount"), count("candidatesTokenCount"))
}
