//! The writer thread and its sending handle: the data plane queues records without ever
//! blocking, and one OS thread commits them in batches every tick, with the key states and
//! bindings handed over since the last one.

use super::error::StoreError;
use super::file_watch::FileWatch;
use super::flush::{self, PendingState, UsageFold};
use super::retention::Pruner;
use super::types::{PersistedBinding, PersistedKeyState, Retention, StoreHealth};
use crate::courtesy::Courtesy;
use crate::telemetry::access_log::AccessRecord;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// How long [`StoreWriter::flush`] waits for the writer.
pub const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// Commit retries after the last handle is dropped, before the remaining records are given up.
const FINAL_ATTEMPTS: u32 = 3;
/// While commits fail, the error is logged at most this often (it stays in `health()`).
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);
/// Bindings that may wait for a commit, on the handle and again in the writer's backlog while
/// commits fail; beyond that new ones are dropped and counted. Bindings come with resource
/// creations, far rarer than requests: at ten a second this is close to three hours of a
/// database that cannot be written, in about 20 MB.
const MAX_PENDING_BINDINGS: usize = 100_000;

/// The writer's health, shared by the store (for `health()`), the handles and the thread.
pub(crate) struct WriterState {
    writable: AtomicBool,
    last_error: Mutex<Option<String>>,
    dropped: AtomicU64,
    written: AtomicU64,
    unlogged: AtomicU64,
    /// Unix ms of the last successful commit; `i64::MIN` for never.
    last_flush_ms: AtomicI64,
    /// The database file was deleted or replaced under the writer: commits still succeed, into
    /// a file that is gone, so the store stays unwritable until a restart.
    file_lost: AtomicBool,
}

impl WriterState {
    pub(crate) fn new() -> Self {
        WriterState {
            writable: AtomicBool::new(true),
            last_error: Mutex::new(None),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
            last_flush_ms: AtomicI64::new(i64::MIN),
            file_lost: AtomicBool::new(false),
        }
    }

    pub(crate) fn health(&self) -> StoreHealth {
        let last = self.last_flush_ms.load(Ordering::Relaxed);
        StoreHealth {
            writable: self.writable.load(Ordering::Relaxed),
            last_error: self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            dropped_records: self.dropped.load(Ordering::Relaxed),
            written_records: self.written.load(Ordering::Relaxed),
            unlogged_requests: self.unlogged.load(Ordering::Relaxed),
            last_flush: u64::try_from(last).ok().map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// A commit succeeded; `requests` of them had their usage committed (and are now written).
    fn committed(&self, requests: u64) {
        self.writable.store(!self.file_lost.load(Ordering::Relaxed), Ordering::Relaxed);
        self.written.fetch_add(requests, Ordering::Relaxed);
        self.last_flush_ms.store(super::now_ms(), Ordering::Relaxed);
    }

    /// The file is gone: say so in `health()` (and so in /readyz) until the restart.
    fn file_lost(&self, problem: String) {
        if !self.file_lost.swap(true, Ordering::Relaxed) {
            tracing::error!(problem = %problem, "state database file lost");
        }
        self.writable.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(problem);
    }

    fn note_error(&self, e: &StoreError) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    fn last_error(&self) -> String {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
    }
}

/// Flush requests as tickets: a caller takes the next number, the writer reports the highest
/// number whose records are all committed.
struct FlushSync {
    state: Mutex<FlushState>,
    done: Condvar,
}

#[derive(Default)]
struct FlushState {
    requested: u64,
    completed: u64,
    completed_ok: bool,
    stopped: bool,
}

impl FlushSync {
    fn lock(&self) -> std::sync::MutexGuard<'_, FlushState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn complete(&self, ticket: u64, ok: bool) {
        let mut s = self.lock();
        if ticket > s.completed {
            s.completed = ticket;
            s.completed_ok = ok;
            self.done.notify_all();
        }
    }
}

/// Marks the writer stopped when its thread ends, normally or by a panic, so that `flush`
/// callers stop waiting at once.
struct StopGuard(Arc<FlushSync>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.lock().stopped = true;
        self.0.done.notify_all();
    }
}

/// Sending handle of the writer; cheap to clone. When the last clone is dropped, the writer
/// commits what is left and its thread ends.
#[derive(Clone)]
pub struct StoreWriter {
    inner: Arc<Handle>,
}

struct Handle {
    /// `Option` only so that `Drop` can close the channel before waking the thread. Boxed:
    /// the channel allocates all its slots up front, 8 bytes each rather than ~250.
    tx: Option<SyncSender<Box<AccessRecord>>>,
    /// Pending key states by fingerprint and bindings by kind and name. Maps rather than the
    /// queue: a key state must never be dropped for lack of room, and only the latest per key
    /// or binding matters.
    durable: Arc<Mutex<PendingState>>,
    flush: Arc<FlushSync>,
    state: Arc<WriterState>,
    thread: Thread,
}

impl Drop for Handle {
    fn drop(&mut self) {
        drop(self.tx.take());
        // The final drain happens now rather than at the next tick.
        self.thread.unpark();
    }
}

impl StoreWriter {
    /// Queues a request record for the log and the usage aggregates. Never blocks: when the
    /// queue is full the record's log row is dropped and counted in [`StoreWriter::dropped`],
    /// and its usage is folded here, under the lock the writer takes once a tick, so that the
    /// tokens and counts of an overloaded minute still add up. Costs one clone of the record (a
    /// few small allocations); serialisation happens on the writer.
    pub fn request(&self, r: &AccessRecord) {
        self.request_owned(Box::new(r.clone()));
    }

    /// [`StoreWriter::request`] for a record the caller is done with: no copy.
    pub fn request_owned(&self, r: Box<AccessRecord>) {
        let Some(tx) = &self.inner.tx else { return };
        match tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(r)) => {
                self.lock_durable().overflow.add(&r);
                self.inner.state.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.inner.state.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records a key's state; committed at the next tick. Never dropped: pending states are
    /// kept per fingerprint, and a newer one replaces an older one not yet written.
    pub fn key_state(&self, s: PersistedKeyState) {
        self.lock_durable().keys.insert(s.fingerprint.clone(), s);
    }

    /// Records bindings (resource owners, upload sessions); committed at the next tick. Never
    /// blocks: a newer binding replaces a pending one of the same kind and name, and when
    /// [`MAX_PENDING_BINDINGS`] are waiting (the database cannot be written) new names are
    /// dropped and counted in [`StoreWriter::dropped`].
    pub fn bindings(&self, bindings: impl IntoIterator<Item = PersistedBinding>) {
        let mut dropped = 0u64;
        {
            let mut pending = self.lock_durable();
            for b in bindings {
                if !pending.add_binding(b, MAX_PENDING_BINDINGS) {
                    dropped += 1;
                }
            }
        }
        self.count_dropped(dropped);
    }

    /// Counts `n` records lost before they reached the writer (a binding the state store
    /// could not keep for persisting), in [`StoreWriter::dropped`] and the store's health.
    pub fn count_dropped(&self, n: u64) {
        if n > 0 {
            self.inner.state.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn lock_durable(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.inner.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until everything queued before the call is committed, for at most
    /// [`FLUSH_WAIT`]. For graceful shutdown (not for the request path).
    ///
    /// Errors: [`StoreError::FlushFailed`] when the commit failed (the records stay queued and
    /// the writer keeps retrying), [`StoreError::FlushTimeout`], [`StoreError::WriterStopped`].
    pub fn flush(&self) -> Result<(), StoreError> {
        self.flush_within(FLUSH_WAIT)
    }

    /// [`StoreWriter::flush`] with another bound on the wait.
    pub fn flush_within(&self, wait: Duration) -> Result<(), StoreError> {
        let sync = &self.inner.flush;
        let ticket = {
            let mut s = sync.lock();
            s.requested += 1;
            s.requested
        };
        self.inner.thread.unpark();
        let deadline = Instant::now() + wait;
        let mut s = sync.lock();
        loop {
            if s.completed >= ticket {
                return if s.completed_ok { Ok(()) } else { Err(StoreError::FlushFailed(self.inner.state.last_error())) };
            }
            if s.stopped {
                return Err(StoreError::WriterStopped);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::FlushTimeout(wait));
            }
            s = sync.done.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Records dropped so far: queue full, or given up after the writer could not commit.
    pub fn dropped(&self) -> u64 {
        self.inner.state.dropped.load(Ordering::Relaxed)
    }
}

/// Starts the writer thread on `conn`.
pub(crate) fn start(
    conn: Connection,
    path: PathBuf,
    retention: Retention,
    state: Arc<WriterState>,
    flush_every: Duration,
    queue: usize,
) -> Result<StoreWriter, StoreError> {
    // A zero-capacity channel would be a rendezvous: every try_send would fail.
    let queue = queue.max(1);
    let (tx, rx) = sync_channel(queue);
    let durable = Arc::new(Mutex::new(PendingState::default()));
    let flush = Arc::new(FlushSync { state: Mutex::new(FlushState { completed_ok: true, ..FlushState::default() }), done: Condvar::new() });
    let watch = FileWatch::new(&path);
    let writer = Writer {
        conn,
        path,
        rx,
        durable: durable.clone(),
        flush: flush.clone(),
        state: state.clone(),
        every: flush_every.max(Duration::from_millis(1)),
        // The backlog kept across failed commits is bounded like the queue.
        cap: queue,
        rows: RowBudget::new(retention.request_log_ok_per_second),
        pruner: Pruner::new(retention),
        watch,
    };
    let handle = std::thread::Builder::new().name("store-writer".into()).spawn(move || writer.run()).map_err(StoreError::Spawn)?;
    let thread = handle.thread().clone();
    Ok(StoreWriter { inner: Arc::new(Handle { tx: Some(tx), durable, flush, state, thread }) })
}

/// What draining the queue ended on.
#[derive(Debug, PartialEq, Eq)]
enum Drained {
    /// The queue is empty.
    Empty,
    /// The batch is full; more may be waiting.
    Full,
    /// Every handle is gone and the queue is empty.
    Closed,
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    rx: Receiver<Box<AccessRecord>>,
    durable: Arc<Mutex<PendingState>>,
    flush: Arc<FlushSync>,
    state: Arc<WriterState>,
    every: Duration,
    cap: usize,
    rows: RowBudget,
    pruner: Pruner,
    watch: FileWatch,
}

/// Which requests get a request-log row: every error and retried request, and successful ones
/// up to a number per second (of the requests' own time, so a backlog drained late is judged
/// by when it happened).
struct RowBudget {
    per_second: u32,
    second: i64,
    used: u32,
}

impl RowBudget {
    fn new(per_second: u32) -> Self {
        RowBudget { per_second, second: i64::MIN, used: 0 }
    }

    fn take(&mut self, r: &AccessRecord) -> bool {
        if r.status >= 400 || r.attempts.len() > 1 || r.error.is_some() {
            return true;
        }
        let second = super::unix_ms(r.time).div_euclid(1000);
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        self.used = self.used.saturating_add(1);
        self.used <= self.per_second
    }
}

/// Usage folds of at most this many rows are committed every tick, with the log rows of the
/// same requests; at that size the upserts cost about what the fold would save.
const SMALL_FOLD: usize = 1024;
/// A larger fold is committed at least every this many ticks (10 s at the default 250 ms):
/// what a `kill -9` can lose of a large pool's usage, and how far its statistics may lag.
const LARGE_FOLD_TICKS: u32 = 40;
/// A fold reaching this many rows is committed at once (about 200 bytes each in memory).
const MAX_FOLD: usize = 128 * 1024;
/// A due fold larger than this is cut into slices of this many rows, one committed per tick: a
/// single commit of 100,000 rows (and the WAL checkpoint after it) held the writer for over a
/// second while the data plane went on queueing, and the queue overflowed.
const SLICE: usize = 16 * 1024;

/// Whether a commit should include `usage`: always when it is small, otherwise once it is
/// `old` (folded for [`LARGE_FOLD_TICKS`]) or big, or when `force`d.
fn fold_due(usage: &UsageFold, old: bool, force: bool) -> bool {
    !usage.is_empty() && (force || usage.rows() <= SMALL_FOLD || usage.rows() >= MAX_FOLD || old)
}

/// Drained requests not yet committed: log rows for the ones that get one, usage for all.
#[derive(Default)]
struct Pending {
    rows: Vec<AccessRecord>,
    usage: UsageFold,
    /// When the oldest request in `usage` was folded.
    usage_since: Option<Instant>,
    /// Slices of a fold that became due, committed one per tick, before `usage` is considered.
    sealed: std::collections::VecDeque<UsageFold>,
}

/// Which usage a commit carries.
enum UsagePart {
    None,
    Sealed,
    Fold,
}

impl Pending {
    /// Requests whose usage is not committed yet.
    fn requests(&self) -> u64 {
        self.usage.requests() + self.sealed.iter().map(UsageFold::requests).sum::<u64>()
    }
}

impl Writer {
    fn run(mut self) {
        crate::courtesy::background_thread();
        let _stop = StopGuard(self.flush.clone());
        // Requests, key states and bindings not yet committed; kept across failed commits.
        let mut pending = Pending::default();
        let mut durable = PendingState::default();
        let mut last_logged: Option<Instant> = None;
        loop {
            // Ticks at a fixed rate, from the start of one drain to the next, so that what a
            // crash can lose is one tick plus one commit, whatever the commit takes.
            let tick_started = Instant::now();
            // Read the flush ticket before draining: whatever was queued before that flush()
            // call is then in the queue, and is committed if the drain reaches the end.
            let (ticket, flush_waiting) = {
                let s = self.flush.lock();
                (s.requested, s.requested > s.completed)
            };
            let drained = self.drain(&mut pending);
            let mut handed = std::mem::take(&mut *self.durable.lock().unwrap_or_else(|p| p.into_inner()));
            let overflow = std::mem::take(&mut handed.overflow);
            if !overflow.is_empty() {
                pending.usage.merge(overflow);
                pending.usage_since.get_or_insert_with(Instant::now);
            }
            let dropped = durable.absorb(handed, MAX_PENDING_BINDINGS);
            self.state.dropped.fetch_add(dropped, Ordering::Relaxed);
            let ok = self.commit(&mut pending, &mut durable, flush_waiting || drained == Drained::Closed, &mut last_logged);
            // A failed commit answers waiting flushes at once (with the error); a full batch
            // that committed leaves them for the next pass, which reaches the end of the queue.
            if drained != Drained::Full || !ok {
                self.flush.complete(ticket, ok);
            }
            if let Some(problem) = self.watch.lost(Instant::now()) {
                self.state.file_lost(problem);
            }
            if ok {
                if let Err(e) = self.pruner.tick(&mut self.conn, &self.path, Instant::now(), super::now_ms()) {
                    tracing::warn!(error = %e, "store pruning failed; retrying at the next pass");
                    self.state.note_error(&e);
                }
            }
            if drained == Drained::Closed {
                self.finish(pending, durable, &mut last_logged);
                return;
            }
            // A full batch that committed means more is waiting: go on without sleeping.
            // Otherwise wait for the tick; flush() and the last handle's drop wake us early.
            if !(ok && drained == Drained::Full) {
                let left = self.every.saturating_sub(tick_started.elapsed());
                if !left.is_zero() {
                    std::thread::park_timeout(left);
                }
            }
        }
    }

    /// Moves queued requests into `pending` (usage folded, a log row kept for those the row
    /// budget picks) until the queue is empty, the log rows reach the backlog bound, or the
    /// fold reaches [`MAX_FOLD`].
    fn drain(&mut self, pending: &mut Pending) -> Drained {
        let mut unlogged = 0u64;
        // A tick's drain at full load is thousands of records.
        let mut courtesy = Courtesy::start();
        let drained = loop {
            if pending.rows.len() >= self.cap || pending.usage.rows() >= MAX_FOLD {
                break Drained::Full;
            }
            match self.rx.try_recv() {
                Ok(r) => {
                    courtesy.item();
                    pending.usage.add(&r);
                    pending.usage_since.get_or_insert_with(Instant::now);
                    if self.rows.take(&r) {
                        pending.rows.push(*r);
                    } else {
                        unlogged += 1;
                    }
                }
                Err(TryRecvError::Empty) => break Drained::Empty,
                Err(TryRecvError::Disconnected) => break Drained::Closed,
            }
        };
        self.state.unlogged.fetch_add(unlogged, Ordering::Relaxed);
        drained
    }

    /// Whether this commit includes the usage fold ([`fold_due`]); `force` when a flush is
    /// waiting or the writer is stopping.
    fn usage_due(&self, pending: &Pending, force: bool) -> bool {
        let old = pending.usage_since.is_some_and(|t| t.elapsed() >= self.every * LARGE_FOLD_TICKS);
        fold_due(&pending.usage, old, force)
    }

    /// Commits the log rows, key states, bindings and usage that is due (a slice of a sealed fold, or the
    /// fold); on success empties what it committed. `force` (a flush, or the end) commits all
    /// usage, in as many transactions as there are slices. Returns whether it worked.
    fn commit(&mut self, pending: &mut Pending, durable: &mut PendingState, force: bool, last_logged: &mut Option<Instant>) -> bool {
        if !force && pending.usage.rows() > SLICE && self.usage_due(pending, false) {
            pending.sealed.extend(std::mem::take(&mut pending.usage).into_slices(SLICE));
            pending.usage_since = None;
        }
        loop {
            let part = if !pending.sealed.is_empty() {
                UsagePart::Sealed
            } else if self.usage_due(pending, force) {
                UsagePart::Fold
            } else {
                UsagePart::None
            };
            if pending.rows.is_empty() && durable.is_empty() && matches!(part, UsagePart::None) {
                return true;
            }
            let usage = match part {
                UsagePart::Sealed => pending.sealed.front(),
                UsagePart::Fold => Some(&pending.usage),
                UsagePart::None => None,
            };
            let requests = usage.map_or(0, UsageFold::requests);
            match flush::commit(&mut self.conn, &self.path, &pending.rows, usage, durable) {
                Ok(()) => {
                    self.state.committed(requests);
                    pending.rows.clear();
                    durable.clear();
                    match part {
                        UsagePart::Sealed => {
                            pending.sealed.pop_front();
                        }
                        UsagePart::Fold => {
                            pending.usage.clear();
                            pending.usage_since = None;
                        }
                        UsagePart::None => {}
                    }
                    if last_logged.take().is_some() {
                        tracing::info!(path = %self.path.display(), "store writes work again");
                    }
                    let more = !pending.sealed.is_empty() || self.usage_due(pending, true);
                    if !(force && more) {
                        return true;
                    }
                }
                Err(e) => {
                    let was_writable = self.state.writable.swap(false, Ordering::Relaxed);
                    self.state.note_error(&e);
                    if was_writable || last_logged.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY) {
                        tracing::error!(error = %e, pending = pending.requests(), "store commit failed; retrying every tick");
                        *last_logged = Some(Instant::now());
                    }
                    return false;
                }
            }
        }
    }

    /// The last handle is gone: commit what is left, retrying a few times, then give up.
    fn finish(&mut self, mut pending: Pending, mut durable: PendingState, last_logged: &mut Option<Instant>) {
        for _ in 0..FINAL_ATTEMPTS {
            if self.commit(&mut pending, &mut durable, true, last_logged) {
                return;
            }
            std::thread::sleep(self.every);
        }
        let bindings = durable.bindings.len() as u64;
        let lost = pending.requests() + bindings;
        self.state.dropped.fetch_add(lost, Ordering::Relaxed);
        tracing::error!(lost, keys = durable.keys.len(), bindings, "store writer stopped with records it could not commit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::error::Context;
    use crate::store::flush::tests::record;
    use crate::store::{BindingKind, PersistedDisable, RequestQuery, Store};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Retention::default()).expect("open");
        (dir, store)
    }

    fn logged(s: &Store) -> usize {
        s.requests(&RequestQuery { limit: 1000, ..RequestQuery::default() }).expect("query").len()
    }

    fn now() -> i64 {
        super::super::now_ms()
    }

    /// Request-log rows, counted in SQL (the API pages at 1,000).
    fn logged_total(s: &Store) -> i64 {
        s.read(|c, p| c.query_row("SELECT count(*) FROM request_log", [], |r| r.get(0)).ctx("count", p)).expect("count")
    }

    #[test]
    fn successful_requests_get_rows_up_to_the_budget_and_errors_always_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path(), Retention { request_log_ok_per_second: 3, ..Retention::default() }).expect("open");
        let w = s.start_writer(Duration::from_secs(3600), 1024).expect("writer");
        // Ten successes and two errors in one second, then two successes in the next.
        let t = (now() / 1000 - 10) * 1000;
        for i in 0..10 {
            w.request(&record(t + i, i as u64, Some("k"), Some("app"), Some("m"), 200, 5.0));
        }
        w.request(&record(t + 20, 100, Some("k"), Some("app"), Some("m"), 429, 5.0));
        w.request(&record(t + 21, 101, Some("k"), Some("app"), Some("m"), 500, 5.0));
        w.request(&record(t + 1000, 200, Some("k"), Some("app"), Some("m"), 200, 5.0));
        w.request(&record(t + 1001, 201, Some("k"), Some("app"), Some("m"), 200, 5.0));
        w.flush().expect("flush");
        let rows = s.requests(&RequestQuery { limit: 1000, ..RequestQuery::default() }).expect("query");
        let mut ids: Vec<u64> = rows.iter().map(|r| r.request_id).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2, 100, 101, 200, 201], "three successes a second, every error");
        let h = s.health();
        assert_eq!((h.written_records, h.unlogged_requests), (14, 7));
        // Usage still counts every request.
        let totals = s.totals(&crate::store::StatsQuery { from_ms: t - 60_000, to_ms: t + 60_000, ..Default::default() }).expect("totals");
        assert_eq!(totals.counts.requests, 14);
    }

    #[test]
    fn flush_commits_everything_queued_before_it() {
        let (_dir, s) = store();
        // A tick far away: only flush() can make the records appear.
        let w = s.start_writer(Duration::from_secs(3600), 1024).expect("writer");
        for i in 0..10 {
            w.request(&record(now(), i, Some("k"), Some("app"), Some("m"), 200, 5.0));
        }
        w.flush().expect("flush");
        assert_eq!(logged(&s), 10);
        let h = s.health();
        assert!(h.writable && h.last_error.is_none());
        assert_eq!((h.written_records, h.dropped_records), (10, 0));
        assert!(h.last_flush.is_some());
        // A flush with nothing queued returns at once.
        w.flush_within(Duration::from_secs(1)).expect("empty flush");
    }

    /// Requests that each make their own usage row: `n` keys, one request each.
    fn one_request_per_key(w: &StoreWriter, n: usize) {
        for i in 0..n {
            w.request(&record(now(), i as u64, Some(&format!("key-{i}")), Some("app"), Some("m"), 500, 5.0));
        }
    }

    fn usage_requests(s: &Store) -> u64 {
        let t = now();
        s.totals(&crate::store::StatsQuery { from_ms: t - 600_000, to_ms: t + 600_000, ..Default::default() }).expect("totals").counts.requests
    }

    #[test]
    fn a_small_pools_usage_is_committed_with_its_log_rows() {
        let (_dir, s) = store();
        let w = s.start_writer(Duration::from_millis(50), 8192).expect("writer");
        one_request_per_key(&w, SMALL_FOLD);
        let deadline = Instant::now() + Duration::from_secs(5);
        while logged_total(&s) < SMALL_FOLD as i64 {
            assert!(Instant::now() < deadline, "the tick never committed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(usage_requests(&s), SMALL_FOLD as u64, "same transaction as the log rows");
    }

    #[test]
    fn a_large_pools_usage_is_folded_and_committed_every_forty_ticks() {
        let (_dir, s) = store();
        let tick = Duration::from_millis(50);
        let w = s.start_writer(tick, 8192).expect("writer");
        // Twice the small size and more: should a tick split the requests, one part is large.
        let n = 2 * SMALL_FOLD + 500;
        let queued = Instant::now();
        one_request_per_key(&w, n);
        // Errors always get a log row: the rows come with the next tick, the usage does not.
        let deadline = Instant::now() + Duration::from_secs(5);
        while logged_total(&s) < n as i64 {
            assert!(Instant::now() < deadline, "the tick never committed the log rows");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(usage_requests(&s) < n as u64, "a large fold waits");
        assert!(s.health().written_records < n as u64);
        let deadline = Instant::now() + Duration::from_secs(10);
        while usage_requests(&s) < n as u64 {
            assert!(Instant::now() < deadline, "the fold was never committed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let waited = queued.elapsed();
        assert!(waited >= tick * (LARGE_FOLD_TICKS - 1), "committed after {waited:?}");
        assert_eq!(usage_requests(&s), n as u64);
        assert_eq!(s.health().written_records, n as u64);
        // flush() does not wait for the fold's turn.
        one_request_per_key(&w, n);
        w.flush().expect("flush");
        assert_eq!(usage_requests(&s), 2 * n as u64);
    }

    #[test]
    fn the_tick_commits_without_any_flush() {
        let (_dir, s) = store();
        let w = s.start_writer(Duration::from_millis(20), 1024).expect("writer");
        w.request(&record(now(), 1, Some("k"), None, None, 200, 5.0));
        let deadline = Instant::now() + Duration::from_secs(5);
        while logged(&s) == 0 {
            assert!(Instant::now() < deadline, "the tick never committed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn dropping_the_last_handle_commits_what_is_left() {
        let (_dir, s) = store();
        let w = s.start_writer(Duration::from_secs(3600), 1024).expect("writer");
        let w2 = w.clone();
        for i in 0..7 {
            w2.request(&record(now(), i, Some("k"), None, None, 200, 5.0));
        }
        drop(w2);
        drop(w);
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.health().written_records < 7 {
            assert!(Instant::now() < deadline, "the final drain never happened");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(logged(&s), 7);
    }

    #[test]
    fn a_full_queue_drops_log_rows_and_counts_them_but_keeps_their_usage() {
        let (_dir, s) = store();
        let w = s.start_writer(Duration::from_secs(3600), 4).expect("writer");
        // Let the writer finish its first pass and go to sleep for the long tick.
        w.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..10 {
            w.request(&record(now(), i, Some("k"), None, None, 200, 5.0));
        }
        assert_eq!(w.dropped(), 6);
        w.flush().expect("flush");
        assert_eq!(logged(&s), 4);
        assert_eq!(s.health().dropped_records, 6);
        assert_eq!(usage_requests(&s), 10, "the rows are dropped, the usage of all ten counts");
    }

    #[test]
    fn key_states_survive_a_restart_latest_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path(), Retention::default()).expect("open");
            let w = s.start_writer(Duration::from_secs(3600), 16).expect("writer");
            let mut k1 = PersistedKeyState { fingerprint: "11".repeat(16), name: "k1".into(), disabled: None, cooldowns: vec![], updated_ms: 1 };
            w.key_state(k1.clone());
            k1.disabled = Some(PersistedDisable { reason: "permission_denied".into(), message: "API key not valid".into(), since_ms: 2, manual: true });
            k1.updated_ms = 2;
            w.key_state(k1);
            let k2 = PersistedKeyState {
                fingerprint: "22".repeat(16),
                name: "k2".into(),
                disabled: None,
                cooldowns: vec![crate::store::PersistedCooldown { model: "gemini-2.5-pro".into(), until_ms: 99, kind: "daily_quota".into() }],
                updated_ms: 3,
            };
            w.key_state(k2);
            w.flush().expect("flush");
        }
        let s = Store::open(dir.path(), Retention::default()).expect("reopen");
        let mut states = s.load_key_states().expect("load");
        states.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(states.len(), 2);
        let d = states[0].disabled.as_ref().expect("k1 stays disabled");
        assert!(d.manual && d.message == "API key not valid" && states[0].updated_ms == 2);
        assert_eq!(states[1].cooldowns[0].until_ms, 99);
    }

    fn binding(kind: BindingKind, name: &str, key: &str, expires_ms: i64) -> PersistedBinding {
        let client = (kind == BindingKind::Upload).then(|| String::from("alice"));
        PersistedBinding { kind, name: name.into(), key_fp: key.repeat(16), client, expires_ms }
    }

    #[test]
    fn bindings_survive_a_restart_latest_wins_expired_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = now();
        {
            let s = Store::open(dir.path(), Retention::default()).expect("open");
            let w = s.start_writer(Duration::from_secs(3600), 16).expect("writer");
            w.bindings([binding(BindingKind::Owner, "files/a", "11", t + 1000)]);
            // The same resource again (a new key, a later expiry) replaces it, pending or not.
            w.bindings([binding(BindingKind::Owner, "files/a", "22", t + 60_000), binding(BindingKind::Upload, "upload-id-1", "33", t + 60_000)]);
            w.flush().expect("flush");
            w.bindings([binding(BindingKind::Owner, "cachedContents/c", "11", t + 60_000), binding(BindingKind::Owner, "files/gone", "11", t - 1)]);
            // The same name as an owner and as an upload are two bindings.
            w.bindings([binding(BindingKind::Owner, "upload-id-1", "44", t + 60_000)]);
            w.flush().expect("flush");
            assert_eq!(w.dropped(), 0);
        }
        let s = Store::open(dir.path(), Retention::default()).expect("reopen");
        let mut loaded = s.load_bindings(t).expect("load");
        loaded.sort_by(|a, b| (a.kind.as_str(), &a.name).cmp(&(b.kind.as_str(), &b.name)));
        let want = vec![
            binding(BindingKind::Owner, "cachedContents/c", "11", t + 60_000),
            binding(BindingKind::Owner, "files/a", "22", t + 60_000),
            binding(BindingKind::Owner, "upload-id-1", "44", t + 60_000),
            binding(BindingKind::Upload, "upload-id-1", "33", t + 60_000),
        ];
        assert_eq!(loaded, want, "files/gone had expired");
        // Later, everything has expired.
        assert!(s.load_bindings(t + 60_000).expect("load").is_empty());
    }

    #[test]
    fn a_failing_commit_keeps_the_writer_alive_and_is_retried() {
        let (_dir, s) = store();
        let w = s.start_writer(Duration::from_millis(20), 1024).expect("writer");
        // With the usage table out of the way every commit fails.
        s.admin(|c, p| c.execute_batch("ALTER TABLE usage_minute RENAME TO usage_minute_away").ctx("sabotage", p)).expect("sabotage");
        for i in 0..5 {
            w.request(&record(now(), i, Some("k"), None, None, 200, 5.0));
        }
        let err = w.flush().expect_err("the commit must fail");
        assert!(matches!(err, StoreError::FlushFailed(ref m) if m.contains("no such table: usage_minute")), "{err}");
        let h = s.health();
        assert!(!h.writable && h.last_error.is_some());
        assert_eq!(logged(&s), 0);
        // Repaired: the next tick commits the backlog.
        s.admin(|c, p| c.execute_batch("ALTER TABLE usage_minute_away RENAME TO usage_minute").ctx("repair", p)).expect("repair");
        w.flush().expect("flush after repair");
        assert_eq!(logged(&s), 5);
        assert!(s.health().writable);
        assert_eq!(w.dropped(), 0);
    }

    #[test]
    fn the_backlog_of_failed_commits_is_bounded() {
        let (_dir, s) = store();
        let w = s.start_writer(Duration::from_millis(10), 8).expect("writer");
        s.admin(|c, p| c.execute_batch("ALTER TABLE usage_minute RENAME TO usage_minute_away").ctx("sabotage", p)).expect("sabotage");
        // 8 in the backlog, 8 in the queue, the rest dropped; nothing blocks.
        for i in 0..100 {
            w.request(&record(now(), i, Some("k"), None, None, 200, 5.0));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(w.dropped() >= 100 - 16, "{} dropped", w.dropped());
    }

    /// Measures the writer: the commit path (rows per second) and the data plane's cost per
    /// queued record. `cargo test --release --lib store::writer::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement; run with --ignored --nocapture (in release for real numbers)"]
    fn throughput() {
        measure(200_000, 5_000, 20);
    }

    /// [`throughput`] with 100,000 keys: almost every request is its own usage row.
    #[test]
    #[ignore = "measurement; run with --ignored --nocapture (in release for real numbers)"]
    fn throughput_100k_keys() {
        measure(400_000, 11_000, 100_000);
    }

    /// The same measurement, small, so that the code path stays tested.
    #[test]
    fn throughput_smoke() {
        measure(4_000, 1_000, 20);
    }

    fn measure(total: usize, batch_size: usize, key_count: usize) {
        let (_dir, s) = store();
        let keys: Vec<String> = (0..key_count).map(|i| format!("key-{i}")).collect();
        let clients = ["app", "batch", "web", "mobile", "ci"];
        let models = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash"];
        let start_ms = now();
        let records: Vec<AccessRecord> = (0..total)
            .map(|i| {
                // 20,000 requests per second of simulated time: one minute every 1.2 M rows.
                let t = start_ms + (i / 20) as i64;
                let status = [200, 200, 200, 200, 200, 200, 200, 429, 500, 400][i % 10];
                record(t, i as u64, Some(&keys[i % key_count]), Some(clients[i % 5]), Some(models[i % 3]), status, 5.0 + (i % 1000) as f64)
            })
            .collect();

        // Commit path, as the writer thread runs it: a batch per tick, log rows within the
        // default budget, the usage fold committed when small or every LARGE_FOLD_TICKS.
        let mut conn = crate::store::conn::open(s.path(), crate::store::conn::Role::Write).expect("conn");
        let keys_none = PendingState::default();
        let mut budget = RowBudget::new(Retention::default().request_log_ok_per_second);
        let mut usage = UsageFold::default();
        let (mut ticks_folded, mut usage_commits, mut usage_rows, mut usage_time) = (0, 0, 0, Duration::ZERO);
        let t = Instant::now();
        let chunks = records.chunks(batch_size).count();
        for (i, chunk) in records.chunks(batch_size).enumerate() {
            chunk.iter().for_each(|r| usage.add(r));
            let rows: Vec<AccessRecord> = chunk.iter().filter(|r| budget.take(r)).cloned().collect();
            ticks_folded += 1;
            let due = fold_due(&usage, ticks_folded >= LARGE_FOLD_TICKS, i + 1 == chunks);
            let started = Instant::now();
            flush::commit(&mut conn, s.path(), &rows, due.then_some(&usage), &keys_none).expect("commit");
            if due {
                usage_time += started.elapsed();
                usage_rows += usage.rows();
                usage.clear();
                ticks_folded = 0;
                usage_commits += 1;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "writer commit, {key_count} keys: {total} requests in batches of {batch_size}: {:.0} requests/s ({:.2} us each); \
             usage committed {usage_commits} times, {usage_rows} rows in {:.0} ms ({:.2} us per row, with that tick's log rows)",
            total as f64 / secs,
            secs * 1e6 / total as f64,
            usage_time.as_secs_f64() * 1e3,
            usage_time.as_secs_f64() * 1e6 / usage_rows.max(1) as f64
        );

        // Caller side: the cost of StoreWriter::request (clone + try_send), in steady state:
        // rounds of `batch_size` records queued while the writer sleeps (a long tick), then a
        // flush, so that only the caller's work is timed and memory is reused as in service.
        let w = s.start_writer(Duration::from_secs(3600), batch_size).expect("writer");
        w.flush().expect("first pass");
        let mut queued = Duration::ZERO;
        let mut drained = Duration::ZERO;
        for chunk in records.chunks(batch_size) {
            let t = Instant::now();
            for r in chunk {
                w.request(r);
            }
            queued += t.elapsed();
            let t = Instant::now();
            w.flush_within(Duration::from_secs(60)).expect("flush");
            drained += t.elapsed();
        }
        println!(
            "StoreWriter::request: {:.0} ns per record; the writer thread drained and committed them at {:.0} rows/s; dropped {}",
            queued.as_secs_f64() * 1e9 / total as f64,
            total as f64 / drained.as_secs_f64(),
            w.dropped()
        );
        assert_eq!(w.dropped(), 0);
        assert_eq!(s.health().written_records, total as u64);
    }
}
