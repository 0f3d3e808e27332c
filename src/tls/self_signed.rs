//! Development certificates: generated for the configured names on first start, kept in the
//! data directory and reused (regenerated when the names change or it nears expiry).

use super::certs::{from_pem, CertError, Loaded};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Regenerate when less than this is left.
const RENEW_WITHIN: Duration = Duration::from_secs(30 * 86_400);

/// How long a generated certificate is valid: a year and a month, under the 398 days that
/// browsers accept (rcgen's default, 1975 to 4096, reads as a mistake in every tool).
const VALIDITY: Duration = Duration::from_secs(397 * 86_400);

/// Backdated a little so that a client whose clock is slightly behind still accepts it.
const BACKDATE: Duration = Duration::from_secs(3_600);

/// The first of `names` that a certificate cannot carry, which [`load_or_generate`] would
/// refuse: a DNS name must be ASCII (an IA5String; an internationalized name is written in its
/// `xn--` form). The config checks this, so the name is refused at its line, not at start-up.
pub fn unusable_name(names: &[String]) -> Option<&str> {
    names.iter().map(String::as_str).find(|n| rcgen::CertificateParams::new(vec![n.to_string()]).is_err())
}

/// Loads the stored self-signed certificate for `names`, or makes (and stores) a new one.
pub fn load_or_generate(dir: &Path, names: &[String]) -> Result<Loaded, CertError> {
    let cert_path = dir.join("self-signed.crt");
    let key_path = dir.join("self-signed.key");
    if let (Ok(c), Ok(k)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
        if let Ok(l) = from_pem(&c, &k, "the stored self-signed certificate") {
            let mut want: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
            let mut have = l.info.names.clone();
            want.sort();
            have.sort();
            let fresh = l.info.not_after.duration_since(SystemTime::now()).is_ok_and(|left| left > RENEW_WITHIN);
            if want == have && fresh {
                return Ok(l);
            }
        }
    }
    let what = "a self-signed certificate";
    let invalid = |e: rcgen::Error| CertError::Invalid { what: what.into(), message: e.to_string() };
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(invalid)?;
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + VALIDITY).into();
    let signing_key = rcgen::KeyPair::generate().map_err(invalid)?;
    let cert = params.self_signed(&signing_key).map_err(invalid)?;
    let (cert_pem, key_pem) = (cert.pem(), signing_key.serialize_pem());
    let io = |e: std::io::Error| CertError::Read { path: dir.display().to_string(), message: e.to_string() };
    std::fs::create_dir_all(dir).map_err(io)?;
    crate::control::write_atomically(&cert_path, &cert_pem).map_err(io)?;
    crate::control::write_atomically(&key_path, &key_pem).map_err(io)?;
    restrict(&key_path);
    from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), what)
}

/// Private keys are readable by the owner only.
pub fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_until_the_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let a = load_or_generate(dir.path(), &names).unwrap();
        assert_eq!(a.info.names, vec!["localhost", "127.0.0.1"]);
        let b = load_or_generate(dir.path(), &names).unwrap();
        assert_eq!(a.info.serial, b.info.serial, "reused from the data directory");
        let left = a.info.not_after.duration_since(SystemTime::now()).unwrap();
        assert!(left > VALIDITY - Duration::from_secs(60) && left <= VALIDITY, "valid for {left:?}");
        assert!(a.info.not_before < SystemTime::now());
        let c = load_or_generate(dir.path(), &["dev.test".to_owned()]).unwrap();
        assert_ne!(a.info.serial, c.info.serial);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.path().join("self-signed.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
