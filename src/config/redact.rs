//! Secrets out of config text shown over the admin API, and back in when it is saved: keys,
//! client tokens, the JWT secret and admin credentials become `"redacted:..."` placeholders that
//! name them by fingerprint, and a document coming back with those placeholders gets the real
//! values again. Also: secrets out of the messages the TOML parser and serde write about a file.

use crate::secret::{sha256, Fingerprint};
use std::collections::HashMap;
use toml_edit::visit_mut::{self, VisitMut};
use toml_edit::{DocumentMut, Item, TableLike, Value};

const PREFIX: &str = "redacted:";

fn short_hex(bytes: &[u8]) -> String {
    bytes[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The kind of secret a string holds, by the name of the field it is in: pool keys (entries
/// of `keys`, `key =` of a key table), client and admin `token`, the admin `password_hash` and
/// the `[jwt] secret`. Going by field name rather than by path covers every layout the loader
/// accepts (sections, `[[pools.keys]]`, inline arrays of inline tables, dotted keys), and none
/// of these names holds anything but a secret.
fn secret_kind(field: &str) -> Option<&'static str> {
    match field {
        "keys" | "key" => Some("key"),
        "token" => Some("token"),
        "secret" => Some("secret"),
        "password_hash" => Some("password_hash"),
        _ => None,
    }
}

/// Applies `f` to every secret-holding string of the document. `f` gets the kind and the
/// value and returns the replacement, if any; the value keeps its decoration (comments).
fn for_each_secret(doc: &mut DocumentMut, mut f: impl FnMut(&str, &str) -> Option<String>) {
    walk_table(doc.as_table_mut(), &mut f);
}

fn walk_table(t: &mut dyn TableLike, f: &mut dyn FnMut(&str, &str) -> Option<String>) {
    for (key, item) in t.iter_mut() {
        walk_item(item, key.get(), f);
    }
}

fn walk_item(item: &mut Item, field: &str, f: &mut dyn FnMut(&str, &str) -> Option<String>) {
    match item {
        Item::Value(v) => walk_value(v, field, f),
        Item::Table(t) => walk_table(t, f),
        Item::ArrayOfTables(a) => a.iter_mut().for_each(|t| walk_table(t, f)),
        Item::None => {}
    }
}

/// `field` is the name the value is held under; array entries are held under their array's.
fn walk_value(v: &mut Value, field: &str, f: &mut dyn FnMut(&str, &str) -> Option<String>) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(|e| walk_value(e, field, f)),
        Value::InlineTable(t) => walk_table(t, f),
        Value::String(s) => {
            let new = secret_kind(field).and_then(|kind| f(kind, s.value()));
            if let Some(new) = new {
                let decor = v.decor().clone();
                *v = Value::from(new);
                *v.decor_mut() = decor;
            }
        }
        _ => {}
    }
}

fn placeholder(kind: &str, secret: &str) -> String {
    match kind {
        "key" => format!("{PREFIX}key:{}", Fingerprint::of(secret.as_bytes())),
        // Named by a digest prefix, so that two different secrets show differently.
        "token" | "secret" => format!("{PREFIX}{kind}:{}", short_hex(&sha256(secret.as_bytes()))),
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
    // Text that is not TOML has no placeholders to restore: it goes on to the config parser,
    // which says where it breaks (this error's own rendering would quote the line, secrets and all).
    let Ok(mut doc) = edited.parse::<DocumentMut>() else { return Ok(edited.to_owned()) };
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

/// A message of the TOML parser or of serde about a config file, without the values it
/// quotes: serde quotes the string it could not use (`invalid type: string "AIza...", expected
/// a sequence`), so a key written in the wrong place would reach `check`'s output, the logs and
/// the API's answers. A typo'd key is not known as a key yet, so this goes by shape, not by
/// matching known secrets: double-quoted values are dropped (the type, and the line and column
/// the caller adds, stay); backquoted words are kept only when they look like a field name, a
/// number or punctuation (`unknown field `wieght``, `integer `5``, ``expected `]` ``) and
/// become `…` otherwise.
pub fn problem_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(['"', '`']) {
        out.push_str(&rest[..at]);
        let quote = if rest[at..].starts_with('`') { '`' } else { '"' };
        let body = &rest[at + 1..];
        // An unclosed quote runs to the end: nothing after it is shown.
        let (inner, after) = match closing(body, quote) {
            Some(end) => (&body[..end], &body[end + 1..]),
            None => (body, ""),
        };
        if quote == '`' {
            out.push('`');
            out.push_str(if harmless(inner) { inner } else { "…" });
            out.push('`');
        } else if out.ends_with(' ') {
            out.pop();
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Byte offset of the quote closing a quoted run that starts at `body` (serde escapes quotes
/// inside its Debug-formatted strings with a backslash).
fn closing(body: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quote == '"' => escaped = true,
            c if c == quote => return Some(i),
            _ => {}
        }
    }
    None
}

/// A backquoted word that cannot be a secret: a config field name, a number, punctuation.
fn harmless(word: &str) -> bool {
    let field = !word.is_empty() && word.len() <= 32 && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    let number = word.len() <= 20 && word.parse::<f64>().is_ok();
    let punctuation = !word.is_empty() && word.len() <= 3 && word.chars().all(|c| c.is_ascii_punctuation());
    field || number || punctuation
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

    /// Every layout the loader accepts, with a secret in each secret-bearing field.
    const LAYOUTS: &str = r#"pools = [{ name = "inline", keys = ["AIzaINLINE1", { key = "AIzaINLINE2", name = "two" }] }]
clients = [{ name = "a", token = "gp-inline-client-token" }]

[admin]
token = "admin-secret-token-long"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"

[jwt]
secret = "jwt-hs256-secret-at-least-32-bytes-long"
"#;

    const SECTIONS: &str = r#"jwt = { secret = "jwt-inline-table-secret-32-bytes-long" }
admin.token = "admin-dotted-token-long"

[[pools]]
name = "aot"

[[pools.keys]]
key = "AIzaSECTION1"   # first
name = "one"

[[pools.keys]]
key = "AIzaSECTION2"

[[clients]]
name = "b"
token = "gp-section-client-token"
"#;

    #[test]
    fn every_layout_and_secret_field_is_redacted_and_restored() {
        let secrets = [
            "$argon2id$",
            "AIzaINLINE1",
            "AIzaINLINE2",
            "gp-inline-client-token",
            "admin-secret-token-long",
            "jwt-hs256-secret-at-least-32-bytes-long",
            "jwt-inline-table-secret-32-bytes-long",
            "AIzaSECTION1",
            "AIzaSECTION2",
            "gp-section-client-token",
            "admin-dotted-token-long",
        ];
        for text in [LAYOUTS, SECTIONS] {
            let shown = redact(text);
            for secret in secrets {
                assert!(!shown.contains(secret), "{secret} shown: {shown}");
            }
            assert_eq!(unredact(&shown, text).unwrap(), text, "placeholders come back as the secrets");
        }
        let shown = redact(SECTIONS);
        assert!(shown.contains("# first") && shown.contains("redacted:secret:") && shown.contains("redacted:key:"), "{shown}");
        // The placeholder names the secret: another JWT secret shows differently.
        assert_ne!(redact(&SECTIONS.replace("jwt-inline", "jwt-INLINE")), shown);
    }

    #[test]
    fn text_that_is_not_toml_goes_on_unchanged_for_the_parser_to_report() {
        assert_eq!(unredact("keys = [AIzaBROKEN", TEXT).unwrap(), "keys = [AIzaBROKEN");
    }

    #[test]
    fn problem_messages_lose_the_values_they_quote() {
        let m = problem_message("invalid type: string \"AIzaSyTYPO\\\"x\", expected a sequence");
        assert_eq!(m, "invalid type: string, expected a sequence");
        assert_eq!(problem_message("invalid value: string \"AIzaSyX\", expected one of `a`, `b`"), "invalid value: string, expected one of `a`, `b`");
        assert_eq!(problem_message("unknown field `wieght`, expected one of `key`, `key_env`"), "unknown field `wieght`, expected one of `key`, `key_env`");
        assert_eq!(problem_message("invalid type: integer `5`, expected a string"), "invalid type: integer `5`, expected a string");
        assert_eq!(problem_message("invalid string\nexpected `\"`, `'`"), "invalid string\nexpected `\"`, `'`");
        assert_eq!(problem_message("duplicate key `AIzaSyDUP`"), "duplicate key `…`");
        assert_eq!(problem_message("cut short \"AIzaSyUNCLOSED"), "cut short");
        assert_eq!(problem_message("invalid duration \"2 fortnights\": unknown unit"), "invalid duration: unknown unit");
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        let forged = TEXT.replace("\"AIzaPLAIN\"", "\"redacted:key:000000000000\"");
        assert!(matches!(unredact(&forged, TEXT), Err(UnredactError::Unknown(_))));
    }
}
