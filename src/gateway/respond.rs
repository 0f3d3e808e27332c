//! Responses the proxy writes itself: Gemini-style JSON errors with the right status and
//! `Retry-After`, and the interim `100 Continue`.

use super::downstream::Downstream;
use crate::gemini::error::ApiError;
use crate::http1;
use std::time::Duration;

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `err` as a complete response. Returns the bytes written (for the access log), or
/// `None` if the client is gone.
pub async fn error(ds: &mut Downstream, err: &ApiError, openai: bool, close: bool, head_only: bool) -> Option<u64> {
    let body = err.to_json(openai);
    let mut out = Vec::with_capacity(256 + body.len());
    http1::write_status_line(&mut out, err.code);
    http1::write_header(&mut out, b"content-type", b"application/json; charset=UTF-8");
    http1::write_content_length(&mut out, body.len() as u64);
    if let Some(secs) = err.retry_after {
        http1::write_header(&mut out, b"retry-after", secs.to_string().as_bytes());
    }
    if close {
        http1::write_header(&mut out, b"connection", b"close");
    }
    if let Some(grant) = &ds.cors {
        grant.write_headers(&mut out);
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
    ds.write_all(&out, WRITE_TIMEOUT).await.ok().map(|_| out.len() as u64)
}

/// Answers a request whose head could not be read, then the connection closes.
pub async fn head_error(ds: &mut Downstream, status: u16, message: &str) {
    let (grpc, reason) = match status {
        408 => ("DEADLINE_EXCEEDED", "BAD_REQUEST"),
        431 | 413 => ("INVALID_ARGUMENT", "BAD_REQUEST"),
        501 => ("UNIMPLEMENTED", "BAD_REQUEST"),
        503 => ("UNAVAILABLE", "CONNECTION_LIMIT"),
        _ => ("INVALID_ARGUMENT", "BAD_REQUEST"),
    };
    let mut err = ApiError::new(status, grpc, reason, message);
    if status == 503 {
        // The limit is on open connections: one may free up at any moment.
        err = err.with_retry_after(1);
    }
    error(ds, &err, false, true, false).await;
    ds.shutdown().await;
}

pub async fn continue_100(ds: &mut Downstream) -> bool {
    ds.write_all(b"HTTP/1.1 100 Continue\r\n\r\n", WRITE_TIMEOUT).await.is_ok()
}
