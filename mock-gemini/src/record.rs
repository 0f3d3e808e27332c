//! Intake of every API request: buffer the body, identify the caller, record what arrived, apply `slow`/`hang`, and note answers whose connection went away before they were complete.

use crate::auth::{Caller, Credential, Flavor};
use crate::config::KeyMode;
use crate::error::ApiError;
use crate::state::Shared;
use crate::util::unix_ms;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

/// Largest request body accepted. Google caps inline requests at 20 MB and upload chunks at
/// 8 MiB; this is well above both so that only a runaway client hits it.
pub(crate) const MAX_BODY: usize = 64 * 1024 * 1024;

/// One request as the mock received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Arrival order, starting at 0 and never reused (survives `clear_requests`).
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`), if any.
    pub query: Option<String>,
    /// The API key the request carried (`x-goog-api-key`, `?key=`, or the bearer token on
    /// the OpenAI surface), whether valid or not. `None` if it carried none.
    pub key: Option<String>,
    /// All headers, names lowercased; repeated headers joined with `", "`.
    pub headers: BTreeMap<String, String>,
    pub body_len: usize,
    /// Model id without the `models/` prefix (`gemini-2.5-flash`, `tunedModels/x`), taken
    /// from the path or, on the OpenAI surface, from the body's `model` field.
    pub model: Option<String>,
    /// Arrival time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl RecordedRequest {
    /// A header's value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// Middleware on every API route (not `/__mock/`): buffers the body, works out the caller
/// and attaches it as a [`Caller`] extension, records the request, then applies the key's
/// `slow` delay (or the request's `x-mock-first-byte-ms`) or `hang`s forever before handing
/// over to the route. A request whose connection closes before its answer is complete (during
/// that wait, or in the middle of a streamed body) is noted as abandoned.
pub(crate) async fn intake(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let flavor = Flavor::of_path(parts.uri.path());
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let e = ApiError::bad_request(format!("Request payload size exceeds the limit: {MAX_BODY} bytes."));
            return if flavor == Flavor::OpenAi { e.openai() } else { e }.into_response();
        }
    };
    let credential = Credential::from_parts(&parts, flavor);
    let behaviour = match credential.key() {
        Some(key) => shared.behaviour(key),
        None => shared.default_behaviour(),
    };

    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let model = match flavor {
        Flavor::Native => model_from_path(parts.uri.path()),
        Flavor::OpenAi => model_from_body(&body),
    };
    let first_byte = crate::util::header_num::<u64>(&parts.headers, "x-mock-first-byte-ms").map(Duration::from_millis);
    let seq = shared.record(RecordedRequest {
        seq: 0,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        key: credential.key().map(str::to_string),
        headers,
        body_len: body.len(),
        model,
        unix_ms: unix_ms(SystemTime::now()),
    });

    // Dropped with this future (hyper drops it when the connection closes) or with the body.
    let mut answering = Answering { shared: shared.clone(), seq, done: false };
    let head_only = parts.method == axum::http::Method::HEAD;
    let mode = behaviour.mode.clone();
    parts.extensions.insert(Caller { credential, behaviour, flavor });
    match mode {
        // Dropped with the connection when the client gives up.
        KeyMode::Hang => std::future::pending::<()>().await,
        KeyMode::Slow { first_byte_ms } => tokio::time::sleep(Duration::from_millis(first_byte_ms)).await,
        _ => {}
    }
    if let Some(wait) = first_byte {
        tokio::time::sleep(wait).await;
    }
    let (head, body) = next.run(Request::from_parts(parts, Body::from(body))).await.into_parts();
    // A HEAD answer is complete with its head: hyper drops its body unsent.
    answering.done = head_only;
    Response::from_parts(head, Body::new(Watched { inner: body, answering }))
}

/// A recorded request whose answer is under way: noted as abandoned if dropped before `done`.
struct Answering {
    shared: Arc<Shared>,
    seq: u64,
    done: bool,
}

impl Drop for Answering {
    fn drop(&mut self) {
        if !self.done {
            self.shared.abandon(self.seq);
        }
    }
}

/// An answer's body, passed through as it is (its size hint too, so framing is unchanged),
/// that tells whether it went out whole.
struct Watched {
    inner: Body,
    answering: Answering,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // An error is the mock's own doing (`die_midstream`), not the client leaving.
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || self.inner.is_end_stream() {
            self.answering.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // An empty body may never be polled.
        if self.inner.is_end_stream() {
            self.answering.done = true;
        }
    }
}

/// `gemini-2.5-flash` from `/v1beta/models/gemini-2.5-flash:generateContent`,
/// `tunedModels/x` from `/v1/tunedModels/x:generateContent`.
fn model_from_path(path: &str) -> Option<String> {
    let mut segs = path.trim_start_matches('/').split('/');
    let _version = segs.next()?;
    let (collection, name) = (segs.next()?, segs.next()?);
    if segs.next().is_some() {
        return None;
    }
    let id = name.split(':').next().unwrap_or(name);
    if id.is_empty() {
        return None;
    }
    match collection {
        "models" => Some(id.to_string()),
        "tunedModels" => Some(format!("tunedModels/{id}")),
        _ => None,
    }
}

fn model_from_body(body: &Bytes) -> Option<String> {
    #[derive(Deserialize)]
    struct ModelField {
        model: Option<String>,
    }
    let m = serde_json::from_slice::<ModelField>(body).ok()?.model?;
    Some(m.strip_prefix("models/").unwrap_or(&m).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_come_from_paths() {
        assert_eq!(model_from_path("/v1beta/models/gemini-2.5-flash:generateContent").as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(model_from_path("/v1/models/gemini-2.5-pro").as_deref(), Some("gemini-2.5-pro"));
        assert_eq!(model_from_path("/v1/tunedModels/abc:streamGenerateContent").as_deref(), Some("tunedModels/abc"));
        assert_eq!(model_from_path("/v1beta/models"), None);
        assert_eq!(model_from_path("/v1beta/files/abc"), None);
        assert_eq!(model_from_body(&Bytes::from_static(br#"{"model":"models/gemini-2.0-flash"}"#)).as_deref(), Some("gemini-2.0-flash"));
    }
}
