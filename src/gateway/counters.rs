//! Counters the data plane keeps for abuse limits and metrics: open connections, streams in
//! flight, and refusals by reason.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A bounded count of things in flight (connections, streams).
#[derive(Debug, Default)]
pub struct Slots(AtomicUsize);

/// One taken slot; given back when dropped.
pub struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    /// Takes a slot unless `max` are taken (no maximum: always).
    pub fn acquire(&self, max: Option<usize>) -> Option<Slot<'_>> {
        let n = self.0.fetch_add(1, Ordering::AcqRel);
        if max.is_some_and(|m| n >= m) {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(&self.0))
    }

    pub fn current(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Requests and connections refused, by reason. Only the refusal path touches the lock.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<BTreeMap<&'static str, u64>>);

impl Refusals {
    pub fn count(&self, reason: &'static str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_default() += 1;
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (*k, *v)).collect()
    }
}
