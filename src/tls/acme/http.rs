//! The HTTPS client that talks to the ACME directory: hyper over rustls on ring, trusting the
//! platform's roots plus an optional extra root (a private or test CA such as Pebble's).

use super::error::AcmeError;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, HttpClient};
use std::sync::Arc;
use std::time::Duration;

/// How long connecting to the CA may take (the whole attempt is bounded separately).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The roots the client trusts: the platform's (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), plus
/// the certificates in `extra_pem`. Fails when the result is empty, or `extra_pem` is not PEM.
pub fn roots(extra_pem: Option<&str>) -> Result<rustls::RootCertStore, AcmeError> {
    let mut roots = rustls::RootCertStore::empty();
    match pingora::tls::load_native_certs() {
        Ok(certs) => {
            let (_, ignored) = roots.add_parsable_certificates(certs);
            if ignored > 0 {
                tracing::debug!(ignored, "some platform root certificates could not be parsed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot load the platform's root certificates"),
    }
    if let Some(pem) = extra_pem {
        let certs = crate::tls::certs::parse_chain(pem.as_bytes(), "acme.directory_ca_file").map_err(|e| AcmeError::Roots(e.to_string()))?;
        for c in certs {
            roots.add(c).map_err(|e| AcmeError::Roots(format!("acme.directory_ca_file: {e}")))?;
        }
    }
    if roots.is_empty() {
        return Err(AcmeError::Roots("no root certificates: install the ca-certificates package, or set acme.directory_ca_file".into()));
    }
    Ok(roots)
}

/// An HTTP client for instant-acme with the given roots (HTTPS only, HTTP/1.1 and HTTP/2).
pub fn client(roots: rustls::RootCertStore) -> Result<Box<dyn HttpClient>, AcmeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Roots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().enable_http2().wrap_connector(tcp);
    let client: Client<_, BodyWrapper<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    Ok(Box::new(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extra_root_is_added_and_junk_is_refused() {
        let c = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
        let base = roots(None).map(|r| r.len()).unwrap_or(0);
        assert_eq!(roots(Some(&c.cert.pem())).unwrap().len(), base + 1);
        let e = roots(Some("not a certificate")).unwrap_err();
        assert!(e.to_string().contains("acme.directory_ca_file"), "{e}");
    }
}
