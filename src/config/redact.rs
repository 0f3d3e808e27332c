//! Secrets out of config text shown over the admin API, and back in when it is saved: keys,
//! client tokens and admin credentials become `"redacted:..."` placeholders that name them by
//! fingerprint, and a document coming back with those placeholders gets the real values again.

use crate::secret::{sha256, Fingerprint};
use std::collections::HashMap;
use toml_edit::visit_mut::{self, VisitMut};
use toml_edit::{DocumentMut, Item, Value};

const PREFIX: &str = "redacted:";

fn short_hex(bytes: &[u8]) -> String {
    bytes[..6].iter().map(|b| format!("{b:02x}")).collect()
}

fn key_placeholder(secret: &str) -> String {
    format!("{PREFIX}key:{}", Fingerprint::of(secret.as_bytes()))
}

fn token_placeholder(secret: &str) -> String {
    format!("{PREFIX}token:{}", short_hex(&sha256(secret.as_bytes())))
}

/// Applies `f` to every secret-holding string of the document: pool keys (plain or `key =`),
/// client `token`, admin `token` and `password_hash`. `f` gets the kind and the value and
/// returns the replacement, if any.
fn for_each_secret(doc: &mut DocumentMut, mut f: impl FnMut(&str, &str) -> Option<String>) {
    let mut replace = |v: &mut Value, kind: &str| {
        if let Some(s) = v.as_str() {
            if let Some(new) = f(kind, s) {
                let decor = v.decor().clone();
                *v = Value::from(new);
                *v.decor_mut() = decor;
            }
        }
    };
    if let Some(pools) = doc.get_mut("pools").and_then(Item::as_array_of_tables_mut) {
        for pool in pools.iter_mut() {
            if let Some(keys) = pool.get_mut("keys").and_then(Item::as_array_mut) {
                for entry in keys.iter_mut() {
                    match entry {
                        Value::InlineTable(t) => {
                            if let Some(k) = t.get_mut("key") {
                                replace(k, "key");
                            }
                        }
                        other => replace(other, "key"),
                    }
                }
            }
        }
    }
    if let Some(clients) = doc.get_mut("clients").and_then(Item::as_array_of_tables_mut) {
        for client in clients.iter_mut() {
            if let Some(v) = client.get_mut("token").and_then(Item::as_value_mut) {
                replace(v, "token");
            }
        }
    }
    if let Some(admin) = doc.get_mut("admin").and_then(Item::as_table_like_mut) {
        for field in ["token", "password_hash"] {
            if let Some(v) = admin.get_mut(field).and_then(Item::as_value_mut) {
                replace(v, field);
            }
        }
    }
}

fn placeholder(kind: &str, secret: &str) -> String {
    match kind {
        "key" => key_placeholder(secret),
        "token" => token_placeholder(secret),
        other => format!("{PREFIX}{other}"),
    }
}

/// The document with every secret replaced by its placeholder. Unparseable text is returned
/// as an empty string: it cannot be redacted safely, so it is not shown.
pub fn redact(text: &str) -> String {
    let Ok(mut doc) = text.parse::<DocumentMut>() else { return String::new() };
    for_each_secret(&mut doc, |kind, s| (!s.starts_with(PREFIX)).then(|| placeholder(kind, s)));
    doc.to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnredactError {
    #[error("the config is not valid TOML: {0}")]
    Syntax(String),
    #[error("{0} does not match any secret of the running configuration; write the secret itself")]
    Unknown(String),
}

/// Replaces placeholders in `edited` with the secrets they stand for in `current`.
pub fn unredact(edited: &str, current: &str) -> Result<String, UnredactError> {
    if !edited.contains(PREFIX) {
        return Ok(edited.to_owned());
    }
    let mut known: HashMap<String, String> = HashMap::new();
    if let Ok(mut cur) = current.parse::<DocumentMut>() {
        for_each_secret(&mut cur, |kind, s| {
            known.insert(placeholder(kind, s), s.to_owned());
            None
        });
    }
    let mut doc = edited.parse::<DocumentMut>().map_err(|e| UnredactError::Syntax(e.to_string()))?;
    struct Restore<'a> {
        known: &'a HashMap<String, String>,
        unknown: Option<String>,
    }
    impl VisitMut for Restore<'_> {
        fn visit_value_mut(&mut self, node: &mut Value) {
            if let Some(s) = node.as_str() {
                if s.starts_with(PREFIX) {
                    match self.known.get(s) {
                        Some(real) => {
                            let decor = node.decor().clone();
                            *node = Value::from(real.as_str());
                            *node.decor_mut() = decor;
                        }
                        None => {
                            self.unknown.get_or_insert_with(|| s.to_owned());
                        }
                    }
                    return;
                }
            }
            visit_mut::visit_value_mut(self, node);
        }
    }
    let mut r = Restore { known: &known, unknown: None };
    r.visit_document_mut(&mut doc);
    match r.unknown {
        Some(u) => Err(UnredactError::Unknown(u)),
        None => Ok(doc.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# my proxy
[admin]
token = "admin-secret-token"

[[pools]]
name = "p"
keys = ["AIzaPLAIN", { key = "AIzaTABLE", name = "t" }, { key_env = "K3" }]   # three

[[clients]]
name = "alice"
token = "gp-alice-secret"
"#;

    #[test]
    fn secrets_become_placeholders_and_come_back() {
        let shown = redact(TEXT);
        for secret in ["admin-secret-token", "AIzaPLAIN", "AIzaTABLE", "gp-alice-secret"] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        assert!(shown.contains("# my proxy") && shown.contains("# three"), "comments survive: {shown}");
        assert!(shown.contains("key_env = \"K3\""));
        assert_eq!(unredact(&shown, TEXT).unwrap(), TEXT);
        // An edit keeps placeholders where they are and adds a new key in the clear.
        let edited = shown.replace("{ key_env = \"K3\" }", "{ key_env = \"K3\" }, \"AIzaNEW\"");
        let back = unredact(&edited, TEXT).unwrap();
        assert!(back.contains("\"AIzaPLAIN\"") && back.contains("\"AIzaNEW\""));
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        let forged = TEXT.replace("\"AIzaPLAIN\"", "\"redacted:key:000000000000\"");
        assert!(matches!(unredact(&forged, TEXT), Err(UnredactError::Unknown(_))));
    }
}
