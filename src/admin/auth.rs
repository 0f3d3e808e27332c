//! Who may use the admin API: the configured admin token (for scripts and Prometheus), or a
//! session obtained by logging in with the admin password (Argon2-hashed, never stored in the
//! clear). Failed logins are rate limited per address and globally.

use super::error::{ApiError, ApiResult};
use super::AdminState;
use crate::admin::extract::Body;
use crate::config::AdminSettings;
use crate::secret::sha256;
use crate::store::comment::Author;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

pub const SESSION_COOKIE: &str = "gp_admin_session";
/// Name of the state-store setting holding a generated password's hash.
pub const GENERATED_HASH_SETTING: &str = "admin_password_hash";

/// Failed logins allowed per address within `FAILURE_WINDOW`, and for all addresses together.
const FAILURES_PER_ADDRESS: usize = 5;
const FAILURES_GLOBAL: usize = 50;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// How an admin call authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Token,
    Session,
}

impl Credential {
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::Token => "token",
            Credential::Session => "session",
        }
    }
}

/// Who is making an admin call, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: Credential,
    pub addr: Option<IpAddr>,
    pub session_expires: Option<SystemTime>,
}

impl Actor {
    pub fn author(&self) -> Author {
        match self.kind {
            Credential::Token => Author::Token { address: self.addr },
            Credential::Session => Author::Session { address: self.addr },
        }
    }

    /// As the audit log and the version history record it: `session@127.0.0.1`, `token@::1`.
    pub fn label(&self) -> String {
        self.author().to_string()
    }
}

struct Session {
    expires: Instant,
    expires_wall: SystemTime,
    /// The credentials in force at login (see [`AdminAuth::credentials_id`]): a changed password
    /// or token ends every session made with the old ones.
    credentials: [u8; 32],
}

/// Recent failed logins: per address, and all together.
#[derive(Default)]
struct Failures {
    per_addr: HashMap<IpAddr, VecDeque<Instant>>,
    all: VecDeque<Instant>,
}

#[derive(Default)]
pub struct AdminAuth {
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<Failures>,
    /// Hash of a password generated at first start (used when the config names none).
    pub generated_hash: Mutex<Option<String>>,
}

/// A random token: 32 bytes from the OS, base64url.
pub fn random_token(prefix: &str) -> String {
    let mut b = [0u8; 32];
    // The OS random source failing is not recoverable in a meaningful way for a secret.
    getrandom::fill(&mut b).expect("the OS random number generator works");
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// Hashes a password with Argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

fn prune(q: &mut VecDeque<Instant>, now: Instant) {
    while q.front().is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW) {
        q.pop_front();
    }
}

impl AdminAuth {
    /// The password hash a login is checked against: the configured one, else the one
    /// generated at first start, which is only for a proxy with no admin credential at all (a
    /// configured token replaces it, as the README says).
    fn password_hash(&self, admin: &AdminSettings) -> Option<String> {
        admin.password_hash.clone().or_else(|| {
            if admin.token_sha256.is_some() {
                return None;
            }
            self.generated_hash.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }

    /// Names the admin credentials in force, without revealing them.
    fn credentials_id(&self, admin: &AdminSettings) -> [u8; 32] {
        let hash = self.password_hash(admin).unwrap_or_default();
        let token = admin.token_sha256.unwrap_or_default();
        let mut material = Vec::with_capacity(hash.len() + 33);
        material.extend_from_slice(hash.as_bytes());
        material.push(0);
        material.extend_from_slice(&token);
        sha256(&material)
    }

    fn new_session(&self, ttl: Duration, credentials: [u8; 32]) -> (String, SystemTime) {
        let token = random_token("gps_");
        let expires_wall = SystemTime::now() + ttl;
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        s.retain(|_, v| v.expires > now);
        s.insert(sha256(token.as_bytes()), Session { expires: now + ttl, expires_wall, credentials });
        (token, expires_wall)
    }

    fn session(&self, token: &str, admin: &AdminSettings) -> Option<SystemTime> {
        let credentials = self.credentials_id(admin);
        let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.get(&sha256(token.as_bytes())).filter(|v| v.expires > Instant::now() && v.credentials == credentials).map(|v| v.expires_wall)
    }

    fn end_session(&self, token: &str) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&sha256(token.as_bytes()));
    }

    /// Seconds to wait when `addr` (or everyone) failed too often; `None` when a try is allowed.
    fn blocked(&self, addr: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut f.all, now);
        if f.all.len() >= FAILURES_GLOBAL {
            return f.all.front().map(|t| FAILURE_WINDOW.saturating_sub(now.duration_since(*t)).as_secs() + 1);
        }
        let q = f.per_addr.entry(addr.unwrap_or(IpAddr::from([0, 0, 0, 0]))).or_default();
        prune(q, now);
        (q.len() >= FAILURES_PER_ADDRESS).then(|| q.front().map(|t| FAILURE_WINDOW.saturating_sub(now.duration_since(*t)).as_secs() + 1).unwrap_or(1))
    }

    fn failed(&self, addr: Option<IpAddr>) {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.all.push_back(now);
        f.per_addr.entry(addr.unwrap_or(IpAddr::from([0, 0, 0, 0]))).or_default().push_back(now);
    }

    fn succeeded(&self, addr: Option<IpAddr>) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.per_addr.remove(&addr.unwrap_or(IpAddr::from([0, 0, 0, 0])));
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE).and_then(|r| r.strip_prefix('=')))
}

/// Identifies the caller from its headers.
pub fn identify(state: &AdminState, headers: &HeaderMap, addr: Option<IpAddr>) -> Option<Actor> {
    let admin = &state.shared.runtime.load().settings.admin;
    if let Some(t) = bearer(headers) {
        if let Some(want) = admin.token_sha256 {
            if bool::from(sha256(t.as_bytes()).ct_eq(&want)) {
                return Some(Actor { kind: Credential::Token, addr, session_expires: None });
            }
        }
        if let Some(exp) = state.auth.session(t, admin) {
            return Some(Actor { kind: Credential::Session, addr, session_expires: Some(exp) });
        }
        return None;
    }
    let c = cookie(headers)?;
    state.auth.session(c, admin).map(|exp| Actor { kind: Credential::Session, addr, session_expires: Some(exp) })
}

/// Whether the request carries a credential at all (valid or not): an `Authorization` header or
/// a session cookie.
pub fn presents_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(AUTHORIZATION) || cookie(headers).is_some()
}

/// The answer to a request without a valid token or session.
pub fn unauthenticated() -> ApiError {
    ApiError::unauthorized("admin authentication required: send `Authorization: Bearer <admin token or session>` or log in at /api/v1/auth/login")
}

/// Middleware: every route behind it needs a valid token or session.
pub async fn require(State(state): State<AdminState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, mut req: Request, next: Next) -> Response {
    match identify(&state, req.headers(), Some(peer.ip())) {
        Some(actor) => {
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
        None => unauthenticated().into_response(),
    }
}

/// Exactly one of `password` and `token`. Logging in with the admin token gives a session
/// like a password does, so that a browser keeps an expiring session rather than the token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub password: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Send as `Authorization: Bearer <token>` (also set as an HttpOnly cookie on login).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub kind: String,
    #[serde(with = "crate::telemetry::time::rfc3339_opt")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<SystemTime>,
}

/// Log in with the admin password or the admin token; answers a session.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionView), (status = 401, body = super::error::ErrorBody), (status = 429, body = super::error::ErrorBody)))]
pub async fn login(State(state): State<AdminState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Body(req): Body<LoginRequest>) -> ApiResult<Response> {
    let addr = Some(peer.ip());
    if let Some(wait) = state.auth.blocked(addr) {
        let mut e = ApiError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, "too many failed logins; try again later");
        e.retry_after = Some(wait);
        return Err(e);
    }
    let settings = state.shared.runtime.load().settings.clone();
    let (ok, wrong) = match (req.password, req.token) {
        (Some(password), None) => {
            let Some(hash) = state.auth.password_hash(&settings.admin) else {
                return Err(ApiError::unauthorized("password login is not set up: use the admin token"));
            };
            // Argon2 is deliberately slow: keep it off the async workers.
            let ok = tokio::task::spawn_blocking(move || {
                PasswordHash::new(&hash).map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok()).unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            (ok, "wrong password")
        }
        (None, Some(token)) => {
            let Some(want) = settings.admin.token_sha256 else {
                return Err(ApiError::unauthorized("no admin token is configured: log in with the password"));
            };
            (bool::from(sha256(token.trim().as_bytes()).ct_eq(&want)), "wrong admin token")
        }
        _ => return Err(ApiError::bad_request("send exactly one of `password` and `token`")),
    };
    if !ok {
        state.auth.failed(addr);
        tracing::warn!(peer = %peer.ip(), "admin login failed");
        return Err(ApiError::unauthorized(wrong));
    }
    state.auth.succeeded(addr);
    let ttl = settings.admin.session_ttl;
    let (token, expires) = state.auth.new_session(ttl, state.auth.credentials_id(&settings.admin));
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", ttl.as_secs());
    let body = SessionView { token: Some(token), kind: "session".into(), expires_at: Some(expires) };
    Ok(([(SET_COOKIE, cookie)], Json(body)).into_response())
}

/// The ways to log in that are set up: what the login page offers. Says nothing else (no
/// usernames, hashes or settings), so it needs no authentication.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginMethods {
    /// Whether a password login works: a `password_hash` is configured, or one was generated
    /// at first start because no admin credential was configured.
    pub password: bool,
    /// Whether an admin token is configured (logging in with it gives a session).
    pub token: bool,
}

/// Which login methods are on (no authentication needed).
#[utoipa::path(get, path = "/api/v1/auth/methods", tag = "auth",
    responses((status = 200, body = LoginMethods)))]
pub async fn methods(State(state): State<AdminState>) -> Json<LoginMethods> {
    let admin = &state.shared.runtime.load().settings.admin;
    Json(LoginMethods { password: state.auth.password_hash(admin).is_some(), token: admin.token_sha256.is_some() })
}

/// End the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = super::error::ErrorBody)))]
pub async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(t) = bearer(&headers).or_else(|| cookie(&headers)) {
        state.auth.end_session(t);
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (axum::http::StatusCode::NO_CONTENT, [(SET_COOKIE, clear)]).into_response()
}

/// Who am I.
#[utoipa::path(get, path = "/api/v1/auth/session", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = SessionView), (status = 401, body = super::error::ErrorBody)))]
pub async fn session(axum::Extension(actor): axum::Extension<Actor>) -> Json<SessionView> {
    Json(SessionView { token: None, kind: actor.kind.as_str().to_owned(), expires_at: actor.session_expires })
}
