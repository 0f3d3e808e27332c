//! What can go wrong while issuing or renewing a certificate, in words an operator can act on.

use crate::tls::certs::CertError;
use std::time::Duration;

/// A failed issuance or renewal attempt. `report` renders it with its causes; none of the
/// variants carries key material or account credentials.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// No usable root certificates for the CA's HTTPS (no platform roots and no extra root).
    #[error("cannot trust the ACME directory's HTTPS: {0}")]
    Roots(String),
    /// A request to the CA failed, at `step` (the network, the TLS handshake, or an ACME problem
    /// document from the CA).
    #[error("{step}")]
    Protocol {
        step: &'static str,
        #[source]
        source: instant_acme::Error,
    },
    /// The CA does not offer the configured challenge type for a name.
    #[error("the CA offers no {challenge} challenge for {name}; choose another [tls.acme] challenge")]
    NoChallenge { name: String, challenge: &'static str },
    /// The TLS-ALPN-01 answer certificate could not be made.
    #[error("cannot make the tls-alpn-01 certificate for {name}: {message}")]
    ChallengeCertificate { name: String, message: String },
    /// An authorization the CA refuses to go on with (deactivated, revoked, expired...).
    #[error("the authorization for {name} is {status}")]
    Authorization { name: String, status: String },
    /// The CA could not validate a name: its own explanation, per name.
    #[error("the CA could not validate {0}")]
    Validation(String),
    /// The order ended invalid without a per-name explanation.
    #[error("the CA marked the order invalid")]
    OrderInvalid,
    /// A bounded wait ran out.
    #[error("{step} took longer than {}s", limit.as_secs())]
    Timeout { step: &'static str, limit: Duration },
    /// Reading or writing the data directory failed.
    #[error("{path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The stored account credentials cannot be read.
    #[error("the stored ACME account {path} is unreadable ({message}); move it away to register a new account")]
    Account { path: String, message: String },
    /// The chain or key the CA returned cannot be served.
    #[error("the CA returned an unusable certificate")]
    Certificate(#[source] CertError),
    /// The certificate the CA returned leaves some configured names out.
    #[error("the issued certificate does not cover {}", .0.join(", "))]
    Coverage(Vec<String>),
}

impl AcmeError {
    pub fn protocol(step: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
        move |source| AcmeError::Protocol { step, source }
    }

    pub fn storage(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AcmeError + '_ {
        move |source| AcmeError::Storage { path: path.display().to_string(), source }
    }

    /// The ACME problem type of a CA's answer, if this error is one.
    pub fn problem_type(&self) -> Option<&str> {
        match self {
            AcmeError::Protocol { source: instant_acme::Error::Api(p), .. } => p.r#type.as_deref(),
            _ => None,
        }
    }

    /// The error and its causes on one line ("creating the order: ...: connection refused"),
    /// each distinct cause once.
    pub fn report(&self) -> String {
        let mut parts: Vec<String> = vec![self.to_string()];
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            // Transparent wrappers repeat their inner error's text.
            if !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
            cause = c.source();
        }
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_walks_the_causes_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = AcmeError::Protocol { step: "creating the order", source: instant_acme::Error::Other(Box::new(io)) };
        assert_eq!(e.report(), "creating the order: connection refused");
        let p: instant_acme::Problem = serde_json::from_str(r#"{"type":"urn:ietf:params:acme:error:accountDoesNotExist","detail":"no such account"}"#).unwrap();
        let e = AcmeError::Protocol { step: "creating the order", source: instant_acme::Error::Api(p) };
        assert_eq!(e.problem_type(), Some("urn:ietf:params:acme:error:accountDoesNotExist"));
        assert!(e.report().contains("no such account"), "{}", e.report());
        assert_eq!(AcmeError::Coverage(vec!["a.test".into(), "b.test".into()]).report(), "the issued certificate does not cover a.test, b.test");
    }
}
