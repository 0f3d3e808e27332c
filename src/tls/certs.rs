//! Certificates as the proxy holds them: PEM chains and keys loaded (and refused with a clear
//! error when they are bad, never a panic), turned into rustls signing keys, and described
//! (names, issuer, validity) for the admin API and metrics.

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{what} has no PEM certificate")]
    NoCertificate { what: String },
    #[error("{what} has no PEM private key")]
    NoKey { what: String },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CertInfo {
    /// DNS names and IP addresses it is valid for (SANs; the CN when there are none).
    pub names: Vec<String>,
    pub issuer: String,
    pub serial: String,
    #[serde(with = "crate::telemetry::time::rfc3339")]
    #[schema(value_type = String)]
    pub not_before: SystemTime,
    #[serde(with = "crate::telemetry::time::rfc3339")]
    #[schema(value_type = String)]
    pub not_after: SystemTime,
}

/// A certificate chain with its key, ready to serve.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

fn read(path: &str) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| CertError::Read { path: path.to_owned(), message: e.to_string() })
}

/// Parses a PEM certificate chain (leaf first).
pub fn parse_chain(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut rd = pem;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut rd)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Invalid { what: what.to_owned(), message: format!("malformed PEM: {e}") })?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate { what: what.to_owned() });
    }
    Ok(certs)
}

/// Parses a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    let mut rd = pem;
    rustls_pemfile::private_key(&mut rd)
        .map_err(|e| CertError::Invalid { what: what.to_owned(), message: format!("malformed PEM: {e}") })?
        .ok_or_else(|| CertError::NoKey { what: what.to_owned() })
}

/// Builds a servable certificate from PEM text, checking that the key belongs to the leaf.
pub fn from_pem(chain_pem: &[u8], key_pem: &[u8], what: &str) -> Result<Loaded, CertError> {
    let chain = parse_chain(chain_pem, what)?;
    let key = parse_key(key_pem, what)?;
    let signing = any_supported_type(&key).map_err(|e| CertError::Invalid { what: what.to_owned(), message: format!("unsupported private key: {e}") })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        // Keys whose public half cannot be extracted are let through: the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(CertError::Invalid { what: what.to_owned(), message: format!("the private key does not match the certificate: {e}") }),
    }
    let info = describe(&certified.cert[0], what)?;
    Ok(Loaded { key: Arc::new(certified), info })
}

/// Loads a certificate chain file and its key file.
pub fn load_files(cert_file: &str, key_file: &str) -> Result<Loaded, CertError> {
    let chain = read(cert_file)?;
    let key = read(key_file)?;
    from_pem(&chain, &key, &format!("{cert_file} / {key_file}"))
}

fn asn1_time(t: x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH
    }
}

/// Reads names, issuer and validity out of a DER certificate.
pub fn describe(der: &CertificateDer<'_>, what: &str) -> Result<CertInfo, CertError> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| CertError::Invalid { what: what.to_owned(), message: format!("not an X.509 certificate: {e}") })?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(ip) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*ip) {
                        names.push(std::net::IpAddr::from(a).to_string());
                    } else if let Ok(a) = <[u8; 16]>::try_from(*ip) {
                        names.push(std::net::IpAddr::from(a).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()) {
            names.push(cn.to_ascii_lowercase());
        }
    }
    Ok(CertInfo {
        names,
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: asn1_time(cert.validity().not_before),
        not_after: asn1_time(cert.validity().not_after),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_good_pair_loads_and_is_described() {
        let (cert, key) = self_signed(&["api.example.com", "*.example.org", "127.0.0.1"]);
        let l = from_pem(cert.as_bytes(), key.as_bytes(), "t").unwrap();
        assert_eq!(l.info.names, vec!["api.example.com", "*.example.org", "127.0.0.1"]);
        assert!(l.info.not_after > SystemTime::now());
        assert!(!l.info.issuer.is_empty());
    }

    #[test]
    fn bad_pem_is_an_error_never_a_panic() {
        let (cert, key) = self_signed(&["a.test"]);
        let (_, other_key) = self_signed(&["b.test"]);
        assert!(matches!(from_pem(b"not pem", key.as_bytes(), "t"), Err(CertError::NoCertificate { .. })));
        assert!(matches!(from_pem(cert.as_bytes(), b"", "t"), Err(CertError::NoKey { .. })));
        assert!(matches!(from_pem(key.as_bytes(), key.as_bytes(), "t"), Err(CertError::NoCertificate { .. })));
        let garbled = cert.replace("MII", "MXX");
        assert!(from_pem(garbled.as_bytes(), key.as_bytes(), "t").is_err());
        let e = from_pem(cert.as_bytes(), other_key.as_bytes(), "t").unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        assert!(matches!(load_files("/nonexistent.pem", "/nonexistent.key"), Err(CertError::Read { .. })));
    }
}
