//! Browser access (CORS) for the origins in `access.cors_origins`: preflight requests are
//! answered here (they carry no token, so they never reach authentication or the upstream),
//! and the answers to an allowed origin say so, whoever wrote them.

use super::downstream::Downstream;
use crate::config::CorsOrigins;
use crate::http1::{self, RequestHead};
use crate::telemetry::access_log::AccessRecord;
use std::time::Duration;

/// Response headers a page may read beyond the CORS-safelisted ones: the resumable upload's
/// handshake (the JS SDK reads the session URL) and when to come back.
const EXPOSED: &[u8] = b"retry-after, x-goog-upload-url, x-goog-upload-status, x-goog-upload-size, x-goog-upload-control-url, x-goog-upload-chunk-granularity";
/// Every method the Gemini API uses.
const METHODS: &[u8] = b"GET, POST, PUT, PATCH, DELETE";
/// Browsers cap this (Chromium at two hours); a day lets each cache it as long as it will.
const MAX_AGE: &[u8] = b"86400";
/// Header names echoed back as allowed, when the preflight asks for none.
const DEFAULT_ALLOWED: &[u8] = b"content-type, x-goog-api-key, authorization";

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Upstream response headers replaced by ours while CORS is on, so that an answer never
/// carries two different verdicts.
pub const UPSTREAM_HEADERS: &[&str] = &[
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
];

/// A request from an origin that may read the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The `Origin` as sent, or `None` when every origin is allowed (answered with `*`).
    origin: Option<Box<[u8]>>,
}

impl Grant {
    /// The grant for `head`, if CORS is on and the request names an allowed origin. Costs
    /// nothing while CORS is off.
    pub fn for_request(cors: &CorsOrigins, head: &RequestHead) -> Option<Grant> {
        if !cors.enabled() {
            return None;
        }
        let origin = head.header("origin")?;
        match cors {
            CorsOrigins::Any => Some(Grant { origin: None }),
            _ => cors.allows(origin).then(|| Grant { origin: Some(origin.into()) }),
        }
    }

    /// The headers every answer to this origin carries.
    pub fn write_headers(&self, out: &mut Vec<u8>) {
        match &self.origin {
            Some(origin) => {
                http1::write_header(out, b"access-control-allow-origin", origin);
                // The answer depends on who asked: caches must keep one per origin.
                http1::write_header(out, b"vary", b"origin");
            }
            None => http1::write_header(out, b"access-control-allow-origin", b"*"),
        }
        http1::write_header(out, b"access-control-expose-headers", EXPOSED);
    }
}

/// Whether `head` is a CORS preflight (`OPTIONS` asking about another method).
pub fn is_preflight(head: &RequestHead) -> bool {
    head.method() == "OPTIONS" && head.header("origin").is_some() && head.header("access-control-request-method").is_some()
}

/// Answers a preflight from an allowed origin: 204 with the methods and the headers it asked
/// for. Returns whether the connection stays usable.
pub async fn preflight(ds: &mut Downstream, log: &mut AccessRecord, grant: &Grant, head: &RequestHead) -> bool {
    // Echoed rather than listed: a `*` would not cover `authorization`, and the SDKs add
    // headers of their own (`x-goog-api-client`, `x-stainless-*`). Only header-name bytes are
    // echoed, so a crafted value cannot add a line.
    let asked = head.header("access-control-request-headers").filter(|v| v.iter().all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(b)));
    let mut out = Vec::with_capacity(512);
    http1::write_status_line(&mut out, 204);
    grant.write_headers(&mut out);
    http1::write_header(&mut out, b"access-control-allow-methods", METHODS);
    http1::write_header(&mut out, b"access-control-allow-headers", asked.filter(|v| !v.trim_ascii().is_empty()).unwrap_or(DEFAULT_ALLOWED));
    http1::write_header(&mut out, b"access-control-max-age", MAX_AGE);
    if grant.origin.is_some() {
        http1::write_header(&mut out, b"vary", b"access-control-request-method, access-control-request-headers");
    }
    http1::write_content_length(&mut out, 0);
    out.extend_from_slice(b"\r\n");
    log.status = 204;
    let written = ds.write_all(&out, WRITE_TIMEOUT).await.is_ok();
    if written {
        log.bytes_out = out.len() as u64;
    }
    written
}
