//! The access log's JSON line, written by hand. serde's generic serializer escaped every field
//! name, formatted every number through `core::fmt` and the time through `humantime` on every
//! request, which made the log line the telemetry thread's largest cost (it shares the proxy's
//! core). The output is the JSON the derived `Serialize` produces (a test compares the two).

use super::access_log::AccessRecord;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes access-log lines; remembers the formatted date and time of the last second seen,
/// since a busy proxy logs thousands of requests within each one.
#[derive(Default)]
pub struct LineWriter {
    /// Unix second and its `YYYY-MM-DDTHH:MM:SS` form.
    second: Option<(u64, [u8; 19])>,
}

impl LineWriter {
    /// Appends `record` as one JSON object and a newline.
    pub fn write(&mut self, r: &AccessRecord, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        self.time(r.time, out);
        out.extend_from_slice(b"\",\"request_id\":");
        uint(out, r.request_id);
        if let Some(peer) = &r.peer {
            field_str(out, "peer", peer);
        }
        if let Some(client) = &r.client {
            field_str(out, "client", client);
        }
        field_str(out, "method", &r.method);
        field_str(out, "path", &r.path);
        if let Some(model) = &r.model {
            field_str(out, "model", model);
        }
        out.extend_from_slice(b",\"status\":");
        uint(out, r.status.into());
        out.extend_from_slice(b",\"attempts\":[");
        for (i, a) in r.attempts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"key\":");
            string(out, &a.key);
            field_str(out, "fingerprint", &a.fingerprint_label);
            field_str(out, "outcome", a.outcome);
            if let Some(s) = a.status {
                out.extend_from_slice(b",\"status\":");
                uint(out, s.into());
            }
            out.extend_from_slice(b",\"ms\":");
            millis(out, a.ms);
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"total_ms\":");
        millis(out, r.total_ms);
        if let Some(fb) = r.first_byte_ms {
            out.extend_from_slice(b",\"first_byte_ms\":");
            millis(out, fb);
        }
        for (name, v) in [("bytes_in", r.bytes_in), ("bytes_out", r.bytes_out), ("tokens_in", r.tokens_in), ("tokens_out", r.tokens_out)] {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            uint(out, v);
        }
        out.extend_from_slice(if r.stream { b",\"stream\":true" } else { b",\"stream\":false" });
        if let Some(e) = &r.error {
            field_str(out, "error", e);
        }
        out.extend_from_slice(b"}\n");
    }

    /// RFC 3339 in UTC with milliseconds, as `telemetry::time` writes it elsewhere.
    fn time(&mut self, t: SystemTime, out: &mut Vec<u8>) {
        let Ok(since) = t.duration_since(UNIX_EPOCH) else {
            out.extend_from_slice(super::time::format(t).as_bytes());
            return;
        };
        let second = since.as_secs();
        let prefix = match self.second {
            Some((s, p)) if s == second => p,
            _ => {
                let full = humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(second)).to_string();
                let mut p = [0u8; 19];
                match full.as_bytes().get(..19) {
                    Some(head) => p.copy_from_slice(head),
                    None => {
                        out.extend_from_slice(super::time::format(t).as_bytes());
                        return;
                    }
                }
                self.second = Some((second, p));
                p
            }
        };
        out.extend_from_slice(&prefix);
        let ms = since.subsec_millis();
        out.extend_from_slice(&[b'.', b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8, b'Z']);
    }
}

fn field_str(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    string(out, value);
}

fn uint(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A millisecond value, already rounded to microseconds by the data plane: written as
/// `12.345`, `0.5` or `3.0`, as serde would. Anything unusual takes the general path.
fn millis(out: &mut Vec<u8>, v: f64) {
    // Rounded by adding a half and truncating (the cast), not by `f64::round`, which is a libm
    // call on this target. The fast path only for values that are whole microseconds exactly, so
    // that the three decimals written are the shortest form of `v`, as serde's would be; the
    // sign test sends -0.0 (which the cast would read as 0) and NaN to the general path.
    let micros = (v * 1000.0 + 0.5) as u64;
    if !(v.is_sign_positive() && v < 1e12) || micros as f64 / 1000.0 != v {
        // serde_json writes finite floats in their shortest form, and null for the rest.
        match serde_json::to_writer(&mut *out, &v) {
            Ok(()) => {}
            Err(_) => out.extend_from_slice(b"null"),
        }
        return;
    }
    uint(out, micros / 1000);
    out.push(b'.');
    let frac = micros % 1000;
    if frac == 0 {
        out.push(b'0');
        return;
    }
    let digits = [b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8];
    let len = if frac.is_multiple_of(100) {
        1
    } else if frac.is_multiple_of(10) {
        2
    } else {
        3
    };
    out.extend_from_slice(&digits[..len]);
}

/// A JSON string with serde_json's escapes: `"`, `\` and control characters; everything else,
/// UTF-8 included, as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Almost every string needs no escape: check that first and copy it in one go.
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether `bytes` holds a `"`, a `\\` or a control character, eight bytes at a time. The log's
/// strings are short (2 to 60 bytes), too short for the byte loop this replaces to be
/// vectorised; writing a line's strings went from about 1,050 to 900 instructions (callgrind).
fn needs_escape(bytes: &[u8]) -> bool {
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let w = u64::from_ne_bytes(w);
        has_byte_below(w, 0x20) | has_zero_byte(w ^ splat(b'"')) | has_zero_byte(w ^ splat(b'\\'))
    };
    if bytes.len() < 8 {
        return bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    }
    let mut chunks = bytes.chunks_exact(8);
    let mut any = false;
    for c in &mut chunks {
        any |= word(c);
    }
    // The last eight bytes cover the remainder (overlapping what was checked): no byte loop
    // for the tail, which was most of the cost for strings this short.
    if !chunks.remainder().is_empty() {
        any |= word(&bytes[bytes.len() - 8..]);
    }
    any
}

const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The classic word-at-a-time tests (Bit Twiddling Hacks): a borrow can mark a byte after a true
/// match too, so they say exactly whether any byte matches, not which ones.
fn has_zero_byte(w: u64) -> bool {
    w.wrapping_sub(splat(0x01)) & !w & splat(0x80) != 0
}

/// Any byte below `n` (at most 0x80).
fn has_byte_below(w: u64, n: u8) -> bool {
    w.wrapping_sub(splat(n)) & !w & splat(0x80) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Fingerprint;
    use crate::telemetry::access_log::AttemptRecord;
    use std::sync::Arc;
    use std::time::Duration;

    fn record(time: SystemTime, text: &str, ms: f64) -> AccessRecord {
        AccessRecord {
            time,
            request_id: 18_446_744_073_709_551_615,
            peer: Some(Arc::from("[::1]:51234")),
            client: Some(Arc::from(text)),
            method: "POST".into(),
            path: format!("/v1beta/models/{text}:generateContent?alt=sse"),
            model: Some(text.into()),
            status: 429,
            attempts: smallvec::smallvec![
                AttemptRecord {
                    key: Arc::from(text),
                    fingerprint: Fingerprint::of(b"k1"),
                    fingerprint_label: Arc::from("0123456789ab"),
                    outcome: "rate_limited",
                    status: Some(429),
                    ms,
                },
                AttemptRecord {
                    key: Arc::from("k2"),
                    fingerprint: Fingerprint::of(b"k2"),
                    fingerprint_label: Arc::from("ba9876543210"),
                    outcome: "timeout",
                    status: None,
                    ms: 0.0,
                },
            ],
            total_ms: ms * 3.0,
            first_byte_ms: Some(ms),
            bytes_in: 0,
            bytes_out: u64::MAX,
            tokens_in: 7,
            tokens_out: 1_000_000,
            stream: true,
            error: Some(text.into()),
        }
    }

    #[test]
    fn lines_are_the_json_serde_writes() {
        let texts = ["plain", "quote\" back\\slash", "tab\tnew\nline\rcr", "\u{1}\u{8}\u{c}\u{1f}\u{7f}", "模型 ünïcode 🙂", ""];
        let times = [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_millis(1_500),
            UNIX_EPOCH + Duration::from_millis(1_796_000_000_007),
            UNIX_EPOCH + Duration::from_millis(1_796_000_000_999),
            UNIX_EPOCH + Duration::from_millis(1_796_000_001_000),
            UNIX_EPOCH + Duration::from_millis(253_402_300_799_999),
        ];
        let values = [
            0.0,
            0.001,
            0.01,
            0.1,
            0.5,
            1.0,
            12.345,
            12.34,
            12.3,
            999_999.999,
            0.0001,
            1e300,
            f64::NAN,
            -0.0,
            -1.5,
            0.0005,
            99_999_999_999.999,
            1e12,
            f64::INFINITY,
        ];
        let mut w = LineWriter::default();
        for (i, t) in times.iter().enumerate() {
            for text in texts {
                for ms in values {
                    let r = record(*t, text, ms);
                    let mut line = Vec::new();
                    w.write(&r, &mut line);
                    let theirs = serde_json::to_string(&r).expect("serde") + "\n";
                    assert_eq!(String::from_utf8_lossy(&line), theirs, "time #{i}, text {text:?}, ms {ms}");
                    // The optional fields are left out, as serde's skip_serializing_if does.
                    let bare = AccessRecord {
                        peer: None,
                        client: None,
                        model: None,
                        first_byte_ms: None,
                        error: None,
                        attempts: Default::default(),
                        stream: false,
                        ..r
                    };
                    line.clear();
                    w.write(&bare, &mut line);
                    assert_eq!(String::from_utf8_lossy(&line), serde_json::to_string(&bare).expect("serde") + "\n");
                }
            }
        }
    }

    #[test]
    fn the_escape_check_agrees_with_a_byte_loop() {
        let naive = |s: &[u8]| s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        // Every byte value at every position of strings up to 24 bytes, among plain ASCII,
        // bytes just above the control range and bytes with the high bit set (UTF-8).
        for len in 1..=24 {
            for filler in [b'a', b' ', 0x21, 0x7f, 0x80, 0xff] {
                for pos in 0..len {
                    for b in 0..=255u8 {
                        let mut s = vec![filler; len];
                        s[pos] = b;
                        assert_eq!(needs_escape(&s), naive(&s), "byte {b:#x} at {pos} of {len}, filler {filler:#x}");
                    }
                }
            }
        }
        assert!(!needs_escape(b""));
    }

    #[test]
    fn milliseconds_keep_their_digits() {
        let cases = [(0.0, "0.0"), (0.001, "0.001"), (0.02, "0.02"), (0.3, "0.3"), (12.345, "12.345"), (7.0, "7.0"), (1234.5, "1234.5")];
        for (v, want) in cases {
            let mut out = Vec::new();
            millis(&mut out, v);
            assert_eq!(String::from_utf8(out).expect("utf8"), want);
        }
    }
}
