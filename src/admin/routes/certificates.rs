//! `/api/v1/certificates`: the certificates TLS listeners serve (names, issuer, validity, last
//! renewal) and "renew now" for issued ones. Answers 404 when TLS is not configured.

use crate::admin::auth::Actor;
use crate::admin::error::{ApiError, ApiResult, ErrorBody};
use crate::admin::extract::PathParam;
use crate::admin::AdminState;
use crate::tls::store::{Renewal, Source};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

pub fn routes() -> Router<AdminState> {
    Router::new().route("/api/v1/certificates", get(list)).route("/api/v1/certificates/{name}/renew", post(renew))
}

#[derive(Serialize, ToSchema)]
pub struct CertificateView {
    pub name: String,
    /// Names, issuer, serial and validity, as the certificate states them.
    #[serde(flatten)]
    pub info: crate::tls::certs::CertInfo,
    pub source: Source,
    /// Serves clients without SNI or with names nothing else matches.
    pub default: bool,
    pub last_renewal: Option<Renewal>,
}

fn store(s: &AdminState) -> ApiResult<&crate::tls::store::CertStore> {
    s.shared.tls.as_ref().map(|t| &*t.store).ok_or_else(|| ApiError::not_found("TLS is not configured"))
}

/// Served certificates.
#[utoipa::path(get, path = "/api/v1/certificates", tag = "tls", security(("bearer" = [])),
    responses((status = 200, body = Vec<CertificateView>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(State(s): State<AdminState>) -> ApiResult<Json<Vec<CertificateView>>> {
    let entries = store(&s)?.entries();
    Ok(Json(
        entries
            .into_iter()
            .map(|e| CertificateView { name: e.name, info: e.loaded.info, source: e.source, default: e.default, last_renewal: e.last_renewal })
            .collect(),
    ))
}

/// Starts a renewal of an issued (ACME) certificate now; the list shows its outcome.
#[utoipa::path(post, path = "/api/v1/certificates/{name}/renew", tag = "tls", security(("bearer" = [])), params(("name" = String, Path, description = "certificate name")),
    responses((status = 202), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn renew(State(s): State<AdminState>, Extension(actor): Extension<Actor>, PathParam(name): PathParam<String>) -> ApiResult<StatusCode> {
    let st = store(&s)?;
    if st.entry(&name).is_none() {
        return Err(ApiError::not_found(format!("no certificate named {name:?}")));
    }
    if !st.request_renewal(&name) {
        return Err(ApiError::conflict(format!("certificate {name:?} is not issued by ACME here; replace its files or restart to regenerate it")));
    }
    super::audit(&s, &actor, "certificates.renew", &name, serde_json::json!({})).await;
    Ok(StatusCode::ACCEPTED)
}
