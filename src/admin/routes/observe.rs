//! What happened: usage statistics per minute and in total, the request log, the audit log.

use super::blocking;
use crate::admin::error::{ApiError, ApiResult, ErrorBody};
use crate::admin::extract::{Params, PathParam};
use crate::admin::AdminState;
use crate::store::{AuditQuery, AuditRow, MinutePoint, RequestQuery, RequestRow, StatsQuery, StatusFilter, Totals};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/stats/timeseries", get(timeseries))
        .route("/api/v1/stats/totals", get(totals))
        .route("/api/v1/requests", get(requests))
        .route("/api/v1/requests/{id}", get(request))
        .route("/api/v1/audit", get(audit))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Start, Unix milliseconds (default: an hour ago for time series, the start of today UTC
    /// for totals).
    pub from: Option<i64>,
    /// End, Unix milliseconds, exclusive (default: now).
    pub to: Option<i64>,
    /// `today` (since 00:00 UTC) instead of from/to.
    pub range: Option<String>,
    /// Key name or fingerprint.
    pub key: Option<String>,
    pub client: Option<String>,
    pub model: Option<String>,
}

/// The latest instant a time parameter may name: the end of year 9999, far enough for any
/// real query and small enough that minute arithmetic on it cannot overflow.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// A time parameter: Unix milliseconds from 1970 to 9999.
fn time_param(name: &str, v: Option<i64>) -> ApiResult<Option<i64>> {
    match v {
        Some(t) if !(0..=MAX_TIME_MS).contains(&t) => Err(ApiError::bad_request(format!("`{name}` is Unix milliseconds between 0 and {MAX_TIME_MS}"))),
        _ => Ok(v),
    }
}

fn stats_query(p: StatsParams, default_span_ms: Option<i64>) -> ApiResult<StatsQuery> {
    let (from, to) = (time_param("from", p.from)?, time_param("to", p.to)?);
    let now = now_ms();
    let today = now - now.rem_euclid(86_400_000);
    let (from, to) = match p.range.as_deref() {
        Some("today") => (today, now + 1),
        Some(other) => return Err(ApiError::bad_request(format!("unknown range {other:?}: use `today` or from/to"))),
        None => (from.unwrap_or_else(|| default_span_ms.map_or(today, |span| now - span)), to.unwrap_or(now + 1)),
    };
    if to <= from {
        return Err(ApiError::bad_request("`to` must be after `from`"));
    }
    Ok(StatsQuery { from_ms: from, to_ms: to, key: p.key, client: p.client, model: p.model })
}

/// Per-minute usage: requests, errors by class, tokens, latency percentiles.
#[utoipa::path(get, path = "/api/v1/stats/timeseries", tag = "stats", security(("bearer" = [])), params(StatsParams),
    responses((status = 200, body = Vec<MinutePoint>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn timeseries(State(s): State<AdminState>, Params(p): Params<StatsParams>) -> ApiResult<Json<Vec<MinutePoint>>> {
    let q = stats_query(p, Some(3_600_000))?;
    if q.to_ms - q.from_ms > 31 * 86_400_000 {
        return Err(ApiError::bad_request("a time series spans at most 31 days"));
    }
    let db = s.db.clone();
    Ok(Json(blocking(move || db.timeseries(&q)).await?))
}

/// Totals over a range (today by default), with the top models, clients and keys.
#[utoipa::path(get, path = "/api/v1/stats/totals", tag = "stats", security(("bearer" = [])), params(StatsParams),
    responses((status = 200, body = Totals), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn totals(State(s): State<AdminState>, Params(p): Params<StatsParams>) -> ApiResult<Json<Totals>> {
    let q = stats_query(p, None)?;
    let db = s.db.clone();
    Ok(Json(blocking(move || db.totals(&q)).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestParams {
    /// An exact status (`429`) or a class (`4xx`).
    pub status: Option<String>,
    pub client: Option<String>,
    /// Key name or fingerprint.
    pub key: Option<String>,
    pub model: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to: Option<i64>,
    /// Paging: rows older than this id.
    pub before_id: Option<i64>,
    /// 1 to 1000, default 100.
    pub limit: Option<usize>,
}

fn status_filter(s: &str) -> ApiResult<StatusFilter> {
    let s = s.trim().to_ascii_lowercase();
    if let Some(class) = s.strip_suffix("xx") {
        return match class.parse::<u8>() {
            Ok(c) if (1..=5).contains(&c) => Ok(StatusFilter::Class(c)),
            _ => Err(ApiError::bad_request(format!("invalid status class {s:?}"))),
        };
    }
    match s.parse::<u16>() {
        Ok(code) if (100..=599).contains(&code) => Ok(StatusFilter::Exact(code)),
        _ => Err(ApiError::bad_request(format!("invalid status {s:?}: use a code (429) or a class (5xx)"))),
    }
}

/// The request log, newest first.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", security(("bearer" = [])), params(RequestParams),
    responses((status = 200, body = Vec<RequestRow>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn requests(State(s): State<AdminState>, Params(p): Params<RequestParams>) -> ApiResult<Json<Vec<RequestRow>>> {
    let q = RequestQuery {
        status: p.status.as_deref().map(status_filter).transpose()?,
        client: p.client,
        key: p.key,
        model: p.model,
        from_ms: time_param("from", p.from)?,
        to_ms: time_param("to", p.to)?,
        before_id: p.before_id,
        limit: p.limit.unwrap_or(100).clamp(1, 1000),
    };
    let db = s.db.clone();
    Ok(Json(blocking(move || db.requests(&q)).await?))
}

/// One logged request, with its attempts.
#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests", security(("bearer" = [])), params(("id" = i64, Path, description = "row id")),
    responses((status = 200, body = RequestRow), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn request(State(s): State<AdminState>, PathParam(id): PathParam<i64>) -> ApiResult<Json<RequestRow>> {
    let db = s.db.clone();
    blocking(move || db.request(id)).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no logged request {id}")))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// 1 to 1000, default 100.
    pub limit: Option<usize>,
    /// Paging: entries older than this id.
    pub before_id: Option<i64>,
    /// Only this action (`config.replace`, `keys.add`...), or every action of a kind with `.*`
    /// (`keys.*`, `clients.*`, `config.*`, `certificates.*`).
    pub action: Option<String>,
    /// Only this actor as recorded (`token@127.0.0.1`, `signal:SIGHUP`), or a credential at every
    /// address: `token` or `session`.
    pub actor: Option<String>,
}

/// Who changed what, and when; newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditParams),
    responses((status = 200, body = Vec<AuditRow>), (status = 401, body = ErrorBody)))]
pub async fn audit(State(s): State<AdminState>, Params(p): Params<AuditParams>) -> ApiResult<Json<Vec<AuditRow>>> {
    let q = AuditQuery { limit: p.limit.unwrap_or(100).clamp(1, 1000), before_id: p.before_id, action: p.action, actor: p.actor };
    let db = s.db.clone();
    Ok(Json(blocking(move || db.audit(&q)).await?))
}
