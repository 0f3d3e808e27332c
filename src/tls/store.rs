//! The certificates being served, swappable at any time: a map from names to certificates
//! (exact names, then wildcards, then a default) behind an `ArcSwap`, read by the rustls
//! resolver on every handshake without locks. ACME challenge material lives here too.

use super::certs::{CertInfo, Loaded};
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where a served certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    File,
    SelfSigned,
    Acme,
}

/// The outcome of the last issuance or renewal attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Renewal {
    #[serde(with = "crate::telemetry::time::rfc3339")]
    #[schema(value_type = String)]
    pub at: SystemTime,
    pub ok: bool,
    pub message: String,
}

/// One served certificate.
#[derive(Debug, Clone)]
pub struct Entry {
    /// A label for the admin API (the config's name, or the first DNS name).
    pub name: String,
    pub source: Source,
    pub loaded: Loaded,
    pub last_renewal: Option<Renewal>,
    /// Serves clients without SNI or with a name nothing else matches.
    pub default: bool,
}

#[derive(Debug, Default)]
struct CertMap {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Served certificates and ACME challenge material.
#[derive(Default)]
pub struct CertStore {
    map: ArcSwap<CertMap>,
    /// Configured (files, self-signed) and issued (ACME) entries, by name.
    entries: Mutex<(Vec<Entry>, Vec<Entry>)>,
    /// TLS-ALPN-01 challenge certificates, by DNS name.
    alpn_challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01 key authorizations, by token.
    http_challenges: Mutex<HashMap<String, String>>,
    /// Where "renew now" requests go (the ACME manager listens), and the name of the
    /// certificate it manages.
    renewals: Mutex<Option<(tokio::sync::mpsc::UnboundedSender<String>, String)>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertStore")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CertStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the configured certificates (files and self-signed), keeping issued ones.
    /// Returns whether that changes what is served: another certificate chain, or the names
    /// and default marks they are served under (a reload says so in its log line).
    pub fn set_configured(&self, entries: Vec<Entry>) -> bool {
        let mut e = lock(&self.entries);
        let same = e.0.len() == entries.len()
            && e.0.iter().zip(&entries).all(|(old, new)| old.name == new.name && old.default == new.default && old.loaded.key.cert == new.loaded.key.cert);
        e.0 = entries;
        self.rebuild(&e.0, &e.1);
        !same
    }

    /// Adds or replaces an issued certificate (by name). New handshakes use it at once; open
    /// connections keep the one they negotiated.
    pub fn set_issued(&self, entry: Entry) {
        let mut e = lock(&self.entries);
        e.1.retain(|x| x.name != entry.name);
        e.1.push(entry);
        self.rebuild(&e.0, &e.1);
    }

    /// Records a renewal attempt's outcome on an issued certificate (kept even if it failed).
    pub fn record_renewal(&self, name: &str, renewal: Renewal) {
        let mut guard = lock(&self.entries);
        let (configured, issued) = &mut *guard;
        for x in issued.iter_mut().chain(configured.iter_mut()).filter(|x| x.name == name) {
            x.last_renewal = Some(renewal.clone());
        }
    }

    /// Every served certificate.
    pub fn entries(&self) -> Vec<Entry> {
        let e = lock(&self.entries);
        e.0.iter().chain(e.1.iter()).cloned().collect()
    }

    pub fn entry(&self, name: &str) -> Option<Entry> {
        self.entries().into_iter().find(|e| e.name == name)
    }

    fn rebuild(&self, configured: &[Entry], issued: &[Entry]) {
        let mut m = CertMap::default();
        // Issued certificates come last so that they win over placeholders for the same names.
        for e in configured.iter().chain(issued.iter()) {
            for n in &e.loaded.info.names {
                match n.strip_prefix("*.") {
                    Some(suffix) => m.wildcard.insert(suffix.to_owned(), e.loaded.key.clone()),
                    None => m.exact.insert(n.clone(), e.loaded.key.clone()),
                };
            }
            if e.default {
                m.default = Some(e.loaded.key.clone());
            }
        }
        if m.default.is_none() {
            m.default = configured.iter().chain(issued.iter()).next().map(|e| e.loaded.key.clone());
        }
        self.map.store(Arc::new(m));
    }

    /// The certificate for `sni`: exact name, then a wildcard one label up, then the default.
    pub fn select(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let m = self.map.load();
        if let Some(name) = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) {
            if let Some(k) = m.exact.get(&name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = m.wildcard.get(parent) {
                    return Some(k.clone());
                }
            }
        }
        m.default.clone()
    }

    pub fn set_alpn_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        let mut c = lock(&self.alpn_challenges);
        match key {
            Some(k) => c.insert(name.to_ascii_lowercase(), k),
            None => c.remove(&name.to_ascii_lowercase()),
        };
    }

    pub fn set_http_challenge(&self, token: &str, key_authorization: Option<String>) {
        let mut c = lock(&self.http_challenges);
        match key_authorization {
            Some(k) => c.insert(token.to_owned(), k),
            None => c.remove(token),
        };
    }

    /// The key authorization for an HTTP-01 token, if one is pending.
    pub fn http_challenge(&self, token: &str) -> Option<String> {
        lock(&self.http_challenges).get(token).cloned()
    }

    /// Connects "renew now" requests for certificate `name` to whoever renews it.
    pub fn set_renewer(&self, tx: tokio::sync::mpsc::UnboundedSender<String>, name: &str) {
        *lock(&self.renewals) = Some((tx, name.to_owned()));
    }

    /// Asks for an immediate renewal (or first issuance) of `name`. False when nothing renews
    /// that certificate.
    pub fn request_renewal(&self, name: &str) -> bool {
        lock(&self.renewals).as_ref().is_some_and(|(tx, managed)| managed == name && tx.send(name.to_owned()).is_ok())
    }

    /// Whether any certificate is served (TLS listeners need one).
    pub fn is_empty(&self) -> bool {
        self.map.load().default.is_none()
    }

    /// Certificate descriptions with their entry names, for metrics.
    pub fn infos(&self) -> Vec<(String, CertInfo)> {
        self.entries().into_iter().map(|e| (e.name, e.loaded.info)).collect()
    }
}

/// The rustls resolver: SNI selection, and TLS-ALPN-01 challenge certificates for validation
/// connections.
#[derive(Debug)]
pub struct Resolver(pub Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            return lock(&self.0.alpn_challenges).get(&name).cloned();
        }
        self.0.select(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::from_pem;

    fn entry(name: &str, names: &[&str], default: bool) -> Entry {
        let c = rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        Entry {
            name: name.into(),
            source: Source::File,
            loaded: from_pem(c.cert.pem().as_bytes(), c.signing_key.serialize_pem().as_bytes(), name).unwrap(),
            last_renewal: None,
            default,
        }
    }

    fn same(a: &Option<Arc<CertifiedKey>>, b: &Entry) -> bool {
        a.as_ref().is_some_and(|k| k.cert[0] == b.loaded.key.cert[0])
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let store = CertStore::new();
        let api = entry("api", &["api.example.com"], false);
        let wild = entry("wild", &["*.example.com"], false);
        let fallback = entry("fallback", &["fallback.test"], true);
        assert!(store.set_configured(vec![api.clone(), wild.clone(), fallback.clone()]));
        assert!(!store.set_configured(vec![api.clone(), wild.clone(), fallback.clone()]), "the same certificates again change nothing");
        assert!(same(&store.select(Some("api.example.com")), &api));
        assert!(same(&store.select(Some("API.Example.COM.")), &api), "case and a trailing dot do not matter");
        assert!(same(&store.select(Some("www.example.com")), &wild));
        assert!(same(&store.select(Some("a.b.example.com")), &fallback), "a wildcard covers one label only");
        assert!(same(&store.select(Some("example.com")), &fallback), "nor the bare domain");
        assert!(same(&store.select(None), &fallback));
        assert!(same(&store.select(Some("other.test")), &fallback));
    }

    #[test]
    fn without_a_marked_default_the_first_certificate_is_used_and_issued_ones_win() {
        let store = CertStore::new();
        let placeholder = entry("placeholder", &["proxy.test"], false);
        store.set_configured(vec![placeholder.clone()]);
        assert!(same(&store.select(Some("unknown.test")), &placeholder));
        let issued = entry("proxy.test", &["proxy.test"], false);
        store.set_issued(issued.clone());
        assert!(same(&store.select(Some("proxy.test")), &issued));
        store.record_renewal("proxy.test", Renewal { at: SystemTime::now(), ok: false, message: "boom".into() });
        assert_eq!(store.entry("proxy.test").unwrap().last_renewal.unwrap().message, "boom");
        assert!(store.set_configured(vec![]));
        assert!(same(&store.select(Some("proxy.test")), &issued), "a reload keeps issued certificates");
        // A new chain under the same name is a change.
        assert!(store.set_configured(vec![placeholder.clone()]));
        assert!(store.set_configured(vec![entry("placeholder", &["proxy.test"], false)]));
    }

    #[test]
    fn challenges() {
        let store = CertStore::new();
        store.set_http_challenge("tok", Some("tok.thumb".into()));
        assert_eq!(store.http_challenge("tok").as_deref(), Some("tok.thumb"));
        store.set_http_challenge("tok", None);
        assert!(store.http_challenge("tok").is_none());
        assert!(store.is_empty());
    }
}
