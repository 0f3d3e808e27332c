//! TLS termination: certificates from files, self-signed for development, or issued by an ACME
//! CA; chosen per connection by SNI through a resolver over a swappable map; the server config
//! (rustls, ring) with ALPN for HTTP/2, HTTP/1.1 and TLS-ALPN-01 validation.

pub mod acme;
pub mod certs;
pub mod self_signed;
pub mod store;

use std::sync::Arc;
use store::{CertStore, Resolver, ACME_TLS_ALPN};

/// The rustls server configuration of TLS listeners. Certificates come from `store`, so it never
/// needs rebuilding when they change.
pub fn server_config(store: Arc<CertStore>, http2: bool) -> Arc<rustls::ServerConfig> {
    // Pingora installs ring as the process-wide provider when it builds its own TLS listeners;
    // ours are built here, so make sure the same provider is in place.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(store)));
    let mut alpn = Vec::new();
    if http2 {
        alpn.push(b"h2".to_vec());
    }
    alpn.push(b"http/1.1".to_vec());
    alpn.push(ACME_TLS_ALPN.to_vec());
    config.alpn_protocols = alpn;
    Arc::new(config)
}

/// The certificates the configuration names: files, and the self-signed one (generated or
/// reused from `dir`). ACME certificates are added by the ACME manager.
pub fn configured_entries(t: &crate::config::TlsSettings, dir: &std::path::Path) -> Result<Vec<store::Entry>, certs::CertError> {
    let mut out: Vec<store::Entry> = t
        .certificates
        .iter()
        .map(|c| store::Entry { name: c.name.clone(), source: store::Source::File, loaded: c.loaded.clone(), last_renewal: None, default: c.default })
        .collect();
    if let Some(names) = &t.self_signed {
        let loaded = self_signed::load_or_generate(dir, names)?;
        out.push(store::Entry { name: "self-signed".into(), source: store::Source::SelfSigned, loaded, last_renewal: None, default: false });
    }
    Ok(out)
}
