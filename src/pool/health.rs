//! Live health of one upstream key: disabled or not (key-wide), cooldowns and circuit breakers
//! per model (Gemini quotas are per project and model), in-flight count and counters.
//!
//! Hot-path reads are lock-free while a key has no model restrictions; the mutex is only taken
//! for keys that are cooling or failing, and never across an await.

use super::outcome::{CooldownKind, DisableReason, Outcome};
use crate::config::KeyHealthSettings;
use crate::secret::Fingerprint;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// Whether a key can take a request for a model right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Usable,
    Disabled(DisableReason),
    Cooling { until: Instant, kind: CooldownKind },
    Broken { until: Instant },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Disabled {
    pub reason: DisableReason,
    pub since: SystemTime,
    /// Why, for operators: the upstream's message (see [`operator_message`]: keys in it are
    /// redacted, since Google echoes the key in some, e.g. "Consumer 'api_key:…' has been
    /// suspended") or who disabled it.
    pub message: String,
}

#[derive(Debug, Clone, Default)]
struct ModelHealth {
    cooldown: Option<(Instant, SystemTime, CooldownKind)>,
    consecutive_failures: u32,
    breaker_trips: u32,
    breaker_until: Option<(Instant, SystemTime)>,
}

impl ModelHealth {
    fn is_clean(&self, now: Instant) -> bool {
        self.cooldown.is_none_or(|(u, _, _)| u <= now) && self.breaker_until.is_none_or(|(u, _)| u <= now) && self.consecutive_failures == 0
    }
}

#[derive(Debug, Default)]
struct Inner {
    disabled: Option<Disabled>,
    models: HashMap<String, ModelHealth>,
    last_error: Option<LastError>,
}

/// The most recent failure of a key, for operators.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LastError {
    #[serde(with = "crate::telemetry::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: SystemTime,
    pub model: String,
    /// What the attempt ended as, as in the access log (`rate_limited`, `key_disabled`, …).
    pub outcome: &'static str,
    pub status: Option<u16>,
    /// Gemini's error message, at most [`MESSAGE_LIMIT`] bytes, with every key-shaped word
    /// replaced by `[redacted key …<fingerprint>]` (or `[redacted partial key]`).
    pub message: String,
}

/// Per-key counters since start.
#[derive(Debug, Default)]
pub struct KeyCounters {
    pub attempts: AtomicU64,
    pub successes: AtomicU64,
    pub failures: AtomicU64,
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
}

/// The live state of one key. Shared by every pool and every config snapshot that holds the
/// same key, so that state survives reloads.
#[derive(Debug)]
pub struct KeyHealth {
    pub fingerprint: Fingerprint,
    disabled: AtomicBool,
    /// Number of model entries that may restrict this key; 0 means "usable for every model"
    /// without taking the lock.
    restricted: AtomicUsize,
    inflight: AtomicU32,
    inner: Mutex<Inner>,
    pub counters: KeyCounters,
    /// Set when something worth persisting changed (disabled, enabled, cooldowns).
    dirty: AtomicBool,
    /// Where the key announces that it became dirty (the state store's list of changed keys).
    changes: Option<Arc<ChangedKeys>>,
}

/// Fingerprints of keys whose durable state changed, in the order they first changed: lets the
/// persisting side find the few changed keys of a 100,000-key pool without visiting them all.
#[derive(Debug, Default)]
pub struct ChangedKeys(Mutex<Vec<Fingerprint>>);

impl ChangedKeys {
    /// Takes the list (each key is on it at most once until its dirty flag is taken).
    pub fn take(&self) -> Vec<Fingerprint> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The part of a key's state that survives a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Durable {
    pub disabled: Option<Disabled>,
    /// (model, until, kind) of cooldowns still running.
    pub cooldowns: Vec<(String, SystemTime, CooldownKind)>,
}

/// A point-in-time view of a key's health per model, for the admin API and tests.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ModelView {
    pub model: String,
    /// `healthy`, `cooling` or `broken` for this model.
    pub state: &'static str,
    /// When the cooldown or the open breaker ends.
    #[serde(with = "crate::telemetry::time::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<SystemTime>,
    pub cooldown_kind: Option<CooldownKind>,
    pub consecutive_failures: u32,
}

impl KeyHealth {
    pub fn new(fingerprint: Fingerprint) -> Self {
        Self::with_changes(fingerprint, None)
    }

    /// A key that puts itself on `changes` whenever it becomes dirty.
    pub fn tracked(fingerprint: Fingerprint, changes: Arc<ChangedKeys>) -> Self {
        Self::with_changes(fingerprint, Some(changes))
    }

    fn with_changes(fingerprint: Fingerprint, changes: Option<Arc<ChangedKeys>>) -> Self {
        KeyHealth {
            fingerprint,
            disabled: AtomicBool::new(false),
            restricted: AtomicUsize::new(0),
            inflight: AtomicU32::new(0),
            inner: Mutex::new(Inner::default()),
            counters: KeyCounters::default(),
            dirty: AtomicBool::new(false),
            changes,
        }
    }

    fn mark_dirty(&self) {
        if !self.dirty.swap(true, Ordering::AcqRel) {
            if let Some(c) = &self.changes {
                c.0.lock().unwrap_or_else(|p| p.into_inner()).push(self.fingerprint);
            }
        }
    }

    /// Whether durable state changed since the last call (and clears the flag).
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    /// What should survive a restart.
    pub fn durable(&self, now: Instant) -> Durable {
        let inner = self.lock();
        let cooldowns =
            inner.models.iter().filter_map(|(m, h)| h.cooldown.filter(|(u, _, _)| *u > now).map(|(_, wall, kind)| (m.clone(), wall, kind))).collect();
        Durable { disabled: inner.disabled.clone(), cooldowns }
    }

    /// Restores state saved by [`KeyHealth::durable`] (cooldowns already over are skipped).
    pub fn restore(&self, saved: Durable, now: Instant) {
        let wall_now = SystemTime::now();
        let mut inner = self.lock();
        if let Some(mut d) = saved.disabled {
            // Saved by a version that kept upstream messages as they came.
            d.message = operator_message(&d.message);
            inner.disabled = Some(d);
            self.disabled.store(true, Ordering::Release);
        }
        for (model, until_wall, kind) in saved.cooldowns {
            if let Ok(left) = until_wall.duration_since(wall_now) {
                inner.models.entry(model).or_default().cooldown = Some((now + left, until_wall, kind));
            }
        }
        self.tidy(&mut inner, now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state inconsistent in a way that
        // matters more than losing it: recover the guard instead of propagating the poison.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    pub(super) fn enter(&self) {
        self.inflight.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn leave(&self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Acquire)
    }

    /// Whether this key may serve `model` now.
    pub fn availability(&self, model: &str, now: Instant) -> Availability {
        if self.disabled.load(Ordering::Acquire) {
            let reason = self.lock().disabled.as_ref().map(|d| d.reason).unwrap_or(DisableReason::Manual);
            return Availability::Disabled(reason);
        }
        if self.restricted.load(Ordering::Acquire) == 0 {
            return Availability::Usable;
        }
        let inner = self.lock();
        let Some(m) = inner.models.get(model) else { return Availability::Usable };
        if let Some((until, _, kind)) = m.cooldown {
            if until > now {
                return Availability::Cooling { until, kind };
            }
        }
        if let Some((until, _)) = m.breaker_until {
            if until > now {
                return Availability::Broken { until };
            }
        }
        Availability::Usable
    }

    /// Records the outcome of one attempt on `model`.
    pub fn report(&self, model: &str, outcome: &Outcome, status: Option<u16>, message: &str, policy: &KeyHealthSettings, now: Instant) {
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Ok | Outcome::ClientError => {
                self.counters.successes.fetch_add(1, Ordering::Relaxed);
                if self.restricted.load(Ordering::Acquire) == 0 {
                    return;
                }
                let mut inner = self.lock();
                if let Some(m) = inner.models.get_mut(model) {
                    m.consecutive_failures = 0;
                    m.breaker_trips = 0;
                    m.breaker_until = None;
                }
                self.tidy(&mut inner, now);
            }
            Outcome::Cooldown { until, until_wall, kind } => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                self.mark_dirty();
                let mut inner = self.lock();
                let m = inner.models.entry(model.to_owned()).or_default();
                m.cooldown = Some((*until, *until_wall, *kind));
                inner.last_error = Some(last_error(model, outcome, status, message));
                self.tidy(&mut inner, now);
            }
            Outcome::Disable(reason) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                self.disable(*reason, message);
                self.lock().last_error = Some(last_error(model, outcome, status, message));
            }
            Outcome::Failure(_) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                let mut inner = self.lock();
                let m = inner.models.entry(model.to_owned()).or_default();
                m.consecutive_failures += 1;
                if m.consecutive_failures >= policy.breaker_threshold {
                    // Each re-trip doubles the open time, up to 32 times the base.
                    let open = policy.breaker_open * (1u32 << m.breaker_trips.min(5));
                    m.breaker_trips += 1;
                    m.breaker_until = Some((now + open, SystemTime::now() + open));
                }
                inner.last_error = Some(last_error(model, outcome, status, message));
                self.tidy(&mut inner, now);
            }
        }
    }

    /// Takes the key out of service for every model.
    pub fn disable(&self, reason: DisableReason, message: &str) {
        let mut inner = self.lock();
        inner.disabled = Some(Disabled { reason, since: SystemTime::now(), message: operator_message(message) });
        self.disabled.store(true, Ordering::Release);
        self.mark_dirty();
    }

    /// Puts a disabled key back in service. Returns false if it was not disabled.
    pub fn enable(&self) -> bool {
        let mut inner = self.lock();
        let was = inner.disabled.take().is_some();
        self.disabled.store(false, Ordering::Release);
        self.mark_dirty();
        was
    }

    pub fn disabled_info(&self) -> Option<Disabled> {
        self.lock().disabled.clone()
    }

    pub fn last_error(&self) -> Option<LastError> {
        self.lock().last_error.clone()
    }

    /// Lifts 429 cooldowns on `model` set after `since` (used when a whole pool's 429s turn out
    /// to be egress throttling). Daily-quota cooldowns stay: they are explicit about the key.
    pub fn lift_rate_limit(&self, model: &str, since: Instant, now: Instant) {
        let mut inner = self.lock();
        if let Some(m) = inner.models.get_mut(model) {
            if let Some((until, _, kind)) = m.cooldown {
                if kind != CooldownKind::DailyQuota && until >= since {
                    m.cooldown = None;
                    self.mark_dirty();
                }
            }
        }
        self.tidy(&mut inner, now);
    }

    /// Clears cooldowns and breakers on every model (the prober saw the key work again).
    /// Explicit quota cooldowns are kept unless `include_quota`: a cheap probe cannot see quota.
    pub fn recover(&self, include_quota: bool, now: Instant) {
        let mut inner = self.lock();
        for m in inner.models.values_mut() {
            m.consecutive_failures = 0;
            m.breaker_until = None;
            m.breaker_trips = 0;
            if include_quota || matches!(m.cooldown, Some((_, _, CooldownKind::Unspecified))) {
                m.cooldown = None;
            }
        }
        self.mark_dirty();
        self.tidy(&mut inner, now);
    }

    /// Forgets everything: enabled, no cooldowns, no failures.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.disabled = None;
        inner.models.clear();
        inner.last_error = None;
        self.disabled.store(false, Ordering::Release);
        self.restricted.store(0, Ordering::Release);
        self.mark_dirty();
    }

    /// Models (with the probe reason) this key should be probed for: broken pairs, and
    /// cooldowns we guessed rather than were told.
    pub fn probe_candidates(&self, now: Instant) -> Vec<String> {
        let inner = self.lock();
        inner
            .models
            .iter()
            .filter(|(_, m)| m.breaker_until.is_some_and(|(u, _)| u > now) || matches!(m.cooldown, Some((u, _, CooldownKind::Unspecified)) if u > now))
            .map(|(model, _)| model.clone())
            .collect()
    }

    /// The earliest moment this key becomes usable again for `model`, if it is restricted.
    pub fn recovers_at(&self, model: &str, now: Instant) -> Option<Instant> {
        match self.availability(model, now) {
            Availability::Cooling { until, .. } | Availability::Broken { until } => Some(until),
            _ => None,
        }
    }

    /// Per-model views of everything not plainly healthy.
    pub fn model_views(&self, now: Instant) -> Vec<ModelView> {
        let inner = self.lock();
        let mut out: Vec<ModelView> = inner
            .models
            .iter()
            .map(|(model, m)| {
                let (state, until, kind) = match (m.cooldown, m.breaker_until) {
                    (Some((u, w, k)), _) if u > now => ("cooling", Some(w), Some(k)),
                    (_, Some((u, w))) if u > now => ("broken", Some(w), None),
                    _ => ("healthy", None, None),
                };
                ModelView { model: model.clone(), state, until, cooldown_kind: kind, consecutive_failures: m.consecutive_failures }
            })
            .collect();
        out.sort_by(|a, b| a.model.cmp(&b.model));
        out
    }

    /// Drops model entries that no longer restrict anything and republishes the count.
    fn tidy(&self, inner: &mut Inner, now: Instant) {
        inner.models.retain(|_, m| !m.is_clean(now));
        self.restricted.store(inner.models.len(), Ordering::Release);
    }
}

fn last_error(model: &str, outcome: &Outcome, status: Option<u16>, message: &str) -> LastError {
    LastError { at: SystemTime::now(), model: model.to_owned(), outcome: outcome.label(), status, message: operator_message(message) }
}

/// The most of an upstream message kept for operators, in bytes.
pub const MESSAGE_LIMIT: usize = 500;

/// An upstream message as kept and shown to operators (admin API, state store): keys redacted
/// first, so that a cut cannot leave part of a key behind, then cut to at most
/// [`MESSAGE_LIMIT`] bytes on a character boundary.
pub fn operator_message(message: &str) -> String {
    let mut out = crate::gemini::api_key::redact_keys(message).into_owned();
    truncate_on_char_boundary(&mut out, MESSAGE_LIMIT);
    out
}

/// Cuts `s` to at most `max` bytes without splitting a character (`String::truncate` panics
/// inside one).
fn truncate_on_char_boundary(s: &mut String, max: usize) {
    if s.len() > max {
        let cut = (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        s.truncate(cut);
    }
}

/// Duration until `t`, rounded up to whole seconds (for `Retry-After`).
pub fn secs_until(t: Instant, now: Instant) -> u64 {
    let d = t.saturating_duration_since(now);
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::outcome::FailureKind;
    use crate::secret::Fingerprint;
    use std::time::Duration;

    fn policy() -> KeyHealthSettings {
        KeyHealthSettings::default()
    }

    #[test]
    fn cooldowns_are_per_model() {
        let h = KeyHealth::new(Fingerprint::of(b"k"));
        let now = Instant::now();
        let out = Outcome::Cooldown { until: now + Duration::from_secs(10), until_wall: SystemTime::now(), kind: CooldownKind::Quota };
        h.report("gemini-2.5-pro", &out, Some(429), "quota", &policy(), now);
        assert!(matches!(h.availability("gemini-2.5-pro", now), Availability::Cooling { .. }));
        assert_eq!(h.availability("gemini-2.5-flash", now), Availability::Usable);
        assert_eq!(h.availability("gemini-2.5-pro", now + Duration::from_secs(11)), Availability::Usable);
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_success_closes_it() {
        let h = KeyHealth::new(Fingerprint::of(b"k"));
        let now = Instant::now();
        let fail = Outcome::Failure(FailureKind::ServerError);
        h.report("m", &fail, Some(503), "overloaded", &policy(), now);
        h.report("m", &fail, Some(503), "overloaded", &policy(), now);
        assert_eq!(h.availability("m", now), Availability::Usable);
        h.report("m", &fail, Some(503), "overloaded", &policy(), now);
        assert!(matches!(h.availability("m", now), Availability::Broken { .. }));
        // Half-open after the open period; one success closes it.
        let later = now + Duration::from_secs(31);
        assert_eq!(h.availability("m", later), Availability::Usable);
        h.report("m", &Outcome::Ok, Some(200), "", &policy(), later);
        assert_eq!(h.restricted.load(Ordering::Relaxed), 0, "a healthy key takes the lock-free path again");
    }

    #[test]
    fn a_re_tripped_breaker_stays_open_longer() {
        let h = KeyHealth::new(Fingerprint::of(b"k"));
        let now = Instant::now();
        let fail = Outcome::Failure(FailureKind::Timeout);
        for _ in 0..3 {
            h.report("m", &fail, None, "timeout", &policy(), now);
        }
        let later = now + Duration::from_secs(31);
        h.report("m", &fail, None, "timeout", &policy(), later);
        assert!(matches!(h.availability("m", later + Duration::from_secs(31)), Availability::Broken { .. }), "second trip: 60s");
        assert_eq!(h.availability("m", later + Duration::from_secs(61)), Availability::Usable);
    }

    #[test]
    fn keys_in_upstream_messages_are_redacted_before_they_are_kept() {
        let key = format!("AIza{}", "s".repeat(35));
        let h = KeyHealth::new(Fingerprint::of(key.as_bytes()));
        let message = format!("Permission denied: Consumer 'api_key:{key}' has been suspended.");
        h.report("m", &Outcome::Disable(DisableReason::Suspended), Some(403), &message, &policy(), Instant::now());
        let marker = format!("[redacted key …{}]", h.fingerprint);
        for kept in [h.last_error().map(|e| e.message), h.disabled_info().map(|d| d.message)] {
            let kept = kept.unwrap_or_default();
            assert!(!kept.contains(&key) && kept.contains(&marker), "{kept}");
        }
    }

    #[test]
    fn a_long_message_is_cut_after_redaction_and_on_a_character_boundary() {
        let h = KeyHealth::new(Fingerprint::of(b"k"));
        let fail = Outcome::Failure(FailureKind::ServerError);
        // "é" is two bytes: byte 500 falls inside one.
        h.report("m", &fail, Some(500), &format!("x{}", "é".repeat(400)), &policy(), Instant::now());
        let kept = h.last_error().unwrap().message;
        assert_eq!((kept.len(), kept.chars().last()), (499, Some('é')));
        // A key straddling the limit is redacted, not cut into a partial key left in clear.
        let key = format!("AIza{}", "t".repeat(35));
        h.report("m", &fail, Some(500), &format!("{}{key}", "y".repeat(480)), &policy(), Instant::now());
        let kept = h.last_error().unwrap().message;
        assert!(kept.len() <= MESSAGE_LIMIT && !kept.contains("AIzatttt"), "{kept}");
    }

    #[test]
    fn disable_is_key_wide_until_enabled() {
        let h = KeyHealth::new(Fingerprint::of(b"k"));
        let now = Instant::now();
        h.report("m", &Outcome::Disable(DisableReason::InvalidKey), Some(400), "API key not valid", &policy(), now);
        assert_eq!(h.availability("other", now), Availability::Disabled(DisableReason::InvalidKey));
        assert!(h.enable());
        assert_eq!(h.availability("other", now), Availability::Usable);
    }
}

#[cfg(test)]
mod durable_tests {
    use super::*;
    use crate::secret::Fingerprint;
    use std::time::Duration;

    #[test]
    fn disabled_and_cooldowns_survive_a_round_trip() {
        let now = Instant::now();
        let a = KeyHealth::new(Fingerprint::of(b"k"));
        a.disable(DisableReason::Leaked, "leaked");
        let out =
            Outcome::Cooldown { until: now + Duration::from_secs(30), until_wall: SystemTime::now() + Duration::from_secs(30), kind: CooldownKind::Quota };
        a.report("m", &out, Some(429), "", &KeyHealthSettings::default(), now);
        assert!(a.take_dirty());
        assert!(!a.take_dirty());
        let saved = a.durable(now);
        let b = KeyHealth::new(Fingerprint::of(b"k"));
        b.restore(saved, now);
        assert_eq!(b.availability("x", now), Availability::Disabled(DisableReason::Leaked));
        b.enable();
        assert!(matches!(b.availability("m", now), Availability::Cooling { .. }));
        assert_eq!(b.availability("m", now + Duration::from_secs(31)), Availability::Usable);
    }

    #[test]
    fn a_key_in_a_message_saved_by_an_earlier_version_is_redacted_on_restore() {
        let key = format!("AIza{}", "r".repeat(35));
        let saved = Durable {
            disabled: Some(Disabled { reason: DisableReason::Suspended, since: SystemTime::now(), message: format!("Consumer 'api_key:{key}'") }),
            cooldowns: Vec::new(),
        };
        let h = KeyHealth::new(Fingerprint::of(key.as_bytes()));
        h.restore(saved, Instant::now());
        let message = h.disabled_info().map(|d| d.message).unwrap_or_default();
        assert!(!message.contains(&key) && message.contains("[redacted key …"), "{message}");
    }
}
