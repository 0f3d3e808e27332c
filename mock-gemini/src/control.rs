//! The `/__mock/` control API: the HTTP twin of `MockGemini::{set_key, requests, clear_requests, reset}` for out-of-process tests.
//!
//! - `PUT /__mock/keys/{key}` with a [`KeyBehaviour`] JSON body → 204
//! - `GET /__mock/keys/{key}` → the key's current behaviour; `DELETE` → back to the default (204)
//! - `GET /__mock/requests` → JSON array of [`crate::RecordedRequest`]; `DELETE` → clears it (204)
//! - `GET /__mock/abandoned` → JSON array of the `seq`s of requests whose connection closed
//!   before their answer was complete (cleared with the requests)
//! - `POST /__mock/reset` → keys, files, caches, uploads and the log forgotten (204)
//!
//! These calls are not recorded and need no key.

use crate::config::KeyBehaviour;
use crate::state::Shared;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/keys/{key}", put(set_key).get(get_key).delete(forget_key))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/abandoned", get(|State(shared): State<Arc<Shared>>| async move { Json(shared.abandoned()) }))
        .route("/reset", post(reset))
        .route("/health", get(|| async { "ok" }))
}

async fn set_key(State(shared): State<Arc<Shared>>, Path(key): Path<String>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<KeyBehaviour>(&body) {
        Ok(b) => {
            shared.set_key(&key, b);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid KeyBehaviour: {e}")).into_response(),
    }
}

async fn get_key(State(shared): State<Arc<Shared>>, Path(key): Path<String>) -> Json<KeyBehaviour> {
    Json(shared.behaviour(&key))
}

async fn forget_key(State(shared): State<Arc<Shared>>, Path(key): Path<String>) -> StatusCode {
    shared.forget_key(&key);
    StatusCode::NO_CONTENT
}

async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.requests()).into_response()
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_requests();
    StatusCode::NO_CONTENT
}

async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}
