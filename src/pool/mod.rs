//! The key pool: which upstream key serves the next request. Keys, their health per model,
//! selection strategies, the rules that turn upstream answers into key outcomes, and the prober.
//! Testable without a network.

mod egress;
pub mod health;
pub mod outcome;
pub mod prober;
pub mod store;
mod wheel;

use crate::config::{KeyHealthSettings, PoolSettings, Strategy};
use crate::gemini::error::ApiError;
use crate::secret::{Fingerprint, Secret};
use egress::EgressGuard;
use health::{secs_until, Availability, KeyHealth};
use outcome::{CooldownKind, DisableReason, Outcome};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use store::StateStore;

/// One key as a pool holds it.
#[derive(Debug)]
pub struct PoolKey {
    pub name: Arc<str>,
    /// The fingerprint's short form, for logs.
    pub fingerprint_label: Arc<str>,
    pub secret: Secret,
    pub weight: u32,
    pub health: Arc<KeyHealth>,
}

/// A key taken for one attempt: counts as in flight until dropped.
#[derive(Debug)]
pub struct Lease {
    pub index: u32,
    health: Arc<KeyHealth>,
}

impl Lease {
    fn new(index: u32, health: Arc<KeyHealth>) -> Self {
        health.enter();
        Lease { index, health }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.health.leave();
    }
}

/// Why no key could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exhausted {
    /// The pool holds no keys.
    Empty,
    /// Every key answered 429 within the egress window: the proxy's egress is throttled.
    EgressPaused { until: Instant },
    /// Nothing usable now.
    Unusable {
        total: usize,
        cooling: usize,
        broken: usize,
        disabled: usize,
        /// Keys this request already tried and that are otherwise usable.
        tried: usize,
        earliest: Option<Instant>,
        disabled_reasons: Vec<(DisableReason, usize)>,
    },
}

#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    pub strategy: Strategy,
    pub keys: Vec<PoolKey>,
    by_fingerprint: HashMap<Fingerprint, u32>,
    wheel: Vec<u32>,
    cursor: AtomicUsize,
    egress: EgressGuard,
}

/// Pools up to this size are scanned fully for least-in-flight; larger ones sample.
const EXACT_LEAST_INFLIGHT: usize = 64;
/// Pools up to this size look for a trial key when none is usable (a scan of every key per
/// request); larger ones answer at once, as they did before the trial rule.
const TRIAL_SCAN_LIMIT: usize = 4096;

impl Pool {
    /// Builds a pool; key state comes from `store` by fingerprint (so it survives reloads).
    pub fn build(settings: &PoolSettings, store: &dyn StateStore) -> Pool {
        let keys: Vec<PoolKey> = settings
            .keys
            .iter()
            .map(|k| PoolKey {
                name: Arc::from(k.name.as_str()),
                fingerprint_label: Arc::from(k.secret.fingerprint().to_string()),
                secret: k.secret.clone(),
                weight: k.weight,
                health: store.key_health(k.secret.fingerprint()),
            })
            .collect();
        let by_fingerprint = keys.iter().enumerate().map(|(i, k)| (k.health.fingerprint, i as u32)).collect();
        let wheel = match settings.strategy {
            Strategy::Weighted => wheel::build(&keys.iter().map(|k| k.weight).collect::<Vec<_>>()),
            _ => Vec::new(),
        };
        Pool {
            name: Arc::from(settings.name.as_str()),
            strategy: settings.strategy,
            keys,
            by_fingerprint,
            wheel,
            cursor: AtomicUsize::new(fastrand::usize(..usize::MAX / 2)),
            egress: EgressGuard::default(),
        }
    }

    pub fn index_of(&self, key: Fingerprint) -> Option<u32> {
        self.by_fingerprint.get(&key).copied()
    }

    pub fn key(&self, index: u32) -> &PoolKey {
        &self.keys[index as usize]
    }

    /// Takes key `index` for an attempt.
    pub fn lease(&self, index: u32) -> Lease {
        Lease::new(index, self.keys[index as usize].health.clone())
    }

    /// Picks a usable key for `model` that this request has not tried yet.
    pub fn select(&self, model: &str, tried: &[u32], now: Instant) -> Result<Lease, Exhausted> {
        let n = self.keys.len();
        if n == 0 {
            return Err(Exhausted::Empty);
        }
        if let Some(until) = self.egress.paused(model, now) {
            return Err(Exhausted::EgressPaused { until });
        }
        let usable = |i: usize| !tried.contains(&(i as u32)) && self.keys[i].health.availability(model, now) == Availability::Usable;
        let scan = |start: usize| (0..n).map(|j| (start + j) % n).find(|&i| usable(i));
        let picked = match self.strategy {
            Strategy::RoundRobin => scan(self.cursor.fetch_add(1, Ordering::Relaxed) % n),
            Strategy::Random => scan(fastrand::usize(..n)),
            Strategy::Weighted => {
                let w = self.wheel.len();
                let start = self.cursor.fetch_add(1, Ordering::Relaxed) % w.max(1);
                // Walk the wheel a bounded distance, then fall back to a plain scan so that a
                // mostly-unusable pool costs O(keys), not O(total weight).
                (0..w.min(n.max(16))).map(|j| self.wheel[(start + j) % w] as usize).find(|&i| usable(i)).or_else(|| scan(start % n))
            }
            Strategy::LeastInflight => {
                if n <= EXACT_LEAST_INFLIGHT {
                    let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
                    (0..n).map(|j| (start + j) % n).filter(|&i| usable(i)).min_by_key(|&i| self.keys[i].health.inflight())
                } else {
                    // Power of two choices: nearly as good as the exact minimum, O(1).
                    let mut sample = (0..8).map(|_| fastrand::usize(..n)).filter(|&i| usable(i));
                    match (sample.next(), sample.next()) {
                        (Some(a), Some(b)) => Some(if self.keys[b].health.inflight() < self.keys[a].health.inflight() { b } else { a }),
                        (Some(a), None) => Some(a),
                        _ => scan(fastrand::usize(..n)),
                    }
                }
            }
        };
        match picked.or_else(|| self.trial(model, tried, now)) {
            Some(i) => Ok(self.lease(i as u32)),
            None => Err(self.exhaustion(model, tried, now)),
        }
    }

    /// When no key is usable but some are only held out by an open breaker, the one whose
    /// breaker closes first gets the request anyway: a breaker steers traffic from a failing
    /// key to healthy ones, and with none healthy the failures were most likely the
    /// upstream's (down, overloaded), which may have recovered. Refusing would keep the pool
    /// shut for the whole open time after the upstream came back. Only a request's first
    /// attempt is a trial, so a still-failing upstream gets one call per request, not one per
    /// key.
    fn trial(&self, model: &str, tried: &[u32], now: Instant) -> Option<usize> {
        if !tried.is_empty() || self.keys.len() > TRIAL_SCAN_LIMIT {
            return None;
        }
        let broken = self.keys.iter().enumerate().filter_map(|(i, k)| match k.health.availability(model, now) {
            Availability::Broken { until } => Some((until, i)),
            _ => None,
        });
        broken.min().map(|(_, i)| i)
    }

    /// Records an attempt's outcome on key `index`, and watches for pool-wide 429 storms.
    #[allow(clippy::too_many_arguments)]
    pub fn report(&self, index: u32, model: &str, outcome: &Outcome, status: Option<u16>, message: &str, policy: &KeyHealthSettings, now: Instant) {
        let key = &self.keys[index as usize];
        let was_disabled = matches!(outcome, Outcome::Disable(_)) && key.health.is_disabled();
        key.health.report(model, outcome, status, message, policy, now);
        match outcome {
            // Once, when it happens: an operator has to replace the key (the prober's "back in
            // service" is logged too).
            Outcome::Disable(reason) if !was_disabled => {
                tracing::warn!(pool = %self.name, key = %key.name, fingerprint = %key.fingerprint_label, reason = reason.as_str(), status, model,
                    "key disabled: the upstream refused it; the prober re-checks it every probe interval");
            }
            // Only a 429 that names no quota and no delay can be the egress's: one that names
            // its project's quota is that key's own, however many keys say so at once (small
            // pools run dry together).
            Outcome::Cooldown { kind: CooldownKind::Unspecified, .. } => {
                if let Some(since) = self.egress.on_rate_limited(model, now, self.active_keys(), policy) {
                    tracing::warn!(pool = %self.name, model, pause_ms = policy.egress_pause.as_millis() as u64,
                        "every key of the pool answered 429 within the egress window: treating it as throttling of the proxy's egress, pausing the pool briefly instead of cooling every key");
                    for k in &self.keys {
                        k.health.lift_rate_limit(model, since, now);
                    }
                }
            }
            Outcome::Ok => self.egress.on_success(model),
            _ => {}
        }
    }

    /// Keys not disabled. Exact for pools up to a thousand keys; larger pools count all keys
    /// (the egress check only needs "about all of them").
    fn active_keys(&self) -> usize {
        if self.keys.len() > 1024 {
            return self.keys.len();
        }
        self.keys.iter().filter(|k| !k.health.is_disabled()).count()
    }

    fn exhaustion(&self, model: &str, tried: &[u32], now: Instant) -> Exhausted {
        let (mut cooling, mut broken, mut disabled, mut tried_usable) = (0, 0, 0, 0);
        let mut earliest: Option<Instant> = None;
        let mut reasons: Vec<(DisableReason, usize)> = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            match k.health.availability(model, now) {
                Availability::Usable => {
                    if tried.contains(&(i as u32)) {
                        tried_usable += 1;
                    }
                }
                Availability::Cooling { until, .. } => {
                    cooling += 1;
                    earliest = Some(earliest.map_or(until, |e| e.min(until)));
                }
                Availability::Broken { until } => {
                    broken += 1;
                    earliest = Some(earliest.map_or(until, |e| e.min(until)));
                }
                Availability::Disabled(r) => {
                    disabled += 1;
                    match reasons.iter_mut().find(|(x, _)| *x == r) {
                        Some((_, c)) => *c += 1,
                        None => reasons.push((r, 1)),
                    }
                }
            }
        }
        Exhausted::Unusable { total: self.keys.len(), cooling, broken, disabled, tried: tried_usable, earliest, disabled_reasons: reasons }
    }
}

impl Exhausted {
    /// The error the client gets: 429 while keys are rate limited (with `Retry-After` at the
    /// earliest recovery), 503 when keys are broken or disabled.
    pub fn to_api_error(&self, model: &str, now: Instant, policy: &KeyHealthSettings) -> ApiError {
        let for_model = if model.is_empty() { String::new() } else { format!(" for model {model}") };
        match self {
            Exhausted::Empty => ApiError::new(503, "UNAVAILABLE", "NO_KEYS", "the proxy's key pool is empty: add keys to the configuration")
                .with_retry_after(policy.probe_interval.as_secs()),
            Exhausted::EgressPaused { until } => ApiError::new(
                429,
                "RESOURCE_EXHAUSTED",
                "EGRESS_THROTTLED",
                format!("the upstream is rate limiting this proxy as a whole{for_model}; retry shortly"),
            )
            .with_retry_after(secs_until(*until, now)),
            Exhausted::Unusable { total, cooling, broken, disabled, tried, earliest, disabled_reasons } => {
                // Keys that are usable but already failed this request may work for the next
                // one at once; only a pool of disabled keys waits for the prober.
                let idle = if *tried > 0 { 1 } else { policy.probe_interval.as_secs() };
                let retry = earliest.map(|e| secs_until(e, now)).unwrap_or(idle);
                let reasons = disabled_reasons.iter().map(|(r, c)| format!("{c} {}", r.as_str())).collect::<Vec<_>>().join(", ");
                let summary = format!(
                    "no usable upstream key{for_model}: {cooling} of {total} rate limited, {broken} failing, {disabled} disabled{}{}",
                    if reasons.is_empty() { String::new() } else { format!(" ({reasons})") },
                    if *tried > 0 { format!(", {tried} already tried by this request") } else { String::new() },
                );
                if *cooling > 0 {
                    ApiError::new(429, "RESOURCE_EXHAUSTED", "ALL_KEYS_RATE_LIMITED", summary).with_retry_after(retry)
                } else {
                    ApiError::new(503, "UNAVAILABLE", "NO_USABLE_KEY", summary).with_retry_after(retry)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
