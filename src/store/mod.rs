//! Durable state in SQLite (WAL): key state, which key owns each file, cache and upload
//! session, per-minute usage, the request log, config versions, the audit log and settings, in
//! `<data-dir>/state.db`.
//!
//! Three kinds of connection, so that nothing waits on anything it does not need:
//! - one writer thread ([`Store::start_writer`]) owns a connection and commits, every tick, the
//!   request-log rows queued by the data plane and the key states and bindings handed over by
//!   the once-a-second sync (`control::key_sync`), in one transaction, with the
//!   per-minute usage of those requests. A pool large enough that a tick's usage spans more
//!   than a thousand rows has its usage folded in memory and committed every 40 ticks instead
//!   (see `writer.rs`). The data plane only does a `try_send` ([`StoreWriter::request`]); a
//!   full queue drops and counts.
//! - API reads are synchronous (run them in `spawn_blocking`), each on a pooled read
//!   connection: WAL lets them run while the writer commits.
//! - rare admin writes (config versions, audit, settings) use their own connection and wait
//!   for the writer's lock through the busy timeout.

mod admin;
pub mod comment;
mod conn;
mod error;
mod file_watch;
mod flush;
mod histogram;
mod queries;
mod retention;
mod schema;
mod types;
mod writer;

#[cfg(test)]
mod crash_tests;

pub use error::StoreError;
pub use types::{
    AuditQuery, AuditRow, BindingKind, ConfigVersion, ConfigVersionMeta, GroupTotal, MinutePoint, PersistedBinding, PersistedCooldown, PersistedDisable,
    PersistedKeyState, RequestQuery, RequestRow, Retention, StatsQuery, StatusFilter, StoreHealth, Totals, UsageCounts,
};
pub use writer::{StoreWriter, FLUSH_WAIT};

use crate::secret::Fingerprint;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The database file inside the data directory.
pub const DB_FILE: &str = "state.db";

/// Default writer tick: what a `kill -9` can lose at most, and how long a record waits.
pub const DEFAULT_FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Default queue: a quarter second at 260,000 requests per second.
pub const DEFAULT_QUEUE: usize = 64 * 1024;

/// The state store. `Send + Sync`; share it behind an `Arc`.
pub struct Store {
    path: PathBuf,
    retention: Retention,
    readers: conn::ReadPool,
    admin: Mutex<Connection>,
    state: Arc<writer::WriterState>,
}

impl Store {
    /// Creates `data_dir` if needed (mode 0700: config versions may hold secrets), opens
    /// `<data_dir>/state.db` (created 0600) in WAL mode and brings its schema up to date.
    ///
    /// Fails with [`StoreError::TooNew`] when the database was written by a newer build.
    pub fn open(data_dir: &Path, retention: Retention) -> Result<Store, StoreError> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        create_private_file(&path)?;
        let mut admin = conn::open(&path, conn::Role::Write)?;
        conn::enable_wal(&admin, &path)?;
        schema::migrate(&mut admin, &path)?;
        Ok(Store { path, retention, readers: conn::ReadPool::new(), admin: Mutex::new(admin), state: Arc::new(writer::WriterState::new()) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Starts the writer thread with its own connection and returns its sending handle.
    /// `flush_every` is the commit tick ([`DEFAULT_FLUSH_EVERY`]), `queue` the number of
    /// request records that can wait before new ones are dropped ([`DEFAULT_QUEUE`]).
    ///
    /// Call it once: a second call starts a second writer, which works (the two take turns on
    /// the write lock) but only adds contention.
    pub fn start_writer(&self, flush_every: Duration, queue: usize) -> Result<StoreWriter, StoreError> {
        let conn = conn::open(&self.path, conn::Role::Write)?;
        writer::start(conn, self.path.clone(), self.retention.clone(), self.state.clone(), flush_every, queue)
    }

    /// Whether the writer's last commit succeeded, its last error and its counters.
    pub fn health(&self) -> StoreHealth {
        self.state.health()
    }

    /// Runs a read on a pooled read connection.
    fn read<T>(&self, f: impl FnOnce(&Connection, &Path) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.readers.with(&self.path, |c| f(c, &self.path))
    }

    /// Runs an admin write on the admin connection.
    fn admin<T>(&self, f: impl FnOnce(&mut Connection, &Path) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut conn = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn, &self.path)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| StoreError::Create { path: dir.to_path_buf(), source })
}

/// Creates the database file with mode 0600 before SQLite does (SQLite would use 0644); its
/// `-wal` and `-shm` files inherit the database file's mode.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|source| StoreError::Create { path: path.to_path_buf(), source })
}

/// Unix milliseconds (negative before 1970, saturating far out).
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |v| -v),
    }
}

pub(crate) fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// The form of a key fingerprint stored in the request log and usage rows: the full 32 hex
/// digits, the key's identity. Key filters accept the 12-digit display form as a prefix.
pub(crate) fn fingerprint_hex(fp: &Fingerprint) -> String {
    fp.to_hex()
}

/// SQLite integers are signed: counters above `i64::MAX` (never reached in practice) saturate.
pub(crate) fn sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Back from a stored counter: negatives (never written) read as 0.
pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn store_and_writer_can_be_shared_across_threads() {
        assert_send_sync::<Store>();
        assert_send_sync::<StoreWriter>();
    }

    #[test]
    fn open_creates_a_private_directory_and_file_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("a/b");
        let store = Store::open(&data, Retention::default()).expect("open");
        assert!(store.path().ends_with(DB_FILE));
        let mode: String = store.read(|c, _| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("pragma"))).expect("read");
        assert_eq!(mode, "wal");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = std::fs::metadata(store.path()).expect("meta").permissions().mode() & 0o777;
            let dirmode = std::fs::metadata(&data).expect("meta").permissions().mode() & 0o777;
            assert_eq!(file, 0o600);
            assert_eq!(dirmode, 0o700);
        }
        drop(store);
        // Reopening an existing database runs no migration and keeps the data.
        let store = Store::open(&data, Retention::default()).expect("reopen");
        store.set_setting("a", "b").expect("set");
        drop(store);
        let store = Store::open(&data, Retention::default()).expect("reopen");
        assert_eq!(store.setting("a").expect("get").as_deref(), Some("b"));
    }

    #[test]
    fn open_reports_an_unusable_directory_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let err = Store::open(&file, Retention::default()).err().expect("must fail");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    #[test]
    fn read_connections_cannot_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Retention::default()).expect("open");
        let res = store.read(|c, _| Ok(c.execute("DELETE FROM setting", [])));
        assert!(res.expect("read").is_err());
    }

    #[test]
    fn time_conversions() {
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1234)), 1234);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(5)), -5);
        assert_eq!(sql_u64(u64::MAX), i64::MAX);
        assert_eq!(u64_of(-1), 0);
    }
}
