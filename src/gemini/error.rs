//! Gemini's error envelope, both ways: errors the proxy answers with itself, and what the
//! upstream's error bodies say (status, ErrorInfo reasons, QuotaFailure, RetryInfo).

use serde_json::Value;
use std::time::Duration;

/// An error the proxy answers with, shaped like Gemini's own:
/// `{"error":{"code":N,"message":"...","status":"...","details":[ErrorInfo]}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    /// Canonical gRPC status name (`UNAUTHENTICATED`, `RESOURCE_EXHAUSTED`...).
    pub status: &'static str,
    pub message: String,
    /// Machine-readable reason in an ErrorInfo detail, domain `gemini-proxy`.
    pub reason: &'static str,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: u16, status: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, status, message: message.into(), reason, retry_after: None }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, "UNAUTHENTICATED", "PROXY_TOKEN_INVALID", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", "BAD_REQUEST", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", "NOT_FOUND", message)
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(413, "INVALID_ARGUMENT", "REQUEST_TOO_LARGE", format!("request body is larger than this proxy's limit of {limit} bytes"))
    }

    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(502, "UNAVAILABLE", "UPSTREAM_UNREACHABLE", message)
    }

    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(504, "DEADLINE_EXCEEDED", "UPSTREAM_TIMEOUT", message)
    }

    /// An upstream error answer (`code`, and what its body says) passed on with the key-shaped
    /// words of its message redacted: the client must never see a key of the pool, even when an
    /// upstream's message quotes one. Its details are left out (they may quote it too).
    pub fn upstream_redacted(code: u16, upstream: Option<&UpstreamError>) -> Self {
        let status = upstream.and_then(|e| GRPC_STATUSES.into_iter().find(|s| *s == e.status)).unwrap_or(grpc_status_of(code));
        let message = match upstream {
            Some(e) => crate::gemini::api_key::redact_keys(&e.message).into_owned(),
            None => "the upstream's error answer quoted an API key, so this proxy withheld it".to_owned(),
        };
        Self::new(code, status, "UPSTREAM_ERROR_REDACTED", message)
    }

    /// What the client gets instead of an upstream error answer (`code`) larger than the
    /// `limit` bytes read to classify it: the rest was never read, so it could not be checked
    /// for API keys, and Gemini's own errors are a few hundred bytes, so such an answer is not
    /// Gemini's anyway. The status is kept; nothing of the body is.
    pub fn upstream_too_large(code: u16, limit: usize) -> Self {
        let message = format!("the upstream's error answer was larger than {} KiB, too large for this proxy to check and relay", limit / 1024);
        Self::new(code, grpc_status_of(code), "UPSTREAM_ERROR_TOO_LARGE", message)
    }

    /// The JSON body: Gemini's envelope. On the OpenAI-compatible surface Gemini wraps its own
    /// errors in a one-element array, which the openai SDK cannot read (its exceptions then say
    /// only "Error code: 401"); the proxy's own errors stay an object there, with the envelope's
    /// `type` field the SDK reads, so that its exceptions carry the proxy's message.
    pub fn to_json(&self, openai_surface: bool) -> Vec<u8> {
        let mut error = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "status": self.status,
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": self.reason,
                "domain": "gemini-proxy",
            }],
        });
        if openai_surface {
            error["type"] = Value::from(self.status);
        }
        serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// The canonical status name Google gives an HTTP status, for an error whose body does not say.
fn grpc_status_of(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// The canonical status names of Google's errors (google.rpc.Code).
const GRPC_STATUSES: [&str; 16] = [
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// What an upstream error body says, as far as key handling cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamError {
    pub code: Option<u16>,
    /// `RESOURCE_EXHAUSTED`, `PERMISSION_DENIED`...
    pub status: String,
    pub message: String,
    /// ErrorInfo reasons (`API_KEY_INVALID`, `CONSUMER_SUSPENDED`...).
    pub reasons: Vec<String>,
    /// RetryInfo.retryDelay, or the "Please retry in Xs" hint of the message.
    pub retry_delay: Option<Duration>,
    /// QuotaFailure violation quota ids.
    pub quota_ids: Vec<String>,
}

impl UpstreamError {
    /// Parses an error body; `None` when it is not Gemini's envelope.
    pub fn parse(body: &[u8]) -> Option<UpstreamError> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let v = match v {
            Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
            other => other,
        };
        let e = v.get("error")?;
        let mut out = UpstreamError {
            code: e.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()),
            status: e.get("status").and_then(Value::as_str).unwrap_or_default().to_owned(),
            message: e.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
            ..Default::default()
        };
        for d in e.get("details").and_then(Value::as_array).into_iter().flatten() {
            let ty = d.get("@type").and_then(Value::as_str).unwrap_or_default();
            if ty.ends_with("google.rpc.ErrorInfo") {
                if let Some(r) = d.get("reason").and_then(Value::as_str) {
                    out.reasons.push(r.to_owned());
                }
            } else if ty.ends_with("google.rpc.RetryInfo") {
                out.retry_delay = d.get("retryDelay").and_then(Value::as_str).and_then(parse_proto_duration);
            } else if ty.ends_with("google.rpc.QuotaFailure") {
                for viol in d.get("violations").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(id) = viol.get("quotaId").and_then(Value::as_str) {
                        out.quota_ids.push(id.to_owned());
                    }
                }
            }
        }
        if out.retry_delay.is_none() {
            out.retry_delay = retry_hint_in_message(&out.message);
        }
        Some(out)
    }

    pub fn has_reason(&self, reason: &str) -> bool {
        self.reasons.iter().any(|r| r == reason)
    }

    /// True when a quota id names a daily quota (resets at midnight Pacific time).
    pub fn is_daily_quota(&self) -> bool {
        self.quota_ids.iter().any(|q| q.contains("PerDay"))
    }
}

/// Parses a protobuf JSON duration: `"37s"`, `"0.5s"`, `"37.883s"`.
pub fn parse_proto_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// Reads "Please retry in 37.88s." (or "...in 120ms") from a quota message.
fn retry_hint_in_message(msg: &str) -> Option<Duration> {
    let rest = &msg[msg.find("retry in ")? + "retry in ".len()..];
    let num_len = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let n: f64 = rest[..num_len].parse().ok()?;
    let unit = &rest[num_len..];
    let secs = if unit.starts_with("ms") {
        n / 1000.0
    } else if unit.starts_with('s') {
        n
    } else {
        return None;
    };
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA_429: &str = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"You exceeded your current quota ... Please retry in 37.88s.","details":[
 {"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaDimensions":{"location":"global","model":"gemini-2.5-flash"},"quotaValue":"10"}]},
 {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#;

    #[test]
    fn reads_quota_failure_and_retry_info() {
        let e = UpstreamError::parse(QUOTA_429.as_bytes()).unwrap();
        assert_eq!(e.code, Some(429));
        assert_eq!(e.status, "RESOURCE_EXHAUSTED");
        assert_eq!(e.retry_delay, Some(Duration::from_secs(37)));
        assert_eq!(e.quota_ids, vec!["GenerateRequestsPerMinutePerProjectPerModel-FreeTier"]);
        assert!(!e.is_daily_quota());
    }

    #[test]
    fn message_hint_when_retry_info_is_missing() {
        let body = br#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"Quota exceeded. Please retry in 1.5s."}}"#;
        assert_eq!(UpstreamError::parse(body).unwrap().retry_delay, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn reads_error_info_and_array_wrapping() {
        let body = br#"[{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}]"#;
        let e = UpstreamError::parse(body).unwrap();
        assert!(e.has_reason("API_KEY_INVALID"));
        assert!(UpstreamError::parse(b"<html>").is_none());
        assert!(UpstreamError::parse(b"{\"foo\":1}").is_none());
    }

    #[test]
    fn proto_durations() {
        assert_eq!(parse_proto_duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_proto_duration("39600s"), Some(Duration::from_secs(39600)));
        assert_eq!(parse_proto_duration("-1s"), None);
        assert_eq!(parse_proto_duration("5m"), None);
    }

    #[test]
    fn a_too_large_upstream_error_keeps_its_status_and_says_why() {
        let v: Value = serde_json::from_slice(&ApiError::upstream_too_large(429, 256 * 1024).to_json(false)).unwrap();
        assert_eq!((&v["error"]["code"], &v["error"]["status"]), (&Value::from(429), &Value::from("RESOURCE_EXHAUSTED")));
        assert!(v["error"]["message"].as_str().unwrap().contains("larger than 256 KiB"), "{v}");
        assert_eq!(v["error"]["details"][0]["reason"], "UPSTREAM_ERROR_TOO_LARGE");
        assert_eq!(ApiError::upstream_too_large(418, 1024).status, "UNKNOWN");
    }

    #[test]
    fn api_errors_have_the_gemini_shape() {
        let e = ApiError::unauthenticated("missing proxy token");
        let v: Value = serde_json::from_slice(&e.to_json(false)).unwrap();
        assert_eq!(v["error"]["code"], 401);
        assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
        assert_eq!(v["error"]["message"], "missing proxy token");
        // The openai SDK reads `error.message` (and `type`) from an object, never from an array.
        let v: Value = serde_json::from_slice(&e.to_json(true)).unwrap();
        assert_eq!(v["error"]["message"], "missing proxy token");
        assert_eq!(v["error"]["type"], "UNAUTHENTICATED");
    }
}
