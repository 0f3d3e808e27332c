//! Admin-path state: config versions, the audit log and settings. Rare writes, made
//! synchronously on the admin connection, and their reads.

use super::error::{Context, StoreError};
use super::types::{clamp_limit, AuditQuery, AuditRow, ConfigVersion, ConfigVersionMeta};
use super::{now_ms, Store};
use crate::store::comment::{Author, ServerComment, VersionComment};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension, Row, TransactionBehavior};

const META_COLUMNS: &str = "id, created_ms, actor, comment, sha256, bytes, comment_kind, comment_params";

fn meta_row(r: &Row<'_>) -> rusqlite::Result<ConfigVersionMeta> {
    let actor: String = r.get(2)?;
    let kind: Option<String> = r.get(6)?;
    let params: Option<String> = r.get(7)?;
    Ok(ConfigVersionMeta {
        id: r.get(0)?,
        created_ms: r.get(1)?,
        author: Author::from_label(&actor),
        actor,
        comment: r.get(3)?,
        server_comment: kind.and_then(|k| ServerComment::from_stored(&k, params.as_deref())),
        sha256: r.get(4)?,
        bytes: usize::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
    })
}

fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditRow> {
    let actor: String = r.get(2)?;
    let detail: String = r.get(5)?;
    let kind: Option<String> = r.get(6)?;
    let params: Option<String> = r.get(7)?;
    Ok(AuditRow {
        id: r.get(0)?,
        time_ms: r.get(1)?,
        author: Author::from_label(&actor),
        actor,
        action: r.get(3)?,
        target: r.get(4)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        server_comment: kind.and_then(|k| ServerComment::from_stored(&k, params.as_deref())),
    })
}

/// An audit entry with the comment kind of the config version it recorded: the version its
/// detail names, when that version still holds the same comment (the entry and the version are
/// written from one change; a version found again rather than added has an older comment).
/// A detail that is not JSON names no version (json_extract would fail the whole query).
const AUDIT_SELECT: &str = "SELECT a.id, a.time_ms, a.actor, a.action, a.target, a.detail, v.comment_kind, v.comment_params \
     FROM audit_log a LEFT JOIN config_version v \
     ON v.id = CASE WHEN json_valid(a.detail) THEN json_extract(a.detail, '$.version') END \
     AND v.comment = CASE WHEN json_valid(a.detail) THEN json_extract(a.detail, '$.comment') END \
     WHERE 1";

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Store {
    /// Stores a config text as a new version and returns its id; then deletes all but the
    /// newest `retention.config_versions` (0 keeps all). Every call adds a version, even for
    /// a text identical to the last one: the caller decides what is worth a version. A server
    /// comment's kind and parameters are stored beside its text.
    pub fn add_config_version(&self, text: &str, actor: &str, comment: &VersionComment) -> Result<i64, StoreError> {
        let sha = hex(&crate::secret::sha256(text.as_bytes()));
        let keep = i64::try_from(self.retention.config_versions).unwrap_or(i64::MAX);
        let stored = comment.server().map(ServerComment::stored);
        let (kind, params) = stored.map_or((None, None), |s| (Some(s.kind), s.params));
        self.admin(|c, p| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin adding a config version", p)?;
            tx.execute(
                "INSERT INTO config_version (created_ms, actor, comment, comment_kind, comment_params, sha256, bytes, text) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![now_ms(), actor, comment.text(), kind, params, sha, text.len() as i64, text],
            )
            .ctx("add a config version", p)?;
            let id = tx.last_insert_rowid();
            if keep > 0 {
                tx.execute("DELETE FROM config_version WHERE id NOT IN (SELECT id FROM config_version ORDER BY id DESC LIMIT ?1)", [keep])
                    .ctx("prune config versions", p)?;
            }
            tx.commit().ctx("commit a config version", p)?;
            Ok(id)
        })
    }

    /// Like `add_config_version`, unless `text` is the latest version already (same SHA-256):
    /// then nothing is added and that version's id comes back with `false`, so that re-applying
    /// an unchanged file does not push real versions out of the history.
    pub fn add_config_version_if_new(&self, text: &str, actor: &str, comment: &VersionComment) -> Result<(i64, bool), StoreError> {
        let sha = hex(&crate::secret::sha256(text.as_bytes()));
        if let Some(latest) = self.config_versions(1)?.into_iter().next().filter(|m| m.sha256 == sha) {
            return Ok((latest.id, false));
        }
        self.add_config_version(text, actor, comment).map(|id| (id, true))
    }

    /// The newest config versions first, without their text; `limit` clamped to 1..=1000.
    pub fn config_versions(&self, limit: usize) -> Result<Vec<ConfigVersionMeta>, StoreError> {
        self.read(|c, p| {
            let mut stmt = c.prepare(&format!("SELECT {META_COLUMNS} FROM config_version ORDER BY id DESC LIMIT ?1")).ctx("prepare the config list", p)?;
            let rows = stmt.query_map([clamp_limit(limit) as i64], meta_row).ctx("list config versions", p)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().ctx("read config versions", p)
        })
    }

    /// One config version with its text; `None` when unknown or pruned.
    pub fn config_version(&self, id: i64) -> Result<Option<ConfigVersion>, StoreError> {
        self.read(|c, p| {
            c.query_row(&format!("SELECT {META_COLUMNS}, text FROM config_version WHERE id = ?1"), [id], |r| {
                Ok(ConfigVersion { meta: meta_row(r)?, text: r.get(8)? })
            })
            .optional()
            .ctx("read a config version", p)
        })
    }

    /// Appends an audit entry (who did what to what) and returns its id. The audit log is not
    /// pruned: it grows with operator actions only.
    pub fn add_audit(&self, actor: &str, action: &str, target: &str, detail: &serde_json::Value) -> Result<i64, StoreError> {
        let detail = detail.to_string();
        self.admin(|c, p| {
            c.execute(
                "INSERT INTO audit_log (time_ms, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now_ms(), actor, action, target, detail],
            )
            .ctx("add an audit entry", p)?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Audit entries matching `q`, newest first.
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        self.read(|c, p| {
            let mut sql = String::from(AUDIT_SELECT);
            let mut args = Vec::new();
            if let Some(before) = q.before_id {
                sql.push_str(" AND a.id < ?");
                args.push(Value::Integer(before));
            }
            match q.action.as_deref().map(|a| (a, a.strip_suffix(".*"))) {
                // `keys.*`: the texts from `keys.` up to `keys/` ('/' follows '.'), which are
                // exactly those that start with `keys.`, as a range the action index serves.
                Some((_, Some(kind))) => {
                    sql.push_str(" AND a.action >= ? AND a.action < ?");
                    args.extend([Value::Text(format!("{kind}.")), Value::Text(format!("{kind}/"))]);
                }
                Some((action, None)) => {
                    sql.push_str(" AND a.action = ?");
                    args.push(Value::Text(action.to_owned()));
                }
                None => {}
            }
            if let Some(actor) = &q.actor {
                sql.push_str(" AND (a.actor = ? OR substr(a.actor, 1, length(?) + 1) = ? || '@')");
                args.extend([Value::Text(actor.clone()), Value::Text(actor.clone()), Value::Text(actor.clone())]);
            }
            sql.push_str(&format!(" ORDER BY a.id DESC LIMIT {}", clamp_limit(q.limit)));
            let mut stmt = c.prepare(&sql).ctx("prepare an audit query", p)?;
            let rows = stmt.query_map(params_from_iter(args), audit_row).ctx("query the audit log", p)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().ctx("read audit rows", p)
        })
    }

    /// A stored setting (small state that must survive restarts, e.g. the active config
    /// version); `None` when never set.
    pub fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.read(|c, p| c.query_row("SELECT value FROM setting WHERE name = ?1", [name], |r| r.get(0)).optional().ctx("read a setting", p))
    }

    pub fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.admin(|c, p| {
            c.execute(
                "INSERT INTO setting (name, value, updated_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
                params![name, value, now_ms()],
            )
            .ctx("write a setting", p)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::comment::{Author, ServerComment};
    use crate::store::error::Context;
    use crate::store::{AuditQuery, Retention, Store};
    use serde_json::json;

    fn store(config_versions: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Retention { config_versions, ..Retention::default() }).expect("open");
        (dir, store)
    }

    #[test]
    fn config_versions_keep_the_newest_n() {
        let (_dir, s) = store(3);
        let ids: Vec<i64> = (0..5).map(|i| s.add_config_version(&format!("text {i}"), "alice", &format!("v{i}").into()).expect("add")).collect();
        let list = s.config_versions(100).expect("list");
        assert_eq!(list.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[4], ids[3], ids[2]]);
        assert!(s.config_version(ids[0]).expect("get").is_none(), "pruned");
        let v = s.config_version(ids[4]).expect("get").expect("present");
        assert_eq!(v.text, "text 4");
        assert_eq!((v.meta.actor.as_str(), v.meta.comment.as_str(), v.meta.bytes), ("alice", "v4", 6));
        // SHA-256 of "text 4".
        assert_eq!(v.meta.sha256.len(), 64);
        assert_eq!(v.meta.sha256, {
            let d = crate::secret::sha256(b"text 4");
            super::hex(&d)
        });
        assert_eq!(s.config_versions(1).expect("list").len(), 1);
        // Identical text still makes a version: the caller decides.
        let again = s.add_config_version("text 4", "bob", &"".into()).expect("add");
        assert!(again > ids[4]);
        // Unless it asks for a version only when the text is new.
        assert_eq!(s.add_config_version_if_new("text 4", "bob", &"".into()).expect("add"), (again, false));
        let (fresh, added) = s.add_config_version_if_new("text 5", "bob", &"".into()).expect("add");
        assert!(added && fresh > again);
        assert!(s.add_config_version_if_new("text 4", "bob", &"".into()).expect("add").1, "only the latest version counts");
    }

    #[test]
    fn a_server_comment_keeps_its_kind_and_a_users_has_none() {
        let (_dir, s) = store(50);
        let rollback = ServerComment::Rollback { version: 7 };
        let server = s.add_config_version("a", "signal:SIGHUP", &rollback.clone().into()).expect("add");
        let user = s.add_config_version("b", "alice", &rollback.to_string().into()).expect("add");
        let meta = s.config_version(server).expect("get").expect("present").meta;
        assert_eq!((meta.comment.as_str(), meta.server_comment, meta.author), ("rollback to version 7", Some(rollback), Some(Author::Sighup)));
        let meta = s.config_version(user).expect("get").expect("present").meta;
        assert_eq!((meta.comment.as_str(), meta.server_comment, meta.author), ("rollback to version 7", None, None), "words and names stay as written");
    }

    #[test]
    fn audit_pages_newest_first_and_filters_by_action() {
        let (_dir, s) = store(50);
        for i in 0..10 {
            let action = if i % 2 == 0 { "key.disable" } else { "config.apply" };
            s.add_audit("alice", action, &format!("key-{i}"), &json!({ "i": i })).expect("add");
        }
        let page1 = s.audit(&AuditQuery { limit: 3, ..AuditQuery::default() }).expect("audit");
        assert_eq!(page1.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(), vec!["key-9", "key-8", "key-7"]);
        assert_eq!(page1[0].detail, json!({ "i": 9 }));
        let page2 = s.audit(&AuditQuery { limit: 3, before_id: Some(page1[2].id), ..AuditQuery::default() }).expect("audit");
        assert_eq!(page2[0].target, "key-6");
        let disables = s.audit(&AuditQuery { limit: 100, action: Some("key.disable".into()), ..AuditQuery::default() }).expect("audit");
        assert_eq!(disables.len(), 5);
        assert!(disables.iter().all(|r| r.action == "key.disable" && r.actor == "alice"));
        // limit 0 is clamped to 1.
        assert_eq!(s.audit(&AuditQuery::default()).expect("audit").len(), 1);
    }

    #[test]
    fn audit_filters_by_kind_of_action_and_by_actor() {
        let (_dir, s) = store(50);
        let entries = [
            ("token@127.0.0.1", "keys.disable"),
            ("session@::1", "keys.enable"),
            ("token@10.0.0.2", "keys_extra.x"),
            ("signal:SIGHUP", "config.reload"),
            ("token", "keys"),
            ("tokenizer@1.2.3.4", "clients.create"),
            ("token@127.0.0.1", "clients.revoke"),
        ];
        for (actor, action) in entries {
            s.add_audit(actor, action, "t", &json!({})).expect("add");
        }
        let find = |action: Option<&str>, actor: Option<&str>| -> Vec<(String, String)> {
            let q = AuditQuery { limit: 100, action: action.map(Into::into), actor: actor.map(Into::into), ..AuditQuery::default() };
            let mut rows: Vec<_> = s.audit(&q).expect("audit").into_iter().map(|r| (r.actor, r.action)).collect();
            rows.reverse();
            rows
        };
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        // A kind is the text before the dot: neither `keys` alone nor `keys_extra.*` is one of `keys.*`.
        assert_eq!(find(Some("keys.*"), None), pairs(&[("token@127.0.0.1", "keys.disable"), ("session@::1", "keys.enable")]));
        assert_eq!(find(Some("keys"), None), pairs(&[("token", "keys")]));
        assert_eq!(find(Some("nothing.*"), None), pairs(&[]));
        // A credential matches at every address, and alone; not a longer word that starts like it.
        assert_eq!(
            find(None, Some("token")),
            pairs(&[("token@127.0.0.1", "keys.disable"), ("token@10.0.0.2", "keys_extra.x"), ("token", "keys"), ("token@127.0.0.1", "clients.revoke")])
        );
        assert_eq!(find(None, Some("token@127.0.0.1")), pairs(&[("token@127.0.0.1", "keys.disable"), ("token@127.0.0.1", "clients.revoke")]));
        assert_eq!(find(None, Some("signal:SIGHUP")), pairs(&[("signal:SIGHUP", "config.reload")]));
        assert_eq!(find(Some("clients.*"), Some("token")), pairs(&[("token@127.0.0.1", "clients.revoke")]));
        // LIKE's wildcards mean nothing here.
        assert_eq!(find(Some("%.*"), Some("%")), pairs(&[]));
        assert_eq!(find(None, Some("_oken")), pairs(&[]));
    }

    #[test]
    fn audit_entries_carry_their_author_and_the_comment_kind_of_their_version() {
        let (_dir, s) = store(50);
        let rollback = ServerComment::Rollback { version: 3 };
        let server = s.add_config_version("a", "session@::1", &rollback.clone().into()).expect("add");
        let user = s.add_config_version("b", "token@127.0.0.1", &"my words".into()).expect("add");
        let text = rollback.to_string();
        s.add_audit("session@::1", "config.replace", "config", &json!({ "version": server, "comment": text })).expect("add");
        s.add_audit("token@127.0.0.1", "config.replace", "config", &json!({ "version": user, "comment": "my words" })).expect("add");
        // A user's comment that reads like the server's, on a version whose comment is another.
        s.add_audit("token@127.0.0.1", "config.replace", "config", &json!({ "version": server, "comment": "my words" })).expect("add");
        s.add_audit("someone", "keys.disable", "k", &json!({ "fingerprint": "0123456789ab" })).expect("add");
        s.add_audit("signal:SIGHUP", "config.reload", "config", &json!({ "version": 999, "comment": text })).expect("add");
        // Written by hand into an old store: not JSON at all.
        s.admin(|c, p| {
            c.execute_batch("INSERT INTO audit_log (time_ms, actor, action, target, detail) VALUES (0, 'x', 'keys.add', 'p', 'not json')").ctx("insert", p)
        })
        .expect("admin");
        let rows = s.audit(&AuditQuery { limit: 100, ..AuditQuery::default() }).expect("audit");
        let seen: Vec<_> = rows.iter().rev().map(|r| (r.author, r.server_comment.clone())).collect();
        let v6 = "::1".parse().ok();
        let v4 = "127.0.0.1".parse().ok();
        assert_eq!(
            seen,
            vec![
                (Some(Author::Session { address: v6 }), Some(rollback)),
                (Some(Author::Token { address: v4 }), None),
                (Some(Author::Token { address: v4 }), None),
                (None, None),
                (Some(Author::Sighup), None),
                (None, None),
            ]
        );
        assert_eq!(rows[0].detail, json!("not json"));
    }

    #[test]
    fn settings_upsert() {
        let (_dir, s) = store(50);
        assert_eq!(s.setting("active_config").expect("get"), None);
        s.set_setting("active_config", "3").expect("set");
        s.set_setting("active_config", "4").expect("set");
        assert_eq!(s.setting("active_config").expect("get").as_deref(), Some("4"));
    }
}
