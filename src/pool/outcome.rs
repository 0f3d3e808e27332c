//! What an upstream answer means for the key that got it, and whether the request should move
//! to another key. All of the key-pool rules about Gemini's answers live here.

use crate::config::KeyHealthSettings;
use crate::gemini::error::UpstreamError;
use crate::gemini::quota_reset::next_pacific_midnight;
use std::time::{Duration, Instant, SystemTime};

/// Why a key was taken out of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisableReason {
    /// 400 `API_KEY_INVALID`.
    InvalidKey,
    /// 403 `CONSUMER_SUSPENDED`.
    Suspended,
    /// 403 "reported as leaked".
    Leaked,
    /// 403 `API_KEY_SERVICE_BLOCKED` / `SERVICE_DISABLED`: the API is not enabled for the key.
    ServiceBlocked,
    /// Another key-level 403 (referrer/IP restrictions on the key).
    PermissionDenied,
    /// An operator disabled it.
    Manual,
}

impl DisableReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisableReason::InvalidKey => "invalid_key",
            DisableReason::Suspended => "suspended",
            DisableReason::Leaked => "leaked",
            DisableReason::ServiceBlocked => "service_blocked",
            DisableReason::PermissionDenied => "permission_denied",
            DisableReason::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<DisableReason> {
        [Self::InvalidKey, Self::Suspended, Self::Leaked, Self::ServiceBlocked, Self::PermissionDenied, Self::Manual].into_iter().find(|r| r.as_str() == s)
    }
}

impl CooldownKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CooldownKind::Quota => "quota",
            CooldownKind::DailyQuota => "daily_quota",
            CooldownKind::Unspecified => "unspecified",
        }
    }

    pub fn parse(s: &str) -> Option<CooldownKind> {
        [Self::Quota, Self::DailyQuota, Self::Unspecified].into_iter().find(|k| k.as_str() == s)
    }
}

/// Why a (key, model) pair is cooling down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CooldownKind {
    /// A 429 whose RetryInfo (or message) said how long to wait.
    Quota,
    /// A 429 naming a per-day quota: until midnight Pacific time.
    DailyQuota,
    /// A 429 with no hint: a default wait, re-checked by the prober.
    Unspecified,
}

/// A transient failure: not the key's fault as far as we can tell, but worth another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    ServerError,
    Connect,
    Timeout,
    /// The connection broke before a complete response head arrived.
    Broken,
}

/// What happened to a key on one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok,
    Cooldown {
        until: Instant,
        until_wall: SystemTime,
        kind: CooldownKind,
    },
    Disable(DisableReason),
    Failure(FailureKind),
    /// The client's own mistake (bad request, unknown model): says nothing about the key.
    ClientError,
}

impl Outcome {
    /// Whether the request should be tried again on another key.
    pub fn retry_elsewhere(&self) -> bool {
        matches!(self, Outcome::Cooldown { .. } | Outcome::Disable(_) | Outcome::Failure(_))
    }

    /// Short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Cooldown { .. } => "rate_limited",
            Outcome::Disable(_) => "key_disabled",
            Outcome::Failure(FailureKind::ServerError) => "server_error",
            Outcome::Failure(FailureKind::Connect) => "connect_error",
            Outcome::Failure(FailureKind::Timeout) => "timeout",
            Outcome::Failure(FailureKind::Broken) => "broken_connection",
            Outcome::ClientError => "client_error",
        }
    }
}

/// 403 ErrorInfo reasons that mean "this key cannot be used", not "you may not see this file".
const KEY_LEVEL_403: &[(&str, DisableReason)] = &[
    ("CONSUMER_SUSPENDED", DisableReason::Suspended),
    ("API_KEY_SERVICE_BLOCKED", DisableReason::ServiceBlocked),
    ("SERVICE_DISABLED", DisableReason::ServiceBlocked),
    ("API_KEY_HTTP_REFERRER_BLOCKED", DisableReason::PermissionDenied),
    ("API_KEY_IP_ADDRESS_BLOCKED", DisableReason::PermissionDenied),
    ("API_KEY_ANDROID_APP_BLOCKED", DisableReason::PermissionDenied),
    ("API_KEY_IOS_APP_BLOCKED", DisableReason::PermissionDenied),
];

/// Classifies an upstream answer. `error` is the parsed error body, when there is one.
pub fn classify(status: u16, error: Option<&UpstreamError>, policy: &KeyHealthSettings, now: Instant) -> Outcome {
    match status {
        100..=399 => Outcome::Ok,
        429 => {
            let wall_now = SystemTime::now();
            let (wait, kind) = match error {
                Some(e) if e.is_daily_quota() => {
                    let reset = next_pacific_midnight(wall_now);
                    let until_reset = reset.duration_since(wall_now).unwrap_or(Duration::from_secs(3600));
                    // Trust whichever is later: Gemini's own delay or the reset.
                    (e.retry_delay.map_or(until_reset, |d| d.max(until_reset)), CooldownKind::DailyQuota)
                }
                Some(UpstreamError { retry_delay: Some(d), .. }) => (*d, CooldownKind::Quota),
                _ => (policy.default_cooldown, CooldownKind::Unspecified),
            };
            // Never cool for less than a moment: a zero delay would hammer the key.
            let wait = wait.max(Duration::from_millis(200));
            Outcome::Cooldown { until: now + wait, until_wall: wall_now + wait, kind }
        }
        400 => match error {
            Some(e) if e.has_reason("API_KEY_INVALID") => Outcome::Disable(DisableReason::InvalidKey),
            _ => Outcome::ClientError,
        },
        403 => match error {
            Some(e) if e.message.contains("reported as leaked") => Outcome::Disable(DisableReason::Leaked),
            Some(e) => KEY_LEVEL_403.iter().find(|(r, _)| e.has_reason(r)).map(|(_, why)| Outcome::Disable(*why)).unwrap_or(Outcome::ClientError),
            None => Outcome::ClientError,
        },
        500 | 502 | 503 | 504 => Outcome::Failure(FailureKind::ServerError),
        _ => Outcome::ClientError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> KeyHealthSettings {
        KeyHealthSettings::default()
    }

    fn err(json: &str) -> UpstreamError {
        UpstreamError::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn rate_limits_cool_for_the_retry_delay() {
        let now = Instant::now();
        let e = err(
            r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"x","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#,
        );
        match classify(429, Some(&e), &policy(), now) {
            Outcome::Cooldown { until, kind, .. } => {
                assert_eq!(until - now, Duration::from_secs(37));
                assert_eq!(kind, CooldownKind::Quota);
            }
            other => panic!("{other:?}"),
        }
        match classify(429, None, &policy(), now) {
            Outcome::Cooldown { until, kind, .. } => {
                assert_eq!(until - now, Duration::from_secs(60));
                assert_eq!(kind, CooldownKind::Unspecified);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn daily_quota_cools_until_the_pacific_reset() {
        let now = Instant::now();
        let e = err(
            r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"x","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"5s"}]}}"#,
        );
        match classify(429, Some(&e), &policy(), now) {
            Outcome::Cooldown { until, until_wall, kind } => {
                assert_eq!(kind, CooldownKind::DailyQuota);
                assert!(until - now > Duration::from_secs(5));
                let reset = next_pacific_midnight(SystemTime::now());
                let diff = if until_wall > reset { until_wall.duration_since(reset) } else { reset.duration_since(until_wall) }.unwrap();
                assert!(diff < Duration::from_secs(2), "cooling ends at the Pacific reset");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_errors_disable_and_client_errors_pass() {
        let now = Instant::now();
        let invalid = err(
            r#"{"error":{"code":400,"status":"INVALID_ARGUMENT","message":"API key not valid.","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#,
        );
        assert_eq!(classify(400, Some(&invalid), &policy(), now), Outcome::Disable(DisableReason::InvalidKey));
        let bad = err(r#"{"error":{"code":400,"status":"INVALID_ARGUMENT","message":"Invalid JSON payload"}}"#);
        assert_eq!(classify(400, Some(&bad), &policy(), now), Outcome::ClientError);
        let leaked = err(r#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"Your API key was reported as leaked. Please use another API key."}}"#);
        assert_eq!(classify(403, Some(&leaked), &policy(), now), Outcome::Disable(DisableReason::Leaked));
        let suspended = err(
            r#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"Permission denied: Consumer has been suspended.","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONSUMER_SUSPENDED"}]}}"#,
        );
        assert_eq!(classify(403, Some(&suspended), &policy(), now), Outcome::Disable(DisableReason::Suspended));
        let file =
            err(r#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"You do not have permission to access the File abc or it may not exist."}}"#);
        assert_eq!(classify(403, Some(&file), &policy(), now), Outcome::ClientError);
        assert_eq!(classify(404, None, &policy(), now), Outcome::ClientError);
        assert_eq!(classify(503, None, &policy(), now), Outcome::Failure(FailureKind::ServerError));
        assert_eq!(classify(200, None, &policy(), now), Outcome::Ok);
    }
}
