//! The validated, internal configuration the rest of the proxy reads. Built once per load or
//! reload by `validate`; never parsed again on the request path.

use crate::secret::Secret;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub upstream: UpstreamSettings,
    pub pools: Vec<PoolSettings>,
    pub key_health: KeyHealthSettings,
    pub clients: Vec<ClientSettings>,
    pub hygiene: HygieneSettings,
    pub log: LogSettings,
    pub admin: AdminSettings,
    pub state: StateSettings,
    pub access: AccessSettings,
    pub jwt: Option<JwtSettings>,
    pub tls: Option<TlsSettings>,
}

/// TLS listeners and where their certificates come from.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub listen: Vec<SocketAddr>,
    pub http2: bool,
    pub handshake_timeout: Duration,
    /// Certificates from files, already loaded (so that a bad file fails validation).
    pub certificates: Vec<StaticCert>,
    pub self_signed: Option<Vec<String>>,
    pub acme: Option<AcmeSettings>,
}

#[derive(Debug, Clone)]
pub struct StaticCert {
    pub name: String,
    pub default: bool,
    pub loaded: crate::tls::certs::Loaded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcmeChallenge {
    Http01,
    TlsAlpn01,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub directory: String,
    pub contact: Vec<String>,
    pub names: Vec<String>,
    pub challenge: AcmeChallenge,
    pub renew_before: Duration,
    pub check_interval: Duration,
    pub retry_backoff: Duration,
    /// PEM text of an extra root for the ACME server's HTTPS.
    pub directory_ca_pem: Option<String>,
}

pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// What a client may do. Limits absent are unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    /// Glob patterns of allowed models; empty: every model.
    pub models: Vec<String>,
    /// Indices of allowed pools, the default first; empty: the first pool only.
    #[serde(skip)]
    pub pools: Vec<usize>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub concurrency: Option<u32>,
}

impl Policy {
    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.tpd.is_none() && self.concurrency.is_none()
    }

    /// Whether `model` is allowed (no patterns: all are).
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| glob_match(p, model))
    }

    /// The pool a request uses: `requested` if allowed, else the client's default.
    pub fn pool(&self, requested: Option<usize>) -> Result<usize, usize> {
        let default = self.pools.first().copied().unwrap_or(0);
        match requested {
            None => Ok(default),
            Some(p) if p == default || self.pools.contains(&p) => Ok(p),
            Some(p) => Err(p),
        }
    }
}

/// `*` matches any run of characters, `?` one character; everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Network rules and abuse limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessSettings {
    pub allow: Vec<ipnet::IpNet>,
    pub deny: Vec<ipnet::IpNet>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub per_ip_rpm: Option<u32>,
    pub global_rpm: Option<u32>,
    pub max_connections: Option<usize>,
    pub max_streams: Option<usize>,
    /// Browser origins allowed to call the data plane.
    pub cors: CorsOrigins,
}

/// Which web origins get CORS answers: none (the default: no CORS headers at all), any, or a
/// list of exact origins (`scheme://host[:port]`, lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    #[default]
    None,
    Any,
    List(Vec<String>),
}

impl CorsOrigins {
    pub fn enabled(&self) -> bool {
        *self != CorsOrigins::None
    }

    /// Whether a request's `Origin` may see the answer.
    pub fn allows(&self, origin: &[u8]) -> bool {
        match self {
            CorsOrigins::None => false,
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => list.iter().any(|o| o.as_bytes().eq_ignore_ascii_case(origin)),
        }
    }
}

/// JWT client authentication.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub verifier: std::sync::Arc<crate::auth::jwt::JwtVerifier>,
    /// Policy of JWT clients without a `[[clients]]` entry or a policy claim.
    pub default_policy: Policy,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// SHA-256 of the admin bearer token, when one is configured.
    pub token_sha256: Option<[u8; 32]>,
    /// Argon2 PHC string of the admin password, when configured in the file.
    pub password_hash: Option<String>,
    pub session_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    pub request_log_days: u32,
    pub request_log_rows: u64,
    pub request_log_ok_per_second: u32,
    pub usage_days: u32,
    pub config_versions: usize,
}

pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: Vec<SocketAddr>,
    /// Data-plane worker threads (already resolved: never 0).
    pub threads: usize,
    pub work_stealing: bool,
    /// `scheme://host[:port]` clients use to reach us, without a trailing slash.
    pub public_url: Option<String>,
    pub body_limit: usize,
    pub buffered_bytes_limit: usize,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub grace_period: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// The base URL as configured, for display.
    pub base_url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Value of the `Host` header sent upstream.
    pub host_header: String,
    /// Path prefix from the base URL, without a trailing slash ("" for none).
    pub path_prefix: String,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub keepalive_idle: Duration,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub strip_accept_encoding: bool,
    pub ca_file: Option<String>,
}

/// How a pool picks the next key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    RoundRobin,
    Weighted,
    LeastInflight,
    Random,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "round_robin" => Some(Strategy::RoundRobin),
            "weighted" => Some(Strategy::Weighted),
            "least_inflight" => Some(Strategy::LeastInflight),
            "random" => Some(Strategy::Random),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub name: String,
    pub strategy: Strategy,
    pub keys: Vec<KeySettings>,
}

#[derive(Debug, Clone)]
pub struct KeySettings {
    pub name: String,
    pub secret: Secret,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHealthSettings {
    pub default_cooldown: Duration,
    pub breaker_threshold: u32,
    pub breaker_open: Duration,
    pub egress_window: Duration,
    pub egress_pause: Duration,
    pub probe_interval: Duration,
    pub probe_model: String,
}

impl Default for KeyHealthSettings {
    /// The defaults documented in `config/example.toml`.
    fn default() -> Self {
        KeyHealthSettings {
            default_cooldown: Duration::from_secs(60),
            breaker_threshold: 3,
            breaker_open: Duration::from_secs(30),
            egress_window: Duration::from_secs(10),
            egress_pause: Duration::from_secs(5),
            probe_interval: Duration::from_secs(60),
            probe_model: "gemini-2.5-flash".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub name: String,
    /// SHA-256 of the static token (tokens themselves are not kept after loading); `None` for
    /// clients that only authenticate with JWTs.
    pub token_sha256: Option<[u8; 32]>,
    pub policy: Policy,
}

#[derive(Debug, Clone)]
pub struct HygieneSettings {
    /// Lower-case header names removed from requests before the upstream.
    pub strip_request: Vec<String>,
    /// Lower-case header names removed from responses before the client.
    pub strip_response: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub access_log: bool,
    /// The diagnostics filter, checked and normalised by [`crate::telemetry::log_filter`].
    pub level: String,
    pub json: bool,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// Request headers that reveal a proxy or the client's address.
pub const DEFAULT_STRIP_REQUEST: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "via",
    "forwarded",
];

/// Response headers that describe the upstream's software rather than the answer.
pub const DEFAULT_STRIP_RESPONSE: &[&str] = &["server", "via", "x-powered-by", "alt-svc", "server-timing"];

impl Settings {
    /// True when every listener is on a loopback address.
    pub fn loopback_only(&self) -> bool {
        self.server.listen.iter().all(|a| a.ip().is_loopback())
    }

    pub fn key_count(&self) -> usize {
        self.pools.iter().map(|p| p.keys.len()).sum()
    }
}
