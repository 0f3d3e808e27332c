//! What a Gemini API key looks like (`AIza` followed by 35 characters of `[A-Za-z0-9_-]`), to
//! find keys in free text: a pasted list to import, a comment of a config file to redact.

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
    memchr::memmem::find_iter(b, b"AIza").filter(move |&start| start == 0 || !key_char(b[start - 1])).map(move |start| {
        let len = b[start + 4..].iter().take_while(|c| key_char(**c)).count();
        (start..start + 4 + len, len == 35)
    })
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
}
