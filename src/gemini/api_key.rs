//! What a Gemini API key looks like (`AIza` followed by 35 characters of `[A-Za-z0-9_-]`), to
//! find keys in free text: a pasted list to import, a comment of a config file to redact, an
//! upstream error message to keep.

use crate::secret::Fingerprint;
use std::borrow::Cow;
use std::fmt::Write;
use std::ops::Range;

/// A character a key is made of.
fn key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Every word of `text` that starts like a key (`AIza`, not inside a longer word), in order:
/// its byte range (on character boundaries: the word is ASCII), and whether it is a whole key
/// (exactly 35 key characters after `AIza`) rather than a near-miss.
pub fn key_words(text: &str) -> impl Iterator<Item = (Range<usize>, bool)> + '_ {
    let b = text.as_bytes();
    memchr::memmem::find_iter(b, KEY_PREFIX).filter(move |&start| start == 0 || !key_char(b[start - 1])).map(move |start| word_at(b, start))
}

/// What redaction replaces: like [`key_words`], also inside longer words (`x_AIza...`), where
/// missing a key costs more than hiding a harmless word, and only words with key characters
/// after `AIza` (a bare `AIza` holds nothing secret). Occurrences may overlap.
fn secret_words(b: &[u8]) -> impl Iterator<Item = (Range<usize>, bool)> + '_ {
    memchr::memmem::find_iter(b, KEY_PREFIX).map(move |start| word_at(b, start)).filter(|(r, _)| r.len() > KEY_PREFIX.len())
}

/// The key-shaped word starting at `start` (where `AIza` is) and whether it is a whole key.
fn word_at(b: &[u8], start: usize) -> (Range<usize>, bool) {
    let len = b[start + KEY_PREFIX.len()..].iter().take_while(|c| key_char(**c)).count();
    (start..start + KEY_PREFIX.len() + len, len == 35)
}

const KEY_PREFIX: &[u8] = b"AIza";

/// Whether `bytes` hold anything [`redact_keys`] would replace: `AIza` and at least one key
/// character, anywhere.
pub fn contains_key(bytes: &[u8]) -> bool {
    secret_words(bytes).next().is_some()
}

/// `text` with every key-shaped word (see [`key_words`], here also inside longer words)
/// replaced: a whole key by `[redacted key …<fingerprint>]`
/// (the 12 hex digits the keys view shows, so an operator can tell which key it was), a
/// near-miss (`AIza` and some key characters, e.g. a key cut short) by `[redacted partial key]`,
/// since most of a key is still a secret. A bare `AIza` holds nothing secret and stays.
/// Borrows `text` when there is nothing to replace.
pub fn redact_keys(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    for (range, whole) in secret_words(text.as_bytes()) {
        if range.start < copied {
            continue;
        }
        out.push_str(&text[copied..range.start]);
        if whole {
            // Writing to a String cannot fail.
            let _ = write!(out, "[redacted key …{}]", Fingerprint::of(text[range.clone()].as_bytes()));
        } else {
            out.push_str("[redacted partial key]");
        }
        copied = range.end;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_keys_and_near_misses() {
        let key = format!("AIza{}", "a-_9".repeat(8) + "xyz");
        let text = format!("k={key}, xAIza{key} AIzaSHORT {key}X");
        let found: Vec<(&str, bool)> = key_words(&text).map(|(r, whole)| (&text[r], whole)).collect();
        assert_eq!(found, [(key.as_str(), true), ("AIzaSHORT", false), (format!("{key}X").as_str(), false)]);
    }

    #[test]
    fn keys_in_text_are_redacted_to_their_fingerprint() {
        let key = format!("AIza{}", "k".repeat(35));
        let text = format!("Consumer 'api_key:{key}' has been suspended; also AIzaCutSh, x_AIzaInWord and AIza alone.");
        let out = redact_keys(&text);
        let fp = Fingerprint::of(key.as_bytes());
        assert_eq!(
            out,
            format!("Consumer 'api_key:[redacted key …{fp}]' has been suspended; also [redacted partial key], x_[redacted partial key] and AIza alone.")
        );
        // A key inside a longer word, and a word holding a key after its own `AIza`.
        assert_eq!(redact_keys(&format!("k_{key}")), format!("k_[redacted key …{fp}]"));
        assert_eq!(redact_keys(&format!("AIza{key}")), "[redacted partial key]");
        assert!(matches!(redact_keys("API key not valid."), Cow::Borrowed(_)));
        // `contains_key` says whether `redact_keys` would change anything.
        for t in [text.as_str(), "x_AIzaB", "API key not valid.", "AIza alone", "AIza"] {
            assert_eq!(contains_key(t.as_bytes()), matches!(redact_keys(t), Cow::Owned(_)), "{t}");
        }
    }
}
