//! Files: Google's resumable upload protocol (`POST /upload/V/files`) and `GET`/`DELETE /V/files`.
//!
//! Start: `X-Goog-Upload-Protocol: resumable` + `X-Goog-Upload-Command: start`, with a key;
//! the answer's `X-Goog-Upload-URL` carries an `upload_id` that alone authorises the chunks
//! (`upload`, `upload, finalize`, `finalize`, `query`, `cancel`), as at Google.
//! The finished file belongs to the project of the key that started the upload.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::models::PageQuery;
use crate::routes::ApiVersion;
use crate::state::{owned_by, Owned, Shared};
use crate::util::{base64, field, header_str, hex, json_response, lower_id, mixed_id, rfc3339};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Google keeps uploaded files for 48 hours.
const FILE_LIFETIME: Duration = Duration::from_secs(48 * 3600);
/// What Google announces in `X-Goog-Upload-Chunk-Granularity`.
const CHUNK_GRANULARITY: &str = "8388608";

/// An upload session in progress (or finished: then `file_id` is set).
pub(crate) struct Upload {
    project: String,
    display_name: Option<String>,
    mime_type: String,
    declared_size: Option<u64>,
    received: u64,
    hasher: Sha256,
    file_id: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    upload_id: Option<String>,
}

const STATUS: HeaderName = HeaderName::from_static("x-goog-upload-status");
const RECEIVED: HeaderName = HeaderName::from_static("x-goog-upload-size-received");

fn upload_headers(status: &'static str, received: Option<u64>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(STATUS, HeaderValue::from_static(status));
    if let Some(n) = received {
        h.insert(RECEIVED, HeaderValue::from(n));
    }
    h
}

/// `POST /upload/V/files`: starts a session, or (with `?upload_id=`) handles a chunk command.
pub(crate) async fn upload(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Extension(version): Extension<ApiVersion>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    match q.upload_id {
        Some(id) => chunk(&shared, &id, &headers, &body),
        None => start(&shared, &caller, version, &headers, &body),
    }
}

fn commands(headers: &HeaderMap) -> Vec<String> {
    header_str(headers, "x-goog-upload-command").unwrap_or("").split(',').map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()).collect()
}

fn start(shared: &Shared, caller: &Caller, version: ApiVersion, headers: &HeaderMap, body: &Bytes) -> Result<Response, ApiError> {
    caller.authenticate()?;
    let protocol = header_str(headers, "x-goog-upload-protocol").unwrap_or("");
    if !protocol.eq_ignore_ascii_case("resumable") {
        return Err(ApiError::bad_request(format!("Unsupported upload protocol {protocol:?}: the mock implements only X-Goog-Upload-Protocol: resumable.")));
    }
    if !commands(headers).iter().any(|c| c == "start") {
        return Err(ApiError::bad_request("X-Goog-Upload-Command must be 'start' to begin a resumable upload."));
    }
    let meta: Value = if body.is_empty() { json!({}) } else { serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e))? };
    let file = meta.get("file").unwrap_or(&Value::Null);
    let mime_type = header_str(headers, "x-goog-upload-header-content-type")
        .filter(|m| !m.is_empty())
        .or_else(|| field(file, "mimeType").and_then(Value::as_str))
        .unwrap_or("application/octet-stream")
        .to_string();
    let upload = Upload {
        project: caller.project(),
        display_name: field(file, "displayName").and_then(Value::as_str).map(str::to_string),
        mime_type,
        declared_size: header_str(headers, "x-goog-upload-header-content-length").and_then(|v| v.parse().ok()),
        received: 0,
        hasher: Sha256::new(),
        file_id: None,
    };
    let id = mixed_id(48);
    shared.store().uploads.insert(id.clone(), Arc::new(Mutex::new(upload)));

    let url = format!("{}/upload/{}/files?upload_id={id}&upload_protocol=resumable", shared.upload_origin, version.as_str());
    let mut h = upload_headers("active", None);
    let url = HeaderValue::from_str(&url).map_err(|_| ApiError::internal())?;
    h.insert(HeaderName::from_static("x-goog-upload-url"), url.clone());
    h.insert(HeaderName::from_static("x-goog-upload-control-url"), url);
    h.insert(HeaderName::from_static("x-goog-upload-chunk-granularity"), HeaderValue::from_static(CHUNK_GRANULARITY));
    Ok((StatusCode::OK, h).into_response())
}

fn chunk(shared: &Shared, upload_id: &str, headers: &HeaderMap, body: &Bytes) -> Result<Response, ApiError> {
    // Take the session's own lock, not the store's, while hashing a possibly large chunk.
    let session = shared.store().uploads.get(upload_id).cloned();
    let session = session.ok_or_else(|| ApiError::not_found("The upload session was not found or has expired."))?;
    let mut up = session.lock().unwrap_or_else(PoisonError::into_inner);
    let cmds = commands(headers);
    let has = |c: &str| cmds.iter().any(|x| x == c);
    let status = if up.file_id.is_some() { "final" } else { "active" };
    let fail = |msg: String, status: &'static str, received: u64| {
        ApiError::bad_request(msg).with_header("x-goog-upload-status", status).with_header("x-goog-upload-size-received", &received.to_string())
    };

    if has("query") {
        return Ok(match &up.file_id {
            Some(id) => (upload_headers("final", Some(up.received)), json_response(&json!({ "file": file_json(shared, id)? }))).into_response(),
            None => (StatusCode::OK, upload_headers("active", Some(up.received))).into_response(),
        });
    }
    if has("cancel") {
        drop(up);
        shared.store().uploads.remove(upload_id);
        return Ok((StatusCode::OK, upload_headers("cancelled", None)).into_response());
    }
    if !has("upload") && !has("finalize") {
        return Err(fail(format!("Unsupported X-Goog-Upload-Command {cmds:?}."), status, up.received));
    }
    if let Some(id) = up.file_id.clone() {
        // A finished upload can be asked to finalize again (a retried last request) but takes no more bytes.
        if body.is_empty() && has("finalize") {
            return Ok((upload_headers("final", Some(up.received)), json_response(&json!({ "file": file_json(shared, &id)? }))).into_response());
        }
        return Err(fail("The upload has already been finalized.".into(), "final", up.received));
    }
    if has("upload") {
        let offset = header_str(headers, "x-goog-upload-offset").and_then(|v| v.parse::<u64>().ok());
        if offset != Some(up.received) {
            return Err(fail(format!("Invalid X-Goog-Upload-Offset {offset:?}: {} bytes were received so far.", up.received), "active", up.received));
        }
        up.hasher.update(body);
        up.received += body.len() as u64;
    } else if !body.is_empty() {
        return Err(fail("A finalize-only request must not carry data.".into(), "active", up.received));
    }
    if !has("finalize") {
        return Ok((StatusCode::OK, upload_headers("active", Some(up.received))).into_response());
    }
    if let Some(declared) = up.declared_size.filter(|d| *d != up.received) {
        return Err(fail(
            format!("Upload size mismatch: X-Goog-Upload-Header-Content-Length was {declared}, received {} bytes.", up.received),
            "active",
            up.received,
        ));
    }

    let id = lower_id(12);
    let now = SystemTime::now();
    let digest = hex(&up.hasher.clone().finalize());
    let mut file = json!({
        "name": format!("files/{id}"),
        "mimeType": up.mime_type,
        "sizeBytes": up.received.to_string(),
        "createTime": rfc3339(now),
        "updateTime": rfc3339(now),
        "expirationTime": rfc3339(now + FILE_LIFETIME),
        // Google's quirk: the base64 of the hex digest, not of the raw digest.
        "sha256Hash": base64(digest.as_bytes()),
        "uri": format!("{}/v1beta/files/{id}", shared.upload_origin),
        "state": "ACTIVE",
        "source": "UPLOADED",
    });
    if let Some(name) = &up.display_name {
        file["displayName"] = json!(name);
    }
    up.file_id = Some(id.clone());
    let received = up.received;
    let project = up.project.clone();
    drop(up);
    {
        let mut store = shared.store();
        store.created += 1;
        let created = store.created;
        store.files.insert(id, Owned { project, created, json: file.clone() });
    }
    Ok((upload_headers("final", Some(received)), json_response(&json!({ "file": file }))).into_response())
}

fn file_json(shared: &Shared, id: &str) -> Result<Value, ApiError> {
    shared.store().files.get(id).map(|f| f.json.clone()).ok_or_else(|| ApiError::file_denied(id))
}

/// `GET /V/files`: the caller's project's files, newest first.
pub(crate) async fn list(State(shared): State<Arc<Shared>>, Extension(caller): Extension<Caller>, Query(page): Query<PageQuery>) -> Result<Response, ApiError> {
    caller.authenticate()?;
    let project = caller.project();
    let mine = owned_by(&shared.store().files, &project);
    let out = page.page(mine, "files", 10, 100)?;
    Ok(json_response(&out))
}

/// `GET /V/files/{id}`: 403 unless the file exists and belongs to the caller's project.
pub(crate) async fn get(State(shared): State<Arc<Shared>>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.authenticate()?;
    let project = caller.project();
    let store = shared.store();
    match store.files.get(&id) {
        Some(f) if f.project == project => Ok(json_response(&f.json)),
        _ => Err(ApiError::file_denied(&id)),
    }
}

/// `DELETE /V/files/{id}`: same ownership rule as `get`; answers `{}`.
pub(crate) async fn delete(State(shared): State<Arc<Shared>>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.authenticate()?;
    let project = caller.project();
    let mut store = shared.store();
    match store.files.get(&id) {
        Some(f) if f.project == project => {
            store.files.remove(&id);
            Ok(json_response(&json!({})))
        }
        _ => Err(ApiError::file_denied(&id)),
    }
}
