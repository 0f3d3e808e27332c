//! `/api/v1/access`: the network rules and abuse limits in force, and what they refused.

use crate::admin::error::ErrorBody;
use crate::admin::AdminState;
use crate::config::CorsOrigins;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub fn routes() -> Router<AdminState> {
    Router::new().route("/api/v1/access", get(access))
}

#[derive(Serialize, ToSchema)]
pub struct AccessView {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub trusted_proxies: Vec<String>,
    pub per_ip_rpm: Option<u32>,
    pub global_rpm: Option<u32>,
    pub max_connections: Option<usize>,
    pub max_streams: Option<usize>,
    /// Browser origins allowed by CORS (`*` for any); empty when CORS is off.
    pub cors_origins: Vec<String>,
    /// Whether JWT clients are accepted.
    pub jwt: bool,
    pub open_connections: usize,
    pub open_streams: usize,
    /// Refusals since start, by reason (ip_denied, ip_rate, global_rate, client_rpm, client_tpm,
    /// client_tpd, client_concurrency, model_forbidden, pool_forbidden, max_connections,
    /// max_streams, missing_token, invalid_token, invalid_jwt).
    pub refusals: BTreeMap<String, u64>,
}

/// Network rules, abuse limits and refusal counts.
#[utoipa::path(get, path = "/api/v1/access", tag = "access", security(("bearer" = [])),
    responses((status = 200, body = AccessView), (status = 401, body = ErrorBody)))]
pub async fn access(State(s): State<AdminState>) -> Json<AccessView> {
    let rt = s.shared.runtime.load_full();
    let a = &rt.settings.access;
    let show = |v: &[ipnet::IpNet]| v.iter().map(|n| n.to_string()).collect();
    Json(AccessView {
        allow: show(&a.allow),
        deny: show(&a.deny),
        trusted_proxies: show(&a.trusted_proxies),
        per_ip_rpm: a.per_ip_rpm,
        global_rpm: a.global_rpm,
        max_connections: a.max_connections,
        max_streams: a.max_streams,
        cors_origins: match &a.cors {
            CorsOrigins::None => Vec::new(),
            CorsOrigins::Any => vec!["*".to_owned()],
            CorsOrigins::List(l) => l.clone(),
        },
        jwt: rt.settings.jwt.is_some(),
        open_connections: s.shared.connections.current(),
        open_streams: s.shared.streams.current(),
        refusals: s.shared.refusals.snapshot().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    })
}
