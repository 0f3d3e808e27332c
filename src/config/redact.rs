//! Secrets out of config text shown over the admin API, and back in when it is saved: keys,
//! client tokens, the JWT secret and admin credentials become `"redacted:..."` placeholders that
//! name them by fingerprint, in values and in comments (a commented-out key line), and a
//! document coming back with those placeholders gets the real values again. Also: secrets out
//! of the messages the TOML parser and serde write about a file.

use crate::secret::{sha256, Fingerprint};
use std::collections::HashMap;
use std::ops::Range;
use toml_edit::visit::{self, Visit};
use toml_edit::visit_mut::{self, VisitMut};
use toml_edit::{DocumentMut, ImDocument, Item, TableLike, Value};

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

/// A secret found in a comment: the same placeholders as in values, but every kind named by a
/// digest (a comment may hold several password hashes, which values never do).
fn comment_placeholder(kind: &str, secret: &str) -> String {
    match kind {
        "key" => placeholder(kind, secret),
        _ => format!("{PREFIX}{kind}:{}", short_hex(&sha256(secret.as_bytes()))),
    }
}

/// The document with every secret replaced by its placeholder. Unparseable text is returned
/// as an empty string: it cannot be redacted safely, so it is not shown.
pub fn redact(text: &str) -> String {
    let Ok(mut doc) = text.parse::<DocumentMut>() else { return String::new() };
    for_each_secret(&mut doc, |kind, s| (!s.starts_with(PREFIX)).then(|| placeholder(kind, s)));
    redact_comments(&doc.to_string())
}

/// `text` with the secrets of its comments (see [`secrets_in_comment`]) replaced by
/// placeholders; everything else as it is.
fn redact_comments(text: &str) -> String {
    let redacted: Result<String, std::convert::Infallible> =
        replace_in_comments(text, secrets_in_comment, |secret, kind| Ok(comment_placeholder(kind, secret)));
    redacted.unwrap_or_else(|never| match never {})
}

/// `text` with the parts of its comments that `find` points out (byte ranges within a comment,
/// in order, not overlapping) replaced by what `replace` makes of them.
fn replace_in_comments<T, E>(
    text: &str,
    find: impl Fn(&str) -> Vec<(Range<usize>, T)>,
    mut replace: impl FnMut(&str, T) -> Result<String, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for span in comment_spans(text) {
        for (r, tag) in find(&text[span.clone()]) {
            let (start, end) = (span.start + r.start, span.start + r.end);
            out.push_str(&text[last..start]);
            out.push_str(&replace(&text[start..end], tag)?);
            last = end;
        }
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// Byte ranges of the comments of TOML text, each from its `#` to the end of its line. Strings
/// (the four kinds) are skipped: a `#` inside one starts no comment.
fn comment_spans(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let q = b[i];
        match q {
            b'#' => {
                let end = memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n);
                out.push(i..end);
                i = end;
            }
            b'"' | b'\'' if b[i..].starts_with(&[q, q, q]) => {
                let mut j = i + 3;
                i = loop {
                    if j >= b.len() {
                        break b.len();
                    }
                    if q == b'"' && b[j] == b'\\' {
                        j += 2;
                    } else if b[j..].starts_with(&[q, q, q]) {
                        // Up to two more quotes are content just before the closing three.
                        let extra = b[j + 3..].iter().take(2).take_while(|&&c| c == q).count();
                        break j + 3 + extra;
                    } else {
                        j += 1;
                    }
                };
            }
            b'"' | b'\'' => i = quoted_content(b, i).end + 1,
            _ => i += 1,
        }
    }
    out
}

/// The content of the string whose opening quote is at `at`: up to its closing quote (a basic
/// string's escapes skipped), or to the end of its line when it is not closed.
fn quoted_content(b: &[u8], at: usize) -> Range<usize> {
    let q = b[at];
    let mut j = at + 1;
    while j < b.len() && b[j] != q && b[j] != b'\n' {
        j += if q == b'"' && b[j] == b'\\' { 2 } else { 1 };
    }
    at + 1..j.min(b.len())
}

/// The secrets a comment holds, as byte ranges within it (in order, not overlapping) with
/// their kind: the values of secret-named fields in commented-out assignments (`# token =
/// "..."`, `# keys = ["...", "..."]`, `# key = AIza...`), and anything shaped like a Gemini key.
fn secrets_in_comment(c: &str) -> Vec<(Range<usize>, &'static str)> {
    let b = c.as_bytes();
    let mut found: Vec<(Range<usize>, &'static str)> = Vec::new();
    for (eq, _) in c.match_indices('=') {
        let Some(kind) = secret_kind(assigned_name(&c[..eq])) else { continue };
        let start = eq + 1 + c[eq + 1..].len() - c[eq + 1..].trim_start().len();
        match b.get(start) {
            Some(b'"' | b'\'') => found.push((quoted_content(b, start), kind)),
            Some(b'[') => {
                let mut i = start + 1;
                while i < b.len() && b[i] != b']' {
                    if matches!(b[i], b'"' | b'\'') {
                        let r = quoted_content(b, i);
                        i = r.end + 1;
                        found.push((r, kind));
                    } else {
                        i += 1;
                    }
                }
            }
            Some(_) => {
                let len = c[start..].find(|ch: char| ch.is_whitespace() || matches!(ch, ',' | ']' | '}' | '#')).unwrap_or(c.len() - start);
                found.push((start..start + len, kind));
            }
            None => {}
        }
    }
    found.extend(crate::gemini::api_key::key_words(c).filter(|(_, whole)| *whole).map(|(r, _)| (r, "key")));
    found.retain(|(r, _)| !r.is_empty());
    found.sort_by_key(|(r, _)| r.start);
    let mut out: Vec<(Range<usize>, &'static str)> = Vec::with_capacity(found.len());
    for f in found {
        if out.last().is_none_or(|(last, _)| f.0.start >= last.end) {
            out.push(f);
        }
    }
    out
}

/// The field name an assignment's text before its `=` ends with: the last part of a bare or
/// dotted key, or a quoted key's content.
fn assigned_name(before: &str) -> &str {
    let before = before.trim_end();
    match before.as_bytes().last() {
        Some(&q @ (b'"' | b'\'')) => {
            let inner = &before[..before.len() - 1];
            inner.rfind(q as char).map_or(inner, |open| &inner[open + 1..])
        }
        _ => {
            let start =
                before.char_indices().rev().find(|(_, ch)| !(ch.is_ascii_alphanumeric() || *ch == '_' || *ch == '-')).map_or(0, |(i, ch)| i + ch.len_utf8());
            &before[start..]
        }
    }
}

/// Placeholders that stand for no secret of the running configuration (made up, mistyped, or
/// from another configuration), as byte ranges of the edited text, in order. Neither the
/// placeholders nor anything else of the text are quoted: a place is enough to find them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} redacted: placeholder(s) match no secret of the running configuration", .0.len())]
pub struct UnredactError(pub Vec<Range<usize>>);

impl UnredactError {
    /// One problem per placeholder, at its line and column in `edited` (the text given to
    /// [`unredact`]), as the config's own problems are reported.
    pub fn problems(&self, edited: &str) -> Vec<super::LocatedProblem> {
        self.0
            .iter()
            .map(|r| {
                let (line, column) = super::line_col(edited, r.start);
                super::LocatedProblem {
                    line: Some(line),
                    column: Some(column),
                    message: "this redacted: placeholder matches no secret of the running configuration; write the secret itself".into(),
                }
            })
            .collect()
    }
}

/// Replaces placeholders in `edited` with the secrets they stand for in `current`. Refused when
/// any placeholder, in a value or in a comment, stands for none: each is named by its place.
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
    // Secrets shown redacted in comments come back too (in the comment, or in a line the
    // editor uncommented); text that merely looks like a placeholder in a comment of the
    // running file stays as it is.
    for span in comment_spans(current) {
        let comment = &current[span];
        for (r, kind) in secrets_in_comment(comment) {
            known.insert(comment_placeholder(kind, &comment[r.clone()]), comment[r].to_owned());
        }
        for r in placeholders_in(comment) {
            known.entry(comment[r.clone()].to_owned()).or_insert_with(|| comment[r].to_owned());
        }
    }
    // Text that is not TOML has no placeholders to restore: it goes on to the config parser,
    // which says where it breaks (this error's own rendering would quote the line, secrets and all).
    // Parsed keeping places first, to say where an unknown placeholder is.
    let Ok(placed) = ImDocument::parse(edited) else { return Ok(edited.to_owned()) };
    let unknown = unknown_placeholders(&placed, edited, &known);
    if !unknown.is_empty() {
        return Err(UnredactError(unknown));
    }
    let mut doc = placed.into_mut();
    struct Restore<'a> {
        known: &'a HashMap<String, String>,
    }
    impl VisitMut for Restore<'_> {
        fn visit_value_mut(&mut self, node: &mut Value) {
            if let Some(real) = node.as_str().filter(|s| s.starts_with(PREFIX)).and_then(|s| self.known.get(s)) {
                let decor = node.decor().clone();
                *node = Value::from(real.as_str());
                *node.decor_mut() = decor;
                return;
            }
            visit_mut::visit_value_mut(self, node);
        }
    }
    Restore { known: &known }.visit_document_mut(&mut doc);
    // Comments: a placeholder must never be written into the file (each is known by now).
    let found = |comment: &str| placeholders_in(comment).into_iter().map(|r| (r, ())).collect();
    replace_in_comments(&doc.to_string(), found, |placeholder, ()| {
        known.get(placeholder).cloned().ok_or_else(|| UnredactError(edited.find(placeholder).map(|at| at..at + placeholder.len()).into_iter().collect()))
    })
}

/// Byte ranges in `edited` (which `doc` was parsed from) of the placeholders, in values and in
/// comments, that are not in `known`, in order.
fn unknown_placeholders(doc: &ImDocument<&str>, edited: &str, known: &HashMap<String, String>) -> Vec<Range<usize>> {
    struct Find<'a> {
        known: &'a HashMap<String, String>,
        unknown: Vec<Range<usize>>,
    }
    impl<'doc> Visit<'doc> for Find<'_> {
        fn visit_value(&mut self, node: &'doc Value) {
            match node.as_str() {
                Some(s) if s.starts_with(PREFIX) && !self.known.contains_key(s) => self.unknown.extend(node.span()),
                _ => visit::visit_value(self, node),
            }
        }
    }
    let mut find = Find { known, unknown: Vec::new() };
    find.visit_table(doc.as_table());
    for span in comment_spans(edited) {
        let comment = &edited[span.clone()];
        let unknown = placeholders_in(comment).into_iter().filter(|r| !known.contains_key(&comment[r.clone()]));
        find.unknown.extend(unknown.map(|r| span.start + r.start..span.start + r.end));
    }
    find.unknown.sort_by_key(|r| r.start);
    find.unknown
}

/// Byte ranges of the placeholders in `s`: `redacted:`, a kind (`[a-z_]+`), and a `:` and
/// hex digest when there is one.
fn placeholders_in(s: &str) -> Vec<Range<usize>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    for (at, _) in s.match_indices(PREFIX) {
        let mut end = at + PREFIX.len();
        end += b[end..].iter().take_while(|c| c.is_ascii_lowercase() || **c == b'_').count();
        if b.get(end) == Some(&b':') {
            let hex = b[end + 1..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
            if hex > 0 {
                end += 1 + hex;
            }
        }
        out.push(at..end);
    }
    out
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

    const COMMENTED: &str = r##"# keys = ["AIzaSyA0123456789abcdefghijABCDEFGHIJ_-", "gp-not-key-shaped"]
# token = "gp-commented-token" # and "admin.token = 'old-admin-token'"
#secret=jwt-unquoted-secret
#  "password_hash" = '$argon2id$commented'
[[pools]]
name = "p" # an old key: AIzaSyB0123456789abcdefghijABCDEFGHIJ_-, retired
keys = ["AIzaPLAIN"]
note = "# token = not-a-comment"
doc = """
# keys = ["inside-a-string"]
"""
# key_env = "NOT_A_SECRET", the key = value form
"##;

    #[test]
    fn secrets_in_comments_are_redacted_and_come_back() {
        let shown = redact(COMMENTED);
        for secret in [
            "AIzaSyA0123456789abcdefghijABCDEFGHIJ_-",
            "gp-not-key-shaped",
            "gp-commented-token",
            "old-admin-token",
            "jwt-unquoted-secret",
            "$argon2id$commented",
            "AIzaSyB0123456789abcdefghijABCDEFGHIJ_-",
            "AIzaPLAIN",
        ] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        let key_a = Fingerprint::of(b"AIzaSyA0123456789abcdefghijABCDEFGHIJ_-");
        assert!(shown.starts_with(&format!("# keys = [\"redacted:key:{key_a}\", \"redacted:key:")), "{shown}");
        assert!(shown.contains("#secret=redacted:secret:") && shown.contains("'redacted:password_hash:"), "{shown}");
        // Strings are not comments, and other fields keep their values.
        for kept in ["note = \"# token = not-a-comment\"", "# keys = [\"inside-a-string\"]", "key_env = \"NOT_A_SECRET\"", ", retired"] {
            assert!(shown.contains(kept), "{kept} lost: {shown}");
        }
        assert_eq!(unredact(&shown, COMMENTED).unwrap(), COMMENTED, "a round trip writes the comments back as they were");
        // An edited comment keeps its secrets; an uncommented key line gets its key.
        let edited = shown
            .replace("# an old key:", "# an older key:")
            .replace(&format!("# keys = [\"redacted:key:{key_a}\""), &format!("keys2 = [\"redacted:key:{key_a}\""));
        let back = unredact(&edited, COMMENTED).unwrap();
        assert!(back.contains("# an older key: AIzaSyB0123456789abcdefghijABCDEFGHIJ_-,"), "{back}");
        assert!(back.starts_with("keys2 = [\"AIzaSyA0123456789abcdefghijABCDEFGHIJ_-\""), "{back}");
        // A placeholder made up in a comment is refused rather than written to the file.
        let forged = shown.replace(", retired", ", redacted:key:000000000000");
        assert!(unredact(&forged, COMMENTED).is_err());
        // Any text at all in a comment: nothing to redact, nothing broken.
        for odd in ["# é= x\n", "# ключ = значение \"незакрыто\n", "# token = \"\\é\n", "# keys = ['a', \"b\\\"\n", "#=\n", "# token =\n"]
        {
            let doc = format!("{odd}x = 1\n");
            assert_eq!(unredact(&redact(&doc), &doc).unwrap(), doc);
        }
        // Placeholder-like text the file's own comments hold is left alone.
        let own = "# shown as redacted:key:abc\nx = 1\n";
        assert_eq!(unredact(&redact(own), own).unwrap(), own);
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        let forged = TEXT.replace("\"AIzaPLAIN\"", "\"redacted:key:000000000000\"");
        assert!(unredact(&forged, TEXT).is_err());
    }
}
