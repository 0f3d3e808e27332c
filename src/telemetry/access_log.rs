//! The record pipeline: every finished request hands one `AccessRecord` to a bounded channel;
//! a dedicated thread writes it as a JSON line on stdout (the access log), updates the
//! Prometheus metrics and passes it on (to the state store). The data plane never waits on any
//! of them; when the channel is full the record is dropped and counted.

use super::metrics::Metrics;
use crate::courtesy::Courtesy;
use crate::gemini::usage::Usage;
use crate::secret::Fingerprint;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

/// One upstream attempt of a request.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    /// Key name (never the key).
    #[schema(value_type = String)]
    pub key: Arc<str>,
    /// The key's identity (for the state store).
    #[serde(skip)]
    pub fingerprint: Fingerprint,
    /// Its short form, formatted once per key rather than per request.
    #[serde(rename = "fingerprint")]
    #[schema(value_type = String)]
    pub fingerprint_label: Arc<str>,
    /// `ok`, `rate_limited`, `key_disabled`, `server_error`, `connect_error`, `timeout`,
    /// `broken_connection` or `client_error`; `cut` when the request was cut at shutdown while
    /// the attempt was in progress (`abandoned` when it was dropped for another reason).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub ms: f64,
}

/// A request's upstream attempts: almost always one, held inside the record (which another
/// thread frees) rather than in an allocation of its own.
pub type Attempts = smallvec::SmallVec<[AttemptRecord; 1]>;

/// One request, as logged.
#[derive(Debug, Clone, Serialize)]
pub struct AccessRecord {
    #[serde(with = "crate::telemetry::time::rfc3339")]
    pub time: SystemTime,
    pub request_id: u64,
    /// The client's address, formatted once per connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<Arc<str>>,
    /// Common methods are static strings (no allocation per request).
    pub method: std::borrow::Cow<'static, str>,
    /// Path and query, with any `key=` parameter removed and `upload_id=` values replaced by
    /// their fingerprint.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Arc<str>>,
    pub status: u16,
    pub attempts: Attempts,
    pub total_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AccessRecord {
    pub fn set_usage(&mut self, usage: Option<Usage>) {
        if let Some(u) = usage {
            self.tokens_in = u.input_tokens;
            self.tokens_out = u.output_tokens;
        }
    }
}

enum Msg {
    Record(Box<AccessRecord>),
    Flush(SyncSender<()>),
}

/// Where records go after the access log and the metrics (the state store's writer): handed
/// over, not copied.
pub type Forward = Box<dyn Fn(Box<AccessRecord>) + Send>;

/// Sender side of the pipeline; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
}

/// Records waiting to be written before new ones are dropped: room for 20 ms at 3 million
/// requests per second.
const QUEUE: usize = 64 * 1024;

impl AccessLog {
    /// Starts the pipeline thread. `log_lines` turns the stdout access log on.
    pub fn start(log_lines: bool, metrics: Arc<Metrics>, forward: Option<Forward>) -> Self {
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = sync_channel(QUEUE);
        let sinks = Sinks { log_lines, metrics, forward };
        match std::thread::Builder::new().name("telemetry".into()).spawn(move || write_loop(rx, sinks)) {
            Ok(_) => AccessLog { tx: Some(tx), dropped },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the telemetry thread; access log and metrics are off");
                AccessLog { tx: None, dropped }
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// A pipeline that drops everything (for tests and tools).
    pub fn disabled() -> Self {
        AccessLog { tx: None, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Queues a record; never blocks.
    pub fn record(&self, r: AccessRecord) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Record(Box::new(r))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records lost because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until everything queued so far is written and flushed.
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack_tx, ack_rx) = sync_channel(1);
        if tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// How often the writer wakes to drain the queue. Waking per record would cost the data plane
/// a cross-thread wake-up (a futex call and a context switch) on every request.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Bytes of log lines gathered before they are written.
const BATCH: usize = 64 * 1024;

struct Sinks {
    log_lines: bool,
    metrics: Arc<Metrics>,
    forward: Option<Forward>,
}

fn write_loop(rx: Receiver<Msg>, sinks: Sinks) {
    crate::courtesy::background_thread();
    let mut stdout = std::io::stdout().lock();
    // Lines are written straight into one batch, handed to stdout in one write per drain (or
    // per BATCH bytes): no per-line copy into a buffered writer.
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH + 4096);
    let mut lines = super::json_line::LineWriter::default();
    let mut emit = |batch: &mut Vec<u8>| {
        if !batch.is_empty() {
            let _ = stdout.write_all(batch);
            let _ = stdout.flush();
            batch.clear();
        }
    };
    loop {
        // A drain at full load is a thousand records, about a millisecond of work.
        let mut courtesy = Courtesy::start();
        loop {
            match rx.try_recv() {
                Ok(Msg::Record(r)) => {
                    courtesy.item();
                    sinks.metrics.observe(&r);
                    if sinks.log_lines {
                        lines.write(&r, &mut batch);
                        if batch.len() >= BATCH {
                            emit(&mut batch);
                        }
                    }
                    if let Some(f) = &sinks.forward {
                        f(r);
                    }
                }
                Ok(Msg::Flush(ack)) => {
                    emit(&mut batch);
                    let _ = ack.send(());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    emit(&mut batch);
                    return;
                }
            }
        }
        emit(&mut batch);
        std::thread::sleep(DRAIN_EVERY);
    }
}
