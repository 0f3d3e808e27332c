//! Clients that go away while the proxy waits for the upstream (a long generation, a stream's
//! pause between events): the proxy notices within about a second, drops the upstream request,
//! frees the client's permits and the key's in-flight count at once, and logs a 499 with the
//! attempt abandoned and the key unharmed. A pipelined request is not taken for a close.
//! (Over TLS and HTTP/2: see `tls.rs`.)

use crate::harness::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How soon the proxy must have dropped its upstream request after the client left: its check
/// runs every second, plus room for a loaded machine.
pub const NOTICED_WITHIN: Duration = Duration::from_millis(2500);

/// Two keys (a retry would have somewhere to go), alice limited to one request at a time.
pub async fn setup_one_at_a_time() -> Setup {
    setup_with(&["AIzaA", "AIzaB"], |t| t.replacen(&format!("token = \"{TOKEN}\"\n"), &format!("token = \"{TOKEN}\"\nconcurrency = 1\n"), 1)).await
}

/// A raw generateContent (or, with `stream`, streamGenerateContent?alt=sse) request for alice
/// with extra header lines `extra` (each ending in CRLF).
pub fn raw_request(stream: bool, extra: &str) -> Vec<u8> {
    let body = serde_json::to_string(&generate_body("think hard")).unwrap();
    let call = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
    format!(
        "POST /v1beta/models/gemini-2.5-flash:{call} HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\n{extra}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Waits (bounded) until the mock has recorded `n` requests.
pub async fn wait_upstream_requests(mock: &mock_gemini::MockGemini, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock.requests().len() < n {
        assert!(Instant::now() < deadline, "the upstream never got request {n}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the mock saw `n` requests' connections close before their answer was complete;
/// returns how long that took from `since`, or fails after `within`.
pub async fn wait_upstream_dropped(mock: &mock_gemini::MockGemini, n: usize, since: Instant, within: Duration) -> Duration {
    while mock.abandoned().len() < n {
        assert!(since.elapsed() < within, "the proxy still held its upstream request {:?} after the client left", since.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    since.elapsed()
}

/// The key named `name` as the admin API shows it.
pub async fn key_view(proxy: &Proxy, name: &str) -> Value {
    let keys = admin_get(proxy, "/api/v1/keys").await;
    keys["keys"].as_array().unwrap().iter().find(|k| k["name"] == name).cloned().unwrap_or_else(|| panic!("no key {name}: {keys}"))
}

/// Asserts the key was not held responsible: healthy, no failure, no error, nothing in flight.
pub async fn assert_unharmed(proxy: &Proxy, name: &str) {
    let k = key_view(proxy, name).await;
    assert_eq!((&k["state"], &k["usage"]["failures"], &k["last_error"], &k["inflight"]), (&json!("healthy"), &json!(0), &Value::Null, &json!(0)), "{k}");
}

/// The one request-log row with status 499 (the writer commits about once a second).
pub async fn the_499_row(proxy: &Proxy) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = proxy.wait_for_request_rows(1).await;
        if let Some(r) = rows.iter().find(|r| r["status"] == 499) {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no 499 in the request log: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts `row` is a 499 "client went away" whose one attempt, on `key`, was abandoned (with
/// the upstream's `status` when its head had arrived).
pub fn assert_abandoned(row: &Value, key: &str, status: Option<u16>) {
    assert_eq!(row["status"], 499, "{row}");
    assert!(row["error"].as_str().unwrap_or_default().starts_with("client went away"), "{row}");
    let attempts = row["attempts"].as_array().unwrap_or_else(|| panic!("attempts: {row}"));
    assert_eq!(attempts.len(), 1, "no attempt on another key: {row}");
    assert_eq!(
        (&attempts[0]["key"], &attempts[0]["outcome"], attempts[0].get("status")),
        (&json!(key), &json!("abandoned"), status.map(|s| json!(s)).as_ref()),
        "{row}"
    );
}

/// (a) A client that times out while a non-streaming generation takes 30 s: the proxy drops its
/// upstream request within about a second, logs a 499 with the attempt abandoned, holds nothing
/// against the key, tries no other key, and the client (one request at a time) is served again
/// at once rather than refused by its own abandoned request.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_during_a_long_generation_is_a_499_and_frees_its_permit_at_once() {
    let s = setup_one_at_a_time().await;
    let mut conn = TcpStream::connect(s.proxy.addr).unwrap();
    conn.write_all(&raw_request(false, "x-mock-first-byte-ms: 30000\r\n")).unwrap();
    wait_upstream_requests(&s.mock, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let key = s.mock.requests()[0].key.clone().unwrap_or_default();
    assert_eq!(key_view(&s.proxy, &key_name_of(&s.proxy, &key).await).await["inflight"], 1);
    drop(conn);
    let left = Instant::now();

    let took = wait_upstream_dropped(&s.mock, 1, left, NOTICED_WITHIN).await;
    let log = s.proxy.wait_for_records(1);
    assert_eq!(log.len(), 1, "{log:?}");
    // The permit was released before the record was written: the next request is served.
    let r = generate(&s.proxy, "gemini-2.5-flash").await;
    assert_eq!(r.status(), 200, "not refused by its own abandoned request: {}", r.text().await.unwrap_or_default());
    assert!(left.elapsed() < Duration::from_secs(5), "served long before the upstream would have answered ({:?}; noticed after {took:?})", left.elapsed());

    let name = key_name_of(&s.proxy, &key).await;
    let row = the_499_row(&s.proxy).await;
    assert_abandoned(&row, &name, None);
    assert_eq!((&row["bytes_out"], &row["first_byte_ms"]), (&json!(0), &Value::Null), "{row}");
    assert_eq!(s.mock.requests().len(), 2, "no attempt on the other key, then the next request");
    assert_unharmed(&s.proxy, &name).await;
    let access = &s.proxy.wait_for_records(2)[0];
    assert_eq!((&access["status"], &access["attempts"][0]["outcome"]), (&json!(499), &json!("abandoned")), "{access}");
}

/// The configured name of the key whose secret is `secret` (the harness names keys by config).
pub async fn key_name_of(proxy: &Proxy, secret: &str) -> String {
    let keys = admin_get(proxy, "/api/v1/keys").await;
    // The harness's keys are listed in config order: AIzaA, AIzaB.
    let index = ["AIzaA", "AIzaB"].iter().position(|k| *k == secret).unwrap_or_else(|| panic!("unknown key {secret}"));
    keys["keys"][index]["name"].as_str().expect("a key name").to_owned()
}

/// (b) A client that leaves while a stream pauses after two events: noticed in the pause, not
/// when the next event comes (or when the upstream's silence passes `idle_timeout`, which
/// would have blamed the key); the tokens of the events relayed are charged.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_during_a_pause_in_a_stream_is_a_499_charged_with_the_tokens_relayed() {
    let s = setup_one_at_a_time().await;
    let mut conn = TcpStream::connect(s.proxy.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(&raw_request(true, "x-mock-chunks: 4\r\nx-mock-pause-after: 2\r\nx-mock-pause-ms: 30000\r\n")).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let events = loop {
        let n = conn.read(&mut buf).expect("read the stream");
        assert!(n > 0, "the stream ended early");
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received);
        let events: Vec<Value> =
            text.split("data: ").skip(1).filter_map(|e| e.split_once("\r\n\r\n")).map(|(j, _)| serde_json::from_str(j).expect("an event")).collect();
        if events.len() >= 2 {
            break events;
        }
    };
    // In the pause now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(conn);
    let left = Instant::now();
    wait_upstream_dropped(&s.mock, 1, left, NOTICED_WITHIN).await;

    let key = s.mock.requests()[0].key.clone().unwrap_or_default();
    let name = key_name_of(&s.proxy, &key).await;
    let row = the_499_row(&s.proxy).await;
    assert_abandoned(&row, &name, Some(200));
    assert_eq!(row["stream"], true, "{row}");
    let usage = &events[1]["usageMetadata"];
    assert_eq!((&row["tokens_in"], &row["tokens_out"]), (&usage["promptTokenCount"], &usage["candidatesTokenCount"]), "{row}");
    let k = key_view(&s.proxy, &name).await;
    assert_eq!((&k["usage"]["input_tokens"], &k["usage"]["output_tokens"]), (&usage["promptTokenCount"], &usage["candidatesTokenCount"]), "{k}");
    assert_unharmed(&s.proxy, &name).await;
    assert_eq!(generate(&s.proxy, "gemini-2.5-flash").await.status(), 200, "the permit is free");
    assert_eq!(s.mock.requests().len(), 2);
}

/// (c) A request pipelined behind one that waits for the upstream is not a close: both are
/// answered, in order. A close behind a pipelined request is one all the same.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipelined_request_is_not_taken_for_a_close_but_a_close_behind_it_is() {
    let s = setup(&["AIzaA"]).await;
    // The second request arrives while the first waits, and stays unread in the socket: the
    // first wait outlasts two checks of the client.
    let mut conn = TcpStream::connect(s.proxy.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    conn.write_all(&raw_request(false, "x-mock-first-byte-ms: 2500\r\n")).unwrap();
    wait_upstream_requests(&s.mock, 1).await;
    conn.write_all(&raw_request(false, "")).unwrap();
    assert_eq!(read_answer(&mut conn), "HTTP/1.1 200 OK");
    assert!(started.elapsed() >= Duration::from_millis(2500));
    assert_eq!(read_answer(&mut conn), "HTTP/1.1 200 OK");
    let log = s.proxy.wait_for_records(2);
    assert_eq!(log.iter().map(|r| r["status"].clone()).collect::<Vec<_>>(), [json!(200), json!(200)], "{log:?}");
    assert!(s.mock.abandoned().is_empty());

    // A client that pipelines a request and closes: the unread request does not hide the close.
    let mut conn = TcpStream::connect(s.proxy.addr).unwrap();
    conn.write_all(&raw_request(false, "x-mock-first-byte-ms: 30000\r\n")).unwrap();
    wait_upstream_requests(&s.mock, 3).await;
    conn.write_all(&raw_request(false, "")).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(conn);
    wait_upstream_dropped(&s.mock, 1, Instant::now(), NOTICED_WITHIN).await;
    let log = s.proxy.wait_for_records(3);
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[2]["status"], 499, "the request is logged as its client's leaving, the pipelined one is not served: {}", log[2]);
}
