//! Who is calling: the proxy token a client presents (wherever a Gemini or OpenAI client puts
//! its key), checked against configured clients by SHA-256 digest in constant time.

use crate::config::ClientSettings;
use crate::gemini::route::{percent_decode, query_param};
use crate::http1::RequestHead;
use crate::secret::sha256;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A configured client.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: Arc<str>,
    /// Index of the pool its requests use.
    pub pool: usize,
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
}

/// The configured clients, indexed by token digest.
#[derive(Debug, Default)]
pub struct ClientTable {
    by_digest: HashMap<[u8; 32], Client>,
    /// No client configured: the proxy is open (only allowed on loopback listeners).
    open: bool,
}

/// Client name used when the proxy runs without tokens on loopback.
pub const ANONYMOUS: &str = "anonymous";

impl ClientTable {
    pub fn new(clients: &[ClientSettings]) -> Self {
        let by_digest = clients.iter().map(|c| (c.token_sha256, Client { name: Arc::from(c.name.as_str()), pool: c.pool })).collect();
        ClientTable { by_digest, open: clients.is_empty() }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Identifies the caller from a presented credential.
    ///
    /// The lookup is by SHA-256 digest, so its timing can only reveal something about the
    /// digest, which says nothing useful about any token; the final comparison is constant-time.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Client, AuthError> {
        if self.open {
            return Ok(Client { name: Arc::from(ANONYMOUS), pool: 0 });
        }
        let token = presented.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let digest = sha256(token.as_bytes());
        match self.by_digest.get_key_value(&digest) {
            Some((stored, client)) if bool::from(stored.ct_eq(&digest)) => Ok(client.clone()),
            _ => Err(AuthError::Invalid),
        }
    }
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
        ClientTable::new(&[ClientSettings { name: "alice".into(), token_sha256: sha256(b"gp-alice-token"), pool: 0 }])
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
        let t = ClientTable::new(&[]);
        assert!(t.is_open());
        assert_eq!(&*t.authenticate(None).unwrap().name, ANONYMOUS);
    }
}
