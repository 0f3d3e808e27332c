//! Native model methods: `POST /V/models/{m}:{method}` (generate, stream, count, embed, batch, predict).

use crate::auth::Caller;
use crate::content::{chunk_text, joined_text, native_text_bytes, referenced_cache, referenced_files, reply_text, tokens_for_bytes, words};
use crate::error::ApiError;
use crate::models::{resolve, Resolved};
use crate::routes::ApiVersion;
use crate::state::Shared;
use crate::stream::{event_body, Ending, Framing, StreamPlan};
use crate::util::{field, json_response, lower_id, mixed_id, rfc3339};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Deserialize)]
pub(crate) struct AltQuery {
    alt: Option<String>,
}

/// A model call as parsed from the path, with everything a method needs.
struct Call<'a> {
    model: &'a str,
    resolved: Resolved,
    body: Value,
    headers: &'a HeaderMap,
    caller: &'a Caller,
}

/// `POST /V/models/{model}:{method}`.
pub(crate) async fn models_call(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Extension(version): Extension<ApiVersion>,
    Path(target): Path<String>,
    Query(alt): Query<AltQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (id, method) = target.split_once(':').ok_or_else(|| ApiError::no_such_path(&target))?;
    run(&shared, &caller, version, id, method, alt, &headers, &body)
}

/// `POST /V/tunedModels/{model}:{method}`.
pub(crate) async fn tuned_call(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Extension(version): Extension<ApiVersion>,
    Path(target): Path<String>,
    Query(alt): Query<AltQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (id, method) = target.split_once(':').ok_or_else(|| ApiError::no_such_path(&target))?;
    run(&shared, &caller, version, &format!("tunedModels/{id}"), method, alt, &headers, &body)
}

#[allow(clippy::too_many_arguments)]
fn run(
    shared: &Shared,
    caller: &Caller,
    version: ApiVersion,
    model: &str,
    method: &str,
    alt: AltQuery,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    const METHODS: &[&str] =
        &["generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents", "batchGenerateContent", "predict"];
    if !METHODS.contains(&method) {
        return Err(ApiError::no_such_path(&format!("{model}:{method}")));
    }
    caller.authenticate()?;
    let full_name = if model.starts_with("tunedModels/") { model.to_string() } else { format!("models/{model}") };
    let resolved = resolve(model).filter(|r| r.supports(method)).ok_or_else(|| ApiError::model_not_found(&full_name, version.as_str(), method))?;
    let body: Value = if body.is_empty() { json!({}) } else { serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e))? };
    check_references(shared, &caller.project(), &body)?;
    caller.admit(model)?;

    let call = Call { model, resolved, body, headers, caller };
    match method {
        "generateContent" => generate(&call),
        "streamGenerateContent" => {
            let framing = if alt.alt.as_deref() == Some("sse") { Framing::GoogleSse } else { Framing::JsonArray };
            stream(&call, framing)
        }
        "countTokens" => Ok(count_tokens(&call)),
        "embedContent" => Ok(embed(&call)),
        "batchEmbedContents" => batch_embed(&call),
        "batchGenerateContent" => Ok(batch_generate(&call)),
        _ => Ok(predict(&call)),
    }
}

/// Refuses a request that names a file or cachedContent of another project, with the 403
/// Google gives (it cannot tell "not yours" from "does not exist" either).
pub(crate) fn check_references(shared: &Shared, project: &str, body: &Value) -> Result<(), ApiError> {
    let mut files = Vec::new();
    referenced_files(body, &mut files);
    let cache = referenced_cache(body);
    if files.is_empty() && cache.is_none() {
        return Ok(());
    }
    let store = shared.store();
    for id in files {
        if store.files.get(&id).is_none_or(|f| f.project != project) {
            return Err(ApiError::file_denied(&id));
        }
    }
    if let Some(id) = cache {
        if store.caches.get(&id).is_none_or(|c| c.project != project) {
            return Err(ApiError::cache_denied());
        }
    }
    Ok(())
}

fn usage(prompt: u32, candidates: u32) -> Value {
    json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates,
        "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": prompt }],
    })
}

fn require_contents(body: &Value) -> Result<(), ApiError> {
    let has_contents = body.get("contents").and_then(Value::as_array).is_some_and(|c| !c.is_empty());
    if has_contents || referenced_cache(body).is_some() {
        Ok(())
    } else {
        Err(ApiError::bad_request("* GenerateContentRequest.contents: contents is not specified\n"))
    }
}

fn generate(call: &Call) -> Result<Response, ApiError> {
    require_contents(&call.body)?;
    let prompt = tokens_for_bytes(native_text_bytes(&call.body));
    let text = reply_text(call.model, prompt);
    let out = words(&text);
    Ok(json_response(&json!({
        "candidates": [{
            "content": { "parts": [{ "text": text }], "role": "model" },
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": usage(prompt, out),
        "modelVersion": call.model,
        "responseId": mixed_id(23),
    })))
}

fn stream(call: &Call, framing: Framing) -> Result<Response, ApiError> {
    require_contents(&call.body)?;
    let plan = StreamPlan::from_headers(call.headers);
    let prompt = tokens_for_bytes(native_text_bytes(&call.body));
    let model = call.model.to_string();
    let response_id = mixed_id(23);
    let total = plan.chunks;
    let pad = plan.pad_bytes;
    let mut emitted = 0u32;
    let body = event_body(&plan, framing, Ending::for_mode(&call.caller.behaviour.mode), move |i| {
        let text = chunk_text(&model, i, total, pad);
        emitted += words(&text);
        let mut candidate = json!({ "content": { "parts": [{ "text": text }], "role": "model" }, "index": 0 });
        if i + 1 == total {
            candidate["finishReason"] = json!("STOP");
        }
        serde_json::to_vec(&json!({
            "candidates": [candidate],
            "usageMetadata": usage(prompt, emitted),
            "modelVersion": model,
            "responseId": response_id,
        }))
        .unwrap_or_default()
    });
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(framing.content_type()))], body).into_response())
}

fn count_tokens(call: &Call) -> Response {
    let n = tokens_for_bytes(native_text_bytes(&call.body));
    json_response(&json!({
        "totalTokens": n,
        "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": n }],
    }))
}

fn embedding_of(request: &Value, default_dims: usize) -> Value {
    let dims = field(request, "outputDimensionality")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .filter(|d| (1..=default_dims).contains(d))
        .unwrap_or(default_dims);
    let mut text = String::new();
    joined_text(request.get("content").unwrap_or(&Value::Null), &mut text);
    json!({ "values": crate::content::embedding(&text, dims) })
}

fn embed(call: &Call) -> Response {
    json_response(&json!({ "embedding": embedding_of(&call.body, call.resolved.embedding_dims()) }))
}

fn batch_embed(call: &Call) -> Result<Response, ApiError> {
    let requests = call
        .body
        .get("requests")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("* BatchEmbedContentsRequest.requests: requests is not specified\n"))?;
    let dims = call.resolved.embedding_dims();
    let embeddings: Vec<Value> = requests.iter().map(|r| embedding_of(r, dims)).collect();
    Ok(json_response(&json!({ "embeddings": embeddings })))
}

fn batch_generate(call: &Call) -> Response {
    let batch = call.body.get("batch").unwrap_or(&call.body);
    let count = field(batch, "inputConfig").and_then(|c| c.get("requests")).and_then(|r| r.get("requests")).and_then(Value::as_array).map_or(0, Vec::len);
    let name = format!("batches/{}", lower_id(24));
    let now = rfc3339(SystemTime::now());
    let mut metadata = json!({
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "name": name,
        "model": format!("models/{}", call.model),
        "createTime": now,
        "updateTime": now,
        "batchStats": { "requestCount": count.to_string(), "pendingRequestCount": count.to_string() },
        "state": "BATCH_STATE_PENDING",
    });
    if let Some(display) = field(batch, "displayName") {
        metadata["displayName"] = display.clone();
    }
    json_response(&json!({ "name": name, "metadata": metadata }))
}

/// A valid 1x1 transparent PNG, the smallest believable "generated image".
const TINY_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn predict(call: &Call) -> Response {
    let n = call.body.get("parameters").and_then(|p| field(p, "sampleCount")).and_then(Value::as_u64).unwrap_or(1).clamp(1, 8);
    let predictions: Vec<Value> = (0..n).map(|_| json!({ "bytesBase64Encoded": TINY_PNG, "mimeType": "image/png" })).collect();
    json_response(&json!({ "predictions": predictions }))
}
