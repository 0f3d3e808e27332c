//! The TOML file format, as written by operators: serde types only, no validation or defaults
//! beyond "absent". `validate` turns this into the internal [`crate::config::Settings`].

use super::units::{ByteSize, HumanDuration};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub upstream: UpstreamSection,
    /// Absent when the file has no `[[pools]]` (nor `pools = []`).
    pub pools: Option<Spanned<Vec<PoolSection>>>,
    #[serde(default)]
    pub key_health: KeyHealthSection,
    #[serde(default)]
    pub clients: Vec<ClientSection>,
    #[serde(default)]
    pub hygiene: HygieneSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub state: StateSection,
    #[serde(default)]
    pub access: AccessSection,
    pub jwt: Option<Spanned<JwtSection>>,
    pub tls: Option<TlsSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// TLS listeners (the plain ones stay in server.listen).
    pub listen: Option<Spanned<OneOrMany>>,
    /// Offer HTTP/2 by ALPN (default true).
    pub http2: Option<bool>,
    /// How long a client may take to finish the TLS handshake.
    pub handshake_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub certificates: Vec<CertSection>,
    pub self_signed: Option<SelfSignedSection>,
    pub acme: Option<AcmeSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertSection {
    /// PEM certificate chain, leaf first.
    pub cert_file: Spanned<String>,
    /// PEM private key.
    pub key_file: Spanned<String>,
    /// Label in the admin API (default: the first name of the certificate).
    pub name: Option<String>,
    /// Served when the client sends no SNI, or a name no certificate has.
    pub default: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfSignedSection {
    pub names: Spanned<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    /// Directory URL, or `letsencrypt` / `letsencrypt-staging`.
    pub directory: Spanned<String>,
    /// Contact addresses (`mailto:admin@example.com` or just the address).
    #[serde(default)]
    pub contact: Vec<String>,
    /// Names of the certificate (one certificate for all).
    pub names: Spanned<Vec<String>>,
    /// `http-01` (answered on the plain listeners) or `tls-alpn-01` (on the TLS listeners).
    pub challenge: Option<Spanned<String>>,
    /// Renew this long before expiry.
    pub renew_before: Option<HumanDuration>,
    /// How often expiry is checked.
    pub check_interval: Option<HumanDuration>,
    /// First pause after a failed attempt (doubles up to an hour).
    pub retry_backoff: Option<HumanDuration>,
    /// Extra root for the ACME server's own HTTPS (a private CA such as Pebble's).
    pub directory_ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Serve the admin API, UI and metrics (default true).
    pub enabled: Option<bool>,
    pub listen: Option<Spanned<String>>,
    /// Bearer token for scripts and Prometheus.
    pub token: Option<Spanned<String>>,
    pub token_env: Option<Spanned<String>>,
    /// Argon2 PHC hash of the admin password (see `gemini-proxy hash-password`).
    pub password_hash: Option<Spanned<String>>,
    /// How long a login session lasts.
    pub session_ttl: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    pub request_log_days: Option<u32>,
    pub request_log_rows: Option<u64>,
    /// Successful requests logged per second at most (errors and retries always are).
    pub request_log_ok_per_second: Option<u32>,
    pub usage_days: Option<u32>,
    pub config_versions: Option<usize>,
}

/// One or several strings: `listen = "127.0.0.1:8080"` or `listen = ["...", "..."]`, those of
/// a list each with its place, so that a problem points at the entry rather than the list.
/// (A hand-written visitor, because `toml::Spanned` does not survive serde's untagged enums.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOrMany {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl OneOrMany {
    /// Each string of `list` with its place: a lone string's is the value's own.
    pub fn spanned(list: &Spanned<OneOrMany>) -> Vec<Spanned<String>> {
        match list.get_ref() {
            OneOrMany::One(s) => vec![Spanned::new(list.span(), s.clone())],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(s.to_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    out.push(s);
                }
                Ok(OneOrMany::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<Spanned<OneOrMany>>,
    /// Worker threads for the data plane; 0 or absent means one per CPU core.
    pub threads: Option<usize>,
    /// Whether idle worker threads take tasks from busy ones (tokio's work-stealing scheduler)
    /// or each thread keeps the connections it was given (the default).
    pub work_stealing: Option<bool>,
    /// The origin clients use to reach the proxy (`https://gemini.example.com`); used when
    /// rewriting upload URLs. Absent: taken from the request's Host header.
    pub public_url: Option<Spanned<String>>,
    pub body_limit: Option<Spanned<ByteSize>>,
    /// Total request bytes the proxy may hold in memory at once (bodies are buffered for retries).
    pub buffered_bytes_limit: Option<Spanned<ByteSize>>,
    pub max_header_bytes: Option<Spanned<ByteSize>>,
    /// How long a client may take to send a request head.
    pub header_timeout: Option<HumanDuration>,
    /// How long a client may take to send the whole request body.
    pub body_timeout: Option<HumanDuration>,
    /// How long an idle keep-alive connection stays open.
    pub keepalive_timeout: Option<HumanDuration>,
    /// How long in-flight requests and streams may run on after SIGTERM.
    pub grace_period: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub base_url: Option<Spanned<String>>,
    pub connect_timeout: Option<HumanDuration>,
    /// From the end of the request to the response head: long, non-streamed generations take minutes.
    pub first_byte_timeout: Option<HumanDuration>,
    /// Longest silence between two reads of a response body (the gap between SSE events).
    pub idle_timeout: Option<HumanDuration>,
    /// How long an idle upstream connection is kept for reuse.
    pub keepalive_idle: Option<HumanDuration>,
    /// Attempts per request, on different keys.
    pub max_attempts: Option<Spanned<u32>>,
    /// Pause before retrying after a server error (doubles with each attempt).
    pub retry_backoff: Option<HumanDuration>,
    /// Ask the upstream for uncompressed bodies so that token usage can be read on the fly.
    pub strip_accept_encoding: Option<bool>,
    /// Extra CA certificates (PEM) trusted for the upstream, besides the system roots.
    pub ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    pub name: Spanned<String>,
    pub strategy: Option<Spanned<String>>,
    #[serde(default)]
    pub keys: Vec<Spanned<KeyEntry>>,
}

/// A key: either the secret itself, or a table with a name, a weight and the secret or the
/// environment variable that holds it.
#[derive(Debug)]
pub enum KeyEntry {
    Plain(String),
    Table(KeyTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyTable {
    pub key: Option<String>,
    pub key_env: Option<String>,
    pub name: Option<String>,
    pub weight: Option<u32>,
}

impl<'de> Deserialize<'de> for KeyEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key string or a table { key = \"...\", name = \"...\", weight = 1 }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyEntry, E> {
                Ok(KeyEntry::Plain(s.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KeyEntry, A::Error> {
                KeyTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(KeyEntry::Table)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyHealthSection {
    /// Cooldown after a 429 that carries no RetryInfo.
    pub default_cooldown: Option<HumanDuration>,
    /// Consecutive server errors or connect failures that open a key's circuit breaker.
    pub breaker_threshold: Option<Spanned<u32>>,
    /// How long an opened breaker stays open the first time (doubles on each re-trip).
    pub breaker_open: Option<HumanDuration>,
    /// If every key of a pool answers 429 within this window, the egress is throttled.
    pub egress_window: Option<HumanDuration>,
    /// Pause for the whole pool when egress throttling is detected.
    pub egress_pause: Option<HumanDuration>,
    /// How often the prober re-checks disabled and broken keys.
    pub probe_interval: Option<HumanDuration>,
    /// Model named in probe calls (`GET models/{model}` costs no quota).
    pub probe_model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    pub name: Spanned<String>,
    pub token: Option<Spanned<String>>,
    pub token_env: Option<Spanned<String>>,
    /// Hex SHA-256 of the token, for configs that must not hold the token itself.
    pub token_sha256: Option<Spanned<String>>,
    // The policy fields below repeat `PolicySection`'s: serde cannot `flatten` a struct into
    // one that refuses unknown fields.
    /// Pools this client may use (the first is its default); the first pool when absent.
    pub pools: Option<Vec<Spanned<String>>>,
    /// Models it may call, as glob patterns (`gemini-2.5-*`); every model when absent.
    pub models: Option<Vec<Spanned<String>>>,
    /// Requests per minute.
    pub rpm: Option<Spanned<u32>>,
    /// Input + output tokens per minute.
    pub tpm: Option<Spanned<u64>>,
    /// Input + output tokens per day (UTC).
    pub tpd: Option<Spanned<u64>>,
    /// Requests in flight at once.
    pub concurrency: Option<Spanned<u32>>,
}

/// The policy fields of a client, also used for JWT clients without a `[[clients]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    pub pools: Option<Vec<Spanned<String>>>,
    pub models: Option<Vec<Spanned<String>>>,
    pub rpm: Option<Spanned<u32>>,
    pub tpm: Option<Spanned<u64>>,
    pub tpd: Option<Spanned<u64>>,
    pub concurrency: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// Only these networks may connect (CIDR or single addresses); everyone when absent.
    pub allow: Option<Vec<Spanned<String>>>,
    /// These networks may not connect.
    pub deny: Option<Vec<Spanned<String>>>,
    /// Proxies whose `X-Forwarded-For` names the real client.
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// Requests per minute per client address.
    pub per_ip_rpm: Option<Spanned<u32>>,
    /// Requests per minute in all.
    pub global_rpm: Option<Spanned<u32>>,
    /// Open client connections at once.
    pub max_connections: Option<Spanned<usize>>,
    /// Streamed responses at once.
    pub max_streams: Option<Spanned<usize>>,
    /// Web origins whose pages may call the proxy from a browser (CORS), e.g.
    /// `["https://app.example.com"]`, or `["*"]` for any; none when absent.
    pub cors_origins: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    /// HS256 shared secret (at least 32 bytes).
    pub secret: Option<Spanned<String>>,
    pub secret_env: Option<Spanned<String>>,
    /// RS256 or ES256 public key, PEM.
    pub public_key_file: Option<Spanned<String>>,
    /// A JWK set (RSA and EC keys are used).
    pub jwks_file: Option<Spanned<String>>,
    /// Accepted algorithms (HS256, RS256, ES256); default: what the keys support.
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    /// Required `iss`.
    pub issuer: Option<Spanned<String>>,
    /// Accepted `aud` values (one must match); absent: `aud` is not checked.
    pub audience: Option<Spanned<Vec<Spanned<String>>>>,
    /// Claim naming the client (default `sub`).
    pub client_claim: Option<Spanned<String>>,
    /// Claim carrying a policy object (`{"rpm": 10, "models": [...]}`), if tokens carry one.
    pub policy_claim: Option<Spanned<String>>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Option<HumanDuration>,
    /// Policy of JWT clients that have no `[[clients]]` entry and no policy claim.
    #[serde(default)]
    pub policy: PolicySection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HygieneSection {
    /// Request headers removed before the upstream (replaces the default list).
    pub strip_request_headers: Option<Vec<String>>,
    /// Response headers removed before the client (replaces the default list).
    pub strip_response_headers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// One JSON line per request on stdout.
    pub access_log: Option<bool>,
    /// Filter for diagnostic logs on stderr (`info`, `gemini_proxy=debug`); RUST_LOG wins.
    pub level: Option<Spanned<String>>,
    /// `json` (default) or `text` for diagnostic logs.
    pub format: Option<Spanned<String>>,
}
