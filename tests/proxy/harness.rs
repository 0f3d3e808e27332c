//! Test harness: starts the real `gemini-proxy` binary on a free loopback port against an
//! in-process mock Gemini, and gives tests its address, its access log and its diagnostics.

use mock_gemini::{MockConfig, MockGemini};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "gp-test-token-alice";
pub const TOKEN_BOB: &str = "gp-test-token-bob";
pub const ADMIN_TOKEN: &str = "admin-test-token-0123456789";

/// A running proxy process. Killed when dropped.
#[allow(dead_code)]
pub struct Proxy {
    child: Option<Child>,
    pub addr: SocketAddr,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// The admin listener, when the config has one.
    pub admin: Option<SocketAddr>,
}

/// The `listen` address of section `[section]` (`admin`, `tls`) of a config built by `config`.
pub fn listen_addr_of(toml: &str, section: &str) -> Option<SocketAddr> {
    let header = format!("[{section}]\n");
    let after = &toml[toml.find(&header)? + header.len()..];
    let body = after.split("\n[").next()?;
    let line = body.lines().find(|l| l.trim_start().starts_with("listen"))?;
    line.split('"').nth(1)?.parse().ok()
}

/// A free port on 127.0.0.1 (the listener is closed again before the proxy binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().expect("local addr").port()
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gemini-proxy")
}

/// A config with one pool holding `keys`, clients alice and bob, pointed at `upstream`, with
/// fast probing and an admin listener on the next free port (see `listen_addr_of`). Tests adjust
/// it with plain text replacement (see `setup_with`).
pub fn config(listen: SocketAddr, upstream: &str, keys: &[&str]) -> String {
    let admin = format!("127.0.0.1:{}", free_port());
    let keys = keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
    format!(
        r#"
[server]
listen = "{listen}"
threads = 2
grace_period = "5s"

[upstream]
base_url = "{upstream}"
first_byte_timeout = "5s"
idle_timeout = "5s"
retry_backoff = "10ms"

[key_health]
probe_interval = "1s"

[admin]
listen = "{admin}"
token = "{ADMIN_TOKEN}"

[[pools]]
name = "default"
keys = [{keys}]

[[clients]]
name = "alice"
token = "{TOKEN}"

[[clients]]
name = "bob"
token = "{TOKEN_BOB}"
"#
    )
}

fn pipe_to(mut r: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(&mut r);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
}

impl Proxy {
    /// Writes `toml` (which must listen on `addr`) and starts `gemini-proxy run -c` on it.
    pub fn start_config(addr: SocketAddr, toml: &str) -> Proxy {
        Self::start_cmd(addr, Some(toml), &[], &[])
    }

    /// Starts the binary with `args` after `run` (a `-c` is added when `toml` is given).
    pub fn start_cmd(addr: SocketAddr, toml: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        Self::start_in(tempfile::tempdir().expect("temp dir"), addr, toml, args, env)
    }

    /// Starts in `dir` (its `data/` holds the state store: reuse a dir to restart with state).
    pub fn start_in(dir: tempfile::TempDir, addr: SocketAddr, toml: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let config_path = dir.path().join("proxy.toml");
        let mut cmd = Command::new(binary());
        cmd.arg("run").current_dir(dir.path());
        if let Some(t) = toml {
            std::fs::write(&config_path, t).expect("write config");
            cmd.arg("-c").arg(&config_path);
        }
        cmd.args(args).env_remove("GEMINI_API_KEYS").env_remove("GEMINI_PROXY_TOKENS").env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn gemini-proxy");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        pipe_to(child.stdout.take().expect("stdout"), stdout.clone());
        pipe_to(child.stderr.take().expect("stderr"), stderr.clone());
        let admin = toml.and_then(|t| listen_addr_of(t, "admin"));
        let tls = toml.and_then(|t| listen_addr_of(t, "tls"));
        let mut p = Proxy { child: Some(child), addr, stdout, stderr, dir, config_path, admin };
        p.wait_ready(tls);
        p
    }

    /// Waits until the listeners (client, admin, and `tls` if there is one) accept
    /// connections, or the process died.
    fn wait_ready(&mut self, tls: Option<SocketAddr>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("gemini-proxy exited during start-up ({status}):\n{}", self.stderr());
            }
            let accepting = |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok();
            if [Some(self.addr), self.admin, tls].iter().flatten().all(accepting) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("gemini-proxy did not start listening on {}:\n{}", self.addr, self.stderr());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin.expect("this proxy has an admin listener"), path)
    }

    /// Stops the process (SIGTERM, bounded wait) and hands back its directory, so that the
    /// caller can start a new process on the same state.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.signal("TERM");
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            if let Some(c) = self.child.as_mut() {
                let _ = c.kill();
            }
        }
        self.child = None;
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// Kills the process with SIGKILL (no shutdown work at all, as in a crash) and hands back
    /// its directory.
    pub fn crash(mut self) -> tempfile::TempDir {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// Stops the process gracefully and starts a new one on the same port, config and
    /// directory, and so on the same state store.
    pub fn restart(self) -> Proxy {
        let (addr, toml) = (self.addr, self.config_text());
        Proxy::start_in(self.stop(), addr, Some(&toml), &[], &[])
    }

    /// [`Proxy::restart`] after a SIGKILL instead of a graceful stop.
    pub fn restart_after_crash(self) -> Proxy {
        let (addr, toml) = (self.addr, self.config_text());
        Proxy::start_in(self.crash(), addr, Some(&toml), &[], &[])
    }

    fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_path).expect("read the config")
    }

    /// The state store's database.
    pub fn state_db(&self) -> PathBuf {
        self.dir.path().join("data").join("state.db")
    }

    /// Waits (bounded) until the state store holds a binding of `kind` (`owner`, `upload`) for
    /// `name`: the writer commits on its own schedule, about a second after the binding.
    pub fn wait_for_binding(&self, kind: &str, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let conn = rusqlite::Connection::open_with_flags(self.state_db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open the state store");
        loop {
            let found: i64 =
                conn.query_row("SELECT count(*) FROM binding WHERE kind = ?1 AND name = ?2", [kind, name], |r| r.get(0)).expect("query the state store");
            if found > 0 {
                return;
            }
            assert!(Instant::now() < deadline, "the {kind} binding was never committed to the state store");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Access-log records so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {l}")))
            .collect()
    }

    /// Waits (bounded) until the access log holds at least `n` records.
    pub fn wait_for_records(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.access_log();
            if log.len() >= n || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until the admin API's request log holds at least `n` rows; returns them,
    /// newest first. The state store's writer commits about once a second.
    pub async fn wait_for_request_rows(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = client().get(self.admin_url("/api/v1/requests")).bearer_auth(ADMIN_TOKEN).send().await.expect("admin request");
            assert_eq!(r.status(), 200, "GET /api/v1/requests");
            let rows: Vec<serde_json::Value> = r.json().await.expect("a JSON list");
            if rows.len() >= n || Instant::now() > deadline {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (bounded); returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A mock Gemini and a proxy in front of it.
pub struct Setup {
    pub mock: MockGemini,
    pub proxy: Proxy,
}

pub async fn setup(keys: &[&str]) -> Setup {
    setup_with(keys, |t| t).await
}

/// Like `setup`, with the config text edited by `edit` first.
pub async fn setup_with(keys: &[&str], edit: impl FnOnce(String) -> String) -> Setup {
    let mock = MockGemini::start(MockConfig::default()).await.expect("start mock");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start_config(addr, &edit(config(addr, &mock.base_url(), keys)));
    Setup { mock, proxy }
}

/// Adds `lines` at the end of section `[section]` of a config built by `config`.
pub fn in_section(toml: String, section: &str, lines: &str) -> String {
    let header = format!("[{section}]\n");
    toml.replacen(&header, &format!("{header}{lines}\n"), 1)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

pub fn generate_body(text: &str) -> serde_json::Value {
    serde_json::json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

/// POSTs a generateContent call with the alice token.
pub async fn generate(proxy: &Proxy, model: &str) -> reqwest::Response {
    generate_as(proxy, TOKEN, model).await
}

/// POSTs a generateContent call with `token` as the client's key.
pub async fn generate_as(proxy: &Proxy, token: &str, model: &str) -> reqwest::Response {
    client()
        .post(proxy.url(&format!("/v1beta/models/{model}:generateContent")))
        .header("x-goog-api-key", token)
        .json(&generate_body("hello"))
        .send()
        .await
        .expect("request")
}

/// GETs `path` from the admin API (admin token); asserts a 200 and returns the JSON.
pub async fn admin_get(proxy: &Proxy, path: &str) -> serde_json::Value {
    let r = client().get(proxy.admin_url(path)).bearer_auth(ADMIN_TOKEN).send().await.expect("admin request");
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.expect("JSON")
}

/// Sends raw bytes on a new connection and reads until the server closes or `within` passes.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(within)).unwrap();
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends a generateContent request on a kept-alive connection and reads its whole answer
/// (Content-Length framed); returns the status line.
pub fn keep_alive_request(conn: &mut TcpStream) -> String {
    let body = serde_json::to_string(&generate_body("hello")).unwrap();
    let req = format!(
        "POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(req.as_bytes()).expect("write");
    read_answer(conn)
}

/// Reads one answer framed by Content-Length from `conn`; returns its status line.
pub fn read_answer(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(conn.read(&mut byte).expect("read the head"), 1, "closed mid-head: {}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().parse().unwrap()))
        .expect("a Content-Length answer");
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).expect("read the body");
    head.lines().next().unwrap_or("").to_owned()
}

/// Reads until the server closes `conn` (Ok) or `within` passes (Err).
pub fn wait_closed(conn: &mut TcpStream, within: Duration) -> Result<(), String> {
    conn.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    match conn.read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!("unexpected bytes: {}", String::from_utf8_lossy(&buf[..n]))),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(format!("still open ({e})")),
    }
}

/// Keys the mock saw, in order, for requests whose path contains `path_part`.
pub fn keys_seen(mock: &MockGemini, path_part: &str) -> Vec<String> {
    mock.requests().into_iter().filter(|r| r.path.contains(path_part)).map(|r| r.key.unwrap_or_default()).collect()
}
