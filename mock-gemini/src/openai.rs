//! The OpenAI-compatible surface under `/v1beta/openai/`: chat completions (plain and streamed), embeddings, models.
//!
//! Errors here are Google's envelope wrapped in a JSON array, as Gemini answers on this surface.

use crate::auth::Caller;
use crate::content::{chunk_text, embedding, openai_text_bytes, reply_text, tokens_for_bytes, words};
use crate::error::ApiError;
use crate::models::{resolve, Resolved, CATALOG};
use crate::stream::{event_body, Ending, Framing, StreamPlan};
use crate::util::{mixed_id, unix_secs};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::time::SystemTime;

/// An [`ApiError`] rendered the OpenAI-surface way (array-wrapped).
pub(crate) struct OpenAiError(ApiError);

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        OpenAiError(e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        self.0.openai().into_response()
    }
}

/// Gemini's OpenAI layer reports this internal API version in its 404s.
const OPENAI_API_VERSION: &str = "v1main";

fn parse(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e))
}

/// The model named in the body, checked to exist and to offer `method`; returns the bare id.
fn model_for(body: &Value, method: &str) -> Result<(String, Resolved), ApiError> {
    let name = body.get("model").and_then(Value::as_str).ok_or_else(|| ApiError::bad_request("model is not specified"))?;
    let id = name.strip_prefix("models/").unwrap_or(name);
    match resolve(id).filter(|m| m.supports(method)) {
        Some(m) => Ok((id.to_string(), m)),
        None => Err(ApiError::model_not_found(&format!("models/{id}"), OPENAI_API_VERSION, method)),
    }
}

fn usage(prompt: u32, completion: u32) -> Value {
    json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
}

/// `POST /v1beta/openai/chat/completions`, streamed when the body says `"stream": true`.
pub(crate) async fn chat(Extension(caller): Extension<Caller>, headers: HeaderMap, body: Bytes) -> Result<Response, OpenAiError> {
    caller.authenticate()?;
    let body = parse(&body)?;
    let (model, _) = model_for(&body, "generateContent")?;
    let messages =
        body.get("messages").filter(|m| m.as_array().is_some_and(|a| !a.is_empty())).ok_or_else(|| ApiError::bad_request("messages is not specified"))?;
    caller.admit(&model)?;

    let prompt = tokens_for_bytes(openai_text_bytes(messages));
    let id = mixed_id(23);
    let created = unix_secs(SystemTime::now());
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let text = reply_text(&model, prompt);
        let completion = words(&text);
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "finish_reason": "stop",
            }],
            "usage": usage(prompt, completion),
        }))
        .into_response());
    }

    let plan = StreamPlan::from_headers(&headers);
    let (total, pad) = (plan.chunks, plan.pad_bytes);
    let mut emitted = 0u32;
    let body = event_body(&plan, Framing::OpenAiSse, Ending::for_mode(&caller.behaviour.mode), move |i| {
        let text = chunk_text(&model, i, total, pad);
        emitted += words(&text);
        let finish = if i + 1 == total { json!("stop") } else { Value::Null };
        serde_json::to_vec(&json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{ "index": 0, "delta": { "role": "assistant", "content": text }, "finish_reason": finish }],
            "usage": usage(prompt, emitted),
        }))
        .unwrap_or_default()
    });
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(Framing::OpenAiSse.content_type()))], body).into_response())
}

/// `POST /v1beta/openai/embeddings`: one vector per input. Vectors are always JSON floats
/// (the OpenAI SDK asks for base64 by default but accepts floats).
pub(crate) async fn embeddings(Extension(caller): Extension<Caller>, body: Bytes) -> Result<Response, OpenAiError> {
    caller.authenticate()?;
    let body = parse(&body)?;
    let (model, resolved) = model_for(&body, "embedContent")?;
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => return Err(ApiError::bad_request("input is not specified").into()),
    };
    caller.admit(&model)?;
    let default_dims = resolved.embedding_dims();
    let dims =
        body.get("dimensions").and_then(Value::as_u64).and_then(|d| usize::try_from(d).ok()).filter(|d| (1..=default_dims).contains(d)).unwrap_or(default_dims);
    let prompt: u32 = inputs.iter().map(|s| tokens_for_bytes(s.len())).sum();
    let data: Vec<Value> =
        inputs.iter().enumerate().map(|(index, text)| json!({ "object": "embedding", "embedding": embedding(text, dims), "index": index })).collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": prompt, "total_tokens": prompt },
    }))
    .into_response())
}

fn model_object(id: &str) -> Value {
    json!({ "id": format!("models/{id}"), "object": "model", "created": 0, "owned_by": "google" })
}

/// `GET /v1beta/openai/models`.
pub(crate) async fn list_models(Extension(caller): Extension<Caller>) -> Result<Response, OpenAiError> {
    caller.authenticate()?;
    let data: Vec<Value> = CATALOG.iter().map(|m| model_object(m.id)).collect();
    Ok(Json(json!({ "object": "list", "data": data })).into_response())
}

/// `GET /v1beta/openai/models/{model}` (the id may carry its `models/` prefix).
pub(crate) async fn get_model(Extension(caller): Extension<Caller>, Path(name): Path<String>) -> Result<Response, OpenAiError> {
    caller.authenticate()?;
    let id = name.strip_prefix("models/").unwrap_or(&name);
    match CATALOG.iter().find(|m| m.id == id) {
        Some(m) => Ok(Json(model_object(m.id)).into_response()),
        None => Err(ApiError::model_not_found(&format!("models/{id}"), OPENAI_API_VERSION, "getModel").into()),
    }
}
