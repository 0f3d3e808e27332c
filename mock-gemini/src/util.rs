//! Small shared helpers: Google-style timestamps, random ids, base64, header parsing, JSON answers.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A 200 JSON answer with the content type Google's native API uses.
pub(crate) fn json_response<T: Serialize + ?Sized>(v: &T) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"))], serde_json::to_vec(v).unwrap_or_default()).into_response()
}

/// A request field by its lowerCamelCase name, also accepting the snake_case spelling:
/// proto3 JSON parsers take both, and google-genai sends some bodies in snake_case
/// (the `files.upload` start body is `{"file":{"display_name":..,"mime_type":..}}`).
pub(crate) fn field<'a>(v: &'a serde_json::Value, camel: &str) -> Option<&'a serde_json::Value> {
    if let Some(found) = v.get(camel) {
        return Some(found);
    }
    let mut snake = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    v.get(&snake)
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Seconds since the Unix epoch, as OpenAI's `created` field wants.
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// RFC 3339 UTC with microseconds, the shape Google uses (`2025-01-02T03:04:05.123456Z`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z", rem / 3600, (rem % 3600) / 60, rem % 60, d.subsec_micros())
}

/// Howard Hinnant's days-to-civil conversion (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Random `[a-z0-9]` id, like Google's file and cache ids.
pub(crate) fn lower_id(len: usize) -> String {
    (0..len)
        .map(|_| {
            let n = fastrand::u8(0..36);
            if n < 10 {
                (b'0' + n) as char
            } else {
                (b'a' + n - 10) as char
            }
        })
        .collect()
}

/// Random `[A-Za-z0-9]` id, like response ids and upload ids.
pub(crate) fn mixed_id(len: usize) -> String {
    (0..len).map(|_| fastrand::alphanumeric()).collect()
}

/// Standard base64 with padding (protobuf's JSON form of `bytes` fields).
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Lowercase hex of `data`.
pub(crate) fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// A header's value as text, if present and valid UTF-8.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// A header parsed as a number; `None` if absent or not a number.
pub(crate) fn header_num<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    header_str(headers, name).and_then(|v| v.parse().ok())
}

/// Parses a protobuf Duration in JSON form (`"300s"`, `"1.5s"`); `None` if malformed.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// FNV-1a, a cheap stable hash for deterministic fake data (embeddings, project numbers).
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_google() {
        let t = UNIX_EPOCH + Duration::from_micros(1_714_567_890_123_456);
        assert_eq!(rfc3339(t), "2024-05-01T12:51:30.123456Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn base64_matches_reference() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn fields_accept_both_spellings() {
        let v = serde_json::json!({"display_name": "a", "mimeType": "b"});
        assert_eq!(field(&v, "displayName"), Some(&serde_json::json!("a")));
        assert_eq!(field(&v, "mimeType"), Some(&serde_json::json!("b")));
        assert_eq!(field(&v, "sizeBytes"), None);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("300s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), None);
    }
}
