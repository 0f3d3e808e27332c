//! Telling a throttled egress from rate-limited keys: when every key of a pool answers 429
//! within a short window, with no success in between, the limit is on the proxy's address, not
//! on each key. Then the pool pauses briefly instead of cooling every key for its full delay.

use crate::config::KeyHealthSettings;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Default)]
struct Streak {
    started: Option<Instant>,
    count: usize,
    paused_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct EgressGuard {
    per_model: Mutex<HashMap<String, Streak>>,
    /// Set while any model has a streak or a pause: keeps the success path lock-free otherwise.
    active: AtomicBool,
}

impl EgressGuard {
    pub fn paused(&self, model: &str, now: Instant) -> Option<Instant> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let m = self.per_model.lock().unwrap_or_else(|p| p.into_inner());
        m.get(model).and_then(|s| s.paused_until).filter(|u| *u > now)
    }

    /// Counts a 429. Returns the start of the window when the streak covers every active key:
    /// the caller lifts the cooldowns set since then.
    pub fn on_rate_limited(&self, model: &str, now: Instant, active_keys: usize, policy: &KeyHealthSettings) -> Option<Instant> {
        let mut m = self.per_model.lock().unwrap_or_else(|p| p.into_inner());
        self.active.store(true, Ordering::Release);
        let s = m.entry(model.to_owned()).or_default();
        match s.started {
            Some(t) if now.duration_since(t) <= policy.egress_window => s.count += 1,
            _ => {
                s.started = Some(now);
                s.count = 1;
            }
        }
        // One key proves nothing about the egress.
        if active_keys >= 2 && s.count >= active_keys {
            let since = s.started.unwrap_or(now);
            s.paused_until = Some(now + policy.egress_pause);
            s.started = None;
            s.count = 0;
            return Some(since);
        }
        None
    }

    pub fn on_success(&self, model: &str) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let mut m = self.per_model.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(s) = m.get_mut(model) {
            s.started = None;
            s.count = 0;
        }
        m.retain(|_, s| s.count > 0 || s.paused_until.is_some_and(|u| u > now));
        if m.is_empty() {
            self.active.store(false, Ordering::Release);
        }
    }
}
