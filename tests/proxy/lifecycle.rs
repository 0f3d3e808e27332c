//! Limits, large bodies, connection handling and graceful shutdown.

use crate::harness::*;
use mock_gemini::KeyMode;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn a_5_mib_body_is_retried_on_another_key_intact() {
    let s = setup(&["AIzaBUSY", "AIzaFREE"]).await;
    s.mock.set_key("AIzaBUSY", KeyMode::rate_limited("60s").into());
    // An inline image of about 5 MiB, as base64.
    let blob = "A".repeat(5 * 1024 * 1024);
    let body = serde_json::json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": blob}}, {"text": "describe"}]}]});
    let expected_len = serde_json::to_vec(&body).unwrap().len();
    for _ in 0..2 {
        let r = client().post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent")).header("x-goog-api-key", TOKEN).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Whichever key round robin starts with, the busy key is met once (and its 429 retried on
    // the free key), and every attempt carries the whole body.
    let seen = s.mock.requests();
    let keys: Vec<_> = seen.iter().map(|r| r.key.clone().unwrap_or_default()).collect();
    assert_eq!(keys.iter().filter(|k| *k == "AIzaBUSY").count(), 1, "{keys:?}");
    assert_eq!(keys.iter().filter(|k| *k == "AIzaFREE").count(), 2, "{keys:?}");
    assert!(seen.iter().all(|r| r.body_len == expected_len), "every attempt carried the whole body");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_get_413_json() {
    let s = setup_with(&["AIzaK"], |t| in_section(t, "server", "body_limit = \"1MiB\"")).await;
    let big = vec![b'x'; 1024 * 1024 + 1];
    let r = client().post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent")).header("x-goog-api-key", TOKEN).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 413);
    assert!(s.mock.requests().is_empty());
    // Chunked bodies are counted as they arrive.
    let chunk = format!("{:x}\r\n{}\r\n", 700_000, "y".repeat(700_000));
    let req = format!(
        "POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\ntransfer-encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n"
    );
    let out = raw_exchange(s.proxy.addr, req.as_bytes(), Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 413"), "{}", &out[..out.len().min(200)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_requests_keepalive_and_pipelining() {
    let s = setup(&["AIzaK"]).await;
    let body = serde_json::to_string(&generate_body("chunked hello")).unwrap();
    let (a, b) = body.split_at(10);
    let chunked = format!(
        "POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let get = format!("GET /v1beta/models HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\nconnection: close\r\n\r\n");
    // Both requests in one write: the second must be answered after the first.
    let out = raw_exchange(s.proxy.addr, format!("{chunked}{get}").as_bytes(), Duration::from_secs(5));
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    let seen = s.mock.requests();
    assert_eq!(seen[0].body_len, body.len());
    assert_eq!(seen[1].path, "/v1beta/models");
}

#[tokio::test(flavor = "multi_thread")]
async fn http10_clients_get_keep_alive_only_when_they_ask_and_are_told_so() {
    let s = setup(&["AIzaK"]).await;
    let get = |keep_alive: bool| {
        let ka = if keep_alive { "connection: keep-alive\r\n" } else { "" };
        format!("GET /v1beta/models HTTP/1.0\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\n{ka}\r\n")
    };
    // Two pipelined requests asking for keep-alive, then one without: three answers, the first
    // two confirming keep-alive (an HTTP/1.0 client closes without it), then the close.
    let out = raw_exchange(s.proxy.addr, format!("{}{}{}", get(true), get(true), get(false)).as_bytes(), Duration::from_secs(5));
    let answers: Vec<&str> = out.split("HTTP/1.1 ").filter(|a| !a.is_empty()).collect();
    assert_eq!(answers.len(), 3, "{out}");
    for a in &answers[..2] {
        assert!(a.starts_with("200") && a.to_ascii_lowercase().contains("connection: keep-alive"), "{a}");
    }
    assert!(answers[2].to_ascii_lowercase().contains("connection: close"), "{}", answers[2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_continue_is_answered() {
    let s = setup(&["AIzaK"]).await;
    let body = serde_json::to_string(&generate_body("x")).unwrap();
    let mut conn = TcpStream::connect(s.proxy.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(conn, "POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\ncontent-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n", body.len()).unwrap();
    let mut interim = [0u8; 25];
    conn.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.write_all(body.as_bytes()).unwrap();
    let mut rest = String::new();
    conn.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
}

#[tokio::test(flavor = "multi_thread")]
async fn smuggling_shapes_and_slow_heads_are_refused() {
    let s = setup_with(&["AIzaK"], |t| in_section(t, "server", "header_timeout = \"1s\"")).await;
    let both = format!("POST /v1beta/models/m:generateContent HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n");
    let out = raw_exchange(s.proxy.addr, both.as_bytes(), Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let started = Instant::now();
    let out = raw_exchange(s.proxy.addr, b"POST /v1beta/models HTTP/1.1\r\nhost: x\r\n", Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(s.mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_streams_finish_then_exits() {
    let mut s = setup(&["AIzaK"]).await;
    let stream = start_stream(&s.proxy, 8, 150);
    // Wait until the stream is under way (the mock has the request), then stop the proxy.
    wait_for_requests(&s.mock, 1).await;
    s.proxy.signal("TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(s.proxy.addr).is_err(), "no new connections after SIGTERM");
    let body = stream.await.unwrap().expect("the in-flight stream completes");
    assert_eq!(body.matches("data: ").count(), 8, "{body}");
    let status = s.proxy.wait_exit(Duration::from_secs(5)).expect("the proxy exits once the stream is done");
    assert!(status.success(), "{status}");
    assert_eq!(s.proxy.access_log().len(), 1, "the access log is flushed before exit");
}

/// A stream still running when the grace period ends is cut, and still logged: one access-log
/// line and one request-log row, with the status its client got and an error saying it was cut
/// at shutdown.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_at_the_end_of_the_grace_period_is_still_logged() {
    let mut s = setup_with(&["AIzaK"], |t| t.replace("grace_period = \"5s\"", "grace_period = \"1s\"")).await;
    // Forty events 100 ms apart: four seconds, well past the grace period.
    let stream = start_stream(&s.proxy, 40, 100);
    wait_for_requests(&s.mock, 1).await;
    s.proxy.signal("TERM");
    let signalled = Instant::now();
    let status = s.proxy.wait_exit(Duration::from_secs(5)).expect("the proxy exits when the grace period is over");
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() < Duration::from_secs(3), "exited {:?} after SIGTERM", signalled.elapsed());
    match stream.await.unwrap() {
        Ok(body) => assert!(body.matches("data: ").count() < 40, "the stream was cut: {body}"),
        Err(e) => assert!(!e.is_status(), "{e}"),
    }

    let log = s.proxy.wait_for_records(1);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!((&log[0]["status"], log[0]["stream"].as_bool()), (&serde_json::json!(200), Some(true)), "{}", log[0]);
    let error = log[0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("cut at shutdown"), "{}", log[0]);
    let conn = rusqlite::Connection::open_with_flags(s.proxy.state_db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open the state store");
    let rows: Vec<(String, i64, Option<String>)> = conn
        .prepare("SELECT path, status, error FROM request_log")
        .and_then(|mut q| q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .expect("read the request log");
    assert_eq!(rows, [("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse".to_owned(), 200, Some(error.to_owned()))]);
}

/// A stream cut at the end of the grace period is recorded with what really happened up to the
/// cut: the bytes its client was sent, the tokens of the usage metadata already relayed (charged
/// in the usage tables like a finished request's), and the attempt in progress, with its key,
/// labelled as cut; in the access log and in the admin API's request log alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_at_the_end_of_the_grace_period_is_recorded_with_its_bytes_tokens_and_attempt() {
    let Setup { mock, mut proxy } = setup_with(&["AIzaK"], |t| t.replace("grace_period = \"5s\"", "grace_period = \"1s\"")).await;
    let key_name = admin_get(&proxy, "/api/v1/keys").await["keys"][0]["name"].as_str().expect("a key name").to_owned();
    // Forty events 100 ms apart, each with the cumulative usageMetadata: about ten of them are
    // relayed before the cut.
    let addr = proxy.addr;
    let stream = tokio::task::spawn_blocking(move || raw_stream(addr, 40, 100));
    wait_for_requests(&mock, 1).await;
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(5)).expect("the proxy exits when the grace period is over").success());
    let received = stream.await.unwrap();
    let (events, prompt, candidates) = last_usage(&received);
    assert!(events > 1 && events < 40, "cut mid-stream after {events} events");

    let log = proxy.wait_for_records(1);
    assert_eq!(log.len(), 1, "{log:?}");
    let r = &log[0];
    assert!(r["error"].as_str().unwrap_or_default().starts_with("cut at shutdown"), "{r}");
    assert_eq!(r["bytes_out"], received.len() as u64, "every byte the client got, head and chunk framing included: {r}");
    assert_eq!((&r["tokens_in"], &r["tokens_out"]), (&serde_json::json!(prompt), &serde_json::json!(candidates)), "{r}");
    assert!(r["first_byte_ms"].as_f64().is_some(), "{r}");
    let attempts = r["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{r}");
    assert_eq!(
        (&attempts[0]["key"], &attempts[0]["outcome"], &attempts[0]["status"]),
        (&serde_json::json!(key_name), &serde_json::json!("cut"), &serde_json::json!(200))
    );

    // The same in the request log and the usage tables, read through the admin API of a new
    // process on the same state.
    let proxy = proxy.restart_after_crash();
    let rows = proxy.wait_for_request_rows(1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!((&row["status"], &row["bytes_out"], &row["key"]), (&serde_json::json!(200), &r["bytes_out"], &serde_json::json!(key_name)), "{row}");
    assert_eq!((&row["tokens_in"], &row["tokens_out"]), (&r["tokens_in"], &r["tokens_out"]), "{row}");
    assert_eq!(row["attempts"], r["attempts"], "{row}");
    let totals = admin_get(&proxy, &format!("/api/v1/stats/totals?range=today&key={key_name}")).await;
    assert_eq!((&totals["input_tokens"], &totals["output_tokens"]), (&r["tokens_in"], &r["tokens_out"]), "the key is charged: {totals}");
}

/// A request still waiting for the upstream's answer when the grace period ends got no answer:
/// it is logged as a 503 cut at shutdown, with the attempt it was waiting on.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_an_answer_at_the_end_of_the_grace_period_is_logged_as_a_503() {
    let mut s = setup_with(&["AIzaK"], |t| t.replace("grace_period = \"5s\"", "grace_period = \"1s\"")).await;
    s.mock.set_key("AIzaK", KeyMode::Slow { first_byte_ms: 4000 }.into());
    let url = s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent");
    let pending = tokio::spawn(async move { client().post(url).header("x-goog-api-key", TOKEN).json(&generate_body("slow")).send().await.map(|r| r.status()) });
    wait_for_requests(&s.mock, 1).await;
    s.proxy.signal("TERM");
    let status = s.proxy.wait_exit(Duration::from_secs(5)).expect("the proxy exits when the grace period is over");
    assert!(status.success(), "{status}");
    assert!(pending.await.unwrap().is_err(), "the client gets a closed connection, no answer");
    let log = s.proxy.wait_for_records(1);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], 503, "{}", log[0]);
    assert!(log[0]["error"].as_str().unwrap_or_default().starts_with("cut at shutdown"), "{}", log[0]);
    // The attempt it was waiting on is there, cut, without an upstream status.
    let attempts = log[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{}", log[0]);
    assert_eq!((&attempts[0]["outcome"], attempts[0].get("status")), (&serde_json::json!("cut"), None), "{}", log[0]);
    assert!(attempts[0]["key"].is_string() && attempts[0]["ms"].as_f64().is_some_and(|ms| ms >= 900.0), "{}", log[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_close_after_the_keepalive_timeout_from_their_last_answer() {
    let s = setup_with(&["AIzaK"], |t| in_section(t, "server", "keepalive_timeout = \"600ms\"")).await;
    let addr = s.proxy.addr;
    let idle = tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(addr).unwrap();
        assert!(keep_alive_request(&mut conn).contains(" 200 "));
        // Idle for most of the limit: still open, and the next answer starts the limit again.
        std::thread::sleep(Duration::from_millis(400));
        assert!(keep_alive_request(&mut conn).contains(" 200 "), "the connection outlived 400 ms of a 600 ms limit");
        let answered = Instant::now();
        wait_closed(&mut conn, Duration::from_secs(5)).expect("closed after the keep-alive timeout");
        answered.elapsed()
    })
    .await
    .unwrap();
    // The proxy counts from when its answer was complete, a moment before the client had it.
    assert!(idle >= Duration::from_millis(550) && idle < Duration::from_secs(2), "closed after {idle:?} idle");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_idle_keep_alive_connections_while_streams_finish() {
    let mut s = setup(&["AIzaK"]).await;
    let addr = s.proxy.addr;
    // Two idle clients: one after one request, one after two (its wait for shutdown, made for
    // its first keep-alive wait, was kept while its second request was served).
    let (mut one, mut two) = tokio::task::spawn_blocking(move || {
        let mut one = TcpStream::connect(addr).unwrap();
        assert!(keep_alive_request(&mut one).contains(" 200 "));
        let mut two = TcpStream::connect(addr).unwrap();
        assert!(keep_alive_request(&mut two).contains(" 200 "));
        assert!(keep_alive_request(&mut two).contains(" 200 "));
        (one, two)
    })
    .await
    .unwrap();
    // A two-second stream keeps the proxy running after SIGTERM.
    let stream = start_stream(&s.proxy, 10, 200);
    wait_for_requests(&s.mock, 4).await;
    s.proxy.signal("TERM");
    let closed = tokio::task::spawn_blocking(move || (wait_closed(&mut one, Duration::from_millis(1000)), wait_closed(&mut two, Duration::from_millis(1000))))
        .await
        .unwrap();
    assert_eq!(closed, (Ok(()), Ok(())), "idle connections are closed at once, not when the process exits");
    assert!(s.proxy.wait_exit(Duration::from_millis(20)).is_none(), "the proxy is still serving the stream");
    let body = stream.await.unwrap().expect("the stream completes");
    assert_eq!(body.matches("data: ").count(), 10, "{body}");
    assert!(s.proxy.wait_exit(Duration::from_secs(5)).expect("exits after the stream").success());
}

/// Starts an SSE stream of `chunks` events `delay_ms` apart through the proxy; the task yields
/// the whole body.
fn start_stream(proxy: &Proxy, chunks: u32, delay_ms: u32) -> tokio::task::JoinHandle<reqwest::Result<String>> {
    let url = proxy.url("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    tokio::spawn(async move {
        let r = client()
            .post(url)
            .header("x-goog-api-key", TOKEN)
            .header("x-mock-chunks", chunks.to_string())
            .header("x-mock-chunk-delay-ms", delay_ms.to_string())
            .json(&generate_body("long"))
            .send()
            .await?;
        r.text().await
    })
}

/// Waits (up to 5 s) until the mock has seen `n` requests.
async fn wait_for_requests(mock: &mock_gemini::MockGemini, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.requests().len() < n {
        assert!(Instant::now() < deadline, "the mock saw {} of {n} requests", mock.requests().len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends a streamGenerateContent call of `chunks` events `delay_ms` apart on a raw connection and
/// returns every byte received until the proxy closed it.
fn raw_stream(addr: std::net::SocketAddr, chunks: u32, delay_ms: u32) -> Vec<u8> {
    let body = serde_json::to_string(&generate_body("long")).unwrap();
    let req = format!(
        "POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\n\
         x-mock-chunks: {chunks}\r\nx-mock-chunk-delay-ms: {delay_ms}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(req.as_bytes()).expect("write");
    let mut received = Vec::new();
    let _ = conn.read_to_end(&mut received);
    received
}

/// The number of SSE events in a raw answer, and the prompt and candidates token counts of the
/// last one's usageMetadata.
fn last_usage(raw: &[u8]) -> (usize, u64, u64) {
    let text = String::from_utf8_lossy(raw);
    let events: Vec<serde_json::Value> = text
        .split("data: ")
        .skip(1)
        .map(|e| serde_json::from_str(e.split("\r\n\r\n").next().unwrap_or_default()).unwrap_or_else(|err| panic!("an event cut inside ({err}): {e}")))
        .collect();
    let usage = &events.last().expect("at least one event")["usageMetadata"];
    (events.len(), usage["promptTokenCount"].as_u64().expect("prompt tokens"), usage["candidatesTokenCount"].as_u64().expect("candidate tokens"))
}
