//! Secrets (upstream keys, client tokens) that must never reach a log, an error or a response,
//! and the short fingerprints shown in their place.

use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// A secret string. `Debug` and `Display` print a redaction marker, never the value; the only
/// way to the bytes is [`Secret::expose`], which call sites use when writing to the upstream.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Only for writing it onto an upstream request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Stable short identifier, safe to show anywhere: the first 8 hex digits of its SHA-256.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.0.as_bytes())
    }

    pub fn sha256(&self) -> [u8; 32] {
        sha256(self.0.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A non-reversible identity for a secret: 128 bits of its SHA-256, so that state can be
/// keyed by it (no collisions even across millions of keys). It displays as its first 12 hex
/// digits: enough to tell keys apart in logs and metrics, useless for recovering the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    pub fn of(bytes: &[u8]) -> Self {
        let d = sha256(bytes);
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        Fingerprint(out)
    }
}

impl Fingerprint {
    /// How many hex digits the display form has (what `Display` prints).
    pub const DISPLAY_LEN: usize = 12;

    /// The display form of a stored full fingerprint (or of anything shorter, unchanged), so
    /// that every response shows keys the same way.
    pub fn display_form(mut hex: String) -> String {
        if hex.is_char_boundary(Self::DISPLAY_LEN) {
            hex.truncate(Self::DISPLAY_LEN);
        }
        hex
    }

    /// The full 32-hex-digit identity (for storage; `Display` shows the short form).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses the full form written by [`Fingerprint::to_hex`].
    pub fn from_hex(s: &str) -> Option<Fingerprint> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Fingerprint(out))
    }

    /// Whether `short` (a displayed prefix, at least 8 hex digits) designates this fingerprint.
    pub fn matches(&self, short: &str) -> bool {
        short.len() >= 8 && self.to_hex().starts_with(&short.to_ascii_lowercase())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..Self::DISPLAY_LEN / 2] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Whether two secrets are equal, in time that depends on their length only. `subtle`'s
/// `ct_eq` on slices does the same with an optimisation barrier per byte, which made the
/// per-request token check cost more than the rest of authentication; here the differences are
/// gathered with no early exit and the one barrier is on the result.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("AIzaSyVerySecret");
        assert!(!format!("{s:?}").contains("VerySecret"));
        assert!(!format!("{s}").contains("VerySecret"));
        assert_eq!(s.fingerprint().to_string().len(), 12);
        assert_ne!(s.fingerprint(), Secret::new("AIzaSyOther").fingerprint());
        let fp = s.fingerprint();
        assert_eq!(Fingerprint::from_hex(&fp.to_hex()), Some(fp));
        assert!(fp.matches(&fp.to_string()));
        assert!(!fp.matches("00"));
    }

    #[test]
    fn secrets_compare_equal_only_when_every_byte_is() {
        let a = b"gp-0123456789abcdef";
        assert!(same_secret(a, a));
        assert!(same_secret(b"", b""));
        for i in 0..a.len() {
            let mut b = *a;
            b[i] ^= 0x20;
            assert!(!same_secret(a, &b), "byte {i}");
        }
        assert!(!same_secret(a, &a[..a.len() - 1]));
    }
}
