//! Opening SQLite connections with the settings every role relies on (WAL, synchronous=NORMAL,
//! busy timeout), and the small pool of read connections.

use super::error::{Context, StoreError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// How long a connection waits for another's write lock. The writer's transactions last
/// milliseconds, so this is only reached when something is badly wrong.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle read connections kept for reuse: opening one costs a file open and a schema parse.
const MAX_IDLE_READERS: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The writer thread and admin writes.
    Write,
    /// API reads; `query_only` so that a bug in a query cannot modify anything.
    Read,
}

pub(crate) fn open(path: &Path, role: Role) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
    conn.busy_timeout(BUSY_TIMEOUT).ctx("set busy_timeout", path)?;
    // NORMAL in WAL mode: a commit is durable once the WAL is synced at checkpoint; a power
    // loss can lose the last commits, never corrupt the file. A process crash loses nothing
    // that was committed.
    conn.pragma_update(None, "synchronous", "NORMAL").ctx("set synchronous", path)?;
    conn.pragma_update(None, "temp_store", "MEMORY").ctx("set temp_store", path)?;
    match role {
        Role::Read => conn.pragma_update(None, "query_only", true).ctx("set query_only", path)?,
        // Truncate the WAL file back to this size after checkpoints, so a burst does not
        // leave a huge file behind.
        Role::Write => {
            conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024).ctx("set journal_size_limit", path)?;
            // A large pool spreads each minute's usage rows over thousands of pages, and every
            // commit touches most of them: with SQLite's default 2 MB cache they are read back
            // from the file again and again. Pages are allocated as they are used.
            conn.pragma_update(None, "cache_size", -32 * 1024).ctx("set cache_size", path)?;
            super::flush::register_functions(&conn).ctx("register SQL functions", path)?;
        }
    }
    Ok(conn)
}

/// Switches the database to WAL (persistent: it stays so for every later connection).
pub(crate) fn enable_wal(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).ctx("set journal_mode=WAL", path)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some file systems (network mounts) cannot do WAL's shared memory. The rollback
        // journal is still crash-safe; readers then wait for writers.
        tracing::warn!(path = %path.display(), mode, "SQLite could not switch to WAL mode; reads will wait for writes");
    }
    Ok(())
}

/// Read connections, handed out one per call so that concurrent API reads do not serialise.
pub(crate) struct ReadPool {
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(crate) fn new() -> Self {
        ReadPool { idle: Mutex::new(Vec::new()) }
    }

    /// Runs `f` on an idle read connection, or a new one when all are busy.
    pub(crate) fn with<T>(&self, path: &Path, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open(path, Role::Read)?,
        };
        let out = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        out
    }
}
