//! Reads for the REST API and for start-up: key states, bindings, the request log, and usage
//! (per-minute series and totals), with the filters the API offers.

use super::error::{Context, StoreError};
use super::histogram::Histogram;
use super::types::{
    clamp_limit, BindingKind, GroupTotal, MinutePoint, PersistedBinding, PersistedKeyState, RequestQuery, RequestRow, StatsQuery, StatusFilter, Totals,
    UsageCounts,
};
use super::{u64_of, Store};
use crate::secret::Fingerprint;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};
use std::path::Path;

/// Groups listed in each of `Totals::by_*`.
const TOP_GROUPS: usize = 20;
const MINUTE_MS: i64 = 60_000;

/// A `WHERE` clause built from optional filters, with its positional parameters.
struct Filter {
    sql: String,
    params: Vec<Value>,
}

impl Filter {
    fn new() -> Self {
        Filter { sql: String::from(" WHERE 1"), params: Vec::new() }
    }

    /// Adds `AND (clause)`; `clause` has one `?` per value, in order.
    fn and(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) {
        self.sql.push_str(" AND (");
        self.sql.push_str(clause);
        self.sql.push(')');
        self.params.extend(values);
    }

    fn eq(&mut self, column: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.and(&format!("{column} = ?"), [Value::Text(v.clone())]);
        }
    }

    /// A key given by name or by fingerprint: the full 32 hex digits or a prefix of at least
    /// 8 (the 12-digit display form), in any case, as `Fingerprint::matches` accepts.
    fn key(&mut self, name_col: &str, fp_col: &str, key: &Option<String>) {
        let Some(key) = key else { return };
        match fingerprint_form(key) {
            Some(fp) => {
                self.and(&format!("{name_col} = ? OR substr({fp_col}, 1, ?) = ?"), [Value::Text(key.clone()), Value::Integer(fp.len() as i64), Value::Text(fp)])
            }
            None => self.and(&format!("{name_col} = ?"), [Value::Text(key.clone())]),
        }
    }
}

/// The lowercase fingerprint (prefix) a key filter may be: 8 to 32 hex digits.
fn fingerprint_form(s: &str) -> Option<String> {
    ((8..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

const REQUEST_COLUMNS: &str = "id, time_ms, request_id, client, method, path, model, status, key_name, key_fp, attempts, total_ms, \
                               first_byte_ms, bytes_in, bytes_out, tokens_in, tokens_out, stream, error";

fn request_row(r: &Row<'_>) -> rusqlite::Result<RequestRow> {
    let attempts: String = r.get(10)?;
    Ok(RequestRow {
        id: r.get(0)?,
        time_ms: r.get(1)?,
        // Stored bit for bit as a signed integer.
        request_id: r.get::<_, i64>(2)? as u64,
        client: r.get(3)?,
        method: r.get(4)?,
        path: r.get(5)?,
        model: r.get(6)?,
        status: u16::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
        key: r.get(8)?,
        // Stored in full (the key's identity); shown in the display form, as everywhere else.
        key_fingerprint: r.get::<_, Option<String>>(9)?.map(Fingerprint::display_form),
        // The writer stores serde_json output; anything else is shown as the raw text.
        attempts: serde_json::from_str(&attempts).unwrap_or(serde_json::Value::String(attempts)),
        total_ms: r.get(11)?,
        first_byte_ms: r.get(12)?,
        bytes_in: u64_of(r.get(13)?),
        bytes_out: u64_of(r.get(14)?),
        tokens_in: u64_of(r.get(15)?),
        tokens_out: u64_of(r.get(16)?),
        stream: r.get(17)?,
        error: r.get(18)?,
    })
}

fn requests(conn: &Connection, path: &Path, q: &RequestQuery) -> Result<Vec<RequestRow>, StoreError> {
    let mut f = Filter::new();
    match q.status {
        Some(StatusFilter::Exact(s)) => f.and("status = ?", [Value::Integer(i64::from(s))]),
        Some(StatusFilter::Class(c)) => {
            let low = i64::from(c) * 100;
            f.and("status >= ? AND status < ?", [Value::Integer(low), Value::Integer(low + 100)]);
        }
        None => {}
    }
    f.eq("client", &q.client);
    f.eq("model", &q.model);
    f.key("key_name", "key_fp", &q.key);
    if let Some(from) = q.from_ms {
        f.and("time_ms >= ?", [Value::Integer(from)]);
    }
    if let Some(to) = q.to_ms {
        f.and("time_ms < ?", [Value::Integer(to)]);
    }
    if let Some(before) = q.before_id {
        f.and("id < ?", [Value::Integer(before)]);
    }
    let sql = format!("SELECT {REQUEST_COLUMNS} FROM request_log{} ORDER BY id DESC LIMIT {}", f.sql, clamp_limit(q.limit));
    let mut stmt = conn.prepare(&sql).ctx("prepare a request-log query", path)?;
    let rows = stmt.query_map(params_from_iter(f.params), request_row).ctx("query the request log", path)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().ctx("read request-log rows", path)
}

/// The usage filter shared by the series and the totals: whole minutes from the one containing
/// `from_ms` up to (not including) `to_ms`.
fn usage_filter(q: &StatsQuery) -> Filter {
    let mut f = Filter::new();
    let from_minute = q.from_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
    f.and("minute_ms >= ? AND minute_ms < ?", [Value::Integer(from_minute), Value::Integer(q.to_ms)]);
    f.eq("client", &q.client);
    f.eq("model", &q.model);
    f.key("key_name", "key_fp", &q.key);
    f
}

impl UsageCounts {
    /// Adds columns `first..first+8` of a row (requests .. output_tokens, in table order).
    fn add_row(&mut self, r: &Row<'_>, first: usize) -> rusqlite::Result<()> {
        let col = |i: usize| -> rusqlite::Result<u64> { Ok(u64_of(r.get::<_, Option<i64>>(first + i)?.unwrap_or(0))) };
        for (i, field) in self.fields_mut().into_iter().enumerate() {
            *field = field.saturating_add(col(i)?);
        }
        Ok(())
    }
}

const COUNT_COLUMNS: &str = "requests, ok, client_errors, rate_limited, server_errors, retries, input_tokens, output_tokens";

fn timeseries(conn: &Connection, path: &Path, q: &StatsQuery) -> Result<Vec<MinutePoint>, StoreError> {
    let f = usage_filter(q);
    let sql = format!("SELECT minute_ms, {COUNT_COLUMNS}, latency_hist FROM usage_minute{} ORDER BY minute_ms", f.sql);
    let mut stmt = conn.prepare(&sql).ctx("prepare a usage query", path)?;
    let mut rows = stmt.query(params_from_iter(f.params)).ctx("query usage", path)?;
    let mut points = Vec::new();
    // Rows come sorted by minute; the groups of one minute (keys, clients, models) merge.
    let mut current: Option<(i64, UsageCounts, Histogram)> = None;
    while let Some(r) = rows.next().ctx("read usage rows", path)? {
        let minute: i64 = r.get(0).ctx("read usage rows", path)?;
        let hist = Histogram::decode(&r.get::<_, Vec<u8>>(9).ctx("read usage rows", path)?);
        match &mut current {
            Some((m, counts, h)) if *m == minute => {
                counts.add_row(r, 1).ctx("read usage rows", path)?;
                h.merge(&hist);
            }
            _ => {
                if let Some(done) = current.take() {
                    points.push(point(done));
                }
                let mut counts = UsageCounts::default();
                counts.add_row(r, 1).ctx("read usage rows", path)?;
                current = Some((minute, counts, hist));
            }
        }
    }
    if let Some(done) = current {
        points.push(point(done));
    }
    Ok(points)
}

fn point((minute_ms, counts, h): (i64, UsageCounts, Histogram)) -> MinutePoint {
    MinutePoint { minute_ms, counts, latency_p50_ms: h.quantile(0.50), latency_p95_ms: h.quantile(0.95), latency_p99_ms: h.quantile(0.99) }
}

fn totals(conn: &Connection, path: &Path, q: &StatsQuery) -> Result<Totals, StoreError> {
    let f = usage_filter(q);
    let sums = COUNT_COLUMNS.split(", ").map(|c| format!("sum({c})")).collect::<Vec<_>>().join(", ");
    let sql = format!("SELECT {sums} FROM usage_minute{}", f.sql);
    let mut counts = UsageCounts::default();
    conn.query_row(&sql, params_from_iter(f.params.iter()), |r| counts.add_row(r, 0)).ctx("sum usage", path)?;
    Ok(Totals {
        counts,
        by_model: groups(conn, path, &f, "model", "model", false)?,
        by_client: groups(conn, path, &f, "client", "client", false)?,
        // Keyed by fingerprint; the name shown is the one of the group's newest row (SQLite
        // takes bare columns from the row that holds max()).
        by_key: groups(conn, path, &f, "key_fp", "key_name", true)?,
    })
}

fn groups(conn: &Connection, path: &Path, f: &Filter, group_col: &str, name_col: &str, with_fp: bool) -> Result<Vec<GroupTotal>, StoreError> {
    let sql = format!(
        "SELECT {group_col}, {name_col}, max(minute_ms), sum(requests), sum(client_errors + rate_limited + server_errors), \
         sum(input_tokens), sum(output_tokens) FROM usage_minute{} GROUP BY {group_col} ORDER BY 4 DESC, 1 LIMIT {TOP_GROUPS}",
        f.sql
    );
    let mut stmt = conn.prepare(&sql).ctx("prepare a usage grouping", path)?;
    let rows = stmt
        .query_map(params_from_iter(f.params.iter()), |r| {
            let group: String = r.get(0)?;
            Ok(GroupTotal {
                name: r.get(1)?,
                fingerprint: with_fp.then(|| Fingerprint::display_form(group)),
                requests: u64_of(r.get(3)?),
                errors: u64_of(r.get(4)?),
                input_tokens: u64_of(r.get(5)?),
                output_tokens: u64_of(r.get(6)?),
            })
        })
        .ctx("group usage", path)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().ctx("read usage groups", path)
}

fn load_key_states(conn: &Connection, path: &Path) -> Result<Vec<PersistedKeyState>, StoreError> {
    let mut stmt = conn.prepare("SELECT fingerprint, name, disabled, cooldowns, updated_ms FROM key_state").ctx("prepare the key-state load", path)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, String>(3)?, r.get::<_, i64>(4)?)))
        .ctx("load key states", path)?;
    let mut out = Vec::new();
    for row in rows {
        let (fingerprint, name, disabled, cooldowns, updated_ms) = row.ctx("load key states", path)?;
        let disabled = match disabled.as_deref().map(serde_json::from_str).transpose() {
            Ok(d) => d,
            Err(e) => {
                // One damaged row must not keep the proxy from starting: that key starts fresh.
                tracing::warn!(key = %name, error = %e, "ignoring an unreadable stored key state");
                continue;
            }
        };
        let cooldowns = match serde_json::from_str(&cooldowns) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(key = %name, error = %e, "ignoring unreadable stored cooldowns");
                Vec::new()
            }
        };
        out.push(PersistedKeyState { fingerprint, name, disabled, cooldowns, updated_ms });
    }
    Ok(out)
}

/// The bindings that have not expired at `now_ms`. A row of an unknown kind (written by a
/// newer build) is skipped; its name is not logged, since it may be an upload id.
fn load_bindings(conn: &Connection, path: &Path, now_ms: i64) -> Result<Vec<PersistedBinding>, StoreError> {
    let mut stmt = conn.prepare("SELECT kind, name, key_fp, client, expires_ms FROM binding WHERE expires_ms > ?1").ctx("prepare the binding load", path)?;
    let rows = stmt
        .query_map([now_ms], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<String>>(3)?, r.get::<_, i64>(4)?))
        })
        .ctx("load bindings", path)?;
    let mut out = Vec::new();
    let mut unknown = 0u64;
    for row in rows {
        let (kind, name, key_fp, client, expires_ms) = row.ctx("load bindings", path)?;
        match BindingKind::parse(&kind) {
            Some(kind) => out.push(PersistedBinding { kind, name, key_fp, client, expires_ms }),
            None => unknown += 1,
        }
    }
    if unknown > 0 {
        tracing::warn!(rows = unknown, "ignoring stored bindings of an unknown kind");
    }
    Ok(out)
}

impl Store {
    /// Every binding (resource owner, upload session) persisted that has not expired at
    /// `now_ms` (Unix milliseconds), for restoring them at start-up.
    pub fn load_bindings(&self, now_ms: i64) -> Result<Vec<PersistedBinding>, StoreError> {
        self.read(|c, p| load_bindings(c, p, now_ms))
    }

    /// Every key state ever persisted (the caller ignores fingerprints no longer configured).
    pub fn load_key_states(&self) -> Result<Vec<PersistedKeyState>, StoreError> {
        self.read(load_key_states)
    }

    /// Request-log rows matching `q`, newest first, at most `q.limit` (clamped to 1..=1000).
    pub fn requests(&self, q: &RequestQuery) -> Result<Vec<RequestRow>, StoreError> {
        self.read(|c, p| requests(c, p, q))
    }

    /// One request-log row by id; `None` when unknown or pruned.
    pub fn request(&self, id: i64) -> Result<Option<RequestRow>, StoreError> {
        self.read(|c, p| {
            c.query_row(&format!("SELECT {REQUEST_COLUMNS} FROM request_log WHERE id = ?1"), [id], request_row).optional().ctx("read a request", p)
        })
    }

    /// One point per minute that has matching usage, in ascending order. The range should be
    /// bounded by the caller: the cost grows with minutes times groups (key, client, model).
    pub fn timeseries(&self, q: &StatsQuery) -> Result<Vec<MinutePoint>, StoreError> {
        self.read(|c, p| timeseries(c, p, q))
    }

    /// Sums over the range, and the 20 biggest models, clients and keys by requests.
    pub fn totals(&self, q: &StatsQuery) -> Result<Totals, StoreError> {
        self.read(|c, p| totals(c, p, q))
    }

    /// Input + output tokens per client since `from_ms` (for daily limits after a restart).
    pub fn client_tokens_since(&self, from_ms: i64) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|c, p| {
            let mut stmt = c
                .prepare("SELECT client, sum(input_tokens + output_tokens) FROM usage_minute WHERE minute_ms >= ?1 AND client != '' GROUP BY client")
                .ctx("prepare client tokens", p)?;
            let rows = stmt
                .query_map([from_ms - from_ms.rem_euclid(60_000)], |r| Ok((r.get::<_, String>(0)?, u64_of(r.get::<_, Option<i64>>(1)?.unwrap_or(0)))))
                .ctx("query client tokens", p)?;
            rows.collect::<Result<Vec<_>, _>>().ctx("read client tokens", p)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::store::flush::tests::{fp_of, record};
    use crate::store::{flush, Retention};
    use crate::telemetry::access_log::{AccessRecord, AttemptRecord};
    use std::collections::HashMap;
    use std::sync::Arc;

    /// A minute boundary.
    const T0: i64 = 1_700_000_040_000;

    fn store_with_requests() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Retention::default()).expect("open");
        let flash = Some("gemini-2.5-flash");
        let mut retried = record(T0 + 62_000, 5, Some("k1"), Some("app"), flash, 200, 100.0);
        retried.attempts.insert(
            0,
            AttemptRecord {
                key: Arc::from("k2"),
                fingerprint: Secret::new("AIza-k2").fingerprint(),
                fingerprint_label: Arc::from("x"),
                outcome: "rate_limited",
                status: Some(429),
                ms: 5.0,
            },
        );
        let batch: Vec<AccessRecord> = vec![
            record(T0 + 1000, 1, Some("k1"), Some("app"), flash, 200, 10.0),
            record(T0 + 2000, 2, Some("k2"), Some("app"), Some("gemini-2.5-pro"), 429, 20.0),
            record(T0 + 3000, 3, None, None, None, 401, 0.3),
            record(T0 + 61_000, 4, Some("k1"), Some("other"), flash, 500, 1000.0),
            retried,
        ];
        store.admin(|c, p| flush::tests::commit_all(c, p, &batch, &HashMap::new())).expect("commit");
        (dir, store)
    }

    fn ids(rows: &[RequestRow]) -> Vec<u64> {
        rows.iter().map(|r| r.request_id).collect()
    }

    #[test]
    fn fingerprint_forms() {
        assert_eq!(fingerprint_form("ABCDEF012345").as_deref(), Some("abcdef012345"));
        assert_eq!(fingerprint_form("abc"), None);
        assert_eq!(fingerprint_form("0123abcd").as_deref(), Some("0123abcd"));
        assert_eq!(fingerprint_form("prod-key-0001"), None);
        assert_eq!(fingerprint_form(&"a".repeat(33)), None);
    }

    #[test]
    fn request_log_filters_and_paging() {
        let (_dir, s) = store_with_requests();
        let q = |f: &dyn Fn(&mut RequestQuery)| {
            let mut q = RequestQuery { limit: 100, ..RequestQuery::default() };
            f(&mut q);
            ids(&s.requests(&q).expect("query"))
        };
        assert_eq!(q(&|_| {}), vec![5, 4, 3, 2, 1], "newest first");
        assert_eq!(q(&|q| q.limit = 0), vec![5], "limit clamped to at least 1");
        assert_eq!(q(&|q| q.status = Some(StatusFilter::Class(4))), vec![3, 2]);
        assert_eq!(q(&|q| q.status = Some(StatusFilter::Exact(429))), vec![2]);
        assert_eq!(q(&|q| q.client = Some("app".into())), vec![5, 2, 1]);
        assert_eq!(q(&|q| q.model = Some("gemini-2.5-flash".into())), vec![5, 4, 1]);
        // By name: the key that answered, so the retried request counts for k1 only.
        assert_eq!(q(&|q| q.key = Some("k1".into())), vec![5, 4, 1]);
        assert_eq!(q(&|q| q.key = Some("k2".into())), vec![2]);
        // By fingerprint: full, display form, in any case.
        let fp = fp_of("k1");
        assert_eq!(fp.len(), 32);
        assert_eq!(q(&|q| q.key = Some(fp.to_uppercase())), vec![5, 4, 1]);
        assert_eq!(q(&|q| q.key = Some(fp[..12].to_string())), vec![5, 4, 1]);
        assert_eq!(q(&|q| q.key = Some(fp[..7].to_string())), Vec::<u64>::new(), "too short to be a fingerprint");
        assert_eq!(q(&|q| q.key = Some(format!("{fp}0"))), Vec::<u64>::new(), "too long to be a fingerprint");
        assert_eq!(q(&|q| q.from_ms = Some(T0 + 61_000)), vec![5, 4]);
        assert_eq!(q(&|q| q.to_ms = Some(T0 + 61_000)), vec![3, 2, 1]);
        assert_eq!(
            q(&|q| {
                q.client = Some("app".into());
                q.status = Some(StatusFilter::Class(2))
            }),
            vec![5, 1]
        );
        // Paging: the second page starts below the last id of the first.
        let page1 = s.requests(&RequestQuery { limit: 2, ..RequestQuery::default() }).expect("page 1");
        let page2 = s.requests(&RequestQuery { limit: 2, before_id: page1.last().map(|r| r.id), ..RequestQuery::default() }).expect("page 2");
        assert_eq!((ids(&page1), ids(&page2)), (vec![5, 4], vec![3, 2]));
    }

    #[test]
    fn a_request_row_reads_back_whole() {
        let (_dir, s) = store_with_requests();
        let newest = s.requests(&RequestQuery { limit: 1, ..RequestQuery::default() }).expect("query");
        let row = s.request(newest[0].id).expect("read").expect("present");
        assert_eq!(row, newest[0]);
        assert_eq!(row.time_ms, T0 + 62_000);
        assert_eq!((row.key.as_deref(), row.key_fingerprint.as_deref()), (Some("k1"), Some(&fp_of("k1")[..12])));
        assert_eq!((row.status, row.method.as_str(), row.client.as_deref()), (200, "POST", Some("app")));
        assert_eq!((row.bytes_in, row.bytes_out, row.tokens_in, row.tokens_out, row.stream), (512, 2048, 10, 20, false));
        assert_eq!(row.first_byte_ms, Some(50.0));
        assert_eq!(row.attempts[0]["key"], "k2");
        assert_eq!(row.attempts[1]["key"], "k1");
        // As in the access log: the display form.
        assert_eq!(row.attempts[1]["fingerprint"], fp_of("k1")[..12]);
        let json = serde_json::to_value(&row).expect("serialize");
        assert_eq!(json["key"], "k1");
        assert!(s.request(999_999).expect("read").is_none());
        // The 401 has no key.
        let anon = s.requests(&RequestQuery { status: Some(StatusFilter::Exact(401)), limit: 1, ..RequestQuery::default() }).expect("query");
        assert_eq!((anon[0].key.as_deref(), anon[0].client.as_deref(), anon[0].model.as_deref()), (None, None, None));
        assert_eq!(anon[0].attempts, serde_json::json!([]));
    }

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want * 0.10
    }

    #[test]
    fn timeseries_merges_groups_per_minute() {
        let (_dir, s) = store_with_requests();
        let all = StatsQuery { from_ms: T0, to_ms: T0 + 120_000, ..StatsQuery::default() };
        let points = s.timeseries(&all).expect("series");
        assert_eq!(points.len(), 2);
        let (a, b) = (&points[0], &points[1]);
        assert_eq!(a.minute_ms, T0);
        assert_eq!(
            (a.counts.requests, a.counts.ok, a.counts.client_errors, a.counts.rate_limited, a.counts.server_errors, a.counts.retries),
            (3, 1, 1, 1, 0, 0)
        );
        assert_eq!((a.counts.input_tokens, a.counts.output_tokens), (30, 60));
        // Latencies 0.3, 10 and 20 ms: the median is 10.
        assert!(close(a.latency_p50_ms, 10.0), "{a:?}");
        assert!(close(a.latency_p99_ms, 20.0), "{a:?}");
        assert_eq!(b.minute_ms, T0 + 60_000);
        assert_eq!((b.counts.requests, b.counts.ok, b.counts.server_errors, b.counts.retries), (2, 1, 1, 1));
        assert!(close(b.latency_p50_ms, 100.0) && close(b.latency_p95_ms, 1000.0), "{b:?}");

        let k1 = s.timeseries(&StatsQuery { key: Some("k1".into()), ..all.clone() }).expect("series");
        assert_eq!(k1.iter().map(|p| p.counts.requests).collect::<Vec<_>>(), vec![1, 2]);
        let by_fp = s.timeseries(&StatsQuery { key: Some(fp_of("k1")[..12].to_string()), ..all.clone() }).expect("series");
        assert_eq!(by_fp, k1);
        let other = s.timeseries(&StatsQuery { client: Some("other".into()), model: Some("gemini-2.5-flash".into()), ..all.clone() }).expect("series");
        assert_eq!(other.iter().map(|p| (p.minute_ms, p.counts.requests)).collect::<Vec<_>>(), vec![(T0 + 60_000, 1)]);
        assert!(s.timeseries(&StatsQuery { client: Some("nobody".into()), ..all.clone() }).expect("series").is_empty());
        // The minute containing from_ms is included; minutes starting at to_ms are not.
        let mid = s.timeseries(&StatsQuery { from_ms: T0 + 30_000, to_ms: T0 + 60_000, ..all }).expect("series");
        assert_eq!(mid.iter().map(|p| p.minute_ms).collect::<Vec<_>>(), vec![T0]);
    }

    #[test]
    fn totals_and_top_groups() {
        let (_dir, s) = store_with_requests();
        let t = s.totals(&StatsQuery { from_ms: T0, to_ms: T0 + 120_000, ..StatsQuery::default() }).expect("totals");
        assert_eq!(
            (t.counts.requests, t.counts.ok, t.counts.client_errors, t.counts.rate_limited, t.counts.server_errors, t.counts.retries),
            (5, 2, 1, 1, 1, 1)
        );
        assert_eq!((t.counts.input_tokens, t.counts.output_tokens), (50, 100));
        let names = |g: &[GroupTotal]| g.iter().map(|g| (g.name.clone(), g.requests)).collect::<Vec<_>>();
        assert_eq!(names(&t.by_model), vec![("gemini-2.5-flash".into(), 3), (String::new(), 1), ("gemini-2.5-pro".into(), 1)]);
        assert_eq!(names(&t.by_client), vec![("app".into(), 3), (String::new(), 1), ("other".into(), 1)]);
        assert_eq!(t.by_key[0].name, "k1");
        assert_eq!(t.by_key[0].fingerprint.as_deref(), Some(&fp_of("k1")[..12]), "the display form, as in /keys");
        assert_eq!((t.by_key[0].requests, t.by_key[0].errors), (3, 1));
        assert!(t.by_model.iter().all(|g| g.fingerprint.is_none()));
        let empty = s.totals(&StatsQuery { from_ms: 0, to_ms: 1, ..StatsQuery::default() }).expect("totals");
        assert_eq!(empty, Totals::default());
    }

    #[test]
    fn key_states_load_and_skip_damaged_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path(), Retention::default()).expect("open");
        s.admin(|c, p| {
            c.execute_batch(
                "INSERT INTO key_state VALUES ('aa', 'good', NULL, '[{\"model\":\"m\",\"until_ms\":5,\"kind\":\"quota\"}]', 1);
                 INSERT INTO key_state VALUES ('bb', 'bad', '{not json', '[]', 1);
                 INSERT INTO key_state VALUES ('cc', 'bad-cooldowns', NULL, 'nope', 1);",
            )
            .ctx("seed", p)
        })
        .expect("seed");
        let mut states = s.load_key_states().expect("load");
        states.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        assert_eq!(states.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), vec!["good", "bad-cooldowns"]);
        assert_eq!(states[0].cooldowns[0].until_ms, 5);
        assert!(states[1].cooldowns.is_empty());
    }
}
