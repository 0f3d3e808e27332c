//! Versioned schema migrations: each runs once, in its own transaction, recorded in
//! `schema_version`; a database written by a newer build is refused rather than guessed at.

use super::error::{Context, StoreError};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Append only: a released migration is never edited, a change is a new entry.
const MIGRATIONS: &[Migration] =
    &[Migration { version: 1, name: "initial schema", sql: V1 }, Migration { version: 2, name: "resource ownership and upload sessions", sql: V2 }];

/// The schema version this build writes.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const V1: &str = r#"
-- One row per request, as in the access log. AUTOINCREMENT so that an id is never reused
-- after pruning: the API pages with before_id and links to single rows by id.
CREATE TABLE request_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms       INTEGER NOT NULL,
    request_id    INTEGER NOT NULL,
    client        TEXT,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    model         TEXT,
    status        INTEGER NOT NULL,
    key_name      TEXT,
    key_fp        TEXT,
    attempts      TEXT NOT NULL,
    total_ms      REAL NOT NULL,
    first_byte_ms REAL,
    bytes_in      INTEGER NOT NULL,
    bytes_out     INTEGER NOT NULL,
    tokens_in     INTEGER NOT NULL,
    tokens_out    INTEGER NOT NULL,
    stream        INTEGER NOT NULL,
    error         TEXT
);
-- Time-range filters and pruning by age. Other filters scan newest-first from the primary
-- key: every extra index is paid on every insert, and the log is bounded.
CREATE INDEX request_log_time ON request_log (time_ms);

-- Per-minute usage, additive: a flush adds to the row of its minute and group. WITHOUT ROWID:
-- the primary key is the only way rows are found, and this stores each row once instead of
-- in a table plus an index.
CREATE TABLE usage_minute (
    minute_ms     INTEGER NOT NULL,
    key_fp        TEXT NOT NULL,     -- '' when no attempt was made (a 401)
    client        TEXT NOT NULL,     -- '' when anonymous
    model         TEXT NOT NULL,     -- '' when the request names no model
    key_name      TEXT NOT NULL,     -- the name last seen for key_fp
    requests      INTEGER NOT NULL,
    ok            INTEGER NOT NULL,
    client_errors INTEGER NOT NULL,
    rate_limited  INTEGER NOT NULL,
    server_errors INTEGER NOT NULL,
    retries       INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    latency_hist  BLOB NOT NULL,     -- histogram.rs encoding of total latency
    PRIMARY KEY (minute_ms, key_fp, client, model)
) WITHOUT ROWID;

-- Latest state per key (upserted by the writer).
CREATE TABLE key_state (
    fingerprint TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    disabled    TEXT,                -- JSON PersistedDisable, NULL when enabled
    cooldowns   TEXT NOT NULL,       -- JSON array of PersistedCooldown
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE config_version (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    comment    TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    text       TEXT NOT NULL
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL            -- JSON
);
CREATE INDEX audit_log_action ON audit_log (action, id);

CREATE TABLE setting (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
"#;

const V2: &str = r#"
-- Which key created a file or cachedContent (kind 'owner', name 'files/abc'), and which key
-- and client an upload session belongs to (kind 'upload', name the upload id). Gemini
-- resources belong to the creating key's project, so after a restart requests naming them must
-- still go out with that key. An upload id authorises its chunks on its own, like the secrets
-- in config_version: this file is 0600. Rows past expires_ms are never loaded, and pruned.
CREATE TABLE binding (
    kind       TEXT NOT NULL,        -- 'owner' or 'upload'
    name       TEXT NOT NULL,
    key_fp     TEXT NOT NULL,        -- full fingerprint in hex, as in key_state
    client     TEXT,                 -- uploads: the client that started it
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
-- Pruning by expiry without scanning a million rows.
CREATE INDEX binding_expires ON binding (expires_ms);
"#;

/// The highest applied version, 0 for a new database.
fn current_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.query_row("SELECT coalesce(max(version), 0) FROM schema_version", [], |r| r.get(0)).ctx("read the schema version", path)
}

/// Brings the database to [`latest_version`]. Safe against a second process migrating at the
/// same time: each step takes the write lock first, then re-reads the version.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)")
        .ctx("create the schema_version table", path)?;
    let supported = latest_version();
    let found = current_version(conn, path)?;
    if found > supported {
        return Err(StoreError::TooNew { path: path.to_path_buf(), found, supported });
    }
    for m in MIGRATIONS {
        let fail = |source| StoreError::Migration { path: path.to_path_buf(), version: m.version, name: m.name, source };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail)?;
        let done: Option<i64> = tx.query_row("SELECT version FROM schema_version WHERE version = ?1", [m.version], |r| r.get(0)).optional().map_err(fail)?;
        if done.is_some() {
            continue;
        }
        tx.execute_batch(m.sql).map_err(fail)?;
        tx.execute("INSERT INTO schema_version (version, name, applied_ms) VALUES (?1, ?2, ?3)", rusqlite::params![m.version, m.name, super::now_ms()])
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(path = %path.display(), version = m.version, name = m.name, "applied a store migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let mut conn = Connection::open(&path).expect("open");
        migrate(&mut conn, &path).expect("first");
        migrate(&mut conn, &path).expect("second");
        assert_eq!(current_version(&conn, &path).expect("version"), latest_version());
        let rows: i64 = conn.query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0)).expect("count");
        assert_eq!(rows, MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_version_1_database_gains_the_binding_table_and_keeps_its_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let mut conn = Connection::open(&path).expect("open");
        // As the first release left it.
        conn.execute_batch(&format!(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL); \
             {V1} INSERT INTO schema_version VALUES (1, 'initial schema', 0); \
             INSERT INTO setting VALUES ('a', 'b', 0);"
        ))
        .expect("a version 1 database");
        migrate(&mut conn, &path).expect("migrate");
        assert_eq!(current_version(&conn, &path).expect("version"), 2);
        let kept: String = conn.query_row("SELECT value FROM setting WHERE name = 'a'", [], |r| r.get(0)).expect("kept");
        assert_eq!(kept, "b");
        conn.execute("INSERT INTO binding VALUES ('upload', 'id', 'ab', 'alice', 1)", []).expect("the new table");
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let mut conn = Connection::open(&path).expect("open");
        migrate(&mut conn, &path).expect("migrate");
        conn.execute("INSERT INTO schema_version VALUES (?1, 'from the future', 0)", [latest_version() + 1]).expect("insert");
        let err = migrate(&mut conn, &path).expect_err("must refuse");
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer than this build"), "{err}");
    }

    #[test]
    fn a_failing_migration_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let mut conn = Connection::open(&path).expect("open");
        // A table in the way makes V1 fail half-way; its transaction must roll back whole.
        conn.execute_batch("CREATE TABLE audit_log (x)").expect("sabotage");
        let err = migrate(&mut conn, &path).expect_err("must fail");
        assert!(matches!(err, StoreError::Migration { version: 1, .. }), "{err}");
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'request_log'", [], |r| r.get(0)).expect("count");
        assert_eq!(tables, 0);
        assert_eq!(current_version(&conn, &path).expect("version"), 0);
    }
}
