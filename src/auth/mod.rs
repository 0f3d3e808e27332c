//! Who is calling: the proxy token a client presents (wherever a Gemini or OpenAI client puts
//! its key), checked against configured clients by SHA-256 digest in constant time.

pub mod jwt;

use crate::config::{JwtSettings, Policy, Settings};
use crate::gemini::route::{percent_decode, query_param};
use crate::http1::RequestHead;
use crate::secret::sha256;
use jwt::{JwtError, JwtIdentity, JwtVerifier};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// An authenticated caller and what it may do.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: Arc<str>,
    pub policy: Arc<Policy>,
    /// Where `policy` comes from: the limits of a JWT client without a `[[clients]]` entry are
    /// known only from its tokens, so the limiter keeps them for the admin API.
    pub policy_source: PolicySource,
}

/// Where an authenticated client's policy comes from: its entry, else its token's claim, else `[jwt.policy]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// Its `[[clients]]` entry, also when it authenticated with a JWT (whatever the token
    /// carries); the open proxy's anonymous client has the empty policy of no entry.
    Entry,
    /// The policy claim of its JWT (no entry of its name).
    TokenClaim,
    /// `[jwt.policy]`: a JWT with neither an entry of its name nor a policy claim.
    JwtDefault,
}

/// Where the credential was found; it is removed from the forwarded request in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    GoogApiKeyHeader,
    KeyQueryParam,
    BearerHeader,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing proxy token: send it as the API key (x-goog-api-key header, ?key= parameter or Authorization: Bearer)")]
    Missing,
    #[error("invalid proxy token")]
    Invalid,
    #[error("invalid JWT: {0}")]
    Jwt(#[from] JwtError),
}

impl AuthError {
    /// Label for the refusal metric.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Invalid => "invalid_token",
            AuthError::Jwt(_) => "invalid_jwt",
        }
    }
}

/// The configured clients, indexed by token digest and by name (for JWT subjects).
#[derive(Debug, Default)]
pub struct ClientTable {
    by_digest: HashMap<[u8; 32], Client>,
    by_name: HashMap<String, Client>,
    jwt: Option<JwtSettings>,
    pool_names: Vec<String>,
    /// No client and no JWT configured: the proxy is open (only allowed on loopback listeners).
    open: bool,
}

/// Client name used when the proxy runs without tokens on loopback.
pub const ANONYMOUS: &str = "anonymous";

impl ClientTable {
    pub fn new(settings: &Settings) -> Self {
        let mut by_digest = HashMap::new();
        let mut by_name = HashMap::new();
        for c in &settings.clients {
            let client = Client { name: Arc::from(c.name.as_str()), policy: Arc::new(c.policy.clone()), policy_source: PolicySource::Entry };
            if let Some(d) = c.token_sha256 {
                by_digest.insert(d, client.clone());
            }
            by_name.insert(c.name.clone(), client);
        }
        ClientTable {
            by_digest,
            by_name,
            jwt: settings.jwt.clone(),
            pool_names: settings.pools.iter().map(|p| p.name.clone()).collect(),
            open: settings.clients.is_empty() && settings.jwt.is_none(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Identifies the caller from a presented credential: a JWT when `[jwt]` is configured
    /// and the credential looks like one, a static token otherwise.
    ///
    /// Static tokens are looked up by SHA-256 digest, so lookup timing can only reveal
    /// something about the digest, which says nothing useful about any token; the final
    /// comparison is constant-time.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Client, AuthError> {
        if self.open {
            return Ok(Client { name: Arc::from(ANONYMOUS), policy: Arc::new(Policy::default()), policy_source: PolicySource::Entry });
        }
        let token = presented.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        if let Some(jwt) = &self.jwt {
            if JwtVerifier::looks_like_jwt(token) {
                let id = jwt.verifier.verify(token)?;
                return Ok(self.jwt_client(jwt, id));
            }
        }
        let digest = sha256(token.as_bytes());
        match self.by_digest.get_key_value(&digest) {
            Some((stored, client)) if bool::from(stored.ct_eq(&digest)) => Ok(client.clone()),
            _ => Err(AuthError::Invalid),
        }
    }

    /// A JWT client: the policy of the `[[clients]]` entry of that name, else the token's own
    /// policy claim, else the `[jwt.policy]` default.
    fn jwt_client(&self, jwt: &JwtSettings, id: JwtIdentity) -> Client {
        if let Some(c) = self.by_name.get(&id.client) {
            return c.clone();
        }
        let (policy, policy_source) = match id.policy.as_ref().and_then(|v| policy_from_claim(v, &self.pool_names)) {
            Some(p) => (p, PolicySource::TokenClaim),
            None => (jwt.default_policy.clone(), PolicySource::JwtDefault),
        };
        Client { name: Arc::from(id.client.as_str()), policy: Arc::new(policy), policy_source }
    }
}

/// Reads a policy object carried by a token: `{"rpm": 10, "tpm": .., "tpd": .., "concurrency":
/// .., "models": ["gemini-*"], "pools": ["default"]}`. Unknown pools are left out.
fn policy_from_claim(v: &serde_json::Value, pool_names: &[String]) -> Option<Policy> {
    let o = v.as_object()?;
    let num = |k: &str| o.get(k).and_then(serde_json::Value::as_u64).filter(|n| *n > 0);
    let strings = |k: &str| -> Vec<String> {
        o.get(k).and_then(serde_json::Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    Some(Policy {
        models: strings("models"),
        pools: strings("pools").iter().filter_map(|p| pool_names.iter().position(|n| n == p)).collect(),
        rpm: num("rpm").and_then(|n| u32::try_from(n).ok()),
        tpm: num("tpm"),
        tpd: num("tpd"),
        concurrency: num("concurrency").and_then(|n| u32::try_from(n).ok()),
    })
}

/// Finds the credential in a request: `x-goog-api-key`, then `?key=`, then `Authorization: Bearer`.
pub fn credential(head: &RequestHead) -> Option<(Cow<'_, str>, CredentialSource)> {
    if let Some(v) = head.header_str("x-goog-api-key") {
        return Some((Cow::Borrowed(v.trim()), CredentialSource::GoogApiKeyHeader));
    }
    if let Some(v) = head.query().and_then(|q| query_param(q, "key")) {
        return Some((percent_decode(v), CredentialSource::KeyQueryParam));
    }
    let auth = head.header_str("authorization")?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| (Cow::Borrowed(token.trim()), CredentialSource::BearerHeader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn table() -> ClientTable {
        let s = crate::config::parse_str(
            "[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n[[clients]]\nname = \"alice\"\ntoken = \"gp-alice-token\"\n",
            "t",
            &crate::config::ProcessEnv,
        )
        .unwrap();
        ClientTable::new(&s)
    }

    fn head(text: &str) -> RequestHead {
        RequestHead::parse(&mut BytesMut::from(text.as_bytes()), 8192).unwrap().unwrap()
    }

    #[test]
    fn tokens_are_found_wherever_clients_put_keys() {
        let t = table();
        for req in [
            "GET /v1/models HTTP/1.1\r\nx-goog-api-key: gp-alice-token\r\n\r\n",
            "GET /v1/models?key=gp-alice-token HTTP/1.1\r\n\r\n",
            "GET /v1/models?key=gp%2Dalice%2Dtoken HTTP/1.1\r\n\r\n",
            "GET /v1beta/openai/models HTTP/1.1\r\nAuthorization: Bearer gp-alice-token\r\n\r\n",
        ] {
            let h = head(req);
            let (cred, _) = credential(&h).unwrap();
            assert_eq!(&*t.authenticate(Some(&cred)).unwrap().name, "alice", "{req}");
        }
    }

    #[test]
    fn wrong_or_missing_tokens_are_refused() {
        let t = table();
        assert_eq!(t.authenticate(None).unwrap_err(), AuthError::Missing);
        assert_eq!(t.authenticate(Some("")).unwrap_err(), AuthError::Missing);
        assert_eq!(t.authenticate(Some("gp-alice-tokem")).unwrap_err(), AuthError::Invalid);
        assert!(credential(&head("GET / HTTP/1.1\r\nAuthorization: Basic abc\r\n\r\n")).is_none());
    }

    #[test]
    fn no_clients_means_open() {
        let s = crate::config::parse_str("[[pools]]\nname = \"p\"\nkeys = [\"k\"]\n", "t", &crate::config::ProcessEnv).unwrap();
        let t = ClientTable::new(&s);
        assert!(t.is_open());
        assert_eq!(&*t.authenticate(None).unwrap().name, ANONYMOUS);
    }
}
