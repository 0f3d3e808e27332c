//! Changes the admin API makes to the config document — adding and removing keys and clients,
//! updating a client — done on the TOML text itself so that the operator's comments and layout
//! survive. The result is validated like any other config before it is applied.

use super::validate::EnvLookup;
use crate::secret::Fingerprint;
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the config is not valid TOML: {0}")]
    Syntax(String),
    #[error("no pool named {0:?}")]
    NoSuchPool(String),
    #[error("no client named {0:?}")]
    NoSuchClient(String),
    #[error("a client named {0:?} already exists")]
    ClientExists(String),
    #[error("the config has no [[pools]] to add keys to")]
    NoPools,
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

fn entry_secret(entry: &Value, env: &dyn EnvLookup) -> Option<String> {
    match entry {
        Value::String(s) => Some(s.value().trim().to_owned()),
        Value::InlineTable(t) => match (t.get("key").and_then(Value::as_str), t.get("key_env").and_then(Value::as_str)) {
            (Some(k), _) => Some(k.trim().to_owned()),
            (None, Some(var)) => env.var(var).map(|v| v.trim().to_owned()),
            _ => None,
        },
        _ => None,
    }
}

impl ConfigDoc {
    pub fn parse(text: &str) -> Result<ConfigDoc, EditError> {
        text.parse::<DocumentMut>().map(|doc| ConfigDoc { doc }).map_err(|e| EditError::Syntax(e.to_string()))
    }

    pub fn text(&self) -> String {
        self.doc.to_string()
    }

    fn pools_mut(&mut self) -> Option<&mut ArrayOfTables> {
        self.doc.get_mut("pools").and_then(Item::as_array_of_tables_mut)
    }

    fn pool_mut(&mut self, pool: Option<&str>) -> Result<&mut Table, EditError> {
        let pools = self.pools_mut().ok_or(EditError::NoPools)?;
        match pool {
            None => pools.iter_mut().next().ok_or(EditError::NoPools),
            Some(name) => pools.iter_mut().find(|t| t.get("name").and_then(Item::as_str) == Some(name)).ok_or_else(|| EditError::NoSuchPool(name.to_owned())),
        }
    }

    /// Secrets of every key of `pool` (the first pool when `None`), resolved through `env`.
    pub fn pool_secrets(&mut self, pool: Option<&str>, env: &dyn EnvLookup) -> Result<Vec<String>, EditError> {
        let table = self.pool_mut(pool)?;
        Ok(table.get("keys").and_then(Item::as_array).map(|a| a.iter().filter_map(|e| entry_secret(e, env)).collect()).unwrap_or_default())
    }

    /// Appends keys to a pool, one per line.
    pub fn add_keys(&mut self, pool: Option<&str>, keys: &[NewKey]) -> Result<(), EditError> {
        let table = self.pool_mut(pool)?;
        if table.get("keys").and_then(Item::as_array).is_none() {
            table.insert("keys", Item::Value(Value::Array(Array::new())));
        }
        let arr = table.get_mut("keys").and_then(Item::as_array_mut).ok_or(EditError::NoPools)?;
        for k in keys {
            let mut v = if k.name.is_none() && k.weight.is_none() {
                Value::from(k.secret.as_str())
            } else {
                let mut t = InlineTable::new();
                t.insert("key", Value::from(k.secret.as_str()));
                if let Some(n) = &k.name {
                    t.insert("name", Value::from(n.as_str()));
                }
                if let Some(w) = k.weight {
                    t.insert("weight", Value::from(i64::from(w)));
                }
                Value::InlineTable(t)
            };
            v.decor_mut().set_prefix("\n    ");
            arr.push_formatted(v);
        }
        arr.set_trailing("\n");
        arr.set_trailing_comma(true);
        Ok(())
    }

    /// Removes the key with this fingerprint from every pool. Returns how many entries went.
    pub fn remove_key(&mut self, key: Fingerprint, env: &dyn EnvLookup) -> usize {
        let mut removed = 0;
        if let Some(pools) = self.pools_mut() {
            for pool in pools.iter_mut() {
                if let Some(arr) = pool.get_mut("keys").and_then(Item::as_array_mut) {
                    let before = arr.len();
                    arr.retain(|e| entry_secret(e, env).is_none_or(|s| Fingerprint::of(s.as_bytes()) != key));
                    removed += before - arr.len();
                }
            }
        }
        removed
    }

    fn clients_mut(&mut self) -> &mut ArrayOfTables {
        if self.doc.get("clients").and_then(Item::as_array_of_tables).is_none() {
            self.doc.insert("clients", Item::ArrayOfTables(ArrayOfTables::new()));
        }
        self.doc.get_mut("clients").and_then(Item::as_array_of_tables_mut).expect("just inserted")
    }

    fn client_mut(&mut self, name: &str) -> Option<&mut Table> {
        self.clients_mut().iter_mut().find(|t| t.get("name").and_then(Item::as_str) == Some(name))
    }

    /// Adds a client identified by the SHA-256 of its token (the token itself is never stored).
    pub fn add_client(&mut self, name: &str, token_sha256_hex: &str, changes: &ClientChanges) -> Result<(), EditError> {
        if self.client_mut(name).is_some() {
            return Err(EditError::ClientExists(name.to_owned()));
        }
        let mut t = Table::new();
        t.insert("name", toml_edit::value(name));
        t.insert("token_sha256", toml_edit::value(token_sha256_hex));
        self.clients_mut().push(t);
        self.update_client(name, changes)
    }

    pub fn update_client(&mut self, name: &str, changes: &ClientChanges) -> Result<(), EditError> {
        let t = self.client_mut(name).ok_or_else(|| EditError::NoSuchClient(name.to_owned()))?;
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
        Ok(())
    }

    /// Removes a client. Returns false if there was none of that name.
    pub fn remove_client(&mut self, name: &str) -> bool {
        let clients = self.clients_mut();
        let before = clients.len();
        clients.retain(|t| t.get("name").and_then(Item::as_str) != Some(name));
        clients.len() != before
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
        assert_eq!(d.remove_key(Fingerprint::of(b"AIzaTWO"), &NoEnv), 1);
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
        assert!(d.remove_client("ci"));
        assert!(!d.remove_client("ci"));
    }
}
