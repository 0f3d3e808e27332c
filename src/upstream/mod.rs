//! The upstream side of the data plane: where Gemini is (`target`, with DNS resolved off the
//! request path), and HTTP/1.1 connections to it (`conn`) kept in an idle pool for reuse.
//! Connections (TCP and TLS) are made by Pingora's `TransportConnector`.

pub mod conn;
pub mod target;

pub use conn::{UpstreamClient, UpstreamConn, UpstreamFailure};
pub use target::UpstreamTarget;

/// Writes the system roots plus the PEM certificates of `extra_ca_file` into one bundle under
/// `dir` and returns its path. (Pingora's connector trusts either the system roots or one file;
/// an extra CA for a private upstream must add to the system roots, not replace them.)
pub fn roots_with(extra_ca_file: &str, dir: &std::path::Path) -> std::io::Result<String> {
    use base64::Engine;
    let mut pem = String::new();
    for cert in pingora::tls::load_native_certs().unwrap_or_default() {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.push_str(&std::fs::read_to_string(extra_ca_file)?);
    std::fs::create_dir_all(dir)?;
    let path = dir.join("upstream-roots.pem");
    crate::control::write_atomically(&path, &pem)?;
    Ok(path.display().to_string())
}
