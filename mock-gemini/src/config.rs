//! Public knobs: how the mock starts ([`MockConfig`]) and how each API key behaves ([`KeyBehaviour`], [`KeyMode`]).

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The real service's origin, which Google puts in `X-Goog-Upload-URL` and file URIs.
pub const GOOGLE_ORIGIN: &str = "https://generativelanguage.googleapis.com";

/// Start-up settings of a [`crate::MockGemini`].
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Origin written into `X-Goog-Upload-URL` and into file `uri`s.
    /// Defaults to [`GOOGLE_ORIGIN`], as Google does, so tests can check that the proxy
    /// rewrites it. An empty string means "this mock's own base URL", which is what a
    /// client talking to the mock directly needs (the Python SDK follows the URL verbatim).
    pub upload_origin: String,
    /// Behaviour of every key that has not been given one with `set_key`.
    pub default_mode: KeyMode,
    /// How many recorded requests are kept; older ones are dropped first.
    pub max_recorded: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig { upload_origin: GOOGLE_ORIGIN.to_string(), default_mode: KeyMode::Ok, max_recorded: 10_000 }
    }
}

/// How one API key behaves, plus the project it belongs to.
///
/// JSON form (used by `PUT /__mock/keys/{key}`): the mode's fields flattened next to
/// `project`, e.g. `{"mode":"rate_limited","retry_delay":"5s","project":"p1"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyBehaviour {
    #[serde(flatten)]
    pub mode: KeyMode,
    /// Project the key belongs to. `None` means the key is its own project.
    /// Files and cachedContents are owned by projects, as at Google.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

impl KeyBehaviour {
    /// This behaviour with the key placed in `project` (keys of one project share files and caches).
    pub fn in_project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }
}

impl From<KeyMode> for KeyBehaviour {
    fn from(mode: KeyMode) -> Self {
        KeyBehaviour { mode, project: None }
    }
}

/// What a key does when it is used. Serde form: `{"mode": "<snake_case name>", ...fields}`;
/// every field has a default, so `{"mode":"rate_limited"}` is enough.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum KeyMode {
    /// Answers normally.
    Ok,
    /// 429 RESOURCE_EXHAUSTED with `Help`, `QuotaFailure` and `RetryInfo` details, on model
    /// calls only (models list/get, files and caches still work, as at Google).
    RateLimited {
        /// `RetryInfo.retryDelay`, Google's format: seconds with an `s` suffix, maybe fractional.
        #[serde(default = "default_minute_delay")]
        retry_delay: String,
        #[serde(default = "default_minute_quota")]
        quota_id: String,
        /// Only these models are limited (ids like `gemini-2.5-flash`); `None` = all models.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        models: Option<Vec<String>>,
    },
    /// Like `RateLimited` with the daily free-tier quota and a delay of hours.
    RateLimitedDaily {
        #[serde(default = "default_daily_delay")]
        retry_delay: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        models: Option<Vec<String>>,
    },
    /// 429 RESOURCE_EXHAUSTED without any details (an egress/IP throttle).
    RateLimitedBare,
    /// 400 INVALID_ARGUMENT, ErrorInfo `API_KEY_INVALID`.
    Invalid,
    /// 403 PERMISSION_DENIED, ErrorInfo `CONSUMER_SUSPENDED`.
    Suspended,
    /// 403 PERMISSION_DENIED "Your API key was reported as leaked...".
    Leaked,
    /// 403 PERMISSION_DENIED, ErrorInfo `API_KEY_SERVICE_BLOCKED`.
    Blocked,
    /// 503 UNAVAILABLE "The model is overloaded..." on model calls.
    Overloaded,
    /// 500 INTERNAL on model calls.
    Internal,
    /// 400 INVALID_ARGUMENT on model calls whose message quotes the key, with no reason that
    /// blames the key (a request error that echoes its URL or headers).
    EchoKey,
    /// An error answer of `status` on model calls, about `bytes` long (Gemini's own errors are a
    /// few hundred bytes): an envelope whose message is padding that ends quoting the key, past
    /// whatever prefix a reader stops at. Content-Length framed, or chunked when `chunked`.
    HugeError {
        #[serde(default = "default_huge_status")]
        status: u16,
        #[serde(default = "default_huge_bytes")]
        bytes: usize,
        #[serde(default)]
        chunked: bool,
    },
    /// Streaming answers send `after_events` events, then the TCP connection is dropped
    /// without the terminating chunk. Non-streaming answers are normal.
    DieMidstream {
        #[serde(default = "default_after_events")]
        after_events: u32,
    },
    /// Streaming answers send `after_events` events, then an in-band
    /// `data: {"error":{...503 UNAVAILABLE...}}` event, then end cleanly.
    ErrorMidstream {
        #[serde(default = "default_after_events")]
        after_events: u32,
    },
    /// Accepts the request and never answers (until the client goes away).
    Hang,
    /// Waits `first_byte_ms` before the response headers, then answers normally.
    Slow {
        #[serde(default = "default_first_byte_ms")]
        first_byte_ms: u64,
    },
}

impl KeyMode {
    /// Per-minute free-tier 429 with this `retryDelay` (e.g. `"37s"`), on every model.
    pub fn rate_limited(retry_delay: &str) -> KeyMode {
        KeyMode::RateLimited { retry_delay: retry_delay.to_string(), quota_id: default_minute_quota(), models: None }
    }

    /// Per-minute free-tier 429 on the given models only (other models answer normally).
    pub fn rate_limited_on(retry_delay: &str, models: &[&str]) -> KeyMode {
        KeyMode::RateLimited {
            retry_delay: retry_delay.to_string(),
            quota_id: default_minute_quota(),
            models: Some(models.iter().map(|m| m.to_string()).collect()),
        }
    }
}

fn default_minute_delay() -> String {
    "37s".to_string()
}
fn default_daily_delay() -> String {
    "39600s".to_string()
}
fn default_minute_quota() -> String {
    "GenerateRequestsPerMinutePerProjectPerModel-FreeTier".to_string()
}
fn default_huge_status() -> u16 {
    400
}
fn default_huge_bytes() -> usize {
    320 * 1024
}
fn default_after_events() -> u32 {
    2
}
fn default_first_byte_ms() -> u64 {
    1000
}

/// Parses either a bare mode name (`ok`, `rate_limited`, `die_midstream`...; fields take
/// their defaults) or the full JSON form (`{"mode":"slow","first_byte_ms":200}`).
impl FromStr for KeyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let value =
            if s.starts_with('{') { serde_json::from_str(s).map_err(|e| format!("invalid key mode JSON: {e}"))? } else { serde_json::json!({ "mode": s }) };
        serde_json::from_value(value).map_err(|e| format!("invalid key mode {s:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_json_is_flat_and_defaults_fill_in() {
        let b: KeyBehaviour = serde_json::from_str(r#"{"mode":"rate_limited","project":"p1"}"#).expect("parse");
        assert_eq!(b.project.as_deref(), Some("p1"));
        assert_eq!(b.mode, KeyMode::rate_limited("37s"));

        let b: KeyBehaviour = serde_json::from_str(r#"{"mode":"die_midstream","after_events":5}"#).expect("parse");
        assert_eq!(b.mode, KeyMode::DieMidstream { after_events: 5 });
        assert_eq!(b.project, None);

        let round = serde_json::to_value(KeyBehaviour::from(KeyMode::Slow { first_byte_ms: 7 })).expect("serialize");
        assert_eq!(round, serde_json::json!({"mode":"slow","first_byte_ms":7}));
    }

    #[test]
    fn modes_parse_from_cli_strings() {
        assert_eq!("ok".parse::<KeyMode>(), Ok(KeyMode::Ok));
        assert_eq!("rate_limited_daily".parse::<KeyMode>(), Ok(KeyMode::RateLimitedDaily { retry_delay: "39600s".into(), models: None }));
        assert_eq!(r#"{"mode":"slow","first_byte_ms":20}"#.parse::<KeyMode>(), Ok(KeyMode::Slow { first_byte_ms: 20 }));
        assert!("nonsense".parse::<KeyMode>().is_err());
        assert_eq!("huge_error".parse::<KeyMode>(), Ok(KeyMode::HugeError { status: 400, bytes: 320 * 1024, chunked: false }));
    }
}
