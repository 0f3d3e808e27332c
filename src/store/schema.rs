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
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial schema", sql: V1 },
    Migration { version: 2, name: "resource ownership and upload sessions", sql: V2 },
    Migration { version: 3, name: "config version comment kinds", sql: V3 },
];

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

// The server's comments in the version history get their kind and parameters stored
// (store/comment.rs), so that a user's comment is never taken for one because of its text.
//
// Rows written before: a comment is recognised once, here, only when its text is one the server
// wrote AND the record of who made the version agrees: the start-up version by the actor
// `startup` (no user can be that actor), every other one by the audit entry recorded with the
// same version (its `detail.version`, written since the first release), whose action must be
// the one that writes that comment; the parameters come from the text. So "client bob created"
// typed as a `PUT /config` comment stays text. What remains ambiguous is a user typing
// "replaced over the admin API" or "rollback to version N" on a `PUT`: the audit records that
// as the same action, and those rows were shown translated before anyway. Everything else is
// left as text. This SQL is frozen with the texts of the time, which never change.
const V3: &str = r#"
ALTER TABLE config_version ADD COLUMN comment_kind TEXT;    -- NULL: a user's comment
ALTER TABLE config_version ADD COLUMN comment_params TEXT;  -- JSON object, NULL if none

CREATE TEMP TABLE made_by (version INTEGER PRIMARY KEY, action TEXT NOT NULL);
INSERT OR IGNORE INTO made_by (version, action)
    SELECT json_extract(detail, '$.version'), action FROM audit_log
    WHERE json_valid(detail) AND json_type(detail, '$.version') = 'integer'
    ORDER BY id;

UPDATE config_version SET comment_kind = 'startup'
    WHERE actor = 'startup' AND comment = 'configuration at start-up';
UPDATE config_version SET comment_kind = 'reloaded_from_disk'
    WHERE comment = 'reloaded from disk'
      AND id IN (SELECT version FROM made_by WHERE action = 'config.reload');
UPDATE config_version SET comment_kind = 'replaced'
    WHERE comment = 'replaced over the admin API'
      AND id IN (SELECT version FROM made_by WHERE action = 'config.replace');
-- 'rollback to version ' is 20 characters.
UPDATE config_version SET comment_kind = 'rollback',
        comment_params = json_object('version', CAST(substr(comment, 21) AS INTEGER))
    WHERE comment GLOB 'rollback to version [0-9]*' AND substr(comment, 21) NOT GLOB '*[^0-9]*'
      AND length(substr(comment, 21)) <= 18
      AND id IN (SELECT version FROM made_by WHERE action = 'config.replace');
-- 'client ' is 7 characters, ' created', ' updated' and ' revoked' 8.
UPDATE config_version SET comment_kind = 'client_created',
        comment_params = json_object('client', substr(comment, 8, length(comment) - 15))
    WHERE comment GLOB 'client ?* created'
      AND id IN (SELECT version FROM made_by WHERE action = 'clients.create');
UPDATE config_version SET comment_kind = 'client_updated',
        comment_params = json_object('client', substr(comment, 8, length(comment) - 15))
    WHERE comment GLOB 'client ?* updated'
      AND id IN (SELECT version FROM made_by WHERE action = 'clients.update');
UPDATE config_version SET comment_kind = 'client_revoked',
        comment_params = json_object('client', substr(comment, 8, length(comment) - 15))
    WHERE comment GLOB 'client ?* revoked'
      AND id IN (SELECT version FROM made_by WHERE action = 'clients.revoke');
-- ' key(s) added' is 13 characters.
UPDATE config_version SET comment_kind = 'keys_added',
        comment_params = json_object('count', CAST(substr(comment, 1, length(comment) - 13) AS INTEGER))
    WHERE comment GLOB '[0-9]* key(s) added' AND substr(comment, 1, length(comment) - 13) NOT GLOB '*[^0-9]*'
      AND length(comment) - 13 <= 18
      AND id IN (SELECT version FROM made_by WHERE action = 'keys.add');
-- 'key ' is 4 characters, ' deleted' 8.
UPDATE config_version SET comment_kind = 'key_deleted',
        comment_params = json_object('key', substr(comment, 5, length(comment) - 12))
    WHERE comment GLOB 'key ?* deleted'
      AND id IN (SELECT version FROM made_by WHERE action = 'keys.delete');

DROP TABLE temp.made_by;
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
        assert_eq!(current_version(&conn, &path).expect("version"), latest_version());
        let kept: String = conn.query_row("SELECT value FROM setting WHERE name = 'a'", [], |r| r.get(0)).expect("kept");
        assert_eq!(kept, "b");
        conn.execute("INSERT INTO binding VALUES ('upload', 'id', 'ab', 'alice', 1)", []).expect("the new table");
    }

    /// Versions as builds before migration 3 wrote them: text only, and an audit entry per
    /// version made over the API or by a reload (`detail.version`), none for start-up ones.
    fn a_version_2_database(path: &Path) -> Connection {
        let conn = Connection::open(path).expect("open");
        conn.execute_batch(&format!(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL); \
             {V1} {V2} INSERT INTO schema_version VALUES (1, 'initial schema', 0), (2, 'resource ownership and upload sessions', 0);"
        ))
        .expect("a version 2 database");
        conn
    }

    fn old_version(conn: &Connection, id: i64, actor: &str, comment: &str, audit_action: Option<&str>) {
        conn.execute("INSERT INTO config_version VALUES (?1, 0, ?2, ?3, 'sha', 1, 't')", rusqlite::params![id, actor, comment]).expect("version");
        if let Some(action) = audit_action {
            let detail = serde_json::json!({"version": id, "comment": comment, "restart_needed": []}).to_string();
            conn.execute(
                "INSERT INTO audit_log (time_ms, actor, action, target, detail) VALUES (0, ?1, ?2, 'config', ?3)",
                rusqlite::params![actor, action, detail],
            )
            .expect("audit");
        }
    }

    #[test]
    fn a_version_2_history_keeps_its_rows_and_only_the_servers_comments_get_a_kind() {
        use crate::store::comment::ServerComment;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let mut conn = a_version_2_database(&path);
        let token = "token@127.0.0.1";
        let rows: &[(&str, &str, Option<&str>, Option<ServerComment>)] = &[
            ("startup", "configuration at start-up", None, Some(ServerComment::Startup)),
            (token, "client carol created", Some("clients.create"), Some(ServerComment::ClientCreated { client: "carol".into() })),
            ("signal:SIGHUP", "reloaded from disk", Some("config.reload"), Some(ServerComment::ReloadedFromDisk)),
            (token, "12 key(s) added", Some("keys.add"), Some(ServerComment::KeysAdded { count: 12 })),
            (token, "key my key deleted", Some("keys.delete"), Some(ServerComment::KeyDeleted { key: "my key".into() })),
            (token, "client 张三 revoked", Some("clients.revoke"), Some(ServerComment::ClientRevoked { client: "张三".into() })),
            (token, "client bob updated", Some("clients.update"), Some(ServerComment::ClientUpdated { client: "bob".into() })),
            (token, "rollback to version 3", Some("config.replace"), Some(ServerComment::Rollback { version: 3 })),
            (token, "replaced over the admin API", Some("config.replace"), Some(ServerComment::Replaced)),
            // Typed by a user on PUT /config (audited as config.replace): their words.
            (token, "client bob created", Some("config.replace"), None),
            (token, "configuration at start-up", Some("config.replace"), None),
            (token, "reloaded from disk", Some("config.replace"), None),
            (token, "rollback to version 3, by hand", Some("config.replace"), None),
            (token, "rollback to version 99999999999999999999999", Some("config.replace"), None),
            // Nothing tells who wrote it.
            ("signal:SIGHUP", "reloaded from disk", None, None),
            (token, "fix the rpm of alice", Some("config.replace"), None),
        ];
        for (i, (actor, comment, action, _)) in rows.iter().enumerate() {
            old_version(&conn, i as i64 + 1, actor, comment, *action);
        }
        // An unreadable detail, and one from a failed recording (no version): skipped, not fatal.
        conn.execute_batch("INSERT INTO audit_log (time_ms, actor, action, target, detail) VALUES (0, 'x', 'keys.add', 'p', 'not json'), (0, 'x', 'keys.add', 'p', '{\"version\": null}');")
            .expect("odd audit rows");
        migrate(&mut conn, &path).expect("migrate");
        assert_eq!(current_version(&conn, &path).expect("version"), latest_version());
        let mut stmt = conn.prepare("SELECT id, comment, comment_kind, comment_params FROM config_version ORDER BY id").expect("prepare");
        let got: Vec<(i64, String, Option<String>, Option<String>)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).expect("query").collect::<Result<_, _>>().expect("rows");
        assert_eq!(got.len(), rows.len(), "every row kept");
        for ((id, comment, kind, params), (_, old, _, want)) in got.iter().zip(rows) {
            assert_eq!(comment, old, "version {id}: the text stays");
            let recognised = kind.as_deref().map(|k| ServerComment::from_stored(k, params.as_deref()).ok_or(format!("{k} {params:?}")));
            assert_eq!(recognised, want.clone().map(Ok), "version {id}: {old:?}");
        }
        let temp: i64 = conn.query_row("SELECT count(*) FROM temp.sqlite_master WHERE name = 'made_by'", [], |r| r.get(0)).expect("count");
        assert_eq!(temp, 0, "the helper table is gone");
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
