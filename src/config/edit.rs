//! Changes the admin API makes to the config document — adding and removing keys and clients,
//! updating a client — done on the TOML text itself so that the operator's comments and layout
//! survive. Every layout the loader accepts is edited in place: `[[pools]]` / `[[clients]]`
//! sections or inline arrays of inline tables (`pools = [{ ... }]`), and a pool's keys as an
//! inline array (`keys = ["...", { key = "..." }]`) or as `[[pools.keys]]` sections. Anything
//! else is refused with [`EditError::Layout`], never replaced. The result is validated like any
//! other config before it is applied.

use super::validate::EnvLookup;
use crate::secret::Fingerprint;
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the config is not valid TOML: {0}")]
    Syntax(String),
    #[error("no pool named {0:?}")]
    NoSuchPool(String),
    #[error("no client named {0:?}")]
    NoSuchClient(String),
    #[error("no key with fingerprint {0} in the config file")]
    NoSuchKey(Fingerprint),
    #[error("a client named {0:?} already exists")]
    ClientExists(String),
    #[error("the pool already holds key {0}")]
    KeyExists(Fingerprint),
    #[error("the config has no pools to add keys to")]
    NoPools,
    /// The document holds `what` in a shape the loader would refuse: left alone.
    #[error("cannot edit `{what}` over the API: it is written as {shape}, not as [[{what}]] sections or an inline array of tables; edit the file instead")]
    Layout { what: &'static str, shape: &'static str },
}

/// A key to add.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub secret: String,
    pub name: Option<String>,
    pub weight: Option<u32>,
}

/// Client fields the admin API sets: `(field, Some(value))` sets, `(field, None)` removes.
#[derive(Debug, Clone, Default)]
pub struct ClientChanges {
    pub fields: Vec<(String, Option<Value>)>,
}

/// A config document being edited.
pub struct ConfigDoc {
    doc: DocumentMut,
}

/// The secret of a key table (`{ key = "..." }` or a `[[pools.keys]]` section), resolved
/// through `env` for `key_env`.
fn table_secret(t: &dyn TableLike, env: &dyn EnvLookup) -> Option<String> {
    match (t.get("key").and_then(Item::as_str), t.get("key_env").and_then(Item::as_str)) {
        (Some(k), _) => Some(k.trim().to_owned()),
        (None, Some(var)) => env.var(var).map(|v| v.trim().to_owned()),
        _ => None,
    }
}

/// The secret of an entry of an inline `keys = [...]` array.
fn entry_secret(entry: &Value, env: &dyn EnvLookup) -> Option<String> {
    match entry {
        Value::String(s) => Some(s.value().trim().to_owned()),
        Value::InlineTable(t) => table_secret(t, env),
        _ => None,
    }
}

fn is_key(secret: Option<String>, key: Fingerprint) -> bool {
    secret.is_some_and(|s| Fingerprint::of(s.as_bytes()) == key)
}

fn name_of(t: &dyn TableLike) -> Option<&str> {
    t.get("name").and_then(Item::as_str)
}

/// Appends `v` to an inline array. In a section the array gets one entry per line; inside an
/// inline table everything stays on one line, as inline tables must.
fn push_entry(arr: &mut Array, mut v: Value, multiline: bool) {
    if multiline {
        v.decor_mut().set_prefix("\n    ");
        arr.push_formatted(v);
        arr.set_trailing("\n");
        arr.set_trailing_comma(true);
    } else {
        v.decor_mut().set_prefix(if arr.is_empty() { "" } else { " " });
        arr.push_formatted(v);
    }
}

/// `(field, value)` pairs as a section, or as an inline table.
fn section_of(fields: Vec<(&str, Value)>) -> Table {
    let mut t = Table::new();
    for (k, v) in fields {
        t.insert(k, Item::Value(v));
    }
    t
}

fn inline_of(fields: Vec<(&str, Value)>) -> InlineTable {
    let mut t = InlineTable::new();
    for (k, v) in fields {
        t.insert(k, v);
    }
    t
}

/// An array of tables in one of the two layouts the loader accepts.
enum Tables<'a> {
    /// `[[name]]` sections.
    Sections(&'a mut ArrayOfTables),
    /// `name = [{ ... }, { ... }]`, every entry an inline table.
    Inline(&'a mut Array),
}

impl<'a> Tables<'a> {
    fn of(item: &'a mut Item, what: &'static str) -> Result<Tables<'a>, EditError> {
        match item {
            Item::ArrayOfTables(a) => Ok(Tables::Sections(a)),
            Item::Value(Value::Array(a)) => {
                let odd = a.iter().find(|v| !v.is_inline_table()).map(Value::type_name);
                match odd {
                    Some(shape) => Err(EditError::Layout { what, shape }),
                    None => Ok(Tables::Inline(a)),
                }
            }
            other => Err(EditError::Layout { what, shape: other.type_name() }),
        }
    }

    /// Whether the tables are inline ones, whose contents must stay on one line.
    fn inline(&self) -> bool {
        matches!(self, Tables::Inline(_))
    }

    fn into_tables(self) -> Vec<&'a mut dyn TableLike> {
        match self {
            Tables::Sections(a) => a.iter_mut().map(|t| t as &mut dyn TableLike).collect(),
            Tables::Inline(a) => a.iter_mut().filter_map(Value::as_inline_table_mut).map(|t| t as &mut dyn TableLike).collect(),
        }
    }

    fn named(self, name: &str) -> Option<&'a mut dyn TableLike> {
        self.into_tables().into_iter().find(|t| name_of(&**t) == Some(name))
    }

    fn push(&mut self, fields: Vec<(&str, Value)>) {
        match self {
            Tables::Sections(a) => a.push(section_of(fields)),
            Tables::Inline(a) => push_entry(a, Value::InlineTable(inline_of(fields)), true),
        }
    }

    /// Removes the tables `unwanted` selects; returns how many went.
    fn remove(&mut self, unwanted: impl Fn(&dyn TableLike) -> bool) -> usize {
        match self {
            Tables::Sections(a) => {
                let before = a.len();
                a.retain(|t| !unwanted(t));
                before - a.len()
            }
            Tables::Inline(a) => {
                let before = a.len();
                a.retain(|v| !v.as_inline_table().is_some_and(|t| unwanted(t)));
                before - a.len()
            }
        }
    }
}

/// A pool's keys in one of the two layouts the loader accepts.
enum Keys<'a> {
    /// `keys = ["...", { key = "..." }]`; `multiline` unless the pool is an inline table.
    Inline { arr: &'a mut Array, multiline: bool },
    /// `[[pools.keys]]` sections.
    Sections(&'a mut ArrayOfTables),
}

impl<'a> Keys<'a> {
    /// The keys of `pool` (`inline_pool`: written as an inline table), `None` when it has none.
    fn of(pool: &'a mut dyn TableLike, inline_pool: bool) -> Result<Option<Keys<'a>>, EditError> {
        match pool.get_mut("keys") {
            None => Ok(None),
            Some(Item::Value(Value::Array(arr))) => Ok(Some(Keys::Inline { arr, multiline: !inline_pool })),
            Some(Item::ArrayOfTables(a)) => Ok(Some(Keys::Sections(a))),
            Some(other) => Err(EditError::Layout { what: "pools.keys", shape: other.type_name() }),
        }
    }

    /// Like `of`, creating an empty `keys = []` when the pool has none.
    fn of_or_new(pool: &'a mut dyn TableLike, inline_pool: bool) -> Result<Keys<'a>, EditError> {
        if !pool.contains_key("keys") {
            pool.insert("keys", Item::Value(Value::Array(Array::new())));
            // Respaced, or the old last entry keeps the space before `}`: `{ name = "q" , keys = [] }`.
            // (Only inline tables: they hold no comments to lose.)
            if inline_pool {
                pool.fmt();
            }
        }
        Keys::of(pool, inline_pool)?.ok_or(EditError::Layout { what: "pools.keys", shape: "nothing" })
    }

    fn secrets(&self, env: &dyn EnvLookup) -> Vec<String> {
        match self {
            Keys::Inline { arr, .. } => arr.iter().filter_map(|e| entry_secret(e, env)).collect(),
            Keys::Sections(a) => a.iter().filter_map(|t| table_secret(t, env)).collect(),
        }
    }

    /// Appends a key in the pool's own style: a plain string or an inline table in an inline
    /// array, a `[[pools.keys]]` section among sections.
    fn push(&mut self, k: &NewKey) {
        let mut fields = vec![("key", Value::from(k.secret.as_str()))];
        if let Some(n) = &k.name {
            fields.push(("name", Value::from(n.as_str())));
        }
        if let Some(w) = k.weight {
            fields.push(("weight", Value::from(i64::from(w))));
        }
        match self {
            Keys::Sections(a) => a.push(section_of(fields)),
            Keys::Inline { arr, multiline } => {
                let v = if fields.len() == 1 { Value::from(k.secret.as_str()) } else { Value::InlineTable(inline_of(fields)) };
                push_entry(arr, v, *multiline);
            }
        }
    }

    /// Removes every entry holding `key`; returns how many went.
    fn remove(&mut self, key: Fingerprint, env: &dyn EnvLookup) -> usize {
        match self {
            Keys::Inline { arr, .. } => {
                let before = arr.len();
                arr.retain(|e| !is_key(entry_secret(e, env), key));
                before - arr.len()
            }
            Keys::Sections(a) => {
                let before = a.len();
                a.retain(|t| !is_key(table_secret(t, env), key));
                before - a.len()
            }
        }
    }
}

impl ConfigDoc {
    pub fn parse(text: &str) -> Result<ConfigDoc, EditError> {
        // The message only: the error's own rendering quotes the offending line, secrets and all.
        text.parse::<DocumentMut>().map(|doc| ConfigDoc { doc }).map_err(|e| EditError::Syntax(super::redact::problem_message(e.message())))
    }

    pub fn text(&self) -> String {
        self.doc.to_string()
    }

    fn pools(&mut self) -> Result<Tables<'_>, EditError> {
        Tables::of(self.doc.get_mut("pools").ok_or(EditError::NoPools)?, "pools")
    }

    /// The pool named `pool` (the first one when `None`), and whether it is an inline table.
    fn pool_mut(&mut self, pool: Option<&str>) -> Result<(&mut dyn TableLike, bool), EditError> {
        let pools = self.pools()?;
        let inline = pools.inline();
        let table = match pool {
            None => pools.into_tables().into_iter().next().ok_or(EditError::NoPools)?,
            Some(name) => pools.named(name).ok_or_else(|| EditError::NoSuchPool(name.to_owned()))?,
        };
        Ok((table, inline))
    }

    /// Secrets of every key of `pool` (the first pool when `None`), resolved through `env`.
    pub fn pool_secrets(&mut self, pool: Option<&str>, env: &dyn EnvLookup) -> Result<Vec<String>, EditError> {
        let (table, inline) = self.pool_mut(pool)?;
        Ok(Keys::of(table, inline)?.map(|k| k.secrets(env)).unwrap_or_default())
    }

    /// Appends keys to a pool, in the layout its keys are written in.
    pub fn add_keys(&mut self, pool: Option<&str>, keys: &[NewKey]) -> Result<(), EditError> {
        let (table, inline) = self.pool_mut(pool)?;
        let mut list = Keys::of_or_new(table, inline)?;
        for k in keys {
            list.push(k);
        }
        Ok(())
    }

    /// Removes the key with this fingerprint from every pool; returns how many entries went,
    /// or [`EditError::NoSuchKey`] when no pool holds it (and nothing changed).
    pub fn remove_key(&mut self, key: Fingerprint, env: &dyn EnvLookup) -> Result<usize, EditError> {
        let pools = self.pools()?;
        let inline = pools.inline();
        let mut removed = 0;
        for pool in pools.into_tables() {
            if let Some(mut keys) = Keys::of(pool, inline)? {
                removed += keys.remove(key, env);
            }
        }
        if removed == 0 {
            return Err(EditError::NoSuchKey(key));
        }
        Ok(removed)
    }

    /// The clients, `None` when the document has none.
    fn clients(&mut self) -> Result<Option<Tables<'_>>, EditError> {
        self.doc.get_mut("clients").map(|item| Tables::of(item, "clients")).transpose()
    }

    /// The client named `name`, and whether it is an inline table.
    fn client_mut(&mut self, name: &str) -> Result<(&mut dyn TableLike, bool), EditError> {
        let clients = self.clients()?.ok_or_else(|| EditError::NoSuchClient(name.to_owned()))?;
        let inline = clients.inline();
        clients.named(name).map(|t| (t, inline)).ok_or_else(|| EditError::NoSuchClient(name.to_owned()))
    }

    /// Adds a client identified by the SHA-256 of its token (the token itself is never stored),
    /// as a `[[clients]]` section or, when the clients are an inline array, an inline table.
    pub fn add_client(&mut self, name: &str, token_sha256_hex: &str, changes: &ClientChanges) -> Result<(), EditError> {
        if self.client_mut(name).is_ok() {
            return Err(EditError::ClientExists(name.to_owned()));
        }
        if self.doc.get("clients").is_none() {
            self.doc.insert("clients", Item::ArrayOfTables(ArrayOfTables::new()));
        }
        let mut clients = self.clients()?.ok_or(EditError::Layout { what: "clients", shape: "nothing" })?;
        clients.push(vec![("name", Value::from(name)), ("token_sha256", Value::from(token_sha256_hex))]);
        self.update_client(name, changes)
    }

    pub fn update_client(&mut self, name: &str, changes: &ClientChanges) -> Result<(), EditError> {
        let (t, inline) = self.client_mut(name)?;
        for (field, value) in &changes.fields {
            match value {
                Some(v) => {
                    t.insert(field, Item::Value(v.clone()));
                }
                None => {
                    t.remove(field);
                }
            }
        }
        // See `Keys::of_or_new`: an inline table is respaced after new fields.
        if inline && !changes.fields.is_empty() {
            t.fmt();
        }
        Ok(())
    }

    /// Removes a client, or answers [`EditError::NoSuchClient`] (and changes nothing).
    pub fn remove_client(&mut self, name: &str) -> Result<(), EditError> {
        let removed = self.clients()?.map(|mut c| c.remove(|t| name_of(t) == Some(name))).unwrap_or(0);
        if removed == 0 {
            return Err(EditError::NoSuchClient(name.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoEnv;
    impl EnvLookup for NoEnv {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
    }

    const TEXT: &str = "# operator notes\n[[pools]]\nname = \"default\"\nkeys = [\"AIzaONE\"]  # first key\n\n[[pools]]\nname = \"batch\"\nkeys = []\n";

    #[test]
    fn keys_are_added_and_removed_keeping_comments() {
        let mut d = ConfigDoc::parse(TEXT).unwrap();
        d.add_keys(
            None,
            &[
                NewKey { secret: "AIzaTWO".into(), name: None, weight: None },
                NewKey { secret: "AIzaTHREE".into(), name: Some("three".into()), weight: Some(2) },
            ],
        )
        .unwrap();
        d.add_keys(Some("batch"), &[NewKey { secret: "AIzaB".into(), name: None, weight: None }]).unwrap();
        let text = d.text();
        assert!(text.contains("# operator notes") && text.contains("# first key"), "{text}");
        let parsed = crate::config::parse_str(&text, "t", &NoEnv).unwrap();
        assert_eq!(parsed.pools[0].keys.len(), 3);
        assert_eq!(parsed.pools[0].keys[2].weight, 2);
        assert_eq!(parsed.pools[1].keys.len(), 1);
        assert_eq!(d.remove_key(Fingerprint::of(b"AIzaTWO"), &NoEnv), Ok(1));
        assert_eq!(d.remove_key(Fingerprint::of(b"AIzaTWO"), &NoEnv), Err(EditError::NoSuchKey(Fingerprint::of(b"AIzaTWO"))));
        assert_eq!(d.pool_secrets(None, &NoEnv).unwrap(), vec!["AIzaONE", "AIzaTHREE"]);
        assert!(matches!(d.add_keys(Some("nope"), &[]), Err(EditError::NoSuchPool(_))));
    }

    #[test]
    fn clients_are_added_updated_and_removed() {
        let mut d = ConfigDoc::parse(TEXT).unwrap();
        let hash = "ab".repeat(32);
        let pools = Value::Array(["batch"].into_iter().collect());
        d.add_client("ci", &hash, &ClientChanges { fields: vec![("pools".into(), Some(pools)), ("rpm".into(), Some(Value::from(10)))] }).unwrap();
        assert!(matches!(d.add_client("ci", &hash, &ClientChanges::default()), Err(EditError::ClientExists(_))));
        let parsed = crate::config::parse_str(&d.text(), "t", &NoEnv).unwrap();
        assert_eq!(parsed.clients[0].name, "ci");
        assert_eq!(parsed.clients[0].policy.pools, vec![1]);
        assert_eq!(parsed.clients[0].policy.rpm, Some(10));
        d.update_client("ci", &ClientChanges { fields: vec![("pools".into(), None)] }).unwrap();
        assert!(!d.text().contains("batch\"]"));
        assert_eq!(d.remove_client("ci"), Ok(()));
        assert_eq!(d.remove_client("ci"), Err(EditError::NoSuchClient("ci".into())));
    }

    fn parsed(d: &ConfigDoc) -> crate::config::Settings {
        crate::config::parse_str(&d.text(), "t", &NoEnv).unwrap_or_else(|e| panic!("{e}\n{}", d.text()))
    }

    fn key_secrets(s: &crate::config::Settings, pool: usize) -> Vec<&str> {
        s.pools[pool].keys.iter().map(|k| k.secret.expose()).collect()
    }

    fn client_names(s: &crate::config::Settings) -> Vec<&str> {
        s.clients.iter().map(|c| c.name.as_str()).collect()
    }

    const SECTION_KEYS: &str = "[[pools]]\nname = \"default\"\nkeys = [\"AIzaD\"]\n\n[[pools]]\nname = \"aot\"\n\n[[pools.keys]]\nkey = \"AIzaOLD\"  # kept\nname = \"old\"\n\n[[pools.keys]]\nkey = \"AIzaOLD2\"\n";

    #[test]
    fn keys_written_as_sections_are_kept_added_and_removed() {
        let mut d = ConfigDoc::parse(SECTION_KEYS).unwrap();
        assert_eq!(d.pool_secrets(Some("aot"), &NoEnv).unwrap(), vec!["AIzaOLD", "AIzaOLD2"]);
        d.add_keys(Some("aot"), &[NewKey { secret: "AIzaNEW".into(), name: Some("new".into()), weight: Some(3) }]).unwrap();
        let s = parsed(&d);
        assert_eq!(key_secrets(&s, 1), vec!["AIzaOLD", "AIzaOLD2", "AIzaNEW"], "{}", d.text());
        assert_eq!(s.pools[1].keys[2].weight, 3);
        assert_eq!(key_secrets(&s, 0), vec!["AIzaD"]);
        assert!(d.text().contains("# kept") && d.text().matches("[[pools.keys]]").count() == 3, "{}", d.text());
        assert_eq!(d.remove_key(Fingerprint::of(b"AIzaOLD"), &NoEnv), Ok(1));
        assert_eq!(key_secrets(&parsed(&d), 1), vec!["AIzaOLD2", "AIzaNEW"]);
        assert_eq!(key_secrets(&parsed(&d), 0), vec!["AIzaD"]);
    }

    const INLINE: &str = "pools = [{ name = \"p\", keys = [\"AIzaP\", { key = \"AIzaT\", name = \"t\" }] }, { name = \"q\" }]\nclients = [{ name = \"a\", token = \"gp-token-a\" }]\n";

    #[test]
    fn inline_pools_and_clients_are_edited_in_place() {
        let mut d = ConfigDoc::parse(INLINE).unwrap();
        d.add_keys(Some("p"), &[NewKey { secret: "AIzaN".into(), name: None, weight: None }]).unwrap();
        d.add_keys(Some("q"), &[NewKey { secret: "AIzaQ".into(), name: Some("qq".into()), weight: None }]).unwrap();
        let hash = "cd".repeat(32);
        d.add_client("b", &hash, &ClientChanges { fields: vec![("rpm".into(), Some(Value::from(5)))] }).unwrap();
        let s = parsed(&d);
        assert_eq!(key_secrets(&s, 0), vec!["AIzaP", "AIzaT", "AIzaN"]);
        assert_eq!(key_secrets(&s, 1), vec!["AIzaQ"]);
        assert_eq!(client_names(&s), vec!["a", "b"]);
        assert_eq!(s.clients[1].policy.rpm, Some(5));
        assert!(!d.text().contains("[[clients]]") && !d.text().contains("[[pools]]"), "the layout stays inline: {}", d.text());

        d.update_client("a", &ClientChanges { fields: vec![("tpm".into(), Some(Value::from(100)))] }).unwrap();
        assert_eq!(parsed(&d).clients[0].policy.tpm, Some(100));
        assert_eq!(d.remove_client("zzz"), Err(EditError::NoSuchClient("zzz".into())));
        assert_eq!(client_names(&parsed(&d)), vec!["a", "b"], "a failed removal removes nothing");
        d.remove_client("b").unwrap();
        assert_eq!(client_names(&parsed(&d)), vec!["a"]);
        assert_eq!(d.remove_key(Fingerprint::of(b"AIzaT"), &NoEnv), Ok(1));
        assert_eq!(key_secrets(&parsed(&d), 0), vec!["AIzaP", "AIzaN"]);
        assert!(!d.text().contains(" ,"), "new fields of inline tables are spaced like the others: {}", d.text());
    }

    #[test]
    fn a_missing_client_list_becomes_sections_and_an_empty_inline_one_stays_inline() {
        let mut d = ConfigDoc::parse("[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n").unwrap();
        d.add_client("c", &"ab".repeat(32), &ClientChanges::default()).unwrap();
        assert!(d.text().contains("[[clients]]"), "{}", d.text());
        let mut d = ConfigDoc::parse("clients = []\n[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n").unwrap();
        d.add_client("c", &"ab".repeat(32), &ClientChanges::default()).unwrap();
        assert!(!d.text().contains("[[clients]]"), "{}", d.text());
        assert_eq!(client_names(&parsed(&d)), vec!["c"]);
    }

    #[test]
    fn layouts_the_loader_refuses_are_left_alone() {
        let text = "pools = \"oops\"\nclients = [\"x\"]\n";
        let mut d = ConfigDoc::parse(text).unwrap();
        let new = [NewKey { secret: "AIzaN".into(), name: None, weight: None }];
        assert_eq!(d.add_keys(None, &new), Err(EditError::Layout { what: "pools", shape: "string" }));
        assert_eq!(d.add_client("c", &"ab".repeat(32), &ClientChanges::default()), Err(EditError::Layout { what: "clients", shape: "string" }));
        assert_eq!(d.remove_client("x"), Err(EditError::Layout { what: "clients", shape: "string" }));
        let mut d = ConfigDoc::parse("[[pools]]\nname = \"p\"\nkeys = \"AIzaSTRING\"\n").unwrap();
        assert!(matches!(d.add_keys(None, &new), Err(EditError::Layout { what: "pools.keys", .. })));
        assert_eq!(d.text(), "[[pools]]\nname = \"p\"\nkeys = \"AIzaSTRING\"\n");
    }
}
