//! Turns a parsed [`ConfigFile`] into [`Settings`], collecting every problem with the place in
//! the file it comes from, so that `gemini-proxy check` can report them all at once.

use super::file::{AccessSection, ConfigFile, JwtSection, KeyEntry, KeyTable, OneOrMany, PolicySection};
use super::settings::*;
use super::units::{ByteSize, HumanDuration};
use crate::secret::{sha256, Secret};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// One thing wrong with a config, with the byte range in the source it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// Reads environment variables named by `key_env` / `token_env`; swapped out in tests.
pub trait EnvLookup {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

struct Collector {
    problems: Vec<Problem>,
}

impl Collector {
    fn at<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        self.near(Some(spanned.span()), message);
    }
    fn global(&mut self, message: impl Into<String>) {
        self.near(None, message);
    }
    /// A limit written as 0, at its place: it would refuse everything. `name` as the message
    /// shows it (`access.max_streams`, `client "a": rpm`).
    fn refuse_zero<T: Default + PartialEq>(&mut self, limit: &Option<Spanned<T>>, name: &str) {
        if let Some(v) = limit.as_ref().filter(|v| *v.get_ref() == T::default()) {
            self.at(v, format!("{name} = 0 would refuse everything; leave it out for no limit"));
        }
    }
    /// At `span` when the file has a place for the problem, else about the whole file.
    ///
    /// Messages quote no value that failed its check (it could be anything, a secret pasted in
    /// the wrong place included: the line and column say where to look); what they do name
    /// (valid names and addresses) passes through the key filter all the same.
    fn near(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let message = message.into();
        let message = match crate::gemini::api_key::redact_keys(&message) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(redacted) => redacted,
        };
        self.problems.push(Problem { span, message });
    }
}

/// An optional number (or flag) of the file without its place in it.
fn unspanned<T: Copy>(v: &Option<Spanned<T>>) -> Option<T> {
    v.as_ref().map(|s| *s.get_ref())
}

fn dur(v: Option<HumanDuration>, default: Duration) -> Duration {
    v.map(|d| d.0).unwrap_or(default)
}

fn size(c: &mut Collector, v: &Option<Spanned<ByteSize>>, default: u64, min: u64, max: u64, what: &str) -> usize {
    match v {
        None => default as usize,
        Some(s) => {
            let n = s.get_ref().0;
            if n < min || n > max {
                c.at(s, format!("{what} must be between {min} and {max} bytes, got {n}"));
                default as usize
            } else {
                n as usize
            }
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

/// Validates `file`; returns the settings or every problem found.
pub fn validate(file: ConfigFile, env: &dyn EnvLookup) -> Result<Settings, Vec<Problem>> {
    let mut c = Collector { problems: Vec::new() };

    // [server]
    let s = &file.server;
    let mut listen = Vec::new();
    match &s.listen {
        None => listen.push(DEFAULT_LISTEN.parse().expect("default listen address parses")),
        Some(l) => {
            let written = OneOrMany::spanned(l);
            if written.is_empty() {
                c.at(l, "server.listen needs at least one address");
            }
            for a in &written {
                match a.get_ref().parse::<SocketAddr>() {
                    Ok(addr) if listen.contains(&addr) => c.at(a, format!("listen address {} appears twice", a.get_ref())),
                    Ok(addr) => listen.push(addr),
                    Err(_) => c.at(a, "invalid listen address: expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080"),
                }
            }
        }
    }
    let threads = match s.threads {
        Some(n) if n > 0 => n,
        _ => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
    };
    let public_url = s.public_url.as_ref().and_then(|u| match parse_origin(u.get_ref()) {
        Ok(o) => Some(o),
        Err(e) => {
            c.at(u, e);
            None
        }
    });
    let server = ServerSettings {
        listen,
        threads,
        work_stealing: s.work_stealing.unwrap_or(false),
        public_url,
        body_limit: size(&mut c, &s.body_limit, 20 << 20, 1024, 1 << 30, "server.body_limit"),
        buffered_bytes_limit: size(&mut c, &s.buffered_bytes_limit, 1 << 30, 1 << 20, 1 << 40, "server.buffered_bytes_limit"),
        max_header_bytes: size(&mut c, &s.max_header_bytes, 64 << 10, 1024, 1 << 20, "server.max_header_bytes"),
        header_timeout: dur(s.header_timeout, Duration::from_secs(30)),
        body_timeout: dur(s.body_timeout, Duration::from_secs(120)),
        keepalive_timeout: dur(s.keepalive_timeout, Duration::from_secs(75)),
        grace_period: dur(s.grace_period, Duration::from_secs(30)),
    };
    if server.body_limit > server.buffered_bytes_limit {
        // Point at the one the user wrote (either, or both: the defaults never conflict).
        let written = s.body_limit.as_ref().or(s.buffered_bytes_limit.as_ref());
        c.near(written.map(Spanned::span), "server.body_limit must not exceed server.buffered_bytes_limit");
    }

    // [upstream]
    let u = &file.upstream;
    let base = u.base_url.as_ref().map(|b| b.get_ref().as_str()).unwrap_or(DEFAULT_BASE_URL);
    let parsed = match parse_base_url(base) {
        Ok(p) => p,
        Err(e) => {
            match &u.base_url {
                Some(b) => c.at(b, e),
                None => c.global(e),
            }
            parse_base_url(DEFAULT_BASE_URL).expect("default base URL parses")
        }
    };
    let max_attempts = match &u.max_attempts {
        None => 4,
        Some(m) if (1..=32).contains(m.get_ref()) => *m.get_ref(),
        Some(m) => {
            c.at(m, "upstream.max_attempts must be between 1 and 32");
            4
        }
    };
    let upstream = UpstreamSettings {
        base_url: base.trim_end_matches('/').to_owned(),
        tls: parsed.tls,
        host: parsed.host,
        port: parsed.port,
        host_header: parsed.host_header,
        path_prefix: parsed.path_prefix,
        connect_timeout: dur(u.connect_timeout, Duration::from_secs(10)),
        first_byte_timeout: dur(u.first_byte_timeout, Duration::from_secs(600)),
        idle_timeout: dur(u.idle_timeout, Duration::from_secs(300)),
        keepalive_idle: dur(u.keepalive_idle, Duration::from_secs(55)),
        max_attempts,
        retry_backoff: dur(u.retry_backoff, Duration::from_millis(50)),
        strip_accept_encoding: u.strip_accept_encoding.unwrap_or(true),
        ca_file: u.ca_file.as_ref().and_then(|f| match std::fs::read(f.get_ref()) {
            Ok(pem) => match crate::tls::certs::parse_chain(&pem, f.get_ref()) {
                Ok(_) => Some(f.get_ref().clone()),
                Err(e) => {
                    c.at(f, format!("upstream.ca_file: {e}"));
                    None
                }
            },
            Err(e) => {
                c.at(f, format!("cannot read upstream.ca_file {}: {e}", f.get_ref()));
                None
            }
        }),
    };

    // [[pools]]
    let mut pools: Vec<PoolSettings> = Vec::new();
    let mut all_secrets: HashSet<String> = HashSet::new();
    let file_pools = file.pools.as_ref().map(|p| p.get_ref().as_slice()).unwrap_or_default();
    if file_pools.is_empty() {
        // At `pools = []` when that is written. A file without pools has no line for what it
        // lacks, so line 1: where a reader (and the editor's gutter) looks for what the whole
        // file misses. Any other line would blame a field that is right; a client naming an
        // undefined pool gets its own problem at that name.
        let at = file.pools.as_ref().map(Spanned::span).unwrap_or(0..0);
        c.near(Some(at), "no [[pools]] defined: add at least one pool with keys (or set GEMINI_API_KEYS and run without a config file)");
    }
    for (nth, p) in file_pools.iter().enumerate() {
        let name = p.name.get_ref().clone();
        // How other problems name this pool: by its name once that is known to be a name, else
        // by its place (a refused name is not quoted).
        let label = if valid_name(&name) { format!("pool {name:?}") } else { format!("[[pools]] entry {}", nth + 1) };
        if !valid_name(&name) {
            c.at(&p.name, "a pool name must be 1-64 characters of letters, digits, '-', '_', '.', '@'");
        } else if pools.iter().any(|q| q.name == name) {
            c.at(&p.name, format!("pool name {name:?} is used twice"));
        }
        let strategy = match &p.strategy {
            None => Strategy::RoundRobin,
            Some(s) => Strategy::parse(s.get_ref()).unwrap_or_else(|| {
                c.at(s, "unknown strategy: use round_robin, weighted, least_inflight or random");
                Strategy::RoundRobin
            }),
        };
        let mut keys: Vec<KeySettings> = Vec::with_capacity(p.keys.len());
        // Sets, not scans: pools may hold 100,000 keys.
        let mut seen_secrets: HashSet<&str> = HashSet::with_capacity(p.keys.len());
        let mut seen_names: HashSet<String> = HashSet::with_capacity(p.keys.len());
        let parsed: Vec<_> = p.keys.iter().map(|e| (e, key_from_entry(&mut c, e, env))).collect();
        for (entry, key) in &parsed {
            let Some(key) = key else { continue };
            if !seen_secrets.insert(key.secret.expose()) {
                c.at(entry, format!("key {} appears twice in {label}", key.secret.fingerprint()));
                continue;
            }
            if !seen_names.insert(key.name.clone()) {
                c.at(entry, format!("key name {:?} is used twice in {label}", key.name));
                continue;
            }
            all_secrets.insert(key.secret.expose().to_owned());
            keys.push(key.clone());
        }
        pools.push(PoolSettings { name, strategy, keys });
    }

    // [key_health]
    let k = &file.key_health;
    let d = KeyHealthSettings::default();
    let breaker_threshold = match &k.breaker_threshold {
        None => d.breaker_threshold,
        Some(t) if *t.get_ref() >= 1 => *t.get_ref(),
        Some(t) => {
            c.at(t, "key_health.breaker_threshold must be at least 1");
            d.breaker_threshold
        }
    };
    let key_health = KeyHealthSettings {
        default_cooldown: dur(k.default_cooldown, d.default_cooldown),
        breaker_threshold,
        breaker_open: dur(k.breaker_open, d.breaker_open),
        egress_window: dur(k.egress_window, d.egress_window),
        egress_pause: dur(k.egress_pause, d.egress_pause),
        probe_interval: dur(k.probe_interval, d.probe_interval),
        probe_model: k.probe_model.clone().unwrap_or(d.probe_model),
    };

    // [jwt] (before the clients: a client without a token needs JWTs to be reachable)
    let jwt = file.jwt.as_ref().and_then(|j| jwt_settings(&mut c, j, &pools, env));

    // [[clients]]
    let mut clients: Vec<ClientSettings> = Vec::new();
    for (nth, cl) in file.clients.iter().enumerate() {
        let name = cl.name.get_ref().clone();
        // As for pools: a refused name is not quoted, the entry is named by its place.
        let label = if valid_name(&name) { format!("client {name:?}") } else { format!("[[clients]] entry {}", nth + 1) };
        if !valid_name(&name) {
            c.at(&cl.name, "a client name must be 1-64 characters of letters, digits, '-', '_', '.', '@'");
        } else if clients.iter().any(|o| o.name == name) {
            c.at(&cl.name, format!("client name {name:?} is used twice"));
        }
        let sources = [cl.token.is_some(), cl.token_env.is_some(), cl.token_sha256.is_some()].iter().filter(|b| **b).count();
        if sources > 1 || (sources == 0 && file.jwt.is_none()) {
            c.at(&cl.name, format!("{label} needs exactly one of token, token_env or token_sha256 (or none, with [jwt], for a client that only uses JWTs)"));
            continue;
        }
        let digest = if let Some(t) = &cl.token {
            check_token(&mut c, t, t.get_ref(), &label, &all_secrets).map(|t| sha256(t.as_bytes()))
        } else if let Some(var) = &cl.token_env {
            match env.var(var.get_ref()) {
                Some(t) => check_token(&mut c, var, &t, &label, &all_secrets).map(|t| sha256(t.as_bytes())),
                None => {
                    c.at(var, format!("environment variable {} (token of {label}) is not set", var.get_ref()));
                    None
                }
            }
        } else if let Some(h) = &cl.token_sha256 {
            match parse_sha256_hex(h.get_ref()) {
                Some(d) => Some(d),
                None => {
                    c.at(h, "token_sha256 must be 64 hexadecimal digits");
                    None
                }
            }
        } else {
            None
        };
        if sources == 1 && digest.is_none() {
            continue;
        }
        let fields = PolicySection {
            pools: cl.pools.clone(),
            models: cl.models.clone(),
            rpm: cl.rpm.clone(),
            tpm: cl.tpm.clone(),
            tpd: cl.tpd.clone(),
            concurrency: cl.concurrency.clone(),
        };
        let policy = policy(&mut c, &fields, &pools, &label);
        if let Some(d) = digest {
            if clients.iter().any(|o| o.token_sha256 == Some(d)) {
                c.at(&cl.name, format!("{label} has the same token as another client"));
            }
        }
        clients.push(ClientSettings { name, token_sha256: digest, policy });
    }

    // [access]
    let access = access_settings(&mut c, &file.access);

    // [tls]
    let tls = file.tls.as_ref().map(|t| tls_settings(&mut c, t, &server.listen));

    // Every data-plane listener, with the place it is written at (none for the default).
    let tls_list = file.tls.as_ref().and_then(|t| t.listen.as_ref());
    let data_plane: Vec<_> = server
        .listen
        .iter()
        .map(|a| ("server.listen", *a, written_at(s.listen.as_ref(), *a)))
        .chain(tls.iter().flat_map(|t| &t.listen).map(|a| ("tls.listen", *a, written_at(tls_list, *a))))
        .collect();

    // The proxy never starts open to the world (pointed at the first public address).
    let public = data_plane.iter().find(|(_, a, _)| !a.ip().is_loopback());
    if let Some((_, _, at)) = public.filter(|_| file.clients.is_empty() && file.jwt.is_none()) {
        let msg = "no client token is configured, so the proxy may only listen on loopback addresses: add a [[clients]] entry with a token, or [jwt] (or set GEMINI_PROXY_TOKENS), before listening on a public address";
        c.near(at.clone(), msg);
    }

    // [hygiene]
    let lower = |v: &Option<Vec<String>>, d: &[&str]| -> Vec<String> {
        match v {
            Some(list) => list.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
            None => d.iter().map(|s| s.to_string()).collect(),
        }
    };
    let hygiene = HygieneSettings {
        strip_request: lower(&file.hygiene.strip_request_headers, DEFAULT_STRIP_REQUEST),
        strip_response: lower(&file.hygiene.strip_response_headers, DEFAULT_STRIP_RESPONSE),
    };

    // [log]
    let json = match &file.log.format {
        None => true,
        Some(f) if f.get_ref() == "json" => true,
        Some(f) if f.get_ref() == "text" => false,
        Some(f) => {
            c.at(f, "log.format must be \"json\" or \"text\"");
            true
        }
    };
    let level = match &file.log.level {
        None => "info".to_owned(),
        Some(l) => crate::telemetry::log_filter(l.get_ref()).unwrap_or_else(|e| {
            c.at(l, format!("log.level {e}: write a level (error, warn, info, debug, trace or off), or directives such as info,gemini_proxy=debug"));
            "info".to_owned()
        }),
    };
    let log = LogSettings { access_log: file.log.access_log.unwrap_or(true), level, json };

    // [admin]
    let a = &file.admin;
    let admin_listen = match &a.listen {
        None => DEFAULT_ADMIN_LISTEN.parse().expect("default admin address parses"),
        Some(l) => match l.get_ref().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                c.at(l, "invalid admin.listen: expected IP:PORT such as 127.0.0.1:9090");
                DEFAULT_ADMIN_LISTEN.parse().expect("default admin address parses")
            }
        },
    };
    let mut clashing = data_plane.iter().filter(|(_, l, _)| sockets_overlap(*l, admin_listen));
    let clash = if a.enabled == Some(false) { None } else { clashing.next() };
    if let Some((what, addr, listener_at)) = clash {
        let (admin_is, at) = match &a.listen {
            // Both written: at the later one, where reading down the file the clash appears.
            Some(l) => ("", listener_at.clone().into_iter().chain([l.span()]).max_by_key(|s| s.start)),
            // The default address: at the listener that takes its port.
            None => (" (default)", listener_at.clone()),
        };
        c.near(
            at,
            format!("admin.listen{admin_is} {admin_listen} must not share its port with {what} {addr} (a wildcard address such as 0.0.0.0 takes the port on every address)"),
        );
    }
    let admin_token = match (&a.token, &a.token_env) {
        (Some(_), Some(t)) => {
            c.at(t, "admin needs at most one of token and token_env");
            None
        }
        (Some(t), None) if t.get_ref().trim().len() < 16 => {
            c.at(t, "admin.token must be at least 16 characters");
            None
        }
        (Some(t), None) => Some(sha256(t.get_ref().trim().as_bytes())),
        (None, Some(var)) => match env.var(var.get_ref()) {
            Some(t) if t.trim().len() >= 16 => Some(sha256(t.trim().as_bytes())),
            Some(_) => {
                c.at(var, format!("the admin token in {} must be at least 16 characters", var.get_ref()));
                None
            }
            None => {
                c.at(var, format!("environment variable {} (admin token) is not set", var.get_ref()));
                None
            }
        },
        (None, None) => None,
    };
    let password_hash = a.password_hash.as_ref().and_then(|h| match argon2::PasswordHash::new(h.get_ref()) {
        Ok(_) => Some(h.get_ref().clone()),
        Err(e) => {
            c.at(h, format!("admin.password_hash is not an Argon2 PHC string ({e}); make one with `gemini-proxy hash-password`"));
            None
        }
    });
    let admin = AdminSettings {
        enabled: a.enabled.unwrap_or(true),
        listen: admin_listen,
        token_sha256: admin_token,
        password_hash,
        session_ttl: dur(a.session_ttl, Duration::from_secs(12 * 3600)),
    };

    // [state]
    let st = &file.state;
    let state = StateSettings {
        request_log_days: st.request_log_days.unwrap_or(7),
        request_log_rows: st.request_log_rows.unwrap_or(1_000_000),
        request_log_ok_per_second: st.request_log_ok_per_second.unwrap_or(1_000),
        usage_days: st.usage_days.unwrap_or(90),
        config_versions: st.config_versions.unwrap_or(50).max(1),
    };

    if c.problems.is_empty() {
        Ok(Settings { server, upstream, pools, key_health, clients, hygiene, log, admin, state, access, jwt, tls })
    } else {
        Err(c.problems)
    }
}

/// `client` names the client as problems do (`client "alice"`).
fn check_token(c: &mut Collector, at: &Spanned<String>, token: &str, client: &str, secrets: &HashSet<String>) -> Option<String> {
    let token = token.trim();
    if token.is_empty() {
        c.at(at, format!("the token of {client} is empty"));
        return None;
    }
    if token.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        c.at(at, format!("the token of {client} contains whitespace or control characters"));
        return None;
    }
    if secrets.contains(token) {
        c.at(at, format!("the token of {client} is also an upstream key: an upstream key is never a valid client token"));
        return None;
    }
    Some(token.to_owned())
}

fn key_from_entry(c: &mut Collector, entry: &Spanned<KeyEntry>, env: &dyn EnvLookup) -> Option<KeySettings> {
    let (secret, name, weight) = match entry.get_ref() {
        KeyEntry::Plain(s) => (s.clone(), None, 1),
        KeyEntry::Table(KeyTable { key, key_env, name, weight }) => {
            let secret = match (key, key_env) {
                (Some(k), None) => k.clone(),
                (None, Some(var)) => match env.var(var) {
                    Some(v) => v,
                    None => {
                        c.at(entry, format!("environment variable {var} (named by key_env) is not set"));
                        return None;
                    }
                },
                _ => {
                    c.at(entry, "a key table needs exactly one of key or key_env");
                    return None;
                }
            };
            if let Some(0) = weight {
                c.at(entry, "key weight must be at least 1");
                return None;
            }
            (secret, name.clone(), weight.unwrap_or(1))
        }
    };
    let secret = secret.trim().to_owned();
    if secret.is_empty() {
        c.at(entry, "empty key");
        return None;
    }
    if secret.chars().any(|ch| ch.is_whitespace() || ch.is_control() || !ch.is_ascii()) {
        c.at(entry, "a key may not contain whitespace, control or non-ASCII characters");
        return None;
    }
    let secret = Secret::new(secret);
    let name = match name {
        Some(n) if valid_name(&n) => n,
        Some(_) => {
            c.at(entry, "a key name must be 1-64 characters of letters, digits, '-', '_', '.', '@'");
            return None;
        }
        None => format!("key-{}", secret.fingerprint()),
    };
    Some(KeySettings { name, secret, weight })
}

fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

struct ParsedBase {
    tls: bool,
    host: String,
    port: u16,
    host_header: String,
    path_prefix: String,
}

fn parse_base_url(s: &str) -> Result<ParsedBase, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("invalid upstream.base_url: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("upstream.base_url must start with http:// or https://".into()),
    };
    let authority = uri.authority().ok_or_else(|| "upstream.base_url has no host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("upstream.base_url must not contain credentials".into());
    }
    if uri.query().is_some() {
        return Err("upstream.base_url must not have a query string".into());
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let default_port = if tls { 443 } else { 80 };
    let port = authority.port_u16().unwrap_or(default_port);
    let host_header = if port == default_port { authority.host().to_owned() } else { format!("{}:{port}", authority.host()) };
    let path_prefix = uri.path().trim_end_matches('/').to_owned();
    Ok(ParsedBase { tls, host, port, host_header, path_prefix })
}

fn parse_origin(s: &str) -> Result<String, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("invalid server.public_url {s:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("server.public_url {s:?} must start with http:// or https://")),
    }
    if uri.authority().is_none() {
        return Err(format!("server.public_url {s:?} has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("server.public_url {s:?} must be an origin only (scheme, host and port), without a path"));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// A client's (or the JWT default) policy, with pool names resolved.
fn policy(c: &mut Collector, f: &PolicySection, pools: &[PoolSettings], who: &str) -> Policy {
    let mut out =
        Policy { rpm: unspanned(&f.rpm), tpm: unspanned(&f.tpm), tpd: unspanned(&f.tpd), concurrency: unspanned(&f.concurrency), ..Default::default() };
    let who_what = |what: &str| format!("{who}: {what}");
    c.refuse_zero(&f.rpm, &who_what("rpm"));
    c.refuse_zero(&f.tpm, &who_what("tpm"));
    c.refuse_zero(&f.tpd, &who_what("tpd"));
    c.refuse_zero(&f.concurrency, &who_what("concurrency"));
    for p in f.pools.iter().flatten() {
        match pools.iter().position(|q| &q.name == p.get_ref()) {
            Some(i) => out.pools.push(i),
            None => c.at(p, format!("{who} names a pool that is not defined")),
        }
    }
    for m in f.models.iter().flatten() {
        let pat = m.get_ref().trim().trim_start_matches("models/").to_owned();
        if pat.is_empty() {
            c.at(m, format!("{who}: empty model pattern"));
        } else {
            out.models.push(pat);
        }
    }
    out
}

fn nets(c: &mut Collector, list: &Option<Vec<Spanned<String>>>, what: &str) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for item in list.iter().flatten() {
        let s = item.get_ref().trim();
        let parsed = s.parse::<ipnet::IpNet>().or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            // Stored in canonical form, so that IPv4-mapped IPv6 lists match IPv4 peers.
            Ok(n) => out.push(canonical_net(n)),
            Err(_) => c.at(item, format!("{what}: not an address or a CIDR block (10.0.0.0/8, 2001:db8::/32)")),
        }
    }
    out
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`: addresses are compared in their canonical form.
pub fn canonical_net(n: ipnet::IpNet) -> ipnet::IpNet {
    match n {
        ipnet::IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map(ipnet::IpNet::V4).unwrap_or(n),
            _ => n,
        },
        v4 => v4,
    }
}

fn access_settings(c: &mut Collector, a: &AccessSection) -> AccessSettings {
    c.refuse_zero(&a.per_ip_rpm, "access.per_ip_rpm");
    c.refuse_zero(&a.global_rpm, "access.global_rpm");
    c.refuse_zero(&a.max_connections, "access.max_connections");
    c.refuse_zero(&a.max_streams, "access.max_streams");
    AccessSettings {
        allow: nets(c, &a.allow, "access.allow"),
        deny: nets(c, &a.deny, "access.deny"),
        trusted_proxies: nets(c, &a.trusted_proxies, "access.trusted_proxies"),
        per_ip_rpm: unspanned(&a.per_ip_rpm),
        global_rpm: unspanned(&a.global_rpm),
        max_connections: unspanned(&a.max_connections),
        max_streams: unspanned(&a.max_streams),
        cors: cors_origins(c, &a.cors_origins),
    }
}

/// Where `addr` is written in a listen list (its first entry that reads as it), if it is.
fn written_at(list: Option<&Spanned<OneOrMany>>, addr: SocketAddr) -> Option<Range<usize>> {
    OneOrMany::spanned(list?).into_iter().find(|a| a.get_ref().parse() == Ok(addr)).map(|a| a.span())
}

/// Whether two listeners would fight over one port: the same port, and the same address or a
/// wildcard (`0.0.0.0`, `[::]`) on either side (a wildcard binds every address of its family,
/// and on Linux `[::]` takes IPv4 too unless IPV6_V6ONLY is set).
fn sockets_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `access.cors_origins`: `"*"` alone, or origins as browsers send them.
fn cors_origins(c: &mut Collector, list: &Option<Vec<Spanned<String>>>) -> CorsOrigins {
    let Some(list) = list else { return CorsOrigins::None };
    if let Some(star) = list.iter().find(|o| o.get_ref().trim() == "*") {
        if list.len() > 1 {
            c.at(star, "access.cors_origins: \"*\" already allows every origin; list it alone");
        }
        return CorsOrigins::Any;
    }
    let mut out = Vec::new();
    for o in list {
        let origin = o.get_ref().trim().trim_end_matches('/').to_ascii_lowercase();
        let valid = origin.parse::<http::Uri>().ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.authority().is_some_and(|a| !a.as_str().contains('@') && !a.host().is_empty())
                && matches!(u.path(), "" | "/")
                && u.query().is_none()
        });
        if valid {
            out.push(origin);
        } else {
            c.at(o, "access.cors_origins: not an origin like \"https://app.example.com\" (scheme, host and port only) or \"*\"");
        }
    }
    if out.is_empty() {
        CorsOrigins::None
    } else {
        CorsOrigins::List(out)
    }
}

fn jwt_settings(c: &mut Collector, section: &Spanned<JwtSection>, pools: &[PoolSettings], env: &dyn EnvLookup) -> Option<JwtSettings> {
    use crate::auth::jwt::{parse_algorithm, JwtKeyError, JwtKeySources, JwtVerifier};
    let j = section.get_ref();
    let mut sources = JwtKeySources::default();
    let mut ok = true;
    match (&j.secret, &j.secret_env) {
        (Some(s), None) => sources.hs256_secret = Some(s.get_ref().as_bytes().to_vec()),
        (None, Some(var)) => match env.var(var.get_ref()) {
            Some(v) => sources.hs256_secret = Some(v.into_bytes()),
            None => {
                c.at(var, format!("environment variable {} (JWT secret) is not set", var.get_ref()));
                ok = false;
            }
        },
        (Some(s), Some(_)) => {
            c.at(s, "jwt needs at most one of secret and secret_env");
            ok = false;
        }
        (None, None) => {}
    }
    let mut read = |f: &Option<Spanned<String>>, what: &str| -> Option<String> {
        let f = f.as_ref()?;
        match std::fs::read_to_string(f.get_ref()) {
            Ok(t) => Some(t),
            Err(e) => {
                c.at(f, format!("cannot read the {what} {}: {e}", f.get_ref()));
                ok = false;
                None
            }
        }
    };
    sources.public_key_pem = read(&j.public_key_file, "JWT public key file");
    sources.jwks = read(&j.jwks_file, "JWKS file");
    let mut algorithms = Vec::new();
    for a in j.algorithms.iter().flat_map(|l| l.get_ref()) {
        match parse_algorithm(a.get_ref()) {
            Some(alg) => algorithms.push(alg),
            None => {
                c.at(a, "unsupported JWT algorithm: use HS256, RS256 or ES256");
                ok = false;
            }
        }
    }
    let claims_ok = jwt_claims_ok(c, j);
    let default_policy = policy(c, &j.policy, pools, "jwt.policy");
    if !ok {
        return None;
    }
    let text = |f: &Option<Spanned<String>>| f.as_ref().map(|v| v.get_ref().clone());
    let claim = text(&j.client_claim).unwrap_or_else(|| "sub".to_owned());
    let audience = j.audience.iter().flat_map(|l| l.get_ref()).map(|a| a.get_ref().clone()).collect();
    let leeway = j.leeway.map(|d| d.0).unwrap_or(std::time::Duration::from_secs(30));
    // Built even when a claim setting is refused, so that a refused key is reported too.
    match JwtVerifier::new(&sources, &algorithms, text(&j.issuer), audience, claim, text(&j.policy_claim), leeway) {
        Ok(_) if !claims_ok => None,
        Ok(v) => Some(JwtSettings { verifier: std::sync::Arc::new(v), default_policy }),
        Err(e) => {
            // At the field that set the refused key (named, never quoted).
            let field = |name: &'static str, f: &Option<Spanned<String>>| f.as_ref().map(|f| (name, f.span()));
            let at = match &e {
                JwtKeyError::ShortSecret => field("secret", &j.secret).or_else(|| field("secret_env", &j.secret_env)),
                JwtKeyError::PublicKey => field("public_key_file", &j.public_key_file),
                JwtKeyError::Jwks(_) | JwtKeyError::JwksKey(_) => field("jwks_file", &j.jwks_file),
                // No key left: with no key source at all, the section, which sets none; else
                // the algorithms that left every key out, or the JWKS that held no RSA/EC key.
                JwtKeyError::NoUsableKey if j.secret.is_none() && j.secret_env.is_none() && j.public_key_file.is_none() && j.jwks_file.is_none() => None,
                JwtKeyError::NoUsableKey => {
                    j.algorithms.as_ref().filter(|l| !l.get_ref().is_empty()).map(|l| ("algorithms", l.span())).or_else(|| field("jwks_file", &j.jwks_file))
                }
            };
            match at {
                Some((name, span)) => c.near(Some(span), format!("jwt.{name}: {e}")),
                None => c.at(section, format!("[jwt]: {e}")),
            }
            None
        }
    }
}

/// Refuses, at their places, the `[jwt]` settings that written empty would refuse every token
/// or quietly turn a check off (absent, each has a meaning of its own: no `iss` check, no
/// `aud` check, `sub`, no policy claim, what the keys support). True when there is none.
fn jwt_claims_ok(c: &mut Collector, j: &JwtSection) -> bool {
    let before = c.problems.len();
    fn blank(f: &Option<Spanned<String>>) -> Option<&Spanned<String>> {
        f.as_ref().filter(|v| v.get_ref().trim().is_empty())
    }
    if let Some(v) = blank(&j.issuer) {
        c.at(v, "jwt.issuer is empty: no token carries that issuer, so every token would be refused; write your tokens' iss, or omit issuer to skip the check");
    }
    if let Some(v) = blank(&j.client_claim) {
        c.at(v, "jwt.client_claim is empty: no token names its client in a claim without a name, so every token would be refused; omit client_claim for sub");
    }
    if let Some(v) = blank(&j.policy_claim) {
        c.at(v, "jwt.policy_claim is empty: no token carries a policy in a claim without a name, so tokens' policies would be ignored; name the claim, or omit policy_claim");
    }
    if let Some(l) = &j.audience {
        if l.get_ref().is_empty() {
            c.at(l, "jwt.audience = [] turns the audience check off: list the audiences your tokens are for, or omit audience to skip the check");
        }
        for a in l.get_ref().iter().filter(|a| a.get_ref().trim().is_empty()) {
            c.at(a, "jwt.audience: an empty audience is no token's aud; remove it");
        }
    }
    if let Some(l) = j.algorithms.as_ref().filter(|l| l.get_ref().is_empty()) {
        c.at(l, "jwt.algorithms = [] would accept every algorithm the keys support, not none: list the accepted ones (HS256, RS256, ES256), or omit algorithms for what the keys support");
    }
    c.problems.len() == before
}

fn tls_settings(c: &mut Collector, t: &super::file::TlsSection, plain: &[SocketAddr]) -> TlsSettings {
    let mut listen = Vec::new();
    for a in t.listen.as_ref().map(OneOrMany::spanned).unwrap_or_default() {
        match a.get_ref().parse::<SocketAddr>() {
            Ok(addr) if plain.contains(&addr) || listen.contains(&addr) => {
                c.at(&a, format!("TLS listen address {} is also used by another listener", a.get_ref()))
            }
            Ok(addr) => listen.push(addr),
            Err(_) => c.at(&a, "invalid TLS listen address: expected IP:PORT such as 0.0.0.0:443"),
        }
    }
    let mut certificates = Vec::new();
    for cert in &t.certificates {
        match crate::tls::certs::load_files(cert.cert_file.get_ref(), cert.key_file.get_ref()) {
            Ok(loaded) => {
                let name = cert.name.clone().or_else(|| loaded.info.names.first().cloned()).unwrap_or_else(|| cert.cert_file.get_ref().clone());
                certificates.push(StaticCert { name, default: unspanned(&cert.default).unwrap_or(false), loaded });
            }
            Err(e) => c.at(&cert.cert_file, format!("tls certificate: {e}")),
        }
    }
    if let Some(second) = t.certificates.iter().filter_map(|x| x.default.as_ref().filter(|d| *d.get_ref())).nth(1) {
        c.at(second, "at most one [[tls.certificates]] may be the default");
    }
    let self_signed = t.self_signed.as_ref().map(|s| {
        if s.names.get_ref().is_empty() {
            c.at(&s.names, "tls.self_signed.names needs at least one name");
        }
        if let Some(name) = crate::tls::self_signed::unusable_name(s.names.get_ref()) {
            let nth = s.names.get_ref().iter().position(|n| n == name).map_or(0, |i| i + 1);
            c.at(&s.names, format!("tls.self_signed.names: name {nth} cannot be in a certificate: write a DNS name in ASCII (an internationalized one in its xn-- form) or an IP address"));
        }
        s.names.get_ref().clone()
    });
    let acme = t.acme.as_ref().and_then(|a| {
        let directory = match a.directory.get_ref().as_str() {
            "letsencrypt" => LETSENCRYPT.to_owned(),
            "letsencrypt-staging" => LETSENCRYPT_STAGING.to_owned(),
            d if d.starts_with("https://") => d.to_owned(),
            _ => {
                c.at(&a.directory, "acme.directory must be an https:// URL, `letsencrypt` or `letsencrypt-staging`");
                return None;
            }
        };
        if a.names.get_ref().is_empty() || a.names.get_ref().iter().any(|n| n.trim().is_empty() || n.contains('*')) {
            c.at(&a.names, "acme.names needs at least one DNS name (wildcards need DNS-01, which is not supported)");
        }
        let challenge = match a.challenge.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("http-01") => AcmeChallenge::Http01,
            Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
            Some(_) => {
                c.at(a.challenge.as_ref().expect("matched Some"), "unknown ACME challenge: use http-01 or tls-alpn-01");
                AcmeChallenge::Http01
            }
        };
        // At the challenge when it is written; http-01 is also the default, then at the directory.
        let challenge_at = a.challenge.as_ref().map(|ch| ch.span()).unwrap_or_else(|| a.directory.span());
        if challenge == AcmeChallenge::TlsAlpn01 && listen.is_empty() {
            c.near(Some(challenge_at.clone()), "acme tls-alpn-01 needs a TLS listener ([tls] listen)");
        }
        if challenge == AcmeChallenge::Http01 && plain.is_empty() {
            c.near(Some(challenge_at), "acme http-01 needs a plain listener (server.listen) on the validation port");
        }
        if listen.is_empty() {
            c.at(&a.directory, "[tls.acme] issues certificates for TLS listeners: set [tls] listen");
        }
        let directory_ca_pem = a.directory_ca_file.as_ref().and_then(|f| match std::fs::read_to_string(f.get_ref()) {
            Ok(pem) => Some(pem),
            Err(e) => {
                c.at(f, format!("cannot read acme.directory_ca_file {}: {e}", f.get_ref()));
                None
            }
        });
        let contact = a.contact.iter().map(|m| if m.starts_with("mailto:") { m.clone() } else { format!("mailto:{m}") }).collect();
        Some(AcmeSettings {
            directory,
            contact,
            names: a.names.get_ref().iter().map(|n| n.trim().to_ascii_lowercase()).collect(),
            challenge,
            renew_before: dur(a.renew_before, Duration::from_secs(30 * 86_400)),
            check_interval: dur(a.check_interval, Duration::from_secs(3600)),
            retry_backoff: dur(a.retry_backoff, Duration::from_secs(60)),
            directory_ca_pem,
        })
    });
    // (Counted as configured, not as loaded: a file that failed to load has its own error.)
    if !listen.is_empty() && t.certificates.is_empty() && self_signed.is_none() && t.acme.is_none() {
        // At the listeners: they are what needs the certificate (`listen` is set when non-empty).
        c.near(t.listen.as_ref().map(Spanned::span), "TLS listeners need a certificate: [[tls.certificates]], [tls.self_signed] or [tls.acme]");
    }
    TlsSettings {
        listen,
        http2: t.http2.unwrap_or(true),
        handshake_timeout: dur(t.handshake_timeout, Duration::from_secs(10)),
        certificates,
        self_signed,
        acme,
    }
}
