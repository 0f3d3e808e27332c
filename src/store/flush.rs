//! One writer commit: request-log rows, the latest key states and bindings, and the per-minute
//! usage that requests add up to (folded in memory first, see [`UsageFold`]), in a single
//! transaction.

use super::error::{Context, StoreError};
use super::histogram::{Histogram, SparseHistogram};
use super::types::{BindingKind, PersistedBinding, PersistedKeyState, UsageCounts};
use super::{fingerprint_hex, sql_u64, unix_ms};
use crate::courtesy::Courtesy;
use crate::secret::Fingerprint;
use crate::telemetry::access_log::AccessRecord;
use rusqlite::{params, Connection, TransactionBehavior};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const INSERT_REQUEST: &str = "INSERT INTO request_log (time_ms, request_id, client, method, path, model, status, key_name, key_fp, \
     attempts, total_ms, first_byte_ms, bytes_in, bytes_out, tokens_in, tokens_out, stream, error) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

/// Counters add up; histograms are merged by [`HIST_MERGE`], in the same statement (a large
/// pool makes almost every request its own usage row, so a read before each write would
/// double the writer's work).
const UPSERT_USAGE: &str = "INSERT INTO usage_minute (minute_ms, key_fp, client, model, key_name, requests, ok, client_errors, \
     rate_limited, server_errors, retries, input_tokens, output_tokens, latency_hist) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
     ON CONFLICT (minute_ms, key_fp, client, model) DO UPDATE SET \
     key_name = excluded.key_name, requests = requests + excluded.requests, ok = ok + excluded.ok, \
     client_errors = client_errors + excluded.client_errors, rate_limited = rate_limited + excluded.rate_limited, \
     server_errors = server_errors + excluded.server_errors, retries = retries + excluded.retries, \
     input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, \
     latency_hist = gp_hist_merge(latency_hist, excluded.latency_hist)";

/// The SQL function that merges two encoded latency histograms.
const HIST_MERGE: &str = "gp_hist_merge";

/// Registers the functions the flush's SQL uses on a connection that will run it.
pub(crate) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(HIST_MERGE, 2, FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        let blob = |i: usize| -> rusqlite::Result<Histogram> {
            Ok(match ctx.get_raw(i) {
                rusqlite::types::ValueRef::Blob(b) => Histogram::decode(b),
                _ => Histogram::default(),
            })
        };
        let mut merged = blob(0)?;
        merged.merge(&blob(1)?);
        Ok(merged.encode())
    })
}

const UPSERT_KEY: &str = "INSERT INTO key_state (fingerprint, name, disabled, cooldowns, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (fingerprint) DO UPDATE SET name = excluded.name, disabled = excluded.disabled, \
     cooldowns = excluded.cooldowns, updated_ms = excluded.updated_ms";

const UPSERT_BINDING: &str = "INSERT INTO binding (kind, name, key_fp, client, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (kind, name) DO UPDATE SET key_fp = excluded.key_fp, client = excluded.client, expires_ms = excluded.expires_ms";

const MINUTE_MS: i64 = 60_000;

/// A binding row's identity.
pub(crate) type BindingId = (BindingKind, String);

/// Key states and bindings waiting for a commit. Maps rather than queues: only the latest
/// state of a key or binding matters, and a newer one replaces an older one not yet written.
#[derive(Default)]
pub(crate) struct PendingState {
    pub(crate) keys: HashMap<String, PersistedKeyState>,
    pub(crate) bindings: HashMap<BindingId, PersistedBinding>,
    /// The usage of requests whose record found the writer's queue full: their log rows are
    /// lost, their tokens and counts are not. The writer moves it into its own fold.
    pub(crate) overflow: UsageFold,
}

impl PendingState {
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.bindings.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.bindings.clear();
    }

    /// Adds `b`, replacing a pending binding of the same kind and name. A new name is refused
    /// when `max` bindings are waiting already: returns whether `b` was kept.
    pub(crate) fn add_binding(&mut self, b: PersistedBinding, max: usize) -> bool {
        let id = (b.kind, b.name.clone());
        if self.bindings.len() >= max && !self.bindings.contains_key(&id) {
            return false;
        }
        self.bindings.insert(id, b);
        true
    }

    /// Moves `newer` in: its key states replace older ones (never dropped: there is one per
    /// key), its bindings are added as by [`PendingState::add_binding`]. Returns how many
    /// bindings did not fit.
    pub(crate) fn absorb(&mut self, newer: PendingState, max_bindings: usize) -> u64 {
        self.keys.extend(newer.keys);
        let mut dropped = 0;
        for b in newer.bindings.into_values() {
            if !self.add_binding(b, max_bindings) {
                dropped += 1;
            }
        }
        dropped
    }
}

/// The outcome classes of the usage counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Ok,
    ClientError,
    RateLimited,
    ServerError,
}

fn classify(status: u16) -> Class {
    match status {
        429 => Class::RateLimited,
        400..=499 => Class::ClientError,
        100..=399 => Class::Ok,
        // 5xx, and 0: the request ended before any status was chosen.
        _ => Class::ServerError,
    }
}

/// A usage row's identity, owned: the fold outlives the records it was built from.
#[derive(Hash, PartialEq, Eq)]
struct Group {
    minute_ms: i64,
    key: Option<Fingerprint>,
    client: Option<Arc<str>>,
    model: Option<Box<str>>,
}

impl Group {
    /// The order of `usage_minute`'s primary key (no key, stored as '', sorts first).
    fn row_order(&self) -> (i64, Option<Fingerprint>, &str, &str) {
        (self.minute_ms, self.key, self.client.as_deref().unwrap_or(""), self.model.as_deref().unwrap_or(""))
    }
}

/// A usage row's identity borrowed from a record, to find its group without allocating. Its
/// derived `Hash` equals [`Group`]'s: `Arc<str>`, `Box<str>` and `&str` all hash as `str`.
#[derive(Hash)]
struct GroupRef<'a> {
    minute_ms: i64,
    key: Option<Fingerprint>,
    client: Option<&'a str>,
    model: Option<&'a str>,
}

impl hashbrown::Equivalent<Group> for GroupRef<'_> {
    fn equivalent(&self, g: &Group) -> bool {
        self.minute_ms == g.minute_ms && self.key == g.key && self.client == g.client.as_deref() && self.model == g.model.as_deref()
    }
}

#[derive(Default)]
struct Usage {
    key_name: Option<Arc<str>>,
    counts: UsageCounts,
    latency: SparseHistogram,
}

impl Usage {
    fn add(&mut self, r: &AccessRecord) {
        let c = &mut self.counts;
        c.requests += 1;
        match classify(r.status) {
            Class::Ok => c.ok += 1,
            Class::ClientError => c.client_errors += 1,
            Class::RateLimited => c.rate_limited += 1,
            Class::ServerError => c.server_errors += 1,
        }
        c.retries += r.attempts.len().saturating_sub(1) as u64;
        c.input_tokens = c.input_tokens.saturating_add(r.tokens_in);
        c.output_tokens = c.output_tokens.saturating_add(r.tokens_out);
        self.latency.record(r.total_ms);
    }
}

/// The usage of requests not yet committed, added up per usage row. Folding in memory is what
/// keeps a large pool affordable: with 100,000 keys nearly every request of a tick is its own
/// row, and an upsert per request (about 13 µs each in a table that size) is more than the
/// writer can do beside the data plane; folded over several seconds, each row is written once.
#[derive(Default)]
pub(crate) struct UsageFold {
    groups: hashbrown::HashMap<Group, Usage>,
    requests: u64,
}

impl UsageFold {
    pub(crate) fn add(&mut self, r: &AccessRecord) {
        let last = r.attempts.last();
        let at = GroupRef {
            minute_ms: unix_ms(r.time).div_euclid(MINUTE_MS) * MINUTE_MS,
            key: last.map(|a| a.fingerprint),
            client: r.client.as_deref(),
            model: r.model.as_deref(),
        };
        let usage = match self.groups.get_mut(&at) {
            Some(u) => u,
            None => {
                let group = Group { minute_ms: at.minute_ms, key: at.key, client: r.client.clone(), model: r.model.as_deref().map(Box::from) };
                self.groups.entry(group).or_default()
            }
        };
        if let Some(a) = last {
            if usage.key_name.as_deref() != Some(&*a.key) {
                usage.key_name = Some(a.key.clone());
            }
        }
        usage.add(r);
        self.requests += 1;
    }

    /// Adds `other`'s rows to this fold's.
    pub(crate) fn merge(&mut self, other: UsageFold) {
        for (group, u) in other.groups {
            let mine = self.groups.entry(group).or_default();
            if u.key_name.is_some() {
                mine.key_name = u.key_name;
            }
            let (c, o) = (&mut mine.counts, &u.counts);
            c.requests += o.requests;
            c.ok += o.ok;
            c.client_errors += o.client_errors;
            c.rate_limited += o.rate_limited;
            c.server_errors += o.server_errors;
            c.retries += o.retries;
            c.input_tokens = c.input_tokens.saturating_add(o.input_tokens);
            c.output_tokens = c.output_tokens.saturating_add(o.output_tokens);
            mine.latency.merge(&u.latency);
        }
        self.requests += other.requests;
    }

    /// Distinct usage rows: what committing the fold costs.
    pub(crate) fn rows(&self) -> usize {
        self.groups.len()
    }

    /// Requests added since the fold was last committed.
    pub(crate) fn requests(&self) -> u64 {
        self.requests
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requests == 0
    }

    pub(crate) fn clear(&mut self) {
        self.groups.clear();
        self.requests = 0;
    }

    /// Cuts the fold into folds of at most `rows` rows each, in primary-key order (the first
    /// holds the lowest keys), to be committed one after another.
    pub(crate) fn into_slices(self, rows: usize) -> std::collections::VecDeque<UsageFold> {
        let mut entries: Vec<(Group, Usage)> = self.groups.into_iter().collect();
        entries.sort_unstable_by(|(a, _), (b, _)| a.row_order().cmp(&b.row_order()));
        let mut slices = std::collections::VecDeque::new();
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let mut slice = UsageFold::default();
            for (g, u) in entries.by_ref().take(rows.max(1)) {
                slice.requests += u.counts.requests;
                slice.groups.insert(g, u);
            }
            slices.push_back(slice);
        }
        slices
    }
}

/// Commits, in one IMMEDIATE transaction (the write lock is taken up front, so a concurrent
/// admin write makes this wait through the busy timeout instead of failing half-way): request-log
/// rows for `rows`, the usage `usage` adds up to when given, and the key states and bindings of
/// `state`. On error nothing is written and the caller may retry the same input.
pub(crate) fn commit(conn: &mut Connection, path: &Path, rows: &[AccessRecord], usage: Option<&UsageFold>, state: &PendingState) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin a flush", path)?;
    if !rows.is_empty() {
        insert_rows(&tx, path, rows)?;
    }
    if let Some(usage) = usage.filter(|u| !u.is_empty()) {
        upsert_usage(&tx, path, usage)?;
    }
    if !state.keys.is_empty() {
        let mut upsert = tx.prepare_cached(UPSERT_KEY).ctx("prepare the key-state upsert", path)?;
        for k in state.keys.values() {
            let disabled = k.disabled.as_ref().map(serde_json::to_string).transpose().unwrap_or(None);
            let cooldowns = serde_json::to_string(&k.cooldowns).unwrap_or_else(|_| String::from("[]"));
            upsert.execute(params![k.fingerprint, k.name, disabled, cooldowns, k.updated_ms]).ctx("upsert a key state", path)?;
        }
    }
    if !state.bindings.is_empty() {
        upsert_bindings(&tx, path, state.bindings.values())?;
    }
    tx.commit().ctx("commit a flush", path)
}

/// Upserts bindings. The error names the operation only: an upload id must not reach a log.
fn upsert_bindings<'a>(tx: &Connection, path: &Path, bindings: impl Iterator<Item = &'a PersistedBinding>) -> Result<(), StoreError> {
    let mut upsert = tx.prepare_cached(UPSERT_BINDING).ctx("prepare the binding upsert", path)?;
    for b in bindings {
        upsert.execute(params![b.kind.as_str(), b.name, b.key_fp, b.client, b.expires_ms]).ctx("upsert a binding", path)?;
    }
    Ok(())
}

fn insert_rows(tx: &Connection, path: &Path, rows: &[AccessRecord]) -> Result<(), StoreError> {
    // A handful of keys serve thousands of requests: format each fingerprint once.
    let mut fps: HashMap<Fingerprint, String> = HashMap::new();
    let mut insert = tx.prepare_cached(INSERT_REQUEST).ctx("prepare the request insert", path)?;
    let mut courtesy = Courtesy::start();
    for r in rows {
        courtesy.item();
        let last = r.attempts.last();
        let key_fp = last.map(|a| fps.entry(a.fingerprint).or_insert_with(|| fingerprint_hex(&a.fingerprint)).as_str());
        // Serialising cannot fail for these plain types; an empty array is the safe fallback.
        let attempts = serde_json::to_string(&r.attempts).unwrap_or_else(|_| String::from("[]"));
        insert
            .execute(params![
                unix_ms(r.time),
                r.request_id as i64,
                r.client.as_deref(),
                r.method,
                r.path,
                r.model,
                r.status,
                last.map(|a| &*a.key),
                key_fp,
                attempts,
                r.total_ms,
                r.first_byte_ms,
                sql_u64(r.bytes_in),
                sql_u64(r.bytes_out),
                sql_u64(r.tokens_in),
                sql_u64(r.tokens_out),
                r.stream,
                r.error,
            ])
            .ctx("insert a request-log row", path)?;
    }
    Ok(())
}

fn upsert_usage(tx: &Connection, path: &Path, usage: &UsageFold) -> Result<(), StoreError> {
    let mut upsert = tx.prepare_cached(UPSERT_USAGE).ctx("prepare the usage upsert", path)?;
    // In primary-key order (a fingerprint's hex sorts as its bytes do): each upsert then lands
    // on or next to the page of the one before, instead of all over a large table.
    let mut groups: Vec<(&Group, &Usage)> = usage.groups.iter().collect();
    groups.sort_unstable_by(|(a, _), (b, _)| a.row_order().cmp(&b.row_order()));
    let mut courtesy = Courtesy::start();
    for (g, u) in groups {
        courtesy.item();
        upsert
            .execute(params![
                g.minute_ms,
                g.key.as_ref().map(fingerprint_hex).unwrap_or_default(),
                g.client.as_deref().unwrap_or(""),
                g.model.as_deref().unwrap_or(""),
                u.key_name.as_deref().unwrap_or(""),
                sql_u64(u.counts.requests),
                sql_u64(u.counts.ok),
                sql_u64(u.counts.client_errors),
                sql_u64(u.counts.rate_limited),
                sql_u64(u.counts.server_errors),
                sql_u64(u.counts.retries),
                sql_u64(u.counts.input_tokens),
                sql_u64(u.counts.output_tokens),
                u.latency.to_histogram().encode(),
            ])
            .ctx("upsert a usage row", path)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::telemetry::access_log::AttemptRecord;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_fold_cut_into_slices_keeps_every_request_in_key_order() {
        let mut fold = UsageFold::default();
        for i in 0..25u64 {
            // Five requests on each of five keys, arriving interleaved.
            fold.add(&record(1_800_000_000_000, i, Some(&format!("k{}", i % 5)), Some("app"), Some("m"), 200, 1.0));
        }
        assert_eq!((fold.rows(), fold.requests()), (5, 25));
        let slices: Vec<UsageFold> = fold.into_slices(2).into_iter().collect();
        assert_eq!(slices.iter().map(UsageFold::rows).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert_eq!(slices.iter().map(UsageFold::requests).sum::<u64>(), 25);
        let max_key = |f: &UsageFold| f.groups.keys().map(|g| g.key).max();
        let min_key = |f: &UsageFold| f.groups.keys().map(|g| g.key).min();
        assert!(max_key(&slices[0]) < min_key(&slices[1]) && max_key(&slices[1]) < min_key(&slices[2]));
    }
    /// Commits every request as a log row and with its usage, as a small pool's writer does.
    pub(crate) fn commit_all(
        conn: &mut Connection,
        path: &Path,
        requests: &[AccessRecord],
        keys: &HashMap<String, PersistedKeyState>,
    ) -> Result<(), StoreError> {
        let mut usage = UsageFold::default();
        requests.iter().for_each(|r| usage.add(r));
        let state = PendingState { keys: keys.clone(), ..PendingState::default() };
        commit(conn, path, requests, Some(&usage), &state)
    }

    /// A request record as the gateway makes them, for tests and measurements.
    pub(crate) fn record(time_ms: i64, id: u64, key: Option<&str>, client: Option<&str>, model: Option<&str>, status: u16, total_ms: f64) -> AccessRecord {
        let attempts = key
            .map(|k| {
                vec![AttemptRecord {
                    key: Arc::from(k),
                    fingerprint: Secret::new(format!("AIza-{k}")).fingerprint(),
                    fingerprint_label: Arc::from(Secret::new(format!("AIza-{k}")).fingerprint().to_string()),
                    outcome: "ok",
                    status: Some(status),
                    ms: total_ms,
                }]
            })
            .unwrap_or_default();
        AccessRecord {
            time: UNIX_EPOCH + Duration::from_millis(u64::try_from(time_ms).unwrap_or(0)),
            request_id: id,
            peer: None,
            client: client.map(Arc::from),
            method: "POST".into(),
            path: format!("/v1beta/models/{}:generateContent", model.unwrap_or("none")),
            model: model.map(Arc::from),
            status,
            attempts: attempts.into(),
            total_ms,
            first_byte_ms: Some(total_ms / 2.0),
            bytes_in: 512,
            bytes_out: 2048,
            tokens_in: 10,
            tokens_out: 20,
            stream: false,
            error: None,
        }
    }

    pub(crate) fn fp_of(key: &str) -> String {
        fingerprint_hex(&Secret::new(format!("AIza-{key}")).fingerprint())
    }

    fn db() -> (tempfile::TempDir, Connection, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).expect("open");
        crate::store::schema::migrate(&mut conn, &path).expect("migrate");
        register_functions(&conn).expect("functions");
        (dir, conn, path)
    }

    #[test]
    fn status_classes() {
        assert_eq!(classify(200), Class::Ok);
        assert_eq!(classify(304), Class::Ok);
        assert_eq!(classify(401), Class::ClientError);
        assert_eq!(classify(499), Class::ClientError);
        assert_eq!(classify(429), Class::RateLimited);
        assert_eq!(classify(503), Class::ServerError);
        assert_eq!(classify(0), Class::ServerError);
    }

    #[test]
    fn usage_adds_up_across_commits_and_groups_by_minute_key_client_model() {
        let (_dir, mut conn, path) = db();
        let t = 1_700_000_040_000 + 40_000; // 40 s into a minute
        let batch1: Vec<AccessRecord> = vec![
            record(t, 1, Some("k1"), Some("app"), Some("gemini-2.5-flash"), 200, 10.0),
            record(t + 1000, 2, Some("k1"), Some("app"), Some("gemini-2.5-flash"), 429, 20.0),
            record(t + 2000, 3, None, None, None, 401, 0.2),
        ];
        commit_all(&mut conn, &path, &batch1, &HashMap::new()).expect("commit 1");
        let batch2: Vec<AccessRecord> = vec![
            record(t + 3000, 4, Some("k1"), Some("app"), Some("gemini-2.5-flash"), 500, 30.0),
            // Next minute.
            record(t + 30_000, 5, Some("k1"), Some("app"), Some("gemini-2.5-flash"), 200, 40.0),
        ];
        commit_all(&mut conn, &path, &batch2, &HashMap::new()).expect("commit 2");

        type UsageRow = (i64, String, String, String, String, i64, i64, i64, i64, Vec<u8>);
        let rows: Vec<UsageRow> = conn
            .prepare("SELECT minute_ms, key_fp, client, model, key_name, requests, ok, rate_limited, server_errors, latency_hist FROM usage_minute ORDER BY minute_ms, key_fp")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(rows.len(), 3, "{rows:?}");
        let minute = t / 60_000 * 60_000;
        // The 401 made no attempt: key "", client "", model "".
        assert_eq!((rows[0].0, rows[0].1.as_str(), rows[0].2.as_str(), rows[0].3.as_str(), rows[0].5), (minute, "", "", "", 1));
        let k1 = &rows[1];
        assert_eq!((k1.0, k1.1.as_str(), k1.4.as_str()), (minute, fp_of("k1").as_str(), "k1"));
        assert_eq!((k1.5, k1.6, k1.7, k1.8), (3, 1, 1, 1), "counters added across the two commits");
        assert_eq!(Histogram::decode(&k1.9).count(), 3, "histograms merged across the two commits");
        assert_eq!((rows[2].0, rows[2].5), (minute + 60_000, 1));
        let logged: i64 = conn.query_row("SELECT count(*) FROM request_log", [], |r| r.get(0)).expect("count");
        assert_eq!(logged, 5);
    }

    #[test]
    fn key_states_upsert_latest_wins() {
        let (_dir, mut conn, path) = db();
        let mut keys = HashMap::new();
        let mut st = PersistedKeyState { fingerprint: "ab".repeat(16), name: "k1".into(), disabled: None, cooldowns: vec![], updated_ms: 1 };
        keys.insert(st.fingerprint.clone(), st.clone());
        commit_all(&mut conn, &path, &[], &keys).expect("commit");
        st.updated_ms = 2;
        st.disabled = Some(crate::store::PersistedDisable { reason: "invalid".into(), message: "API key not valid".into(), since_ms: 2, manual: false });
        keys.insert(st.fingerprint.clone(), st.clone());
        commit_all(&mut conn, &path, &[], &keys).expect("commit");
        let (n, disabled): (i64, Option<String>) =
            conn.query_row("SELECT count(*), max(disabled) FROM key_state", [], |r| Ok((r.get(0)?, r.get(1)?))).expect("row");
        assert_eq!(n, 1);
        assert!(disabled.expect("disabled").contains("API key not valid"));
    }

    #[test]
    fn pending_bindings_are_bounded_but_a_replacement_always_fits() {
        let b = |name: &str, fp: &str| PersistedBinding { kind: BindingKind::Owner, name: name.into(), key_fp: fp.into(), client: None, expires_ms: 1 };
        let mut pending = PendingState::default();
        assert!(pending.add_binding(b("files/a", "1"), 2));
        assert!(pending.add_binding(b("files/b", "1"), 2));
        assert!(!pending.add_binding(b("files/c", "1"), 2), "full");
        assert!(pending.add_binding(b("files/a", "2"), 2), "the same name replaces");
        let mut backlog = PendingState::default();
        backlog.add_binding(b("files/z", "1"), 2);
        assert_eq!(backlog.absorb(pending, 2), 1, "one of the two new names fits");
        assert_eq!(backlog.bindings.len(), 2);
    }

    #[test]
    fn a_failed_commit_writes_nothing() {
        let (_dir, mut conn, path) = db();
        // Break the usage table so the request inserts succeed but the usage upsert fails.
        conn.execute_batch("DROP TABLE usage_minute").expect("sabotage");
        let batch = vec![record(1_700_000_000_000, 1, Some("k"), None, None, 200, 1.0)];
        let err = commit_all(&mut conn, &path, &batch, &HashMap::new()).expect_err("must fail");
        assert!(err.to_string().contains("usage"), "{err}");
        let logged: i64 = conn.query_row("SELECT count(*) FROM request_log", [], |r| r.get(0)).expect("count");
        assert_eq!(logged, 0, "the request rows rolled back with the failed usage upsert");
    }
}
