//! The prober: brings keys back. It re-checks, with a call that costs no quota
//! (`GET models/{model}`), keys that were disabled by an upstream answer, (key, model) pairs
//! whose circuit breaker is open, and cooldowns that were guessed rather than told. Explicit
//! quota cooldowns (RetryInfo, daily quotas) are left to expire: a models call cannot see quota.

use super::outcome::DisableReason;
use super::PoolKey;
use crate::secret::Fingerprint;
use async_trait::async_trait;
use std::collections::HashSet;
use std::time::Instant;

/// What a probe call found out about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// The key works (the model may or may not exist: a 404 also proves the key is valid).
    Works,
    /// The key is still refused (invalid, suspended...).
    StillRefused,
    /// The upstream failed (5xx, network): no conclusion.
    Inconclusive,
}

/// Performs the probe call; implemented by the data plane, which owns the upstream client.
#[async_trait]
pub trait Probe: Send + Sync {
    async fn probe(&self, key: &PoolKey, model: &str) -> ProbeResult;
}

/// One probing round over `keys` (each key once, even if it sits in several pools).
/// Returns how many keys or pairs were brought back.
pub async fn probe_round<'a>(keys: impl Iterator<Item = &'a PoolKey>, prober: &dyn Probe, probe_model: &str) -> usize {
    let mut seen: HashSet<Fingerprint> = HashSet::new();
    let mut recovered = 0;
    for key in keys {
        if !seen.insert(key.health.fingerprint) {
            continue;
        }
        let h = &key.health;
        if let Some(d) = h.disabled_info() {
            if d.reason == DisableReason::Manual {
                continue;
            }
            if prober.probe(key, probe_model).await == ProbeResult::Works {
                h.enable();
                h.recover(false, Instant::now());
                recovered += 1;
                tracing::info!(key = %key.name, fingerprint = %h.fingerprint, was = d.reason.as_str(), "probe: key works again, back in service");
            }
            continue;
        }
        for model in h.probe_candidates(Instant::now()) {
            let probe_for = if model.is_empty() { probe_model } else { &model };
            if prober.probe(key, probe_for).await == ProbeResult::Works {
                h.recover(false, Instant::now());
                recovered += 1;
                tracing::info!(key = %key.name, fingerprint = %h.fingerprint, model = %model, "probe: key answers again for this model");
                break;
            }
        }
    }
    recovered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyHealthSettings;
    use crate::pool::health::{Availability, KeyHealth};
    use crate::pool::outcome::{FailureKind, Outcome};
    use crate::secret::Secret;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    struct Fake(ProbeResult, AtomicUsize);

    #[async_trait]
    impl Probe for Fake {
        async fn probe(&self, _key: &PoolKey, _model: &str) -> ProbeResult {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0
        }
    }

    fn key(secret: &str) -> PoolKey {
        let s = Secret::new(secret);
        PoolKey {
            name: "k".into(),
            fingerprint_label: s.fingerprint().to_string().into(),
            health: Arc::new(KeyHealth::new(s.fingerprint())),
            secret: s,
            weight: 1,
        }
    }

    fn policy() -> KeyHealthSettings {
        KeyHealthSettings { breaker_threshold: 1, breaker_open: Duration::from_secs(300), ..Default::default() }
    }

    #[tokio::test]
    async fn disabled_and_broken_keys_come_back_when_they_work() {
        let disabled = key("a");
        disabled.health.disable(DisableReason::Suspended, "suspended");
        let broken = key("b");
        broken.health.report("gemini-x", &Outcome::Failure(FailureKind::ServerError), Some(503), "", &policy(), Instant::now());
        let manual = key("c");
        manual.health.disable(DisableReason::Manual, "operator");
        let healthy = key("d");
        let fake = Fake(ProbeResult::Works, AtomicUsize::new(0));
        let n = probe_round([&disabled, &broken, &manual, &healthy].into_iter(), &fake, "m").await;
        assert_eq!(n, 2);
        assert_eq!(fake.1.load(Ordering::Relaxed), 2, "healthy and manually disabled keys are not probed");
        assert!(!disabled.health.is_disabled());
        assert_eq!(broken.health.availability("gemini-x", Instant::now()), Availability::Usable);
        assert!(manual.health.is_disabled());
    }

    #[tokio::test]
    async fn refused_keys_stay_out() {
        let disabled = key("a");
        disabled.health.disable(DisableReason::InvalidKey, "bad");
        let fake = Fake(ProbeResult::StillRefused, AtomicUsize::new(0));
        assert_eq!(probe_round([&disabled].into_iter(), &fake, "m").await, 0);
        assert!(disabled.health.is_disabled());
    }

    #[tokio::test]
    async fn explicit_quota_cooldowns_are_not_probed() {
        let cooling = key("q");
        let out = Outcome::Cooldown {
            until: Instant::now() + Duration::from_secs(60),
            until_wall: std::time::SystemTime::now(),
            kind: crate::pool::outcome::CooldownKind::Quota,
        };
        cooling.health.report("m", &out, Some(429), "quota", &policy(), Instant::now());
        let fake = Fake(ProbeResult::Works, AtomicUsize::new(0));
        assert_eq!(probe_round([&cooling].into_iter(), &fake, "m").await, 0);
        assert_eq!(fake.1.load(Ordering::Relaxed), 0, "a models call cannot see quota: Gemini's delay stands");
    }
}
