//! `/healthz` (the process is alive), `/readyz` (a usable key exists and the state store
//! writes) and `/metrics` (Prometheus text).

use crate::admin::error::ErrorBody;
use crate::admin::AdminState;
use crate::pool::health::Availability;
use crate::telemetry::metrics::{KeySample, ScrapeState};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Instant;
use utoipa::ToSchema;

/// Liveness: answers while the process runs. No authentication.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub usable_keys: usize,
    pub store_writable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
}

/// Readiness: at least one usable key and a writable state store.
#[utoipa::path(get, path = "/readyz", tag = "health", security(("bearer" = [])),
    responses((status = 200, body = Readiness), (status = 401, body = ErrorBody), (status = 503, body = Readiness)))]
pub async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let rt = s.shared.runtime.load_full();
    let now = Instant::now();
    let usable_keys = rt.pools.iter().flat_map(|p| p.keys.iter()).filter(|k| k.health.availability("", now) == Availability::Usable).count();
    let health = s.db.health();
    let ready = usable_keys > 0 && health.writable;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    // The last commit error explains a failing store; once commits succeed again it is
    // history, and showing it beside `ready: true` read as a current fault.
    let store_error = if health.writable { None } else { health.last_error };
    (code, Json(Readiness { ready, usable_keys, store_writable: health.writable, store_error }))
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
