//! Intake of every API request: buffer the body, identify the caller, record what arrived, apply `slow`/`hang`.

use crate::auth::{Caller, Credential, Flavor};
use crate::config::KeyMode;
use crate::error::ApiError;
use crate::state::Shared;
use crate::util::unix_ms;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
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
/// `slow` delay or `hang`s forever before handing over to the route.
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
    shared.record(RecordedRequest {
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

    let mode = behaviour.mode.clone();
    parts.extensions.insert(Caller { credential, behaviour, flavor });
    match mode {
        // Dropped with the connection when the client gives up.
        KeyMode::Hang => std::future::pending::<()>().await,
        KeyMode::Slow { first_byte_ms } => tokio::time::sleep(Duration::from_millis(first_byte_ms)).await,
        _ => {}
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
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
