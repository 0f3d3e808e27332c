//! One issuance: order the names, answer each authorization's challenge (HTTP-01 key
//! authorizations and TLS-ALPN-01 certificates published in the `CertStore` for the data plane
//! to serve, withdrawn afterwards whatever happens), wait for the CA with bounded polls,
//! finalize with a fresh key, and fetch the chain.

use super::error::AcmeError;
use crate::config::AcmeChallenge;
use crate::tls::certs::{from_pem, Loaded};
use crate::tls::store::CertStore;
use instant_acme::{Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, Problem, RetryPolicy};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use std::time::Duration;

/// How long the CA may take to validate, and then to issue: polls start at 250 ms and grow by
/// half each time (honouring Retry-After), about a dozen requests at most.
const POLL_LIMIT: Duration = Duration::from_secs(120);

fn poll_policy() -> RetryPolicy {
    RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(POLL_LIMIT)
}

/// A certificate the CA issued, with its PEM text for storing.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub loaded: Loaded,
}

/// Challenge material published in the store for the duration of an order; withdrawn on drop,
/// so an error, a timeout or a shutdown half-way never leaves any behind.
struct Published<'a> {
    store: &'a CertStore,
    http_tokens: Vec<String>,
    alpn_names: Vec<String>,
}

impl<'a> Published<'a> {
    fn new(store: &'a CertStore) -> Self {
        Published { store, http_tokens: Vec::new(), alpn_names: Vec::new() }
    }

    fn http(&mut self, token: &str, key_authorization: &str) {
        self.store.set_http_challenge(token, Some(key_authorization.to_owned()));
        self.http_tokens.push(token.to_owned());
    }

    fn alpn(&mut self, name: &str, cert: Arc<CertifiedKey>) {
        self.store.set_alpn_challenge(name, Some(cert));
        self.alpn_names.push(name.to_owned());
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for t in &self.http_tokens {
            self.store.set_http_challenge(t, None);
        }
        for n in &self.alpn_names {
            self.store.set_alpn_challenge(n, None);
        }
    }
}

/// The TLS-ALPN-01 certificate for `name` (RFC 8737): self-signed, the name as its only SAN,
/// and the SHA-256 of the key authorization in a critical acmeIdentifier extension.
pub fn alpn_certificate(name: &str, key_authorization_digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let fail = |e: &dyn std::fmt::Display| AcmeError::ChallengeCertificate { name: name.to_owned(), message: e.to_string() };
    let key = rcgen::KeyPair::generate().map_err(|e| fail(&e))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| fail(&e))?;
    params.custom_extensions.push(rcgen::CustomExtension::new_acme_identifier(key_authorization_digest));
    let cert = params.self_signed(&key).map_err(|e| fail(&e))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(key.serialize_der().into())).map_err(|e| fail(&e))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)))
}

/// Whether `names` (a certificate's SANs) cover `name`: exactly, or by a wildcard one label up.
pub fn covers(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name || n.strip_prefix("*.").is_some_and(|suffix| name.split_once('.').is_some_and(|(_, parent)| parent == suffix)))
}

/// A CA problem in a line: its explanation and the last part of its type.
fn problem_text(p: &Problem) -> String {
    let detail = p.detail.clone().unwrap_or_else(|| "no detail given".into());
    match p.r#type.as_deref().and_then(|t| t.rsplit(':').next()) {
        Some(kind) => format!("{detail} ({kind})"),
        None => detail,
    }
}

/// Orders a certificate for `names` from the CA of `account`, answering `challenge`.
pub async fn issue(account: &Account, names: &[String], challenge: AcmeChallenge, store: &CertStore) -> Result<Issued, AcmeError> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await.map_err(AcmeError::protocol("creating the order"))?;
    let (kind, label) = match challenge {
        AcmeChallenge::Http01 => (ChallengeType::Http01, "http-01"),
        AcmeChallenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
    };

    let mut published = Published::new(store);
    {
        let mut authorizations = order.authorizations();
        while let Some(next) = authorizations.next().await {
            let mut authz = next.map_err(AcmeError::protocol("fetching an authorization"))?;
            let name = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Pending => {}
                // Validated recently for this account: nothing to answer.
                AuthorizationStatus::Valid => continue,
                other => return Err(AcmeError::Authorization { name, status: format!("{other:?}").to_ascii_lowercase() }),
            }
            let mut ch = authz.challenge(kind.clone()).ok_or_else(|| AcmeError::NoChallenge { name: name.clone(), challenge: label })?;
            let key_authorization = ch.key_authorization();
            match challenge {
                AcmeChallenge::Http01 => published.http(&ch.token, key_authorization.as_str()),
                AcmeChallenge::TlsAlpn01 => published.alpn(&name, alpn_certificate(&name, key_authorization.digest().as_ref())?),
            }
            // The answer is in place before the CA is told to look.
            ch.set_ready().await.map_err(AcmeError::protocol("telling the CA a challenge is ready"))?;
        }
    }

    let status = match order.poll_ready(&poll_policy()).await {
        Ok(s) => s,
        Err(instant_acme::Error::Timeout(_)) => return Err(AcmeError::Timeout { step: "validation by the CA", limit: POLL_LIMIT }),
        Err(instant_acme::Error::Api(problem)) => return Err(explain_invalid(&mut order).await.unwrap_or(AcmeError::Validation(problem_text(&problem)))),
        Err(e) => return Err(AcmeError::protocol("waiting for validation")(e)),
    };
    if status != OrderStatus::Ready {
        return Err(explain_invalid(&mut order).await.unwrap_or(AcmeError::OrderInvalid));
    }
    drop(published);

    let key_pem = order.finalize().await.map_err(AcmeError::protocol("finalizing the order"))?;
    let chain_pem = match order.poll_certificate(&poll_policy()).await {
        Ok(c) => c,
        Err(instant_acme::Error::Timeout(_)) => return Err(AcmeError::Timeout { step: "issuance by the CA", limit: POLL_LIMIT }),
        Err(e) => return Err(AcmeError::protocol("fetching the certificate")(e)),
    };
    let loaded = from_pem(chain_pem.as_bytes(), key_pem.as_bytes(), "the issued certificate").map_err(AcmeError::Certificate)?;
    let missing: Vec<String> = names.iter().filter(|n| !covers(&loaded.info.names, n)).cloned().collect();
    if !missing.is_empty() {
        return Err(AcmeError::Coverage(missing));
    }
    Ok(Issued { chain_pem, key_pem, loaded })
}

/// Why an order went invalid, from its authorizations' challenge errors ("name: what the CA
/// saw"); `None` when the CA gave no reason there.
async fn explain_invalid(order: &mut instant_acme::Order) -> Option<AcmeError> {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        if authz.refresh().await.is_err() {
            continue;
        }
        for c in &authz.challenges {
            if let Some(p) = &c.error {
                reasons.push(format!("{name}: {}", problem_text(p)));
            }
        }
    }
    (!reasons.is_empty()).then(|| AcmeError::Validation(reasons.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_by_exact_names_and_wildcards() {
        let names = vec!["a.test".to_owned(), "*.b.test".to_owned()];
        assert!(covers(&names, "a.test"));
        assert!(covers(&names, "x.b.test"));
        assert!(!covers(&names, "b.test"));
        assert!(!covers(&names, "x.y.b.test"));
        assert!(!covers(&names, "c.test"));
    }

    #[test]
    fn the_alpn_certificate_carries_the_digest_in_a_critical_extension() {
        let digest = crate::secret::sha256(b"token.thumbprint");
        let key = alpn_certificate("proxy.test", &digest).unwrap();
        use x509_parser::prelude::*;
        let (_, cert) = X509Certificate::from_der(&key.cert[0]).unwrap();
        let ext = cert.extensions().iter().find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31").expect("acmeIdentifier");
        assert!(ext.critical);
        // An OCTET STRING of 32 bytes: tag, length, digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
        let info = crate::tls::certs::describe(&key.cert[0], "t").unwrap();
        assert_eq!(info.names, vec!["proxy.test"]);
    }

    #[test]
    fn published_challenges_are_withdrawn_on_drop() {
        let store = CertStore::new();
        {
            let mut p = Published::new(&store);
            p.http("tok", "tok.thumb");
            p.alpn("proxy.test", alpn_certificate("proxy.test", &[0; 32]).unwrap());
            assert_eq!(store.http_challenge("tok").as_deref(), Some("tok.thumb"));
        }
        assert!(store.http_challenge("tok").is_none());
    }

    #[test]
    fn problems_read_well() {
        let p: Problem = serde_json::from_str(r#"{"type":"urn:ietf:params:acme:error:connection","detail":"127.0.0.1: Connection refused"}"#).unwrap();
        assert_eq!(problem_text(&p), "127.0.0.1: Connection refused (connection)");
    }
}
