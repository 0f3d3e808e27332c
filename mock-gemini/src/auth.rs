//! Who is calling: the credential a request carries, the key's behaviour, and the checks Google makes before serving it.

use crate::config::{KeyBehaviour, KeyMode};
use crate::error::ApiError;
use crate::util::{fnv1a, header_str};
use axum::http::request::Parts;
use serde::Deserialize;

/// Which API surface a path belongs to; decides where the key may come from and how errors look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    Native,
    OpenAi,
}

impl Flavor {
    pub fn of_path(path: &str) -> Flavor {
        if path.starts_with("/v1beta/openai/") || path == "/v1beta/openai" {
            Flavor::OpenAi
        } else {
            Flavor::Native
        }
    }
}

/// The credential found on a request, in Google's order of precedence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Credential {
    /// `x-goog-api-key`, `?key=`, or (OpenAI surface only) `Authorization: Bearer`.
    ApiKey(String),
    /// A Google OAuth access token (`Bearer ya29....`) on a native path.
    OAuth,
    /// An `Authorization` header on a native path that is not an OAuth token: Google
    /// rejects the call with 401 even if a valid key is also present.
    NotOAuth,
    /// OpenAI surface: an `Authorization` header that is not `Bearer <key>`.
    MalformedBearer,
    Missing,
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

impl Credential {
    pub fn from_parts(parts: &Parts, flavor: Flavor) -> Credential {
        let authorization = header_str(&parts.headers, "authorization");
        if flavor == Flavor::Native {
            if let Some(auth) = authorization {
                return match auth.strip_prefix("Bearer ") {
                    Some(token) if token.trim().starts_with("ya29.") => Credential::OAuth,
                    _ => Credential::NotOAuth,
                };
            }
        }
        if let Some(key) = header_str(&parts.headers, "x-goog-api-key").filter(|k| !k.is_empty()) {
            return Credential::ApiKey(key.to_string());
        }
        let from_query = axum::extract::Query::<KeyQuery>::try_from_uri(&parts.uri).ok().and_then(|q| q.0.key);
        if let Some(key) = from_query.filter(|k| !k.is_empty()) {
            return Credential::ApiKey(key);
        }
        match (flavor, authorization) {
            (Flavor::OpenAi, Some(auth)) => match auth.strip_prefix("Bearer ").map(str::trim) {
                Some(key) if !key.is_empty() => Credential::ApiKey(key.to_string()),
                _ => Credential::MalformedBearer,
            },
            _ => Credential::Missing,
        }
    }

    /// The API key value, if the credential is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Credential::ApiKey(k) => Some(k),
            _ => None,
        }
    }
}

/// The caller of one request, attached to it as an extension by the intake middleware.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub credential: Credential,
    pub behaviour: KeyBehaviour,
    pub flavor: Flavor,
}

impl Caller {
    /// The project owning what this caller creates: the key's configured project, else the key itself.
    pub fn project(&self) -> String {
        match (&self.behaviour.project, &self.credential) {
            (Some(p), _) => p.clone(),
            (None, Credential::ApiKey(k)) => k.clone(),
            (None, _) => "oauth".to_string(),
        }
    }

    fn tag(&self, e: ApiError) -> ApiError {
        if self.flavor == Flavor::OpenAi {
            e.openai()
        } else {
            e
        }
    }

    /// Identity checks every authenticated method makes (metadata, files, caches, model calls):
    /// a credential must be present and the key must be usable at all.
    /// Quota and server-side failures are not checked here: see [`Caller::admit`].
    pub fn authenticate(&self) -> Result<(), ApiError> {
        let err = match &self.credential {
            Credential::Missing if self.flavor == Flavor::OpenAi => ApiError::missing_authorization(),
            Credential::Missing => ApiError::unregistered_caller(),
            Credential::MalformedBearer => ApiError::invalid_authorization(),
            Credential::NotOAuth => ApiError::not_oauth(),
            Credential::OAuth => return Ok(()),
            Credential::ApiKey(key) => {
                let project_number = 100_000_000_000 + fnv1a(self.project().as_bytes()) % 900_000_000_000;
                match self.behaviour.mode {
                    KeyMode::Invalid => ApiError::key_invalid(),
                    KeyMode::Suspended => ApiError::key_suspended(key, project_number),
                    KeyMode::Leaked => ApiError::key_leaked(),
                    KeyMode::Blocked => ApiError::key_blocked(project_number),
                    _ => return Ok(()),
                }
            }
        };
        Err(self.tag(err))
    }

    /// Checks made when a model is actually run (generate, stream, count, embed, predict):
    /// per-model quotas and server-side failures. Call after [`Caller::authenticate`]
    /// and after the model is known to exist. `model` is the bare id (`gemini-2.5-flash`).
    pub fn admit(&self, model: &str) -> Result<(), ApiError> {
        let limited_here = |models: &Option<Vec<String>>| match models {
            None => true,
            Some(list) => list.iter().any(|m| m.strip_prefix("models/").unwrap_or(m) == model),
        };
        let err = match &self.behaviour.mode {
            KeyMode::RateLimited { retry_delay, quota_id, models } if limited_here(models) => {
                let value = if quota_id.contains("PerDay") { "250" } else { "10" };
                ApiError::quota(model, quota_id, value, retry_delay)
            }
            KeyMode::RateLimitedDaily { retry_delay, models } if limited_here(models) => {
                ApiError::quota(model, "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "250", retry_delay)
            }
            KeyMode::RateLimitedBare => ApiError::quota_bare(),
            KeyMode::Overloaded => ApiError::overloaded(),
            KeyMode::Internal => ApiError::internal(),
            KeyMode::EchoKey => match &self.credential {
                Credential::ApiKey(key) => ApiError::echoing_key(key),
                _ => return Ok(()),
            },
            KeyMode::HugeError { status, bytes, chunked } => match &self.credential {
                Credential::ApiKey(key) => ApiError::huge(*status, *bytes, key, *chunked),
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        Err(self.tag(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn cred(uri: &str, headers: &[(&str, &str)]) -> Credential {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).expect("request").into_parts();
        Credential::from_parts(&parts, Flavor::of_path(parts.uri.path()))
    }

    #[test]
    fn key_sources_follow_googles_precedence() {
        assert_eq!(cred("/v1beta/models", &[("x-goog-api-key", "A")]), Credential::ApiKey("A".into()));
        assert_eq!(cred("/v1beta/models?key=B", &[]), Credential::ApiKey("B".into()));
        assert_eq!(cred("/v1beta/models?key=B", &[("x-goog-api-key", "A")]), Credential::ApiKey("A".into()));
        assert_eq!(cred("/v1beta/models", &[]), Credential::Missing);
        // Native paths never take a key from Authorization, and reject non-OAuth ones.
        assert_eq!(cred("/v1beta/models", &[("authorization", "Bearer gp-x"), ("x-goog-api-key", "A")]), Credential::NotOAuth);
        assert_eq!(cred("/v1/models", &[("authorization", "Bearer ya29.abc")]), Credential::OAuth);
        // The OpenAI surface takes the bearer token as the key.
        assert_eq!(cred("/v1beta/openai/models", &[("authorization", "Bearer K")]), Credential::ApiKey("K".into()));
        assert_eq!(cred("/v1beta/openai/models", &[("authorization", "Basic x")]), Credential::MalformedBearer);
    }
}
