//! Runs the steady-load binary against small HTTP servers in this test and checks what it
//! reports: counts, latency from the due time (a stalled answer delays the requests due behind
//! it), chunked answers and errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the test server does with the n-th request (counted from 0 over all connections): wait,
/// then send these bytes, or close the connection for `None`.
type Answer = Arc<dyn Fn(usize) -> (Duration, Option<Vec<u8>>) + Send + Sync>;

/// Starts a server on 127.0.0.1 that answers each request after the delay `answer` gives.
fn serve(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (answer, seen) = (answer.clone(), seen.clone());
            std::thread::spawn(move || handle(stream, answer, seen));
        }
    });
    addr
}

fn handle(stream: TcpStream, answer: Answer, seen: Arc<AtomicUsize>) {
    let mut out = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (delay, bytes) = answer(seen.fetch_add(1, Ordering::SeqCst));
        std::thread::sleep(delay);
        let Some(bytes) = bytes else { return };
        if out.write_all(&bytes).is_err() {
            return;
        }
    }
}

fn ok(body: &str) -> Option<Vec<u8>> {
    Some(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes())
}

/// Runs steady-load and returns its JSON report.
fn run(addr: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_steady-load"))
        .args(["--url", &format!("http://{addr}/v1beta/models/m:generateContent"), "--method", "POST", "-d", "{}"])
        .args(args)
        .output()
        .expect("run steady-load");
    assert!(out.status.success(), "steady-load failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The number after `"key": ` in `json`, for a key that appears once (the report is flat
/// enough for this; section picks the object that holds it).
fn number(json: &str, section: &str, key: &str) -> f64 {
    let from = if section.is_empty() { 0 } else { json.find(&format!("\"{section}\"")).expect(section) };
    let rest = &json[from..];
    let at = rest.find(&format!("\"{key}\": ")).unwrap_or_else(|| panic!("{key} in {json}")) + key.len() + 4;
    let text: String = rest[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-').collect();
    text.parse().unwrap_or_else(|_| panic!("{key}: {text}"))
}

#[test]
fn answers_every_scheduled_request_and_counts_from_the_due_time() {
    let addr = serve(Arc::new(|_| (Duration::from_millis(5), ok("{\"candidates\":[]}"))));
    let json = run(&addr, &["--rate", "200", "--seconds", "1.5", "--warmup", "0.5", "--conns", "8"]);
    assert_eq!(number(&json, "", "scheduled"), 300.0, "{json}");
    assert_eq!(number(&json, "", "answered"), 300.0, "{json}");
    assert_eq!(number(&json, "", "errors"), 0.0, "{json}");
    assert_eq!(number(&json, "measured", "requests"), 200.0, "the first 0.5 s are left out: {json}");
    let p50 = number(&json, "latency_ms", "p50");
    assert!((5.0..15.0).contains(&p50), "a 5 ms answer: p50 {p50} ms: {json}");
}

#[test]
fn a_stalled_answer_delays_the_requests_due_behind_it() {
    // One connection at 100/s; the 50th answer takes 300 ms. Requests due during the stall
    // wait for the connection, and their latency counts that wait: about 30 of 200 are late,
    // the first of them by nearly 300 ms. Counted from sending instead, only one would be.
    let addr = serve(Arc::new(|n| (Duration::from_millis(if n == 50 { 300 } else { 0 }), ok("x"))));
    let json = run(&addr, &["--rate", "100", "--seconds", "2", "--warmup", "0", "--conns", "1"]);
    assert_eq!(number(&json, "", "answered"), 200.0, "{json}");
    let max = number(&json, "latency_ms", "max");
    let p90 = number(&json, "latency_ms", "p90");
    assert!(max >= 290.0, "max {max} ms: {json}");
    assert!(p90 >= 50.0, "p90 {p90} ms: the requests due during the stall are late: {json}");
    assert!(number(&json, "send_lag_ms", "max") >= 250.0, "they waited to be written: {json}");
}

#[test]
fn reads_chunked_answers_and_counts_other_statuses_apart() {
    let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\ndata\r\n0\r\n\r\n".to_vec();
    let limited = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n".to_vec();
    let addr = serve(Arc::new(move |n| (Duration::ZERO, Some(if n % 10 == 9 { limited.clone() } else { chunked.clone() }))));
    let json = run(&addr, &["--rate", "100", "--seconds", "1", "--warmup", "0", "--conns", "2"]);
    assert_eq!(number(&json, "status", "200"), 90.0, "{json}");
    assert_eq!(number(&json, "status", "429"), 10.0, "{json}");
    assert_eq!(number(&json, "measured", "requests"), 90.0, "latency is over the 200s: {json}");
}

#[test]
fn a_connection_closed_mid_request_is_an_error_and_is_replaced() {
    // The server closes the connection instead of answering every 20th request.
    let addr = serve(Arc::new(|n| (Duration::ZERO, if n % 20 == 19 { None } else { ok("x") })));
    let json = run(&addr, &["--rate", "100", "--seconds", "1", "--warmup", "0", "--conns", "2"]);
    assert_eq!(number(&json, "", "answered"), 95.0, "{json}");
    assert_eq!(number(&json, "", "errors"), 5.0, "{json}");
    assert_eq!(number(&json, "", "unsent_at_end"), 0.0, "the replaced connections carried on: {json}");
}
