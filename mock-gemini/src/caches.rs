//! cachedContents: create, list, get, patch and delete, each owned by the creating key's project.

use crate::auth::Caller;
use crate::content::{native_text_bytes, tokens_for_bytes};
use crate::error::ApiError;
use crate::generate::check_references;
use crate::models::{resolve, PageQuery};
use crate::routes::ApiVersion;
use crate::state::{owned_by, Owned, Shared};
use crate::util::{field, json_response, lower_id, parse_duration, rfc3339};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Google's default time-to-live for a cache created without `ttl` or `expireTime`.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e))
}

/// The expiry a create or patch body asks for: `expireTime` verbatim, else now + `ttl`.
fn expiry(body: &Value, now: SystemTime) -> Result<Option<String>, ApiError> {
    if let Some(t) = field(body, "expireTime").and_then(Value::as_str) {
        return Ok(Some(t.to_string()));
    }
    match body.get("ttl").and_then(Value::as_str) {
        Some(ttl) => {
            let d = parse_duration(ttl).ok_or_else(|| ApiError::bad_request(format!("Invalid value for ttl: {ttl:?}")))?;
            Ok(Some(rfc3339(now + d)))
        }
        None => Ok(None),
    }
}

/// `POST /V/cachedContents`.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Extension(version): Extension<ApiVersion>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.authenticate()?;
    let body = parse_body(&body)?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("* CreateCachedContentRequest.cached_content.model: model is not specified\n"))?;
    let id = model.strip_prefix("models/").unwrap_or(model);
    if !resolve(id).is_some_and(|m| m.supports("createCachedContent")) {
        return Err(ApiError::model_not_found(model, version.as_str(), "createCachedContent"));
    }
    let project = caller.project();
    check_references(&shared, &project, &body)?;

    let now = SystemTime::now();
    let name_id = lower_id(16);
    let mut cache = json!({
        "name": format!("cachedContents/{name_id}"),
        "model": format!("models/{id}"),
        "createTime": rfc3339(now),
        "updateTime": rfc3339(now),
        "expireTime": expiry(&body, now)?.unwrap_or_else(|| rfc3339(now + DEFAULT_TTL)),
        "usageMetadata": { "totalTokenCount": tokens_for_bytes(native_text_bytes(&body)) },
    });
    if let Some(display) = field(&body, "displayName") {
        cache["displayName"] = display.clone();
    }
    let mut store = shared.store();
    store.created += 1;
    let created = store.created;
    store.caches.insert(name_id, Owned { project, created, json: cache.clone() });
    Ok(json_response(&cache))
}

/// `GET /V/cachedContents`: the caller's project's caches, newest first.
pub(crate) async fn list(State(shared): State<Arc<Shared>>, Extension(caller): Extension<Caller>, Query(page): Query<PageQuery>) -> Result<Response, ApiError> {
    caller.authenticate()?;
    let project = caller.project();
    let mine = owned_by(&shared.store().caches, &project);
    let out = page.page(mine, "cachedContents", 100, 1000)?;
    Ok(json_response(&out))
}

/// `GET /V/cachedContents/{id}`: 403 unless it exists and belongs to the caller's project.
pub(crate) async fn get(State(shared): State<Arc<Shared>>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.authenticate()?;
    let project = caller.project();
    let store = shared.store();
    match store.caches.get(&id) {
        Some(c) if c.project == project => Ok(json_response(&c.json)),
        _ => Err(ApiError::cache_denied()),
    }
}

/// `PATCH /V/cachedContents/{id}`: only the expiry (`ttl` or `expireTime`) can change, as at Google.
pub(crate) async fn patch(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.authenticate()?;
    let body = parse_body(&body)?;
    let now = SystemTime::now();
    let expire = expiry(&body, now)?;
    let project = caller.project();
    let mut store = shared.store();
    match store.caches.get_mut(&id) {
        Some(c) if c.project == project => {
            if let Some(e) = expire {
                c.json["expireTime"] = json!(e);
            }
            c.json["updateTime"] = json!(rfc3339(now));
            Ok(json_response(&c.json))
        }
        _ => Err(ApiError::cache_denied()),
    }
}

/// `DELETE /V/cachedContents/{id}`: answers `{}`.
pub(crate) async fn delete(State(shared): State<Arc<Shared>>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.authenticate()?;
    let project = caller.project();
    let mut store = shared.store();
    match store.caches.get(&id) {
        Some(c) if c.project == project => {
            store.caches.remove(&id);
            Ok(json_response(&json!({})))
        }
        _ => Err(ApiError::cache_denied()),
    }
}
