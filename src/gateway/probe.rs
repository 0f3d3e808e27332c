//! Checking a key against the upstream with a call that costs no quota:
//! `GET {prefix}/v1beta/models/{model}`, on the data plane's connection pool. Used by the prober
//! and by the admin API's live validation.

use super::relay::buffer_body;
use super::Shared;
use crate::gemini::error::UpstreamError;
use crate::http1;
use crate::pool::outcome::{classify, DisableReason, Outcome};
use crate::pool::prober::{Probe, ProbeResult};
use crate::pool::PoolKey;
use crate::secret::Secret;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;

/// What a live check of one key found.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KeyCheck {
    /// `valid`, `rate_limited`, `invalid_key`, `suspended`, `leaked`, `service_blocked`,
    /// `permission_denied`, `upstream_error` or `unreachable`.
    pub result: String,
    pub status: Option<u16>,
    pub message: String,
    /// What the check means for the key, if anything: `disable:<reason>` or `works`.
    #[serde(skip)]
    pub verdict: Option<Verdict>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Works,
    Refused(DisableReason),
}

/// Checks `secret` live.
pub async fn check_key(shared: &Shared, secret: &Secret, model: &str) -> KeyCheck {
    let rt = shared.runtime.load_full();
    let target = &rt.target;
    let up = &target.settings;
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(format!("GET {}/v1beta/models/{model} HTTP/1.1\r\nhost: {}\r\n", up.path_prefix, up.host_header).as_bytes());
    http1::write_header(&mut head, b"x-goog-api-key", secret.expose().as_bytes());
    head.extend_from_slice(b"\r\n");
    let unreachable = |m: String| KeyCheck { result: "unreachable".into(), status: None, message: m, verdict: None };
    let mut conn = match shared.upstream.checkout(target).await {
        Ok(c) => c,
        Err(e) => return unreachable(e.to_string()),
    };
    if let Err(e) = conn.send(&mut head, &[], up.connect_timeout).await {
        return unreachable(e.to_string());
    }
    let mut timer = crate::deadline::Timer::default();
    let res = match conn.read_head(up.connect_timeout * 3, &mut timer, None).await {
        Ok(r) => r,
        Err(e) => return unreachable(e.to_string()),
    };
    let body = buffer_body(&mut conn, &res, "GET", up.connect_timeout, 1 << 20, &mut timer, None).await.ok().flatten();
    if body.is_some() && res.keeps_alive() {
        conn.buf.clear();
        shared.upstream.checkin(conn);
    }
    let parsed = body.as_deref().and_then(UpstreamError::parse);
    let message = parsed.as_ref().map(|e| e.message.clone()).unwrap_or_default();
    let status = Some(res.status);
    match (res.status, classify(res.status, parsed.as_ref(), &rt.settings.key_health, Instant::now())) {
        // 404: the key was accepted; only the model is unknown.
        (200 | 404, _) => KeyCheck { result: "valid".into(), status, message, verdict: Some(Verdict::Works) },
        (_, Outcome::Disable(r)) => KeyCheck { result: r.as_str().into(), status, message, verdict: Some(Verdict::Refused(r)) },
        (_, Outcome::Cooldown { .. }) => KeyCheck { result: "rate_limited".into(), status, message, verdict: Some(Verdict::Works) },
        (401 | 403, _) => KeyCheck { result: "permission_denied".into(), status, message, verdict: None },
        _ => KeyCheck { result: "upstream_error".into(), status, message, verdict: None },
    }
}

pub struct UpstreamProbe {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl Probe for UpstreamProbe {
    async fn probe(&self, key: &PoolKey, model: &str) -> ProbeResult {
        let check = check_key(&self.shared, &key.secret, model).await;
        match check.verdict {
            // A 429 on a models call would be odd, but it does prove the key is accepted.
            Some(Verdict::Works) => ProbeResult::Works,
            Some(Verdict::Refused(_)) => ProbeResult::StillRefused,
            None if matches!(check.status, Some(400..=499)) => ProbeResult::StillRefused,
            None => ProbeResult::Inconclusive,
        }
    }
}
