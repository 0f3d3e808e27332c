//! `/api/v1/keys`: every key with its state per model, and the operations on keys (add, bulk
//! import from pasted text, live validation, enable, disable, delete, reset). Keys are named by
//! their fingerprint; their secrets never leave the proxy.

use super::audit;
use crate::admin::auth::Actor;
use crate::admin::error::{ApiError, ApiResult, ErrorBody};
use crate::admin::extract::{Body, Params, PathParam};
use crate::admin::AdminState;
use crate::config::edit::{EditError, NewKey};
use crate::control::Change;
use crate::gateway::probe::{check_key, Verdict};
use crate::pool::health::{Availability, KeyHealth, LastError, ModelView};
use crate::pool::outcome::DisableReason;
use crate::pool::PoolKey;
use crate::secret::{Fingerprint, Secret};
use crate::store::comment::ServerComment;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use utoipa::ToSchema;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/keys", get(list).post(add))
        .route("/api/v1/keys/import", post(import))
        .route("/api/v1/keys/validate", post(validate))
        .route("/api/v1/keys/{fingerprint}", axum::routing::delete(delete))
        .route("/api/v1/keys/{fingerprint}/enable", post(enable))
        .route("/api/v1/keys/{fingerprint}/disable", post(disable))
        .route("/api/v1/keys/{fingerprint}/reset", post(reset))
}

#[derive(Serialize, ToSchema)]
pub struct DisabledView {
    pub reason: DisableReason,
    pub message: String,
    #[serde(with = "crate::telemetry::time::rfc3339")]
    #[schema(value_type = String)]
    pub since: SystemTime,
}

#[derive(Serialize, ToSchema)]
pub struct UsageView {
    /// Since the proxy started.
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub pool: String,
    pub name: String,
    /// 12 hex digits of the key's SHA-256.
    pub fingerprint: String,
    pub weight: u32,
    /// `healthy`, `cooling` (some model), `broken` (some model) or `disabled`.
    pub state: &'static str,
    pub disabled: Option<DisabledView>,
    /// Models with a cooldown, an open breaker or recent failures.
    pub models: Vec<ModelView>,
    pub last_error: Option<LastError>,
    pub inflight: u32,
    pub usage: UsageView,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    /// Every configured pool, in config order (also pools without keys), whatever the filter.
    pub pools: Vec<String>,
    pub keys: Vec<KeyView>,
    pub total: usize,
    pub healthy: usize,
    pub cooling: usize,
    pub broken: usize,
    pub disabled: usize,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub pool: Option<String>,
    /// healthy, cooling, broken or disabled.
    pub state: Option<String>,
    /// Matches names and fingerprints.
    pub q: Option<String>,
}

fn key_state(h: &KeyHealth, models: &[ModelView]) -> &'static str {
    if h.is_disabled() {
        "disabled"
    } else if models.iter().any(|m| m.state == "cooling") {
        "cooling"
    } else if models.iter().any(|m| m.state == "broken") {
        "broken"
    } else {
        "healthy"
    }
}

fn view(pool: &str, k: &PoolKey, now: Instant) -> KeyView {
    let h = &k.health;
    let models: Vec<ModelView> = h.model_views(now).into_iter().filter(|m| m.state != "healthy" || m.consecutive_failures > 0).collect();
    let c = &h.counters;
    KeyView {
        pool: pool.to_owned(),
        name: k.name.to_string(),
        fingerprint: h.fingerprint.to_string(),
        weight: k.weight,
        state: key_state(h, &models),
        disabled: h.disabled_info().map(|d| DisabledView { reason: d.reason, message: d.message, since: d.since }),
        models,
        last_error: h.last_error(),
        inflight: h.inflight(),
        usage: UsageView {
            attempts: c.attempts.load(Ordering::Relaxed),
            successes: c.successes.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            input_tokens: c.input_tokens.load(Ordering::Relaxed),
            output_tokens: c.output_tokens.load(Ordering::Relaxed),
        },
    }
}

/// Every key of every pool, with its state.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody)))]
pub async fn list(State(s): State<AdminState>, Params(q): Params<ListQuery>) -> Json<KeyList> {
    let rt = s.shared.runtime.load_full();
    let now = Instant::now();
    let mut all: Vec<KeyView> = Vec::new();
    for p in &rt.pools {
        if q.pool.as_deref().is_some_and(|want| want != &*p.name) {
            continue;
        }
        all.extend(p.keys.iter().map(|k| view(&p.name, k, now)));
    }
    let count = |st: &str| all.iter().filter(|k| k.state == st).count();
    let (healthy, cooling, broken, disabled) = (count("healthy"), count("cooling"), count("broken"), count("disabled"));
    let total = all.len();
    let needle = q.q.as_deref().map(str::to_lowercase);
    let keys = all
        .into_iter()
        .filter(|k| q.state.as_deref().is_none_or(|st| st == k.state))
        .filter(|k| needle.as_deref().is_none_or(|n| k.name.to_lowercase().contains(n) || k.fingerprint.contains(n)))
        .collect();
    let pools = rt.pools.iter().map(|p| p.name.to_string()).collect();
    Json(KeyList { pools, keys, total, healthy, cooling, broken, disabled })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddKey {
    /// Pool to add to (the first pool when absent).
    pub pool: Option<String>,
    pub key: String,
    pub name: Option<String>,
    pub weight: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyRef {
    pub fingerprint: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct Added {
    pub added: Vec<KeyRef>,
    pub skipped: Vec<Skipped>,
    /// Config version recorded (absent for a dry run).
    pub version: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Skipped {
    /// Of the key, or for `malformed` of the text that looked like one.
    pub fingerprint: String,
    /// `duplicate_in_text`, `already_in_pool`, or `malformed` (starts like a key, `AIza`, but
    /// does not have a key's 39 characters: often a key cut short when copied).
    pub reason: &'static str,
    /// For `malformed`: how many characters it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<usize>,
}

/// Adds keys to a pool's configuration, skipping those it already holds.
async fn add_keys(s: &AdminState, actor: &Actor, pool: Option<String>, keys: Vec<NewKey>, dry_run: bool) -> ApiResult<Added> {
    let mut current = crate::config::edit::ConfigDoc::parse(&s.manager.text().await).map_err(crate::control::ApplyError::from)?;
    let existing: HashSet<String> = current.pool_secrets(pool.as_deref(), s.manager.env()).map_err(crate::control::ApplyError::from)?.into_iter().collect();
    let (mut added, mut skipped, mut fresh) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen: HashSet<String> = HashSet::new();
    for k in keys {
        let fp = Fingerprint::of(k.secret.as_bytes()).to_string();
        if !seen.insert(k.secret.clone()) {
            skipped.push(Skipped { fingerprint: fp, reason: "duplicate_in_text", length: None });
        } else if existing.contains(&k.secret) {
            skipped.push(Skipped { fingerprint: fp, reason: "already_in_pool", length: None });
        } else {
            added.push(KeyRef { name: k.name.clone().unwrap_or_else(|| format!("key-{fp}")), fingerprint: fp });
            fresh.push(k);
        }
    }
    if dry_run || fresh.is_empty() {
        return Ok(Added { added, skipped, version: None });
    }
    let change = Change::new("keys.add", pool.as_deref().unwrap_or("(first pool)"), ServerComment::KeysAdded { count: fresh.len() as u64 })
        .with_detail(serde_json::json!({"added": added.iter().map(|k| &k.fingerprint).collect::<Vec<_>>()}));
    let ((), applied) = s
        .manager
        .edit(&actor.label(), change, |doc, env| {
            // Checked again under the config lock, in case another change added one meanwhile:
            // refused rather than skipped, so that the answer and the audit entry stay exact.
            let now_present: HashSet<String> = doc.pool_secrets(pool.as_deref(), env)?.into_iter().collect();
            if let Some(k) = fresh.iter().find(|k| now_present.contains(&k.secret)) {
                return Err(EditError::KeyExists(Fingerprint::of(k.secret.as_bytes())));
            }
            doc.add_keys(pool.as_deref(), &fresh)
        })
        .await?;
    Ok(Added { added, skipped, version: applied.version })
}

/// Adds one key.
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", security(("bearer" = [])), request_body = AddKey,
    responses((status = 201, body = Added), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add(State(s): State<AdminState>, Extension(actor): Extension<Actor>, Body(req): Body<AddKey>) -> ApiResult<(StatusCode, Json<Added>)> {
    let secret = req.key.trim().to_owned();
    if secret.is_empty() || secret.chars().any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii()) {
        return Err(ApiError::bad_request("a key is a non-empty ASCII string without spaces"));
    }
    let out = add_keys(&s, &actor, req.pool, vec![NewKey { secret, name: req.name, weight: req.weight }], false).await?;
    if out.added.is_empty() {
        return Err(ApiError::conflict("the pool already holds this key"));
    }
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Import {
    pub pool: Option<String>,
    /// Any text: every Gemini API key in it (`AIza` followed by 35 characters) is taken.
    pub text: String,
    /// Only report what would be added and skipped.
    #[serde(default)]
    pub dry_run: bool,
}

/// What free text holds: Gemini API keys, and words that start like one but are not.
#[derive(Debug, Default, PartialEq)]
pub struct Extracted {
    /// Keys in order of appearance.
    pub keys: Vec<String>,
    /// Near-misses (`AIza` then the wrong number of key characters), to be reported.
    pub malformed: Vec<String>,
}

/// Every Gemini API key found in free text, in order of appearance.
pub fn extract_keys(text: &str) -> Extracted {
    let mut out = Extracted::default();
    for (range, whole) in crate::gemini::api_key::key_words(text) {
        let word = text[range].to_owned();
        if whole {
            out.keys.push(word);
        } else {
            out.malformed.push(word);
        }
    }
    out
}

/// Bulk import from pasted text: every `AIza...` key, duplicates dropped.
#[utoipa::path(post, path = "/api/v1/keys/import", tag = "keys", security(("bearer" = [])), request_body = Import,
    responses((status = 200, body = Added), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn import(State(s): State<AdminState>, Extension(actor): Extension<Actor>, Body(req): Body<Import>) -> ApiResult<Json<Added>> {
    let found = extract_keys(&req.text);
    let keys = found.keys.into_iter().map(|k| NewKey { secret: k, name: None, weight: None }).collect();
    let mut out = add_keys(&s, &actor, req.pool, keys, req.dry_run).await?;
    // Shown by fingerprint and length only: a cut-short key is still most of a secret.
    let malformed =
        found.malformed.iter().map(|w| Skipped { fingerprint: Fingerprint::of(w.as_bytes()).to_string(), reason: "malformed", length: Some(w.len()) });
    out.skipped.extend(malformed);
    Ok(Json(out))
}

/// Finds a key (in any pool) by fingerprint prefix.
fn find(s: &AdminState, fp: &str) -> ApiResult<(Secret, Arc<KeyHealth>, String)> {
    let rt = s.shared.runtime.load_full();
    rt.pools
        .iter()
        .flat_map(|p| p.keys.iter())
        .find(|k| k.health.fingerprint.matches(fp))
        .map(|k| (k.secret.clone(), k.health.clone(), k.name.to_string()))
        .ok_or_else(|| ApiError::not_found(format!("no key with fingerprint {fp}")))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateKeys {
    /// Fingerprints to check; every key when empty or absent.
    #[serde(default)]
    pub fingerprints: Vec<String>,
    /// Model named in the check (default: the prober's model).
    pub model: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Validated {
    pub fingerprint: String,
    pub name: String,
    #[serde(flatten)]
    pub check: crate::gateway::probe::KeyCheck,
}

/// Checks keys live against the upstream (a call that costs no quota). A key found refused is
/// disabled with the reason; a key found working that was disabled by an upstream answer comes
/// back.
#[utoipa::path(post, path = "/api/v1/keys/validate", tag = "keys", security(("bearer" = [])), request_body = ValidateKeys,
    responses((status = 200, body = Vec<Validated>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn validate(State(s): State<AdminState>, Extension(actor): Extension<Actor>, Body(req): Body<ValidateKeys>) -> ApiResult<Json<Vec<Validated>>> {
    let rt = s.shared.runtime.load_full();
    let model = req.model.unwrap_or_else(|| rt.settings.key_health.probe_model.clone());
    let mut targets: Vec<(Secret, Arc<KeyHealth>, String)> = Vec::new();
    if req.fingerprints.is_empty() {
        let mut seen = HashSet::new();
        for k in rt.pools.iter().flat_map(|p| p.keys.iter()) {
            if seen.insert(k.health.fingerprint) {
                targets.push((k.secret.clone(), k.health.clone(), k.name.to_string()));
            }
        }
    } else {
        for fp in &req.fingerprints {
            targets.push(find(&s, fp)?);
        }
    }
    // A few at a time: fast for hundreds of keys, gentle on the upstream.
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for (secret, health, name) in targets {
        let (shared, sem, model) = (s.shared.clone(), sem.clone(), model.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let mut check = check_key(&shared, &secret, &model).await;
            // The upstream's message may echo the key (Google's "Consumer 'api_key:…' has been
            // suspended" does): shown and kept like a key's last error.
            check.message = crate::pool::health::operator_message(&check.message);
            match check.verdict {
                Some(Verdict::Refused(r)) => health.disable(r, &check.message),
                Some(Verdict::Works) if health.disabled_info().is_some_and(|d| d.reason != DisableReason::Manual) => {
                    health.enable();
                }
                _ => {}
            }
            Validated { fingerprint: health.fingerprint.to_string(), name, check }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(v) = t.await {
            out.push(v);
        }
    }
    audit(&s, &actor, "keys.validate", "keys", serde_json::json!({"checked": out.len()})).await;
    Ok(Json(out))
}

#[derive(Serialize, ToSchema)]
pub struct KeyStateView {
    pub fingerprint: String,
    pub state: &'static str,
}

fn state_of(h: &KeyHealth) -> &'static str {
    match h.availability("", Instant::now()) {
        Availability::Disabled(_) => "disabled",
        _ => key_state(h, &h.model_views(Instant::now())),
    }
}

/// Puts a disabled key back in service.
#[utoipa::path(post, path = "/api/v1/keys/{fingerprint}/enable", tag = "keys", security(("bearer" = [])), params(("fingerprint" = String, Path, description = "12 (at least 8) hex digits")),
    responses((status = 200, body = KeyStateView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn enable(State(s): State<AdminState>, Extension(actor): Extension<Actor>, PathParam(fp): PathParam<String>) -> ApiResult<Json<KeyStateView>> {
    let (_, h, name) = find(&s, &fp)?;
    h.enable();
    audit(&s, &actor, "keys.enable", &name, serde_json::json!({"fingerprint": h.fingerprint.to_string()})).await;
    Ok(Json(KeyStateView { fingerprint: h.fingerprint.to_string(), state: state_of(&h) }))
}

/// Takes a key out of service until enabled again (the prober leaves it alone).
#[utoipa::path(post, path = "/api/v1/keys/{fingerprint}/disable", tag = "keys", security(("bearer" = [])), params(("fingerprint" = String, Path, description = "12 (at least 8) hex digits")),
    responses((status = 200, body = KeyStateView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn disable(State(s): State<AdminState>, Extension(actor): Extension<Actor>, PathParam(fp): PathParam<String>) -> ApiResult<Json<KeyStateView>> {
    let (_, h, name) = find(&s, &fp)?;
    h.disable(DisableReason::Manual, &format!("disabled by {}", actor.label()));
    audit(&s, &actor, "keys.disable", &name, serde_json::json!({"fingerprint": h.fingerprint.to_string()})).await;
    Ok(Json(KeyStateView { fingerprint: h.fingerprint.to_string(), state: "disabled" }))
}

/// Forgets a key's state: enabled, no cooldowns, no failures.
#[utoipa::path(post, path = "/api/v1/keys/{fingerprint}/reset", tag = "keys", security(("bearer" = [])), params(("fingerprint" = String, Path, description = "12 (at least 8) hex digits")),
    responses((status = 200, body = KeyStateView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reset(State(s): State<AdminState>, Extension(actor): Extension<Actor>, PathParam(fp): PathParam<String>) -> ApiResult<Json<KeyStateView>> {
    let (_, h, name) = find(&s, &fp)?;
    h.reset();
    audit(&s, &actor, "keys.reset", &name, serde_json::json!({"fingerprint": h.fingerprint.to_string()})).await;
    Ok(Json(KeyStateView { fingerprint: h.fingerprint.to_string(), state: "healthy" }))
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub removed: usize,
    pub version: Option<i64>,
}

/// Removes a key from the configuration (every pool holding it).
#[utoipa::path(delete, path = "/api/v1/keys/{fingerprint}", tag = "keys", security(("bearer" = [])), params(("fingerprint" = String, Path, description = "12 (at least 8) hex digits")),
    responses((status = 200, body = Deleted), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete(State(s): State<AdminState>, Extension(actor): Extension<Actor>, PathParam(fp): PathParam<String>) -> ApiResult<Json<Deleted>> {
    let (secret, h, name) = find(&s, &fp)?;
    let key = secret.fingerprint();
    let change = Change::new("keys.delete", &name, ServerComment::KeyDeleted { key: name.clone() })
        .with_detail(serde_json::json!({"fingerprint": h.fingerprint.to_string()}));
    // A key the file does not hold (removed meanwhile) fails the edit: nothing is written.
    let (removed, applied) = s.manager.edit(&actor.label(), change, |doc, env| doc.remove_key(key, env)).await?;
    Ok(Json(Deleted { removed, version: applied.version }))
}

#[cfg(test)]
mod tests {
    use super::extract_keys;

    #[test]
    fn keys_are_pulled_out_of_messy_text() {
        let a = format!("AIza{}", "A".repeat(35));
        let b = format!("AIzaSy{}", "b_-9".repeat(9).chars().take(33).collect::<String>());
        let text = format!("key1={a}\n\"{b}\", {a};\nnot a key: AIzaSHORT, xAIza{} too long: {}X", "c".repeat(35), &b);
        let found = extract_keys(&text);
        assert_eq!(found.keys, vec![a.clone(), b.clone(), a]);
        assert_eq!(found.malformed, vec!["AIzaSHORT".to_owned(), format!("{b}X")], "near-misses are reported, not taken");
    }
}
