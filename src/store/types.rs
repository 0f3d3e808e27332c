//! The store's public data: what goes in (key state, retention), what the REST API asks for
//! (queries) and what it gets back (rows and points, all `Serialize` and `ToSchema`).

use crate::store::comment::{Author, ServerComment};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// How long history is kept. Pruning runs in the writer thread, at most once a minute.
/// A limit of 0 disables its rule (keeps everything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Retention {
    /// Request-log rows older than this are deleted.
    pub request_log_days: u32,
    /// At most this many request-log rows are kept (the newest ones).
    pub request_log_rows: u64,
    /// Per-minute usage aggregates older than this are deleted.
    pub usage_days: u32,
    /// Config versions kept (the newest ones), checked on every `add_config_version`.
    pub config_versions: usize,
    /// Successful requests (one attempt, status below 400) given a request-log row per second
    /// at most; the rest still count in the usage aggregates. Errors and retried requests
    /// always get a row. Writing a row per request at tens of thousands per second would cost
    /// more CPU than proxying them.
    pub request_log_ok_per_second: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { request_log_days: 7, request_log_rows: 1_000_000, usage_days: 90, config_versions: 50, request_log_ok_per_second: 1_000 }
    }
}

/// A key's durable state: whether it is disabled and its cooldowns, so that a restart does not
/// put a dead or cooling key back into rotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedKeyState {
    /// The key's full fingerprint in hex (32 digits).
    pub fingerprint: String,
    pub name: String,
    pub disabled: Option<PersistedDisable>,
    pub cooldowns: Vec<PersistedCooldown>,
    /// Unix milliseconds of the change.
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedDisable {
    pub reason: String,
    pub message: String,
    pub since_ms: i64,
    /// Disabled by an operator (never re-enabled by the prober).
    pub manual: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedCooldown {
    pub model: String,
    pub until_ms: i64,
    pub kind: String,
}

/// What a persisted binding says: which key's project owns a resource, or which key (and
/// client) an upload session was started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingKind {
    /// A file or cachedContent (`files/abc`) created with the key.
    Owner,
    /// An upload session, named by its upload id.
    Upload,
}

impl BindingKind {
    /// The form stored in `binding.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::Owner => "owner",
            BindingKind::Upload => "upload",
        }
    }

    /// The inverse of [`BindingKind::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(BindingKind::Owner),
            "upload" => Some(BindingKind::Upload),
            _ => None,
        }
    }
}

/// A resource's owner or an upload session, as stored: a restart must not send requests for a
/// file to a key of another project (Google answers 403), nor refuse an upload's chunks.
///
/// `Debug` leaves out the name of an upload: an upload id alone authorises its chunks.
#[derive(Clone, PartialEq, Eq)]
pub struct PersistedBinding {
    pub kind: BindingKind,
    /// The resource name (`files/abc`, `cachedContents/x`) or the upload id.
    pub name: String,
    /// The key's full fingerprint in hex (32 digits), as in `key_state`.
    pub key_fp: String,
    /// The client that started an upload; `None` for owners and anonymous uploads.
    pub client: Option<String>,
    /// Unix milliseconds after which the binding is forgotten.
    pub expires_ms: i64,
}

impl std::fmt::Debug for PersistedBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.kind {
            BindingKind::Owner => self.name.as_str(),
            BindingKind::Upload => "<upload id>",
        };
        f.debug_struct("PersistedBinding")
            .field("kind", &self.kind)
            .field("name", &name)
            .field("key_fp", &self.key_fp)
            .field("client", &self.client)
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

/// Status filter of the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    /// This status exactly.
    Exact(u16),
    /// A class: 2 for 2xx, 4 for 4xx, 5 for 5xx.
    Class(u8),
}

/// Request-log filters. Every filter that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestQuery {
    pub status: Option<StatusFilter>,
    pub client: Option<String>,
    /// A key name, or a fingerprint in hex: all 32 digits or a prefix of at least 8 (the
    /// 12-digit display form).
    pub key: Option<String>,
    pub model: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to_ms: Option<i64>,
    /// Paging: only rows with a smaller id (pass the last id of the previous page).
    pub before_id: Option<i64>,
    /// Clamped to 1..=1000.
    pub limit: usize,
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RequestRow {
    /// Row id: increases with every insert and is never reused.
    pub id: i64,
    /// When the request arrived, Unix milliseconds.
    pub time_ms: i64,
    pub request_id: u64,
    pub client: Option<String>,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub status: u16,
    /// Name of the key that produced the answer (the last attempt's); none when no attempt.
    pub key: Option<String>,
    pub key_fingerprint: Option<String>,
    /// The attempts array, as in the access log.
    #[schema(value_type = Vec<crate::telemetry::access_log::AttemptRecord>)]
    pub attempts: serde_json::Value,
    pub total_ms: f64,
    pub first_byte_ms: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub stream: bool,
    pub error: Option<String>,
}

/// Usage filters: a time range and optional key, client and model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsQuery {
    /// Unix milliseconds; the minute containing it is included.
    pub from_ms: i64,
    /// Unix milliseconds, exclusive: minutes starting at or after it are left out.
    pub to_ms: i64,
    /// A key name, or a fingerprint in hex: all 32 digits or a prefix of at least 8 (the
    /// 12-digit display form).
    pub key: Option<String>,
    pub client: Option<String>,
    pub model: Option<String>,
}

/// Usage counters, shared by minute points, totals and the stored aggregates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageCounts {
    pub requests: u64,
    /// Status below 400.
    pub ok: u64,
    /// 4xx other than 429 (499 is a client that went away).
    pub client_errors: u64,
    /// 429.
    pub rate_limited: u64,
    /// 5xx, and requests that ended without any status.
    pub server_errors: u64,
    /// Upstream attempts beyond the first.
    pub retries: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl UsageCounts {
    /// Every counter, in the order of the stored columns.
    pub fn fields_mut(&mut self) -> [&mut u64; 8] {
        [
            &mut self.requests,
            &mut self.ok,
            &mut self.client_errors,
            &mut self.rate_limited,
            &mut self.server_errors,
            &mut self.retries,
            &mut self.input_tokens,
            &mut self.output_tokens,
        ]
    }

    /// Every counter, in the order of the stored columns.
    pub fn fields(&self) -> [u64; 8] {
        [self.requests, self.ok, self.client_errors, self.rate_limited, self.server_errors, self.retries, self.input_tokens, self.output_tokens]
    }
}

/// Usage during one minute (all matching keys, clients and models merged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MinutePoint {
    /// Start of the minute, Unix milliseconds.
    pub minute_ms: i64,
    #[serde(flatten)]
    pub counts: UsageCounts,
    /// Total request latency percentiles, from a log-bucketed histogram (under 10% error).
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
}

/// Sums over a range, and the biggest groups by model, client and key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    #[serde(flatten)]
    pub counts: UsageCounts,
    /// At most 20 each, most requests first. The empty name groups requests without a model,
    /// client or key (a 401 has no key).
    pub by_model: Vec<GroupTotal>,
    pub by_client: Vec<GroupTotal>,
    pub by_key: Vec<GroupTotal>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GroupTotal {
    /// Model, client or key name (for keys: the name most recently seen for the fingerprint).
    pub name: String,
    /// Only for `by_key`: the key's fingerprint, which is what the group is keyed by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub requests: u64,
    /// Every status other than ok.
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConfigVersionMeta {
    pub id: i64,
    pub created_ms: i64,
    /// Who made the version, as recorded: `startup`, `signal:SIGHUP`, `token@<address>`,
    /// `session@<address>`.
    pub actor: String,
    /// `actor` as a kind and its parameters, for showing it in another language; `null` for an
    /// actor text outside that set, which `actor` shows as it is.
    pub author: Option<Author>,
    /// The comment's text: a user's words as written, or the English text of a server comment.
    pub comment: String,
    /// The comment as a kind and its parameters when the server wrote it (start-up, reload,
    /// rollback, an API edit), for showing it in another language; `null` for a comment a user
    /// wrote, even one that reads like the server's.
    pub server_comment: Option<ServerComment>,
    /// SHA-256 of the text, hex.
    pub sha256: String,
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConfigVersion {
    #[serde(flatten)]
    pub meta: ConfigVersionMeta,
    pub text: String,
}

/// Audit-log filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    /// Clamped to 1..=1000.
    pub limit: usize,
    /// Paging: only rows with a smaller id.
    pub before_id: Option<i64>,
    /// One action (`keys.disable`), or every action of a kind: `keys.*`.
    pub action: Option<String>,
    /// One actor as recorded (`token@127.0.0.1`), or a credential at every address: `token`
    /// matches `token` and `token@<any address>`.
    pub actor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: i64,
    pub time_ms: i64,
    /// Who, as recorded: `signal:SIGHUP`, `token@<address>`, `session@<address>`.
    pub actor: String,
    /// `actor` as a kind and its parameters, as the config history gives it; `null` for an
    /// actor text outside that set, which `actor` shows as it is.
    pub author: Option<Author>,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
    /// For a change that recorded a config version (`detail.version`): that version's comment
    /// as a kind and its parameters when the server wrote it (`rollback`, `client_created`…),
    /// for showing it in another language. `null` for a comment a user wrote (it is in
    /// `detail.comment` as written), a version since pruned, or an entry without a version.
    pub server_comment: Option<ServerComment>,
}

/// The writer's state, for `/readyz` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreHealth {
    /// False while the writer's last commit failed (it keeps retrying every tick).
    pub writable: bool,
    /// The last write or pruning error, kept after recovery for diagnosis.
    pub last_error: Option<String>,
    /// Records lost: request-log rows of requests that found the writer's queue full (their
    /// usage is still counted), records left when the writer stopped, and bindings lost when
    /// too many waited.
    pub dropped_records: u64,
    /// Requests whose usage is committed, since the start (with or without a request-log row).
    pub written_records: u64,
    /// Successful requests above `request_log_ok_per_second` that got no request-log row.
    pub unlogged_requests: u64,
    #[serde(with = "crate::telemetry::time::rfc3339_opt")]
    pub last_flush: Option<SystemTime>,
}

/// Limits a page size to 1..=1000.
pub(crate) fn clamp_limit(limit: usize) -> usize {
    limit.clamp(1, 1000)
}
