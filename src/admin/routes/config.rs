//! `/api/v1/config`: the running configuration (secrets shown as placeholders), validation with
//! line and column, replacement with hot reload, versions, diffs and rollback.

use super::blocking;
use crate::admin::auth::Actor;
use crate::admin::error::{ApiError, ApiResult, ErrorBody, ProblemView};
use crate::admin::extract::{Body, Params, PathParam};
use crate::admin::AdminState;
use crate::config::redact;
use crate::control::{Applied, ApplyError};
use crate::store::comment::{ServerComment, VersionComment};
use crate::store::ConfigVersionMeta;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/config", get(get_config).put(put_config))
        .route("/api/v1/config/validate", post(validate))
        .route("/api/v1/config/reload", post(reload))
        .route("/api/v1/config/versions", get(versions))
        .route("/api/v1/config/versions/{id}", get(version))
        .route("/api/v1/config/versions/{id}/rollback", post(rollback))
        .route("/api/v1/config/diff", get(diff))
}

#[derive(Serialize, ToSchema)]
pub struct ConfigView {
    /// Where the configuration comes from (a file path, or the environment).
    pub source: String,
    /// Whether it can be changed over the API (only file-based configurations can).
    pub writable: bool,
    /// The TOML text, with keys, tokens, the JWT secret and the admin password hash replaced by
    /// `redacted:...` placeholders. Sending the placeholders back keeps the secrets they stand for.
    pub text: String,
    /// The latest recorded version.
    pub version: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct ConfigText {
    pub text: String,
    /// Shown in the version history.
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Validation {
    pub valid: bool,
    pub problems: Vec<ProblemView>,
}

#[derive(Serialize, ToSchema)]
pub struct AppliedView {
    pub version: Option<i64>,
    pub changed: bool,
    /// Settings that only take effect after a restart.
    pub restart_needed: Vec<String>,
    /// Whether other TLS certificates are served from now on (certificate files are re-read
    /// even when the config text is unchanged).
    pub certificates_changed: bool,
}

impl From<Applied> for AppliedView {
    fn from(a: Applied) -> Self {
        AppliedView { version: a.version, changed: a.changed, restart_needed: a.restart_needed, certificates_changed: a.certificates_changed }
    }
}

#[derive(Serialize, ToSchema)]
pub struct VersionView {
    #[serde(flatten)]
    pub meta: ConfigVersionMeta,
    /// The version's text, secrets redacted.
    pub text: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// Version to compare from.
    pub from: i64,
    /// Version to compare to (the running configuration when absent).
    pub to: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct DiffView {
    pub from: i64,
    pub to: Option<i64>,
    /// Unified diff of the redacted texts.
    pub diff: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many (default 50).
    pub limit: Option<usize>,
}

/// The running configuration.
#[utoipa::path(get, path = "/api/v1/config", tag = "config", security(("bearer" = [])),
    responses((status = 200, body = ConfigView), (status = 401, body = ErrorBody)))]
pub async fn get_config(State(s): State<AdminState>) -> ApiResult<Json<ConfigView>> {
    let db = s.db.clone();
    let latest = blocking(move || db.config_versions(1)).await?.into_iter().next().map(|m| m.id);
    Ok(Json(ConfigView {
        source: s.manager.source.to_string(),
        writable: matches!(s.manager.source, crate::config::ConfigSource::File(_)),
        text: s.manager.redacted_text().await,
        version: latest,
    }))
}

/// Validates a candidate configuration without applying it.
#[utoipa::path(post, path = "/api/v1/config/validate", tag = "config", security(("bearer" = [])), request_body = ConfigText,
    responses((status = 200, body = Validation), (status = 401, body = ErrorBody)))]
pub async fn validate(State(s): State<AdminState>, Body(body): Body<ConfigText>) -> ApiResult<Json<Validation>> {
    match s.manager.check(&body.text).await {
        Ok(_) => Ok(Json(Validation { valid: true, problems: Vec::new() })),
        Err(ApplyError::Invalid(p)) => Ok(Json(Validation { valid: false, problems: p.iter().map(ProblemView::from).collect() })),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the configuration: validated completely, written atomically, applied at once
/// (in-flight requests finish on the old one).
#[utoipa::path(put, path = "/api/v1/config", tag = "config", security(("bearer" = [])), request_body = ConfigText,
    responses((status = 200, body = AppliedView), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_config(State(s): State<AdminState>, Extension(actor): Extension<Actor>, Body(body): Body<ConfigText>) -> ApiResult<Json<AppliedView>> {
    let comment = body.comment.map_or(VersionComment::Server(ServerComment::Replaced), VersionComment::User);
    Ok(Json(s.manager.replace(&body.text, &actor.label(), comment).await?.into()))
}

/// Re-reads the configuration file, as SIGHUP does.
#[utoipa::path(post, path = "/api/v1/config/reload", tag = "config", security(("bearer" = [])),
    responses((status = 200, body = AppliedView), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reload(State(s): State<AdminState>, Extension(actor): Extension<Actor>) -> ApiResult<Json<AppliedView>> {
    Ok(Json(s.manager.reload_from_disk(&actor.label()).await?.into()))
}

/// Recorded versions, newest first.
#[utoipa::path(get, path = "/api/v1/config/versions", tag = "config", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Vec<ConfigVersionMeta>), (status = 401, body = ErrorBody)))]
pub async fn versions(State(s): State<AdminState>, Params(q): Params<ListQuery>) -> ApiResult<Json<Vec<ConfigVersionMeta>>> {
    let db = s.db.clone();
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    Ok(Json(blocking(move || db.config_versions(limit)).await?))
}

async fn load_version(s: &AdminState, id: i64) -> ApiResult<crate::store::ConfigVersion> {
    let db = s.db.clone();
    blocking(move || db.config_version(id)).await?.ok_or_else(|| ApiError::not_found(format!("no config version {id}")))
}

/// One version's text (secrets redacted).
#[utoipa::path(get, path = "/api/v1/config/versions/{id}", tag = "config", security(("bearer" = [])), params(("id" = i64, Path, description = "version id")),
    responses((status = 200, body = VersionView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn version(State(s): State<AdminState>, PathParam(id): PathParam<i64>) -> ApiResult<Json<VersionView>> {
    let v = load_version(&s, id).await?;
    Ok(Json(VersionView { text: redact::redact(&v.text), meta: v.meta }))
}

/// Applies an earlier version again.
#[utoipa::path(post, path = "/api/v1/config/versions/{id}/rollback", tag = "config", security(("bearer" = [])), params(("id" = i64, Path, description = "version id")),
    responses((status = 200, body = AppliedView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rollback(State(s): State<AdminState>, Extension(actor): Extension<Actor>, PathParam(id): PathParam<i64>) -> ApiResult<Json<AppliedView>> {
    let v = load_version(&s, id).await?;
    Ok(Json(s.manager.replace(&v.text, &actor.label(), ServerComment::Rollback { version: id }.into()).await?.into()))
}

/// Unified diff between two versions (or a version and the running configuration).
#[utoipa::path(get, path = "/api/v1/config/diff", tag = "config", security(("bearer" = [])), params(DiffQuery),
    responses((status = 200, body = DiffView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn diff(State(s): State<AdminState>, Params(q): Params<DiffQuery>) -> ApiResult<Json<DiffView>> {
    let from = redact::redact(&load_version(&s, q.from).await?.text);
    let (to, to_label) = match q.to {
        Some(id) => (redact::redact(&load_version(&s, id).await?.text), format!("version {id}")),
        None => (s.manager.redacted_text().await, "running".to_owned()),
    };
    let diff = similar::TextDiff::from_lines(&from, &to).unified_diff().context_radius(3).header(&format!("version {}", q.from), &to_label).to_string();
    Ok(Json(DiffView { from: q.from, to: q.to, diff }))
}
