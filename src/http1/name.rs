//! Header names compared without regard to ASCII case, eight bytes at a time. Every request
//! and response has each of its header names compared with the names the proxy looks for or
//! drops; byte by byte (`eq_ignore_ascii_case` lowers both sides of every byte) that was the
//! largest single cost of parsing a head.

const CAP: usize = LowerName::CAP;

/// A header name kept in lower case with, for each byte, the bit that case flips: set for
/// letters only, so that `byte | mask == lower` holds exactly when `byte` is that letter in
/// either case, or that very non-letter byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowerName {
    len: usize,
    lower: [u8; CAP],
    mask: [u8; CAP],
}

impl LowerName {
    /// Longest name held inline; longer names (none of ours; perhaps a configured one) are
    /// compared the slow way.
    pub const CAP: usize = 32;

    /// `None` if `name` is longer than 32 bytes.
    pub const fn new(name: &str) -> Option<LowerName> {
        let bytes = name.as_bytes();
        if bytes.len() > CAP {
            return None;
        }
        let mut lower = [0u8; CAP];
        let mut mask = [0u8; CAP];
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i].to_ascii_lowercase();
            lower[i] = b;
            mask[i] = if b.is_ascii_lowercase() { 0x20 } else { 0 };
            i += 1;
        }
        Some(LowerName { len: bytes.len(), lower, mask })
    }

    /// For names written in the source: fails the build if one is too long.
    pub const fn known(name: &str) -> LowerName {
        match LowerName::new(name) {
            Some(n) => n,
            None => panic!("header name longer than 32 bytes"),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.lower[..self.len]
    }

    /// Whether `name` is this name in any ASCII case.
    #[inline]
    pub fn matches(&self, name: &[u8]) -> bool {
        let n = self.len;
        if name.len() != n {
            return false;
        }
        if n < 8 {
            return name.iter().zip(&self.mask).zip(&self.lower).all(|((b, m), l)| b | m == *l);
        }
        // Whole words, the last one overlapping the one before it when n is not a multiple of 8.
        let mut at = 0;
        while at + 8 < n {
            if !self.word_matches(name, at) {
                return false;
            }
            at += 8;
        }
        self.word_matches(name, n - 8)
    }

    #[inline(always)]
    fn word_matches(&self, name: &[u8], at: usize) -> bool {
        let word = |s: &[u8]| s.get(at..at + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()).map(u64::from_le_bytes);
        match (word(name), word(&self.mask), word(&self.lower)) {
            (Some(b), Some(m), Some(l)) => b | m == l,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_exactly_what_eq_ignore_ascii_case_matches() {
        // Every length up to the inline limit, letters, digits and the symbols tokens allow,
        // compared with each single-byte change of case or value.
        let alphabet = b"abcxyzABCXYZ019-_.!#$%&'*+^`|~@[{\\";
        for len in 1..=CAP {
            let name: Vec<u8> = (0..len).map(|i| alphabet[(i * 7 + len) % alphabet.len()]).collect();
            let text = std::str::from_utf8(&name).expect("ascii");
            let n = LowerName::new(text).expect("fits");
            for i in 0..len {
                for b in 0u8..=127 {
                    let mut other = name.clone();
                    other[i] = b;
                    assert_eq!(n.matches(&other), other.eq_ignore_ascii_case(&name), "{text:?} with byte {i} = {b:#x}");
                }
            }
            assert!(n.matches(text.to_ascii_uppercase().as_bytes()));
            assert!(!n.matches(&name[..len - 1]));
            assert_eq!(n.as_bytes(), text.to_ascii_lowercase().as_bytes());
        }
        assert_eq!(LowerName::new(&"x".repeat(CAP + 1)), None);
    }
}
