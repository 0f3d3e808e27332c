//! `/healthz` (the process is alive), `/readyz` (a usable key exists and the state store
//! writes; details only for the admin) and `/metrics` (Prometheus text).

use crate::admin::auth;
use crate::admin::error::ErrorBody;
use crate::admin::AdminState;
use crate::pool::health::Availability;
use crate::telemetry::metrics::{KeySample, ScrapeState};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;
use utoipa::ToSchema;

/// Liveness: answers while the process runs. No authentication.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// What `/readyz` answers. Without admin authentication only `ready` is there (the status code
/// says the same: 200 or 503); the rest needs the admin token or a session.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// Keys usable now (admin authentication only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usable_keys: Option<usize>,
    /// Whether the state store commits (admin authentication only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_writable: Option<bool>,
    /// Why the state store does not commit; may name files (admin authentication only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
}

/// Readiness: at least one usable key and a writable state store; 200 when ready, else 503.
///
/// Needs no authentication, so that a load balancer or an orchestrator can use it without a
/// secret: it then answers `{"ready": bool}` only. With the admin token or a session it also says
/// why (usable keys, the store's state and error). A credential that is sent but not valid is
/// refused with 401, as on `/metrics`: a probe whose token went stale should fail loudly, not
/// quietly lose the details it reads.
#[utoipa::path(get, path = "/readyz", tag = "health", security((), ("bearer" = [])),
    responses((status = 200, description = "ready", body = Readiness), (status = 401, description = "a credential was sent and is not valid", body = ErrorBody),
        (status = 503, description = "not ready", body = Readiness)))]
pub async fn readyz(State(s): State<AdminState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    let detailed = match auth::identify(&s, &headers, Some(peer.ip())) {
        Some(_) => true,
        None if auth::presents_credentials(&headers) => return auth::unauthenticated().into_response(),
        None => false,
    };
    let rt = s.shared.runtime.load_full();
    let now = Instant::now();
    let usable_keys = rt.pools.iter().flat_map(|p| p.keys.iter()).filter(|k| k.health.availability("", now) == Availability::Usable).count();
    let health = s.db.health();
    let ready = usable_keys > 0 && health.writable;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if !detailed {
        return (code, Json(Readiness { ready, usable_keys: None, store_writable: None, store_error: None })).into_response();
    }
    // The last commit error explains a failing store; once commits succeed again it is
    // history, and showing it beside `ready: true` read as a current fault.
    let store_error = if health.writable { None } else { health.last_error };
    (code, Json(Readiness { ready, usable_keys: Some(usable_keys), store_writable: Some(health.writable), store_error })).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", body = String), (status = 401, body = ErrorBody)))]
pub async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let rt = s.shared.runtime.load_full();
    let now = Instant::now();
    let mut keys = Vec::new();
    for p in &rt.pools {
        for k in &p.keys {
            let h = &k.health;
            let states = if h.is_disabled() {
                vec![("*".to_owned(), "disabled")]
            } else {
                let restricted = h.model_views(now).into_iter().filter(|m| m.state != "healthy");
                std::iter::once(("*".to_owned(), "healthy"))
                    .chain(restricted.map(|m| {
                        let state = if m.state == "cooling" { "cooling" } else { "broken" };
                        (m.model, state)
                    }))
                    .collect()
            };
            keys.push(KeySample {
                pool: p.name.to_string(),
                key: k.name.to_string(),
                states,
                successes: h.counters.successes.load(Ordering::Relaxed),
                failures: h.counters.failures.load(Ordering::Relaxed),
            });
        }
    }
    let state = ScrapeState {
        inflight: s.shared.inflight.load(Ordering::Relaxed) as i64,
        keys,
        dropped: vec![("access_log", s.access_log.dropped()), ("state_store", s.db_writer.dropped())],
        unlogged_requests: s.db.health().unlogged_requests,
        refusals: s.shared.refusals.snapshot(),
        connections: s.shared.connections.current() as i64,
        streams: s.shared.streams.current() as i64,
        certificates: s
            .shared
            .tls
            .as_ref()
            .map(|t| {
                let now = std::time::SystemTime::now();
                t.store
                    .infos()
                    .into_iter()
                    .map(|(name, info)| {
                        let left = match info.not_after.duration_since(now) {
                            Ok(d) => d.as_secs_f64(),
                            Err(e) => -e.duration().as_secs_f64(),
                        };
                        (name, left)
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    let body = s.metrics.render(&state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}
