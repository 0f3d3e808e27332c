//! Responses the proxy writes itself: Gemini-style JSON errors with the right status and
//! `Retry-After`, and the interim `100 Continue`.

use super::downstream::Downstream;
use crate::gemini::error::ApiError;
use crate::http1;
use std::time::Duration;

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `err` as a complete response. Returns false if the client is gone.
pub async fn error(ds: &mut Downstream, err: &ApiError, openai: bool, close: bool, head_only: bool) -> bool {
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
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
    ds.write_all(&out, WRITE_TIMEOUT).await.is_ok()
}

/// Answers a request whose head could not be read, then the connection closes.
pub async fn head_error(ds: &mut Downstream, status: u16, message: &str) {
    let grpc = match status {
        408 => "DEADLINE_EXCEEDED",
        431 | 413 => "INVALID_ARGUMENT",
        501 => "UNIMPLEMENTED",
        _ => "INVALID_ARGUMENT",
    };
    let err = ApiError::new(status, grpc, "BAD_REQUEST", message);
    error(ds, &err, false, true, false).await;
    ds.shutdown().await;
}

pub async fn continue_100(ds: &mut Downstream) -> bool {
    ds.write_all(b"HTTP/1.1 100 Continue\r\n\r\n", WRITE_TIMEOUT).await.is_ok()
}
