//! `/api/v1/clients`: who may use the proxy. A created client's token is generated here, shown
//! once, and only its SHA-256 goes into the configuration.

use crate::admin::auth::{random_token, Actor};
use crate::admin::error::{ApiError, ApiResult, ErrorBody};
use crate::admin::extract::{Body, PathParam};
use crate::admin::AdminState;
use crate::auth::PolicySource;
use crate::config::edit::ClientChanges;
use crate::config::{Policy, Settings};
use crate::control::Change;
use crate::limits::{ClientUsage, SeenPolicy, TokenClient};
use crate::secret::sha256;
use crate::store::comment::ServerComment;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;
use utoipa::ToSchema;

pub fn routes() -> Router<AdminState> {
    Router::new().route("/api/v1/clients", get(list).post(create)).route("/api/v1/clients/{name}", axum::routing::delete(revoke).patch(update))
}

/// A client and its limits: the limits enforced on its requests, which for a JWT client are
/// those of its `[[clients]]` entry when it has one (whatever its tokens carry), else those of
/// its tokens (`limits_source`).
#[derive(Serialize, ToSchema)]
pub struct ClientView {
    pub name: String,
    /// `token` (a static token), or `jwt` (authenticates with JWTs only).
    pub auth: &'static str,
    /// Pools it may use, the default first.
    pub pools: Vec<String>,
    /// The limits enforced: its entry's, or for a JWT client without an entry those of its
    /// latest token.
    pub limits: LimitsView,
    /// Where `limits` come from: `entry` (its `[[clients]]` entry; the client can be edited and
    /// revoked), or for a JWT client without an entry `token_claim` (the policy claim of its
    /// latest token) or `jwt_default` (`[jwt.policy]`). Such a client is listed, after the
    /// configured ones, while a request of it was seen within the last 24 hours.
    pub limits_source: PolicySource,
    /// For a JWT client without an entry: each distinct set of limits its tokens were admitted
    /// under in the last 24 hours, the latest first (so the first is `limits`). Tokens of one
    /// client may carry different limits: each request is held to its own token's, counted
    /// against the client's shared counters. Empty for a configured client.
    pub token_limits: Vec<TokenLimits>,
    /// Counted as `limits` asks (a count that only other tokens' limits keep is `null`).
    pub usage: ClientUsage,
}

/// Limits a JWT client's tokens carried.
#[derive(Serialize, ToSchema)]
pub struct TokenLimits {
    /// `token_claim` or `jwt_default`.
    pub source: PolicySource,
    /// The pools they allowed, the default first, named as they were when the requests were
    /// admitted (a reload since may have renamed or reordered the pools).
    pub pools: Vec<String>,
    pub limits: LimitsView,
    /// The last request admitted under them.
    #[serde(with = "crate::telemetry::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: SystemTime,
}

/// A client's limits; absent ones are unlimited.
#[derive(Serialize, Deserialize, ToSchema, Default)]
pub struct LimitsView {
    /// Allowed models (glob patterns); empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub concurrency: Option<u32>,
}

/// Configured clients, then JWT clients without an entry seen in the last 24 hours; their
/// limits as enforced and what they use now.
#[utoipa::path(get, path = "/api/v1/clients", tag = "clients", security(("bearer" = [])),
    responses((status = 200, body = Vec<ClientView>), (status = 401, body = ErrorBody)))]
pub async fn list(State(s): State<AdminState>) -> Json<Vec<ClientView>> {
    let rt = s.shared.runtime.load_full();
    let settings = &rt.settings;
    let configured = settings.clients.iter().map(|c| ClientView {
        name: c.name.clone(),
        auth: if c.token_sha256.is_some() { "token" } else { "jwt" },
        pools: pool_names(settings, &c.policy.pools),
        limits: LimitsView::of(&c.policy),
        limits_source: PolicySource::Entry,
        token_limits: Vec::new(),
        usage: s.shared.limits.usage(&c.name, &c.policy),
    });
    // A name that has an entry now is held to the entry, whatever its tokens were seen with.
    let from_tokens = s.shared.limits.token_clients().into_iter().filter(|t| !settings.clients.iter().any(|c| *c.name == *t.name));
    let seen = from_tokens.filter_map(|t| token_client_view(&s, t));
    Json(configured.chain(seen).collect())
}

/// The view of a JWT client without an entry: the limits of its latest token. Its pools are
/// named as they were when its requests were admitted (the indices a policy carries point into
/// the pools of that configuration, which a reload may since have reordered).
fn token_client_view(s: &AdminState, t: TokenClient) -> Option<ClientView> {
    let latest = t.policies.first()?;
    let names = |p: &SeenPolicy| p.pools.iter().map(|n| n.to_string()).collect();
    let token_limits =
        t.policies.iter().map(|p| TokenLimits { source: p.source, pools: names(p), limits: LimitsView::of(&p.policy), last_seen: p.last_seen }).collect();
    Some(ClientView {
        name: t.name.to_string(),
        auth: "jwt",
        pools: names(latest),
        limits: LimitsView::of(&latest.policy),
        limits_source: latest.source,
        token_limits,
        usage: s.shared.limits.usage(&t.name, &latest.policy),
    })
}

/// Names of the pools at `idx` (the first pool when empty, as requests get).
fn pool_names(settings: &Settings, idx: &[usize]) -> Vec<String> {
    if idx.is_empty() {
        settings.pools.first().map(|p| vec![p.name.clone()]).unwrap_or_default()
    } else {
        idx.iter().filter_map(|i| settings.pools.get(*i).map(|p| p.name.clone())).collect()
    }
}

impl LimitsView {
    fn of(p: &Policy) -> Self {
        LimitsView { models: p.models.clone(), rpm: p.rpm, tpm: p.tpm, tpd: p.tpd, concurrency: p.concurrency }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewClient {
    pub name: String,
    /// Pools the client may use, its default first (the first pool when absent).
    pub pools: Option<Vec<String>>,
    #[serde(flatten)]
    pub limits: LimitsView,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedClient {
    pub name: String,
    /// The client's token. Shown this once: only its SHA-256 is kept.
    pub token: String,
    pub version: Option<i64>,
}

fn strings(v: &[String]) -> toml_edit::Value {
    toml_edit::Value::Array(v.iter().map(String::as_str).collect())
}

/// The config changes for a client's pools and limits.
fn changes(pools: Option<Option<Vec<String>>>, models: Option<Option<Vec<String>>>, nums: [(&str, Option<Option<u64>>); 4]) -> ClientChanges {
    let mut fields = Vec::new();
    if let Some(p) = pools {
        fields.push(("pools".to_owned(), p.filter(|v| !v.is_empty()).map(|v| strings(&v))));
    }
    if let Some(m) = models {
        fields.push(("models".to_owned(), m.filter(|v| !v.is_empty()).map(|v| strings(&v))));
    }
    for (name, v) in nums {
        if let Some(v) = v {
            fields.push((name.to_owned(), v.map(|n| toml_edit::Value::from(n as i64))));
        }
    }
    ClientChanges { fields }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

/// Creates a client with a fresh token.
#[utoipa::path(post, path = "/api/v1/clients", tag = "clients", security(("bearer" = [])), request_body = NewClient,
    responses((status = 201, body = CreatedClient), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AdminState>,
    Extension(actor): Extension<Actor>,
    Body(req): Body<NewClient>,
) -> ApiResult<(StatusCode, Json<CreatedClient>)> {
    if !valid_name(&req.name) {
        return Err(ApiError::bad_request("a client name is 1-64 characters of letters, digits, '-', '_', '.', '@'"));
    }
    let token = random_token("gp-");
    let hash: String = sha256(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let l = &req.limits;
    let changes = changes(
        req.pools.clone().map(Some),
        Some(Some(l.models.clone())),
        [("rpm", Some(l.rpm.map(u64::from))), ("tpm", Some(l.tpm)), ("tpd", Some(l.tpd)), ("concurrency", Some(l.concurrency.map(u64::from)))],
    );
    let change = Change::new("clients.create", &req.name, ServerComment::ClientCreated { client: req.name.clone() });
    let ((), applied) = s.manager.edit(&actor.label(), change, |doc, _| doc.add_client(&req.name, &hash, &changes)).await?;
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
    // An unknown name fails the edit (404) before anything is written or recorded.
    let change = Change::new("clients.revoke", &name, ServerComment::ClientRevoked { client: name.clone() });
    let ((), applied) = s.manager.edit(&actor.label(), change, |doc, _| doc.remove_client(&name)).await?;
    Ok(Json(Changed { version: applied.version }))
}

/// Fields to change: absent leaves a field as it is, `null` removes it (no limit). An unknown
/// field is refused: a typo (`rmp`) must not answer 200 and change nothing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientUpdate {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub pools: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub rpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub tpd: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub concurrency: Option<Option<u64>>,
}

/// Changes a client's pools and limits (applied at once, like any config change).
#[utoipa::path(patch, path = "/api/v1/clients/{name}", tag = "clients", security(("bearer" = [])), params(("name" = String, Path, description = "client name")), request_body = ClientUpdate,
    responses((status = 200, body = Changed), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(s): State<AdminState>,
    Extension(actor): Extension<Actor>,
    PathParam(name): PathParam<String>,
    Body(req): Body<ClientUpdate>,
) -> ApiResult<Json<Changed>> {
    let changes = changes(req.pools, req.models, [("rpm", req.rpm), ("tpm", req.tpm), ("tpd", req.tpd), ("concurrency", req.concurrency)]);
    let change = Change::new("clients.update", &name, ServerComment::ClientUpdated { client: name.clone() });
    let ((), applied) = s.manager.edit(&actor.label(), change, |doc, _| doc.update_client(&name, &changes)).await?;
    Ok(Json(Changed { version: applied.version }))
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
