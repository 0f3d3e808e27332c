//! ACME state in the data directory, one folder per CA directory URL: the account credentials
//! (`account.json`) and the certificate (`NAME.crt` chain, `NAME.key`), written atomically,
//! secrets readable by the owner only (files 0600, folders 0700).

use super::error::AcmeError;
use crate::tls::certs::{from_pem, Loaded};
use instant_acme::AccountCredentials;
use std::path::{Path, PathBuf};

/// The files of one CA directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
}

/// A file or folder name made of `s`: letters, digits, dots and dashes kept, anything else
/// (slashes, colons) turned into `_`, so a name can never leave its folder.
fn label(s: &str) -> String {
    let l: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    let l = l.trim_start_matches('.');
    if l.is_empty() {
        "_".into()
    } else {
        l.to_owned()
    }
}

impl Paths {
    /// `dir/<directory URL without https://, as a file name>`, e.g.
    /// `acme/acme-v02.api.letsencrypt.org_directory`: accounts and certificates of different
    /// CAs (staging and production) never mix.
    pub fn new(dir: &Path, directory_url: &str) -> Paths {
        let url = directory_url.strip_prefix("https://").unwrap_or(directory_url);
        Paths { root: dir.join(label(url)) }
    }

    pub fn account(&self) -> PathBuf {
        self.root.join("account.json")
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.root.join(format!("{}.crt", label(name)))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.root.join(format!("{}.key", label(name)))
    }

    /// Creates the folder (and its parents), private to the owner.
    pub fn ensure(&self) -> Result<(), AcmeError> {
        std::fs::create_dir_all(&self.root).map_err(AcmeError::storage(&self.root))?;
        restrict(&self.root, 0o700);
        if let Some(parent) = self.root.parent() {
            restrict(parent, 0o700);
        }
        Ok(())
    }
}

fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot restrict permissions");
    }
}

/// Writes a file atomically; `secret` ones are made readable by the owner only (the folder is
/// already private, so the file is never exposed in between).
fn write(path: &Path, text: &str, secret: bool) -> Result<(), AcmeError> {
    crate::control::write_atomically(path, text).map_err(AcmeError::storage(path))?;
    if secret {
        restrict(path, 0o600);
    }
    Ok(())
}

/// The stored certificate for `name`: `None` when there is none, an error when it is there
/// but cannot be served (a torn pair, a bad file).
pub fn load_certificate(paths: &Paths, name: &str) -> Option<Result<Loaded, AcmeError>> {
    let (cert_path, key_path) = (paths.cert(name), paths.key(name));
    let chain = match std::fs::read(&cert_path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(AcmeError::storage(&cert_path)(e))),
    };
    let key = match std::fs::read(&key_path) {
        Ok(k) => k,
        Err(e) => return Some(Err(AcmeError::storage(&key_path)(e))),
    };
    Some(from_pem(&chain, &key, &cert_path.display().to_string()).map_err(AcmeError::Certificate))
}

/// Stores a certificate chain and its key (key first: a crash in between leaves a pair that
/// `load_certificate` refuses, so the next start issues again rather than serve a mismatch).
pub fn save_certificate(paths: &Paths, name: &str, chain_pem: &str, key_pem: &str) -> Result<(), AcmeError> {
    write(&paths.key(name), key_pem, true)?;
    write(&paths.cert(name), chain_pem, false)
}

/// The stored account credentials, if any.
pub fn load_account(paths: &Paths) -> Result<Option<AccountCredentials>, AcmeError> {
    let path = paths.account();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AcmeError::storage(&path)(e)),
    };
    // serde_json's message names a position, never the content.
    serde_json::from_str(&text).map(Some).map_err(|e| AcmeError::Account { path: path.display().to_string(), message: e.to_string() })
}

pub fn save_account(paths: &Paths, credentials: &AccountCredentials) -> Result<(), AcmeError> {
    let path = paths.account();
    let text = serde_json::to_string_pretty(credentials).map_err(|e| AcmeError::Account { path: path.display().to_string(), message: e.to_string() })?;
    write(&path, &text, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn folders_per_directory_and_names_stay_inside() {
        let p = Paths::new(Path::new("/d"), "https://acme-v02.api.letsencrypt.org/directory");
        assert_eq!(p.root, Path::new("/d/acme-v02.api.letsencrypt.org_directory"));
        assert_eq!(Paths::new(Path::new("/d"), "https://127.0.0.1:14000/dir").root, Path::new("/d/127.0.0.1_14000_dir"));
        assert_eq!(p.cert("../../etc/passwd"), Path::new("/d/acme-v02.api.letsencrypt.org_directory/_.._etc_passwd.crt"));
        assert_eq!(p.key("proxy.example.com"), Path::new("/d/acme-v02.api.letsencrypt.org_directory/proxy.example.com.key"));
    }

    #[test]
    fn certificates_round_trip_and_secrets_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(&dir.path().join("acme"), "https://ca.test/dir");
        paths.ensure().unwrap();
        assert_eq!(mode(&paths.root), 0o700);
        assert!(load_certificate(&paths, "a.test").is_none());
        let c = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        save_certificate(&paths, "a.test", &c.cert.pem(), &c.signing_key.serialize_pem()).unwrap();
        let loaded = load_certificate(&paths, "a.test").unwrap().unwrap();
        assert_eq!(loaded.info.names, vec!["a.test"]);
        assert_eq!(mode(&paths.key("a.test")), 0o600);

        // A torn pair (key of another certificate) is refused, not served.
        let other = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        std::fs::write(paths.key("a.test"), other.signing_key.serialize_pem()).unwrap();
        assert!(load_certificate(&paths, "a.test").unwrap().is_err());

        assert!(load_account(&paths).unwrap().is_none());
        std::fs::write(paths.account(), "{not json").unwrap();
        let Err(e) = load_account(&paths) else { panic!("junk credentials were accepted") };
        assert!(e.to_string().contains("move it away"), "{e}");
    }
}
