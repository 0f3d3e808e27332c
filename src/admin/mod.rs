//! The admin server: an Axum app on its own listener inside the proxy process, serving the
//! REST API under `/api/v1` (described by `/api/v1/openapi.json`), `/metrics`, `/healthz`
//! and `/readyz`. Every route but `/healthz`, `/readyz`, the login and its list of methods needs
//! the admin token or a session; `/readyz` answers without one (for load balancers and
//! orchestrators) with its status and `{"ready": bool}` only, and refuses an invalid one.

pub mod auth;
pub mod error;
pub(crate) mod extract;
mod openapi;
mod routes;
pub mod ui;

use crate::control::ConfigManager;
use crate::gateway::Shared;
use crate::store::{Store, StoreWriter};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;
use async_trait::async_trait;
use auth::AdminAuth;
use axum::routing::{get, post};
use axum::Router;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything the admin handlers need.
#[derive(Clone)]
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub manager: Arc<ConfigManager>,
    pub db: Arc<Store>,
    pub db_writer: StoreWriter,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<AdminAuth>,
    pub access_log: AccessLog,
}

/// The admin API's routes.
pub fn router(state: AdminState) -> Router {
    let protected = Router::new()
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/auth/session", get(auth::session))
        .merge(routes::config::routes())
        .merge(routes::keys::routes())
        .merge(routes::clients::routes())
        .merge(routes::observe::routes())
        .merge(routes::access::routes())
        .merge(routes::certificates::routes())
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(routes::health::metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require));
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        // Checks its credential itself: details for the admin, the bare answer for anyone.
        .route("/readyz", get(routes::health::readyz))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/methods", get(auth::methods))
        .merge(protected)
        .merge(ui::routes())
        .fallback(|| async { error::ApiError::not_found("no such admin route") })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(handler_panicked))
        .with_state(state)
}

/// A handler panicked (a bug): the client gets a Gemini-style 500, the log gets the message.
fn handler_panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("(no message)");
    tracing::error!(panic = message, "an admin request handler panicked");
    axum::response::IntoResponse::into_response(error::ApiError::internal("internal error (logged)"))
}

/// Runs the admin server until shutdown.
pub struct AdminServer {
    pub state: AdminState,
    pub listen: SocketAddr,
}

#[async_trait]
impl BackgroundService for AdminServer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let listener = match tokio::net::TcpListener::bind(self.listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listen = %self.listen, error = %e, "cannot start the admin server");
                return;
            }
        };
        tracing::info!(listen = %self.listen, "admin API listening");
        let app = router(self.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "the admin server stopped");
        }
    }
}
