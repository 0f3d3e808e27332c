//! The route table: which handler serves which Google path, for `/v1` and `/v1beta` alike.

use crate::auth::Flavor;
use crate::error::ApiError;
use crate::state::Shared;
use crate::{caches, control, files, generate, models, openai, record};
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use std::sync::Arc;

/// The API version a request came in on; both are served the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApiVersion {
    V1,
    V1beta,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1",
            ApiVersion::V1beta => "v1beta",
        }
    }
}

/// Native methods under one version prefix.
fn native(version: ApiVersion) -> Router<Arc<Shared>> {
    Router::new()
        .route("/models", get(models::list))
        .route("/models/{target}", get(models::get).post(generate::models_call))
        .route("/tunedModels/{target}", get(models::get_tuned).post(generate::tuned_call))
        .route("/files", get(files::list))
        .route("/files/{id}", get(files::get).delete(files::delete))
        .route("/cachedContents", get(caches::list).post(caches::create))
        .route("/cachedContents/{id}", get(caches::get).patch(caches::patch).delete(caches::delete))
        .layer(Extension(version))
}

fn upload(version: ApiVersion) -> Router<Arc<Shared>> {
    Router::new().route("/files", post(files::upload)).layer(Extension(version))
}

fn openai() -> Router<Arc<Shared>> {
    Router::new()
        .route("/chat/completions", post(openai::chat))
        .route("/embeddings", post(openai::embeddings))
        .route("/models", get(openai::list_models))
        .route("/models/{*model}", get(openai::get_model))
}

/// The whole application: API routes behind the intake middleware, plus `/__mock/` control.
pub(crate) fn app(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .nest("/v1", native(ApiVersion::V1))
        .nest("/v1beta", native(ApiVersion::V1beta).nest("/openai", openai()))
        .nest("/upload/v1", upload(ApiVersion::V1))
        .nest("/upload/v1beta", upload(ApiVersion::V1beta))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(from_fn_with_state(shared.clone(), record::intake))
        .layer(axum::middleware::from_fn(echo_cors))
        // The intake middleware enforces its own limit before handlers see the body.
        .layer(DefaultBodyLimit::disable());
    Router::new().nest("/__mock", control::routes()).merge(api).with_state(shared)
}

/// Google answers a request that names an `Origin` with that origin allowed: a proxy that
/// answers CORS itself must not pass this on beside its own verdict.
async fn echo_cors(req: Request, next: axum::middleware::Next) -> Response {
    let origin = req.headers().get("origin").cloned();
    let mut res = next.run(req).await;
    if let Some(origin) = origin {
        res.headers_mut().insert("access-control-allow-origin", origin);
        res.headers_mut().append("vary", axum::http::HeaderValue::from_static("Origin"));
    }
    res
}

/// Any path or method Google does not serve: 404 NOT_FOUND in the surface's envelope.
async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    let e = ApiError::no_such_path(path);
    match Flavor::of_path(path) {
        Flavor::OpenAi => e.openai().into_response(),
        Flavor::Native => e.into_response(),
    }
}
