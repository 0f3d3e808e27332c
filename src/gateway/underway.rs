//! What a request has under way outside its record: the upstream attempt in progress and the
//! usage scanner of the answer being relayed. Kept beside the record in the request's drop guard,
//! so that a request dropped unfinished (cut at shutdown) is still recorded with them.

use super::Shared;
use crate::gemini::usage::{Usage, UsageScanner};
use crate::pool::PoolKey;
use crate::telemetry::access_log::{AccessRecord, AttemptRecord};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The attempt label of a request dropped while an upstream attempt was in progress: cut at the
/// end of a shutdown's grace period, or dropped for any other reason.
pub(super) const CUT: &str = "cut";
pub(super) const ABANDONED: &str = "abandoned";

/// An upstream attempt started and not yet settled.
struct Pending<'k> {
    key: &'k PoolKey,
    started: Instant,
    /// The upstream's status, once its answer's head arrived.
    status: Option<u16>,
}

/// A request's progress that its record does not hold yet. `'k`: the configuration snapshot the
/// request runs on (its keys).
#[derive(Default)]
pub(super) struct Underway<'k> {
    attempt: Option<Pending<'k>>,
    /// Reads usage off the answer being relayed: the relay feeds it, and whoever ends the
    /// request (the relay's caller, or the drop of a cut request) takes it and reads the counts.
    pub scanner: Option<UsageScanner>,
}

impl<'k> Underway<'k> {
    /// An attempt on `key` started at `started`.
    pub fn begin(&mut self, key: &'k PoolKey, started: Instant) {
        self.attempt = Some(Pending { key, started, status: None });
    }

    /// The attempt's answer arrived with `status`.
    pub fn answered(&mut self, status: u16) {
        if let Some(a) = &mut self.attempt {
            a.status = Some(status);
        }
    }

    /// The key of the attempt in progress.
    pub fn key(&self) -> Option<&'k PoolKey> {
        self.attempt.as_ref().map(|a| a.key)
    }

    /// Ends the attempt in progress with `outcome` (an `Outcome::label`): its record, for the
    /// request's `attempts`. `None` if no attempt was in progress.
    pub fn settle(&mut self, outcome: &'static str, ended: Instant) -> Option<AttemptRecord> {
        let a = self.attempt.take()?;
        Some(AttemptRecord {
            key: a.key.name.clone(),
            fingerprint: a.key.health.fingerprint,
            fingerprint_label: a.key.fingerprint_label.clone(),
            outcome,
            status: a.status,
            ms: super::exchange::ms(ended.saturating_duration_since(a.started)),
        })
    }

    /// Completes the record of a request dropped unfinished, labelling the attempt in progress
    /// `outcome` ([`CUT`] or [`ABANDONED`]): the tokens of the usage already relayed are counted
    /// and charged as a finished request's are, and the attempt joins `attempts` (the request
    /// log names its key, and the usage tables charge it).
    pub fn record_unfinished(&mut self, shared: &Shared, log: &mut AccessRecord, outcome: &'static str, now: Instant) {
        let usage = self.scanner.take().as_ref().and_then(UsageScanner::finish);
        if let (Some(u), Some(key)) = (usage, self.key()) {
            charge(shared, key, log.client.as_deref(), u);
        }
        log.set_usage(usage);
        log.attempts.extend(self.settle(outcome, now));
    }
}

/// Charges `usage` to the key that served it and to the client's token limits.
pub(super) fn charge(shared: &Shared, key: &PoolKey, client: Option<&str>, usage: Usage) {
    key.health.counters.input_tokens.fetch_add(usage.input_tokens, Ordering::Relaxed);
    key.health.counters.output_tokens.fetch_add(usage.output_tokens, Ordering::Relaxed);
    if let Some(c) = client {
        shared.limits.record_tokens(c, usage.input_tokens + usage.output_tokens);
    }
}
