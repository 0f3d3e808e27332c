//! Pruning old history (request log by age and row count, usage by age) and expired bindings in
//! small batches from the writer thread, so that no single transaction holds the write lock for
//! long.

use super::error::{Context, StoreError};
use super::types::Retention;
use rusqlite::{params, Connection, TransactionBehavior};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a pruning pass starts.
const EVERY: Duration = Duration::from_secs(60);
/// Request-log rows deleted per rule and per writer tick: a few milliseconds of work.
const BATCH: usize = 2000;
/// Usage is deleted a few minutes at a time (rows per minute = active key, client and model
/// combinations, usually tens to hundreds).
const USAGE_MINUTES: i64 = 5;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// Drives pruning: a pass starts at most once a minute and, when there is a lot to delete,
/// continues one batch per writer tick until done.
pub(crate) struct Pruner {
    retention: Retention,
    next_pass: Instant,
    in_pass: bool,
}

impl Pruner {
    /// The first pass runs at the first tick, so a restart after a long stop cleans up at once.
    pub(crate) fn new(retention: Retention) -> Self {
        Pruner { retention, next_pass: Instant::now(), in_pass: false }
    }

    /// Does at most one batch of work if a pass is due or under way.
    pub(crate) fn tick(&mut self, conn: &mut Connection, path: &Path, now: Instant, now_ms: i64) -> Result<(), StoreError> {
        if !self.in_pass {
            if now < self.next_pass {
                return Ok(());
            }
            self.in_pass = true;
            self.next_pass = now + EVERY;
        }
        let more = prune_batch(conn, path, &self.retention, now_ms, BATCH)?;
        self.in_pass = more;
        Ok(())
    }
}

/// Deletes up to `batch` rows per rule in one transaction. Returns whether any rule may have
/// more to delete. A limit of 0 disables its rule; expired bindings are always deleted (they
/// are never loaded again, whatever the retention).
pub(crate) fn prune_batch(conn: &mut Connection, path: &Path, r: &Retention, now_ms: i64, batch: usize) -> Result<bool, StoreError> {
    let batch_i = i64::try_from(batch).unwrap_or(i64::MAX);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin pruning", path)?;
    let mut more = false;
    if r.request_log_days > 0 {
        let cutoff = now_ms.saturating_sub(i64::from(r.request_log_days) * DAY_MS);
        let n = tx
            .execute("DELETE FROM request_log WHERE id IN (SELECT id FROM request_log WHERE time_ms < ?1 LIMIT ?2)", params![cutoff, batch_i])
            .ctx("prune the request log by age", path)?;
        more |= n >= batch;
    }
    if r.request_log_rows > 0 {
        // Ids only grow (AUTOINCREMENT), so "the newest N rows" is "ids above max - N": one
        // index lookup instead of counting a million rows.
        let max_id: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM request_log", [], |row| row.get(0)).ctx("read the newest request id", path)?;
        let keep_from = max_id.saturating_sub(i64::try_from(r.request_log_rows).unwrap_or(i64::MAX)) + 1;
        let n = tx
            .execute("DELETE FROM request_log WHERE id IN (SELECT id FROM request_log WHERE id < ?1 ORDER BY id LIMIT ?2)", params![keep_from, batch_i])
            .ctx("prune the request log by size", path)?;
        more |= n >= batch;
    }
    if r.usage_days > 0 {
        let cutoff = now_ms.saturating_sub(i64::from(r.usage_days) * DAY_MS);
        // The oldest few minutes, by primary key.
        let n = tx
            .execute(
                "DELETE FROM usage_minute WHERE minute_ms < ?1 AND minute_ms < (SELECT min(minute_ms) FROM usage_minute) + ?2",
                params![cutoff, USAGE_MINUTES * MINUTE_MS],
            )
            .ctx("prune usage by age", path)?;
        more |= n > 0;
    }
    let n = tx
        .execute("DELETE FROM binding WHERE (kind, name) IN (SELECT kind, name FROM binding WHERE expires_ms <= ?1 LIMIT ?2)", params![now_ms, batch_i])
        .ctx("prune expired bindings", path)?;
    more |= n >= batch;
    tx.commit().ctx("commit pruning", path)?;
    Ok(more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::flush::tests::{commit_all, record};
    use std::collections::HashMap;

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).expect("count")
    }

    #[test]
    fn prunes_by_age_and_by_rows_in_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).expect("open");
        crate::store::schema::migrate(&mut conn, &path).expect("migrate");
        crate::store::flush::register_functions(&conn).expect("functions");
        let now = 1_700_000_000_000i64;
        let old = now - 10 * DAY_MS;
        // 30 old rows (each its own minute, so 30 old usage rows), then 50 recent ones.
        let mut batch: Vec<_> = (0..30).map(|i| record(old + i * 60_000, i as u64, Some("k"), None, None, 200, 1.0)).collect();
        batch.extend((0..50).map(|i| record(now - 1000 + i, 100 + i as u64, Some("k"), None, None, 200, 1.0)));
        commit_all(&mut conn, &path, &batch, &HashMap::new()).expect("commit");
        assert_eq!(count(&conn, "usage_minute"), 31);

        let r = Retention { request_log_days: 7, request_log_rows: 40, usage_days: 7, config_versions: 50, ..Retention::default() };
        // Batches of 8: several calls, each reporting more work until everything is gone.
        let mut calls = 0;
        while prune_batch(&mut conn, &path, &r, now, 8).expect("prune") {
            calls += 1;
            assert!(calls < 20, "pruning does not converge");
        }
        assert!(calls >= 3, "{calls} calls");
        assert_eq!(count(&conn, "request_log"), 40, "the newest 40 rows stay");
        let oldest: i64 = conn.query_row("SELECT min(time_ms) FROM request_log", [], |r| r.get(0)).expect("min");
        assert!(oldest >= now - 1000);
        assert_eq!(count(&conn, "usage_minute"), 1, "only the recent minute stays");

        // Zero disables a rule.
        let keep_all = Retention { request_log_days: 0, request_log_rows: 0, usage_days: 0, config_versions: 0, ..Retention::default() };
        assert!(!prune_batch(&mut conn, &path, &keep_all, now + 100 * DAY_MS, 8).expect("prune"));
        assert_eq!(count(&conn, "request_log"), 40);
    }

    #[test]
    fn expired_bindings_are_pruned_whatever_the_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).expect("open");
        crate::store::schema::migrate(&mut conn, &path).expect("migrate");
        let now = 1_700_000_000_000i64;
        for i in 0..5 {
            // Expired: 3 rows (up to and including now); live: 2.
            let expires = now - 2 + i;
            conn.execute("INSERT INTO binding VALUES ('owner', ?1, ?2, NULL, ?3)", params![format!("files/{i}"), "ab".repeat(16), expires]).expect("insert");
        }
        let keep_all = Retention { request_log_days: 0, request_log_rows: 0, usage_days: 0, config_versions: 0, ..Retention::default() };
        assert!(prune_batch(&mut conn, &path, &keep_all, now, 2).expect("prune"), "a full batch: maybe more");
        assert!(!prune_batch(&mut conn, &path, &keep_all, now, 2).expect("prune"));
        let left: Vec<String> = conn
            .prepare("SELECT name FROM binding ORDER BY name")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(left, vec!["files/3", "files/4"]);
    }

    #[test]
    fn passes_start_at_most_once_a_minute() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).expect("open");
        crate::store::schema::migrate(&mut conn, &path).expect("migrate");
        let mut p = Pruner::new(Retention::default());
        let t0 = Instant::now();
        p.tick(&mut conn, &path, t0, 0).expect("tick");
        assert!(!p.in_pass);
        let next = p.next_pass;
        p.tick(&mut conn, &path, t0 + Duration::from_secs(1), 0).expect("tick");
        assert_eq!(p.next_pass, next, "no new pass within the minute");
        assert!(next >= t0 + EVERY);
    }
}
