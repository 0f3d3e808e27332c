//! TLS over real sockets: SNI selection, HTTP/2 by ALPN, bad PEM refused, self-signed reuse,
//! certificate files reloaded on SIGHUP, and ACME issuance and renewal against a real Pebble
//! (HTTP-01 and TLS-ALPN-01), each test with its own CA on free ports.

use crate::harness::*;
use gemini_proxy::tls::certs::{describe, CertInfo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

// ---------------------------------------------------------------------------------------------
// TLS client helpers
// ---------------------------------------------------------------------------------------------

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any server certificate (signatures still checked): for tests that look at which
/// certificate is served, not whether it is trusted.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client config: verifying against `roots`, or accepting anything when there are none.
fn tls_client(roots: Option<RootCertStore>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().expect("protocol versions");
    let mut config = match roots {
        Some(r) => builder.with_root_certificates(r).with_no_client_auth(),
        None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider()))).with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

fn roots_of(pem: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
        roots.add(c.expect("PEM root")).expect("add root");
    }
    roots
}

/// A TLS connection to `addr`, sending `sni` (none when `None`: rustls sends no SNI for an IP).
async fn connect(addr: SocketAddr, sni: Option<&str>, config: Arc<ClientConfig>) -> Result<TlsStream<TcpStream>, String> {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_owned()).map_err(|e| e.to_string())?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await.map_err(|_| "connect timed out".to_owned())?.map_err(|e| e.to_string())?;
    let handshake = TlsConnector::from(config).connect(name, tcp);
    tokio::time::timeout(Duration::from_secs(10), handshake).await.map_err(|_| "handshake timed out".to_owned())?.map_err(|e| e.to_string())
}

/// The served chain of a connection.
fn chain(tls: &TlsStream<TcpStream>) -> Vec<CertificateDer<'static>> {
    tls.get_ref().1.peer_certificates().expect("the server sent certificates").iter().map(|c| c.clone().into_owned()).collect()
}

fn leaf(tls: &TlsStream<TcpStream>) -> CertInfo {
    describe(&chain(tls)[0], "served leaf").expect("an X.509 leaf")
}

/// The leaf certificate a new handshake gets for `sni` (any certificate accepted).
async fn served(addr: SocketAddr, sni: Option<&str>) -> CertInfo {
    let tls = connect(addr, sni, tls_client(None, &[b"http/1.1"])).await.unwrap_or_else(|e| panic!("TLS handshake with {addr} (SNI {sni:?}): {e}"));
    leaf(&tls)
}

/// One generateContent call on an open HTTP/1.1 connection (kept alive); returns the status.
async fn generate_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S, host: &str) -> u16 {
    let body = serde_json::to_vec(&generate_body("hello")).unwrap();
    let head = format!(
        "POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\nhost: {host}\r\nx-goog-api-key: {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(&body).await.expect("write body");
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), read_response(s)).await.expect("a response within 10 s");
    status
}

/// Reads one HTTP/1.1 response framed by Content-Length.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (u16, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.expect("read response");
        assert!(n > 0, "connection closed before a response head: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse().expect("content-length")).expect("a content-length response");
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    (status, buf[head_end..head_end + len].to_vec())
}

// ---------------------------------------------------------------------------------------------
// Certificates and configs
// ---------------------------------------------------------------------------------------------

/// A self-signed certificate for `names`, written as `stem.crt` / `stem.key` in `dir`.
fn write_cert(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let c = rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let (crt, key) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
    std::fs::write(&crt, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    (crt, key)
}

fn serial_of(path: &Path) -> String {
    let pem = std::fs::read(path).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next().unwrap().unwrap();
    describe(&der, "file").unwrap().serial
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The harness config (plain listener `plain`, mock upstream) plus a `[tls]` section.
fn tls_config(plain: SocketAddr, upstream: &str, tls: SocketAddr, tls_body: &str) -> String {
    format!("{}\n[tls]\nlisten = \"{tls}\"\n{tls_body}\n", config(plain, upstream, &["AIzaTLS"]))
}

async fn admin_text(proxy: &Proxy, path: &str) -> String {
    client().get(proxy.admin_url(path)).bearer_auth(ADMIN_TOKEN).send().await.expect("admin request").text().await.unwrap()
}

/// The admin API's view of certificate `name`.
async fn certificate(proxy: &Proxy, name: &str) -> Option<Value> {
    admin_get(proxy, "/api/v1/certificates").await.as_array().expect("a list").iter().find(|c| c["name"] == name).cloned()
}

/// Waits (bounded) until certificate `name` satisfies `ok`; panics with the last view and the
/// proxy's diagnostics otherwise.
async fn wait_certificate(proxy: &Proxy, name: &str, within: Duration, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let c = certificate(proxy, name).await;
        if let Some(c) = c.as_ref().filter(|c| ok(c)) {
            return c.clone();
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {within:?}; certificate now: {c:?}\nproxy diagnostics:\n{}", proxy.stderr());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tests without a CA
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sni_selects_exact_wildcard_and_default_certificates() {
    let files = tempfile::tempdir().unwrap();
    let (a_crt, a_key) = write_cert(files.path(), "a", &["a.test"]);
    let (b_crt, b_key) = write_cert(files.path(), "b", &["b.test"]);
    let (w_crt, w_key) = write_cert(files.path(), "wild", &["*.wild.test"]);
    let (d_crt, d_key) = write_cert(files.path(), "default", &["default.test"]);
    let entry = |c: &Path, k: &Path, name: &str, default: bool| {
        format!("[[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\nname = \"{name}\"\ndefault = {default}\n", c.display(), k.display())
    };
    let body =
        [entry(&a_crt, &a_key, "a", false), entry(&b_crt, &b_key, "b", false), entry(&w_crt, &w_key, "wild", false), entry(&d_crt, &d_key, "fallback", true)]
            .join("\n");
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    let proxy = Proxy::start_config(plain, &tls_config(plain, &mock.base_url(), tls, &body));

    let (a, b, w, d) = (serial_of(&a_crt), serial_of(&b_crt), serial_of(&w_crt), serial_of(&d_crt));
    assert_eq!(served(tls, Some("a.test")).await.serial, a);
    assert_eq!(served(tls, Some("b.test")).await.serial, b);
    assert_eq!(served(tls, Some("x.wild.test")).await.serial, w, "a wildcard covers one label");
    assert_eq!(served(tls, Some("deep.x.wild.test")).await.serial, d, "but not two");
    assert_eq!(served(tls, Some("other.test")).await.serial, d, "an unknown name gets the default");
    assert_eq!(served(tls, None).await.serial, d, "no SNI gets the default");

    // The listing names each certificate with its source and validity.
    let list = admin_get(&proxy, "/api/v1/certificates").await;
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["a", "b", "wild", "fallback"]);
    assert!(list.as_array().unwrap().iter().all(|c| c["source"] == "file" && c["not_after"].is_string()), "{list}");
    assert_eq!(list[3]["default"], true);

    // And requests work over TLS (HTTP/1.1).
    let mut conn = connect(tls, Some("a.test"), tls_client(None, &[b"http/1.1"])).await.unwrap();
    assert_eq!(generate_on(&mut conn, "a.test").await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_is_negotiated_by_alpn_and_serves_requests() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    let _proxy = Proxy::start_config(plain, &tls_config(plain, &mock.base_url(), tls, "[tls.self_signed]\nnames = [\"localhost\"]\n"));

    let conn = connect(tls, Some("localhost"), tls_client(None, &[b"h2", b"http/1.1"])).await.unwrap();
    assert_eq!(conn.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the proxy prefers h2");
    let (mut h2c, connection) = h2::client::handshake(conn).await.expect("HTTP/2 handshake");
    tokio::spawn(connection);
    // Two requests on one connection, concurrently.
    let body = serde_json::to_vec(&generate_body("hello")).unwrap();
    let mut pending = Vec::new();
    for _ in 0..2 {
        let req = http::Request::builder()
            .method("POST")
            .uri("https://localhost/v1beta/models/gemini-2.5-flash:generateContent")
            .header("x-goog-api-key", TOKEN)
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let (resp, mut send) = h2c.send_request(req, false).expect("send request");
        send.send_data(bytes::Bytes::from(body.clone()), true).expect("send body");
        pending.push(resp);
    }
    for resp in pending {
        let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.expect("a response within 10 s").expect("HTTP/2 response");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("body data");
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let v: Value = serde_json::from_slice(&data).expect("JSON body");
        assert!(v["candidates"].is_array(), "{v}");
    }

    // A client offering only HTTP/1.1 still gets it.
    let conn = connect(tls, Some("localhost"), tls_client(None, &[b"http/1.1"])).await.unwrap();
    assert_eq!(conn.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

/// HTTP/2 request bodies go through the data plane's body handling: over the limit, whether
/// the client declared the length (refused before the body is read) or not (refused when the
/// limit is passed), they get the data plane's 413 with its JSON error.
#[tokio::test(flavor = "multi_thread")]
async fn http2_bodies_over_the_limit_get_413_json() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    let toml = in_section(tls_config(plain, &mock.base_url(), tls, "[tls.self_signed]\nnames = [\"localhost\"]\n"), "server", "body_limit = \"64KiB\"");
    let _proxy = Proxy::start_config(plain, &toml);
    let conn = connect(tls, Some("localhost"), tls_client(None, &[b"h2"])).await.unwrap();
    let (mut h2c, connection) = h2::client::handshake(conn).await.expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let big = bytes::Bytes::from(vec![b'x'; 100 * 1024]);
    let declared = big.len().to_string();
    for headers in [vec![("content-length", declared.as_str())], vec![]] {
        let (resp, mut send) = h2c.send_request(h2_request("/v1beta/models/gemini-2.5-flash:generateContent", &headers), false).expect("send request");
        let _ = send.send_data(big.clone(), true);
        let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.expect("an answer").expect("HTTP/2 response");
        assert_eq!(resp.status(), 413, "{headers:?}");
        let mut body = resp.into_body();
        let mut data = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let v: Value = serde_json::from_slice(&data).expect("a JSON error");
        assert_eq!(v["error"]["code"], 413, "{v}");
    }
    assert!(mock.requests().is_empty());
}

/// A proxy with a TLS listener (self-signed for localhost) and a 1 s grace period, and an
/// HTTP/2 connection to it.
async fn h2_proxy_with_short_grace(mock: &mock_gemini::MockGemini) -> (Proxy, h2::client::SendRequest<bytes::Bytes>) {
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    let toml =
        tls_config(plain, &mock.base_url(), tls, "[tls.self_signed]\nnames = [\"localhost\"]\n").replace("grace_period = \"5s\"", "grace_period = \"1s\"");
    let proxy = Proxy::start_config(plain, &toml);
    let conn = connect(tls, Some("localhost"), tls_client(None, &[b"h2"])).await.unwrap();
    let (h2c, connection) = h2::client::handshake(conn).await.expect("HTTP/2 handshake");
    tokio::spawn(connection);
    (proxy, h2c)
}

/// Waits (bounded) until the proxy counts `n` requests in flight (its metrics say so).
async fn wait_in_flight(proxy: &Proxy, n: u32) {
    let line = format!("gemini_proxy_inflight_requests {n}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !admin_text(proxy, "/metrics").await.lines().any(|l| l == line) {
        assert!(Instant::now() < deadline, "the proxy never counted {n} requests in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn h2_request(path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut req = http::Request::builder().method("POST").uri(format!("https://localhost{path}")).header("x-goog-api-key", TOKEN);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.body(()).unwrap()
}

/// Over HTTP/2 too, a stream cut at the end of the grace period is recorded as cut (not as
/// abandoned), with the bytes and tokens relayed up to the cut and the attempt in progress, and
/// the client's stream is reset rather than left hanging.
#[tokio::test(flavor = "multi_thread")]
async fn http2_a_stream_cut_at_the_end_of_the_grace_period_is_recorded_as_cut_and_reset() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let (mut proxy, mut h2c) = h2_proxy_with_short_grace(&mock).await;
    let key_name = admin_get(&proxy, "/api/v1/keys").await["keys"][0]["name"].clone();
    let req = h2_request("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", &[("x-mock-chunks", "40"), ("x-mock-chunk-delay-ms", "100")]);
    let (resp, mut send) = h2c.send_request(req, false).expect("send request");
    send.send_data(bytes::Bytes::from(serde_json::to_vec(&generate_body("long")).unwrap()), true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.expect("a response head").expect("HTTP/2 response");
    assert_eq!(resp.status(), 200);
    proxy.signal("TERM");
    let mut body = resp.into_body();
    let mut received = Vec::new();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(8), body.data()).await.expect("the stream ends, it is not left hanging") {
            Some(Ok(chunk)) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                received.extend_from_slice(&chunk);
            }
            Some(Err(e)) => break e,
            None => panic!("the cut stream ended as if complete: {}", String::from_utf8_lossy(&received)),
        }
    };
    assert!(ended.is_reset(), "the stream is reset: {ended:?}");
    assert!(proxy.wait_exit(Duration::from_secs(5)).expect("the proxy exits when the grace period is over").success());

    let text = String::from_utf8_lossy(&received);
    let events: Vec<Value> = text.split("data: ").skip(1).map(|e| serde_json::from_str(e.trim_end()).expect("whole events")).collect();
    assert!(events.len() > 1 && events.len() < 40, "cut mid-stream after {} events", events.len());
    let usage = &events[events.len() - 1]["usageMetadata"];
    let log = proxy.wait_for_records(1);
    assert_eq!(log.len(), 1, "{log:?}");
    let r = &log[0];
    assert!(r["error"].as_str().unwrap_or_default().starts_with("cut at shutdown"), "{r}");
    assert_eq!((&r["status"], &r["stream"]), (&json!(200), &json!(true)), "{r}");
    assert!(r["bytes_out"].as_u64().unwrap_or(0) > received.len() as u64, "the answer relayed, head included: {r}");
    // The reset discards what the client's HTTP/2 stack had not handed over yet, so the proxy may
    // have relayed an event or two more than the client read: at least what it read is counted.
    assert_eq!(r["tokens_in"], usage["promptTokenCount"], "{r}");
    let (counted, read) = (r["tokens_out"].as_u64().unwrap_or(0), usage["candidatesTokenCount"].as_u64().unwrap_or(u64::MAX));
    assert!(counted >= read && counted > 0, "tokens out {counted}, the client read {read}: {r}");
    assert_eq!((&r["attempts"][0]["key"], &r["attempts"][0]["outcome"], &r["attempts"][0]["status"]), (&key_name, &json!("cut"), &json!(200)), "{r}");
}

/// (d) A client that leaves a TLS connection while the upstream takes 30 s is noticed (its TCP
/// socket says so under TLS) within about a second, and logged as a 499 with the attempt
/// abandoned and the key unharmed.
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_client_that_leaves_while_the_upstream_thinks_is_a_499_at_once() {
    use crate::client_gone::*;
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    let proxy = Proxy::start_config(plain, &tls_config(plain, &mock.base_url(), tls, "[tls.self_signed]\nnames = [\"localhost\"]\n"));
    let key_name = admin_get(&proxy, "/api/v1/keys").await["keys"][0]["name"].as_str().expect("a key name").to_owned();
    let mut conn = connect(tls, Some("localhost"), tls_client(None, &[b"http/1.1"])).await.unwrap();
    conn.write_all(&raw_request(false, "x-mock-first-byte-ms: 30000\r\n")).await.unwrap();
    wait_upstream_requests(&mock, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(conn);
    wait_upstream_dropped(&mock, 1, Instant::now(), NOTICED_WITHIN).await;
    assert_abandoned(&the_499_row(&proxy).await, &key_name, None);
    assert_unharmed(&proxy, &key_name).await;
}

/// A proxy with a TLS listener (self-signed for localhost), the name of its key, and an HTTP/2
/// connection to it (with the task driving it).
async fn h2_proxy(mock: &mock_gemini::MockGemini) -> (Proxy, String, h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    let proxy = Proxy::start_config(plain, &tls_config(plain, &mock.base_url(), tls, "[tls.self_signed]\nnames = [\"localhost\"]\n"));
    let key_name = admin_get(&proxy, "/api/v1/keys").await["keys"][0]["name"].as_str().expect("a key name").to_owned();
    let conn = connect(tls, Some("localhost"), tls_client(None, &[b"h2"])).await.unwrap();
    let (h2c, connection) = h2::client::handshake(conn).await.expect("HTTP/2 handshake");
    (proxy, key_name, h2c, tokio::spawn(connection))
}

/// Starts a generateContent call on `h2c` whose answer the upstream holds back `first_byte_ms`.
fn h2_generate(h2c: &mut h2::client::SendRequest<bytes::Bytes>, first_byte_ms: &str) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
    let headers: &[(&str, &str)] = if first_byte_ms.is_empty() { &[] } else { &[("x-mock-first-byte-ms", first_byte_ms)] };
    let (resp, mut send) = h2c.send_request(h2_request("/v1beta/models/gemini-2.5-flash:generateContent", headers), false).expect("send request");
    send.send_data(bytes::Bytes::from(serde_json::to_vec(&generate_body("think hard")).unwrap()), true).expect("send the body");
    (resp, send)
}

/// (e) Over HTTP/2, a client that resets its stream while the upstream takes 30 s ends the data
/// plane's request as an HTTP/1.1 client's leaving does: the bridge sees the reset and tells the
/// request, which drops its upstream request within about a second and is logged as a 499 with
/// the attempt abandoned. The connection goes on serving.
#[tokio::test(flavor = "multi_thread")]
async fn http2_a_stream_reset_while_the_upstream_thinks_is_a_499_at_once() {
    use crate::client_gone::*;
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let (proxy, key_name, mut h2c, _connection) = h2_proxy(&mock).await;
    let (resp, mut send) = h2_generate(&mut h2c, "30000");
    wait_upstream_requests(&mock, 1).await;
    send.send_reset(h2::Reason::CANCEL);
    drop(resp);
    wait_upstream_dropped(&mock, 1, Instant::now(), NOTICED_WITHIN).await;
    assert_abandoned(&the_499_row(&proxy).await, &key_name, None);
    assert_unharmed(&proxy, &key_name).await;
    let (resp, _send) = h2_generate(&mut h2c, "");
    let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.expect("an answer").expect("HTTP/2 response");
    assert_eq!(resp.status(), 200, "the connection still serves");
}

/// (e) The same when the client closes its HTTP/2 connection: every stream of it ends.
#[tokio::test(flavor = "multi_thread")]
async fn http2_a_connection_closed_while_the_upstream_thinks_is_a_499_at_once() {
    use crate::client_gone::*;
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let (proxy, key_name, mut h2c, connection) = h2_proxy(&mock).await;
    let first = h2_generate(&mut h2c, "30000");
    let second = h2_generate(&mut h2c, "30000");
    wait_upstream_requests(&mock, 2).await;
    connection.abort();
    let _ = connection.await;
    drop((h2c, first, second));
    wait_upstream_dropped(&mock, 2, Instant::now(), NOTICED_WITHIN).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows: Vec<Value> = proxy.wait_for_request_rows(2).await.into_iter().filter(|r| r["status"] == 499).collect();
        if rows.len() >= 2 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_abandoned(row, &key_name, None);
    }
    assert_unharmed(&proxy, &key_name).await;
}

/// An HTTP/2 request still sending its body when the grace period ends is cut like an HTTP/1
/// one: shutdown waits for it until then, it is logged as a 503 cut at shutdown, and its stream
/// is reset.
#[tokio::test(flavor = "multi_thread")]
async fn http2_a_request_still_sending_its_body_at_the_end_of_the_grace_period_is_cut_and_logged() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let (mut proxy, mut h2c) = h2_proxy_with_short_grace(&mock).await;
    let body = serde_json::to_vec(&generate_body("slow upload")).unwrap();
    let (resp, mut send) = h2c.send_request(h2_request("/v1beta/models/gemini-2.5-flash:generateContent", &[]), false).expect("send request");
    send.send_data(bytes::Bytes::copy_from_slice(&body[..10]), false).unwrap();
    // The rest never comes. The request is in flight as soon as the data plane has its head.
    wait_in_flight(&proxy, 1).await;
    proxy.signal("TERM");
    let signalled = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(8), resp).await.expect("the stream ends, it is not left hanging");
    assert!(answer.as_ref().is_err_and(|e| e.is_reset() || e.is_go_away() || e.is_io()), "no answer, the stream ended: {answer:?}");
    assert!(proxy.wait_exit(Duration::from_secs(5)).expect("the proxy exits").success());
    assert!(signalled.elapsed() >= Duration::from_millis(900), "shutdown waited for the request until the end of the grace period: {:?}", signalled.elapsed());
    assert!(mock.requests().is_empty());
    let log = proxy.wait_for_records(1);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], 503, "{}", log[0]);
    assert!(log[0]["error"].as_str().unwrap_or_default().starts_with("cut at shutdown"), "{}", log[0]);
    drop(send);
}

#[test]
fn a_bad_pem_file_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.crt");
    std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n").unwrap();
    let (good_crt, _) = write_cert(dir.path(), "good", &["a.test"]);
    let (_, other_key) = write_cert(dir.path(), "other", &["b.test"]);
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    for (crt, key, expect) in [(&bad, &other_key, "bad.crt"), (&good_crt, &other_key, "does not match")] {
        let body = format!("[[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n", crt.display(), key.display());
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, tls_config(plain, "http://127.0.0.1:9", tls, &body)).unwrap();

        let out = Command::new(binary()).args(["check", "-c"]).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "check must refuse it: {err}");
        assert!(err.contains("tls certificate") && err.contains(expect) && err.contains("line "), "a clear error with the place: {err}");

        let out = Command::new(binary()).args(["run", "-c"]).arg(&path).current_dir(dir.path()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "run must refuse to start: {err}");
        assert!(err.contains(expect) && !err.contains("panicked"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_self_signed_certificate_is_reused_across_a_restart() {
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    let toml = tls_config(plain, &mock.base_url(), tls, "[tls.self_signed]\nnames = [\"localhost\", \"127.0.0.1\"]\n");
    let proxy = Proxy::start_config(plain, &toml);
    let first = served(tls, Some("localhost")).await;
    assert_eq!(first.names, vec!["localhost", "127.0.0.1"]);
    assert_eq!(served(tls, None).await.serial, first.serial, "the only certificate is the default");
    let dir = proxy.stop();
    assert!(dir.path().join("data/tls/self-signed.key").exists());

    let proxy = Proxy::start_in(dir, plain, Some(&toml), &[], &[]);
    assert_eq!(served(tls, Some("localhost")).await.serial, first.serial, "the same certificate after a restart");
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_certificate_file_serves_new_handshakes_after_sighup() {
    let files = tempfile::tempdir().unwrap();
    let (crt, key) = write_cert(files.path(), "site", &["site.test"]);
    let old = serial_of(&crt);
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    let body = format!("[[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\nname = \"site\"\n", crt.display(), key.display());
    let proxy = Proxy::start_config(plain, &tls_config(plain, &mock.base_url(), tls, &body));
    assert_eq!(served(tls, Some("site.test")).await.serial, old);
    let mut open = connect(tls, Some("site.test"), tls_client(None, &[b"http/1.1"])).await.unwrap();
    assert_eq!(generate_on(&mut open, "site.test").await, 200);

    // Replace both files (as a deploy tool would: new files renamed over the old ones).
    let staging = tempfile::tempdir_in(files.path()).unwrap();
    let (new_crt, new_key) = write_cert(staging.path(), "site", &["site.test"]);
    let new = serial_of(&new_crt);
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_crt, &crt).unwrap();
    assert_eq!(served(tls, Some("site.test")).await.serial, old, "nothing changes before the signal");
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(tls, Some("site.test")).await.serial != new {
        assert!(Instant::now() < deadline, "SIGHUP did not load the new certificate:\n{}", proxy.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(leaf(&open).serial, old);
    assert_eq!(generate_on(&mut open, "site.test").await, 200, "an open connection goes on");
    let listed = certificate(&proxy, "site").await.expect("listed");
    assert_eq!(listed["serial"], new);
    // The reload's log line says the certificates changed, though the config text did not;
    // a second SIGHUP with nothing replaced says neither changed.
    let reloads = sighup_reloads(&proxy, 1);
    assert_eq!((&reloads[0]["changed"], &reloads[0]["certificates_changed"]), (&json!(false), &json!(true)), "{}", reloads[0]);
    proxy.signal("HUP");
    let reloads = sighup_reloads(&proxy, 2);
    assert_eq!((&reloads[1]["changed"], &reloads[1]["certificates_changed"]), (&json!(false), &json!(false)), "{}", reloads[1]);
}

/// The first `n` "SIGHUP: configuration reloaded" lines of the diagnostics (JSON), waiting
/// (bounded) for them.
fn sighup_reloads(proxy: &Proxy, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<Value> =
            proxy.stderr().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["message"] == "SIGHUP: configuration reloaded").collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "{n} SIGHUP reloads not logged:\n{}", proxy.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// ACME against Pebble
// ---------------------------------------------------------------------------------------------

/// A Pebble ACME server and its DNS (pebble-challtestsrv, answering 127.0.0.1 for every name),
/// on free loopback ports. Both are stopped on drop.
struct Pebble {
    pebble: Option<Child>,
    dns: Child,
    dir: tempfile::TempDir,
    /// The directory URL.
    directory: String,
    /// The root of Pebble's own HTTPS listeners (for `acme.directory_ca_file`).
    listener_ca: PathBuf,
    management: SocketAddr,
}

fn spawn(program: &str, args: &[&str], env: &[(&str, &str)], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap_or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            panic!("`{program}` is not installed: the ACME tests need Pebble (Debian package `pebble`, which scripts/install-deps installs; it provides pebble and pebble-challtestsrv)");
        }
        panic!("cannot start {program}: {e}")
    })
}

fn wait_port(addr: SocketAddr, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(25));
    }
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`, issuing
    /// certificates valid for `validity` seconds (Pebble's default: 5 years).
    fn start(http_port: u16, tls_port: u16, validity: Option<u64>) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        // Pebble's own HTTPS: a leaf for 127.0.0.1 from a CA of ours.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "gemini-proxy test CA for Pebble");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
        let listener_ca = dir.path().join("listener-ca.pem");
        std::fs::write(&listener_ca, ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).unwrap();

        let (listen, management) = (loopback(free_port()), loopback(free_port()));
        let (dns_port, dns_management) = (free_port(), free_port());
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        if let Some(seconds) = validity {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();

        let dns_log = dir.path().join("challtestsrv.log");
        let dns_addr = format!("127.0.0.1:{dns_port}");
        let dns_mgmt = format!("127.0.0.1:{dns_management}");
        // DNS only (every name resolves to 127.0.0.1, no AAAA); its own challenge servers off.
        let dns = spawn(
            "pebble-challtestsrv",
            &["-dns01", &dns_addr, "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", &dns_mgmt, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
            &[],
            &dns_log,
        );
        let log = dir.path().join("pebble.log");
        // No random validation delays; no reuse of valid authorizations, so that every order
        // (renewals too) is validated against the proxy.
        let pebble = spawn(
            "pebble",
            &["-config", config_path.to_str().unwrap(), "-dnsserver", &dns_addr],
            &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_AUTHZREUSE", "0")],
            &log,
        );
        let p = Pebble { pebble: Some(pebble), dns, directory: format!("https://{listen}/dir"), listener_ca, management, dir };
        wait_port(loopback(dns_management), "pebble-challtestsrv", &dns_log);
        wait_port(listen, "pebble", &log);
        wait_port(management, "pebble's management interface", &log);
        p
    }

    /// Pebble's issuing root (a new one at every start), from its management interface.
    async fn root(&self) -> String {
        let config = tls_client(Some(roots_of(&std::fs::read_to_string(&self.listener_ca).unwrap())), &[b"http/1.1"]);
        let mut tls = connect(self.management, None, config).await.expect("TLS to Pebble's management interface");
        tls.write_all(format!("GET /roots/0 HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n", self.management).as_bytes()).await.unwrap();
        let (status, body) = read_response(&mut tls).await;
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }

    /// The `[tls.acme]` section for `names` and `challenge`.
    fn acme_section(&self, names: &[&str], challenge: &str) -> String {
        let names = names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
        format!(
            "[tls.acme]\ndirectory = \"{}\"\ncontact = [\"ops@example.com\"]\nnames = [{names}]\nchallenge = \"{challenge}\"\nretry_backoff = \"1s\"\ncheck_interval = \"1h\"\ndirectory_ca_file = \"{}\"\n",
            self.directory,
            self.listener_ca.display()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Stops the CA (its DNS keeps running).
    fn stop_ca(&mut self) {
        if let Some(mut c) = self.pebble.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop_ca();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}

/// The chain check every ACME test makes: a client trusting only Pebble's root accepts the
/// served chain for `name`, whose leaf covers `name` and is signed by the intermediate sent
/// along with it.
async fn check_chain(tls_addr: SocketAddr, name: &str, root: &str) -> (TlsStream<TcpStream>, CertInfo) {
    let conn = connect(tls_addr, Some(name), tls_client(Some(roots_of(root)), &[b"http/1.1"]))
        .await
        .unwrap_or_else(|e| panic!("a client trusting Pebble's root refused the chain for {name}: {e}"));
    let served = chain(&conn);
    assert_eq!(served.len(), 2, "leaf and intermediate");
    let leaf = describe(&served[0], "leaf").unwrap();
    let intermediate = describe(&served[1], "intermediate").unwrap();
    assert!(leaf.names.iter().any(|n| n == name), "{:?}", leaf.names);
    assert!(leaf.issuer.contains("Pebble Intermediate"), "{}", leaf.issuer);
    assert!(intermediate.issuer.contains("Pebble Root"), "{}", intermediate.issuer);
    (conn, leaf)
}

async fn renew_now(proxy: &Proxy, name: &str) {
    let r = client().post(proxy.admin_url(&format!("/api/v1/certificates/{name}/renew"))).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
}

const ISSUE_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn acme_http01_issues_renews_on_demand_and_reuses_its_state() {
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    let ca = Pebble::start(plain.port(), tls.port(), None);
    let name = "acme-http.test";
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let toml = tls_config(plain, &mock.base_url(), tls, &ca.acme_section(&[name], "http-01"));
    let proxy = Proxy::start_config(plain, &toml);

    let issued = wait_certificate(&proxy, name, ISSUE_WITHIN, "HTTP-01 issuance", |c| c["source"] == "acme").await;
    assert_eq!(issued["last_renewal"]["ok"], true, "{issued}");
    assert!(issued["issuer"].as_str().unwrap().contains("Pebble"), "{issued}");
    let root = ca.root().await;
    let (mut open, first) = check_chain(tls, name, &root).await;
    assert_eq!(first.serial, issued["serial"]);
    assert!(ca.log().contains(&format!("Attempting to validate w/ HTTP: http://{name}:{}", plain.port())), "validated over HTTP-01");
    let answered =
        proxy.access_log().iter().filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with("/.well-known/acme-challenge/")) && r["status"] == 200).count();
    assert!(answered > 0, "the plain listener answered the challenge");
    // The connection opened before the renewal is used before and after it.
    assert_eq!(generate_on(&mut open, name).await, 200);

    renew_now(&proxy, name).await;
    let renewed = wait_certificate(&proxy, name, ISSUE_WITHIN, "forced renewal", |c| c["serial"] != issued["serial"]).await;
    assert_eq!(renewed["last_renewal"]["ok"], true, "{renewed}");
    let (_, second) = check_chain(tls, name, &root).await;
    assert_eq!(second.serial, renewed["serial"], "new handshakes get the new certificate");
    assert_ne!(second.serial, first.serial);
    assert_eq!(leaf(&open).serial, first.serial);
    assert_eq!(generate_on(&mut open, name).await, 200, "an open connection is undisturbed by the renewal");
    let metrics = admin_text(&proxy, "/metrics").await;
    assert!(metrics.lines().any(|l| l.starts_with("gemini_proxy_certificate_expiry_seconds{name=\"acme-http.test\"}")), "expiry exported:\n{metrics}");

    // State on disk: account and key private; a restart serves the stored certificate and
    // renews with the stored account (no new registration).
    let dir = proxy.stop();
    let store = std::fs::read_dir(dir.path().join("data/tls/acme")).unwrap().next().expect("a folder for the CA").unwrap().path();
    use std::os::unix::fs::PermissionsExt;
    for f in ["account.json", "acme-http.test.key"] {
        assert_eq!(std::fs::metadata(store.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
    }
    let account = std::fs::read(store.join("account.json")).unwrap();
    let proxy = Proxy::start_in(dir, plain, Some(&toml), &[], &[]);
    let restored = wait_certificate(&proxy, name, Duration::from_secs(10), "the stored certificate", |c| c["source"] == "acme").await;
    assert_eq!(restored["serial"], renewed["serial"], "the stored certificate serves after a restart");
    assert!(restored["last_renewal"].is_null(), "no new issuance at start: {restored}");
    assert_eq!(check_chain(tls, name, &root).await.1.serial, second.serial);
    renew_now(&proxy, name).await;
    let third = wait_certificate(&proxy, name, ISSUE_WITHIN, "renewal after restart", |c| c["serial"] != renewed["serial"]).await;
    assert_eq!(third["last_renewal"]["ok"], true, "{third}");
    assert_eq!(std::fs::read(store.join("account.json")).unwrap(), account, "the stored account was reused");
    assert!(!proxy.stderr().contains("registered an ACME account"), "no second registration:\n{}", proxy.stderr());
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread")]
async fn acme_tls_alpn01_issues_renews_and_survives_a_ca_outage() {
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    let mut ca = Pebble::start(plain.port(), tls.port(), None);
    let names = ["acme-alpn.test", "www.acme-alpn.test"];
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let toml = tls_config(plain, &mock.base_url(), tls, &ca.acme_section(&names, "tls-alpn-01"));
    let proxy = Proxy::start_config(plain, &toml);

    let issued = wait_certificate(&proxy, names[0], ISSUE_WITHIN, "TLS-ALPN-01 issuance", |c| c["source"] == "acme").await;
    let root = ca.root().await;
    let (mut open, first) = check_chain(tls, names[0], &root).await;
    assert_eq!(first.serial, issued["serial"]);
    assert_eq!(check_chain(tls, names[1], &root).await.1.serial, first.serial, "one certificate for both names");
    // Validated over TLS-ALPN-01 (Pebble does not log those): never over HTTP-01.
    assert!(!ca.log().contains("Attempting to validate w/ HTTP"), "not over HTTP-01:\n{}", ca.log());
    assert!(!proxy.stdout().contains("/.well-known/acme-challenge/"), "no HTTP-01 request reached the proxy");
    assert_eq!(generate_on(&mut open, names[0]).await, 200);

    renew_now(&proxy, names[0]).await;
    let renewed = wait_certificate(&proxy, names[0], ISSUE_WITHIN, "forced renewal", |c| c["serial"] != issued["serial"]).await;
    let (_, second) = check_chain(tls, names[0], &root).await;
    assert_eq!(second.serial, renewed["serial"], "new handshakes get the new certificate");
    assert_eq!(generate_on(&mut open, names[0]).await, 200, "an open connection is undisturbed by the renewal");

    // The CA goes away: a renewal fails, says why, and the current certificate keeps serving.
    ca.stop_ca();
    renew_now(&proxy, names[0]).await;
    let failed = wait_certificate(&proxy, names[0], Duration::from_secs(30), "a failed renewal recorded", |c| c["last_renewal"]["ok"] == false).await;
    let message = failed["last_renewal"]["message"].as_str().unwrap();
    assert!(message.contains("Connection refused") && message.contains("next attempt in"), "an operator can act on it: {message}");
    assert_eq!(failed["serial"], renewed["serial"], "the old certificate stays");
    assert_eq!(check_chain(tls, names[0], &root).await.1.serial, second.serial);
    assert_eq!(generate_on(&mut open, names[0]).await, 200);
    assert!(proxy.stderr().contains("ACME certificate request failed"), "logged");
    let metrics = admin_text(&proxy, "/metrics").await;
    let expiry: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gemini_proxy_certificate_expiry_seconds{name=\"acme-alpn.test\"} "))
        .expect("expiry exported")
        .parse()
        .unwrap();
    assert!(expiry > 86_400.0, "{expiry}");
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread")]
async fn acme_renews_by_itself_before_expiry() {
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    // 12-second certificates renewed 5 s before expiry: the manager wakes for it by itself (its
    // check_interval is an hour).
    let ca = Pebble::start(plain.port(), tls.port(), Some(12));
    let name = "acme-auto.test";
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let acme = format!("{}renew_before = \"5s\"\n", ca.acme_section(&[name], "http-01"));
    let proxy = Proxy::start_config(plain, &tls_config(plain, &mock.base_url(), tls, &acme));

    let first = wait_certificate(&proxy, name, ISSUE_WITHIN, "issuance", |c| c["source"] == "acme").await;
    let renewed = wait_certificate(&proxy, name, Duration::from_secs(30), "a scheduled renewal", |c| c["serial"] != first["serial"]).await;
    assert_eq!(renewed["last_renewal"]["ok"], true, "{renewed}");
    let root = ca.root().await;
    let (_, served) = check_chain(tls, name, &root).await;
    // A third one may have come in between; never the first.
    assert_ne!(served.serial, first["serial"].as_str().unwrap());
    assert!(proxy.stderr().contains("renewal time reached"), "the reason is logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn acme_without_a_reachable_ca_serves_a_temporary_certificate_and_says_why() {
    let (plain, tls) = (loopback(free_port()), loopback(free_port()));
    let nowhere = loopback(free_port());
    let mock = mock_gemini::MockGemini::start(mock_gemini::MockConfig::default()).await.unwrap();
    let acme = format!("[tls.acme]\ndirectory = \"https://{nowhere}/dir\"\nnames = [\"pending.test\"]\nchallenge = \"tls-alpn-01\"\nretry_backoff = \"1s\"\n");
    let proxy = Proxy::start_config(plain, &tls_config(plain, &mock.base_url(), tls, &acme));

    let failed = wait_certificate(&proxy, "pending.test", Duration::from_secs(20), "a failed first attempt", |c| c["last_renewal"]["ok"] == false).await;
    assert_eq!(failed["source"], "self_signed", "a temporary certificate: {failed}");
    let message = failed["last_renewal"]["message"].as_str().unwrap();
    assert!(message.contains("Connection refused") && message.contains("next attempt in"), "{message}");
    let temporary = served(tls, Some("pending.test")).await;
    assert_eq!(temporary.serial, failed["serial"], "handshakes get an answer meanwhile");
    assert!(temporary.not_after < std::time::SystemTime::now() + Duration::from_secs(8 * 86_400), "short-lived, so the expiry metric shows it");
    // "Renew now" also works for a certificate that was never issued: it starts an attempt at
    // once (which fails again here), besides the retries with backoff.
    let r = client().post(proxy.admin_url("/api/v1/certificates/pending.test/renew")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = client().post(proxy.admin_url("/api/v1/certificates/nope.test/renew")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // A second failure is logged.
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.stderr().matches("ACME certificate request failed").count() < 2 {
        assert!(Instant::now() < deadline, "no retry:\n{}", proxy.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
