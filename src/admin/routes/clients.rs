//! `/api/v1/clients`: who may use the proxy. A created client's token is generated here, shown
//! once, and only its SHA-256 goes into the configuration.

use crate::admin::extract::{Body, PathParam};
use crate::admin::auth::{random_token, Actor};
use crate::admin::error::{ApiError, ApiResult, ErrorBody};
use crate::admin::AdminState;
use crate::config::edit::ClientChanges;
use crate::secret::sha256;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes() -> Router<AdminState> {
    Router::new().route("/api/v1/clients", get(list).post(create)).route("/api/v1/clients/{name}", axum::routing::delete(revoke).patch(update))
}

#[derive(Serialize, ToSchema)]
pub struct ClientView {
    pub name: String,
    pub pool: String,
}

/// Configured clients.
#[utoipa::path(get, path = "/api/v1/clients", tag = "clients", security(("bearer" = [])),
    responses((status = 200, body = Vec<ClientView>), (status = 401, body = ErrorBody)))]
pub async fn list(State(s): State<AdminState>) -> Json<Vec<ClientView>> {
    let rt = s.shared.runtime.load_full();
    let settings = &rt.settings;
    Json(settings.clients.iter().map(|c| ClientView { name: c.name.clone(), pool: settings.pools.get(c.pool).map(|p| p.name.clone()).unwrap_or_default() }).collect())
}

#[derive(Deserialize, ToSchema)]
pub struct NewClient {
    pub name: String,
    /// Pool the client's requests use (the first pool when absent).
    pub pool: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedClient {
    pub name: String,
    /// The client's token. Shown this once: only its SHA-256 is kept.
    pub token: String,
    pub version: Option<i64>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

fn audit(s: &AdminState, actor: &Actor, action: &str, target: &str) {
    let (db, actor, action, target) = (s.db.clone(), actor.label(), action.to_owned(), target.to_owned());
    tokio::task::spawn_blocking(move || {
        if let Err(e) = db.add_audit(&actor, &action, &target, &serde_json::json!({})) {
            tracing::warn!(error = %e, "cannot record an audit entry");
        }
    });
}

/// Creates a client with a fresh token.
#[utoipa::path(post, path = "/api/v1/clients", tag = "clients", security(("bearer" = [])), request_body = NewClient,
    responses((status = 201, body = CreatedClient), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(State(s): State<AdminState>, Extension(actor): Extension<Actor>, Body(req): Body<NewClient>) -> ApiResult<(StatusCode, Json<CreatedClient>)> {
    if !valid_name(&req.name) {
        return Err(ApiError::bad_request("a client name is 1-64 characters of letters, digits, '-', '_', '.', '@'"));
    }
    let token = random_token("gp-");
    let hash: String = sha256(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let changes = ClientChanges { pool: req.pool.clone().map(Some), fields: Vec::new() };
    let ((), applied) = s.manager.edit(&actor.label(), "clients.create", &format!("client {} created", req.name), |doc, _| doc.add_client(&req.name, &hash, &changes)).await?;
    audit(&s, &actor, "clients.create", &req.name);
    Ok((StatusCode::CREATED, Json(CreatedClient { name: req.name, token, version: applied.version })))
}

#[derive(Serialize, ToSchema)]
pub struct Changed {
    pub version: Option<i64>,
}

/// Revokes a client: its token stops working at once.
#[utoipa::path(delete, path = "/api/v1/clients/{name}", tag = "clients", security(("bearer" = [])), params(("name" = String, Path, description = "client name")),
    responses((status = 200, body = Changed), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke(State(s): State<AdminState>, Extension(actor): Extension<Actor>, PathParam(name): PathParam<String>) -> ApiResult<Json<Changed>> {
    let (found, applied) = s.manager.edit(&actor.label(), "clients.revoke", &format!("client {name} revoked"), |doc, _| Ok(doc.remove_client(&name))).await?;
    if !found {
        return Err(ApiError::not_found(format!("no client named {name:?}")));
    }
    audit(&s, &actor, "clients.revoke", &name);
    Ok(Json(Changed { version: applied.version }))
}

#[derive(Deserialize, ToSchema)]
pub struct ClientUpdate {
    /// Pool the client uses; null puts it back on the first pool.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub pool: Option<Option<String>>,
}

/// Changes a client's settings.
#[utoipa::path(patch, path = "/api/v1/clients/{name}", tag = "clients", security(("bearer" = [])), params(("name" = String, Path, description = "client name")), request_body = ClientUpdate,
    responses((status = 200, body = Changed), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(State(s): State<AdminState>, Extension(actor): Extension<Actor>, PathParam(name): PathParam<String>, Body(req): Body<ClientUpdate>) -> ApiResult<Json<Changed>> {
    let changes = ClientChanges { pool: req.pool, fields: Vec::new() };
    let ((), applied) = s.manager.edit(&actor.label(), "clients.update", &format!("client {name} updated"), |doc, _| doc.update_client(&name, &changes)).await?;
    audit(&s, &actor, "clients.update", &name);
    Ok(Json(Changed { version: applied.version }))
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
