//! ACME (RFC 8555) issuance and renewal of the `[tls.acme]` certificate, as a background
//! service: the stored certificate is served at start (or a temporary self-signed one), a new
//! one is ordered when it is missing, does not cover the configured names or nears expiry,
//! failures are retried with doubling backoff while the old certificate keeps serving, and each
//! outcome is recorded on the certificate's entry for the admin API.

mod account;
mod error;
mod http;
mod issue;
mod storage;

pub use error::AcmeError;

use issue::covers;
use storage::Paths;

use super::certs::{from_pem, CertInfo, Loaded};
use super::store::{CertStore, Entry, Renewal, Source};
use crate::config::{AcmeChallenge, AcmeSettings};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::UnboundedReceiver;

/// One attempt (account, order, validation, issuance) may take this long in all; the CA's HTTP
/// calls have no timeout of their own past connecting.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(300);

/// Failed attempts are retried after `retry_backoff`, doubling up to this (or `retry_backoff`
/// itself, when it is longer).
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Issues and renews the configured certificate. Run it as a Pingora background service; it
/// serves its certificate through `store`, answers challenges through it, and listens on
/// `renew_requests` (fed by `CertStore::request_renewal`) for "renew now".
pub struct AcmeManager {
    pub settings: AcmeSettings,
    pub store: Arc<CertStore>,
    /// Account credentials and issued certificates live here, one folder per CA directory.
    pub dir: PathBuf,
    pub renew_requests: tokio::sync::Mutex<UnboundedReceiver<String>>,
}

/// When the certificate needs renewing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// At once, for this reason.
    Now(&'static str),
    /// At this time (`renew_before` ahead of expiry).
    At(SystemTime),
}

/// When a certificate should be renewed: `renew_before` ahead of its expiry, but never before
/// half its lifetime has passed, so that a `renew_before` longer than the CA's validity (30
/// days against short-lived certificates) cannot make every new certificate due at once and
/// the manager order in a loop.
fn renew_at(info: &CertInfo, renew_before: Duration) -> SystemTime {
    let early = info.not_after.checked_sub(renew_before).unwrap_or(SystemTime::UNIX_EPOCH);
    let lifetime = info.not_after.duration_since(info.not_before).unwrap_or_default();
    early.max(info.not_before + lifetime / 2)
}

/// The schedule for `current` (the issued certificate, if any) given the configured `names`.
fn due(current: Option<&CertInfo>, names: &[String], renew_before: Duration, now: SystemTime) -> Due {
    let Some(info) = current else { return Due::Now("no certificate issued yet") };
    if !names.iter().all(|n| covers(&info.names, n)) {
        return Due::Now("the configured names changed");
    }
    let renew_at = renew_at(info, renew_before);
    if renew_at <= now {
        Due::Now("renewal time reached (renew_before ahead of expiry, and half its lifetime past)")
    } else {
        Due::At(renew_at)
    }
}

/// The next pause after a failure that waited `current`.
fn next_backoff(current: Duration, first: Duration) -> Duration {
    current.saturating_mul(2).min(MAX_BACKOFF.max(first))
}

/// How long the temporary certificate is valid: short, so that the expiry metric shows an
/// ACME certificate that never came.
const PLACEHOLDER_DAYS: u64 = 7;

/// A self-signed certificate for `names`, valid from yesterday for `PLACEHOLDER_DAYS`.
fn placeholder_certificate(names: &[String]) -> Result<Loaded, String> {
    let day = |t: SystemTime| {
        // "YYYY-MM-DDT...": rcgen takes a calendar date.
        let s = humantime::format_rfc3339_seconds(t).to_string();
        let part = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u8>().ok());
        match (s.get(0..4).and_then(|y| y.parse::<i32>().ok()), part(5..7), part(8..10)) {
            (Some(y), Some(m), Some(d)) => Ok(rcgen::date_time_ymd(y, m, d)),
            _ => Err(format!("unexpected date {s}")),
        }
    };
    let now = SystemTime::now();
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "gemini-proxy temporary certificate (waiting for ACME)");
    params.not_before = day(now - Duration::from_secs(86_400))?;
    params.not_after = day(now + Duration::from_secs(PLACEHOLDER_DAYS * 86_400))?;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), "the temporary certificate").map_err(|e| e.to_string())
}

/// The manager's working state, owned by its `start` task.
struct Renewer<'a> {
    m: &'a AcmeManager,
    paths: Paths,
    roots: Option<rustls::RootCertStore>,
    account: Option<instant_acme::Account>,
    /// What the issued certificate (not a placeholder) says about itself.
    current: Option<CertInfo>,
    backoff: Duration,
}

impl<'a> Renewer<'a> {
    fn new(m: &'a AcmeManager) -> Self {
        Renewer { m, paths: Paths::new(&m.dir, &m.settings.directory), roots: None, account: None, current: None, backoff: m.settings.retry_backoff }
    }

    /// The certificate's name in the store and on disk: the first configured name.
    fn name(&self) -> &str {
        self.m.settings.names.first().map(String::as_str).unwrap_or("acme")
    }

    fn due(&self, now: SystemTime) -> Due {
        due(self.current.as_ref(), &self.m.settings.names, self.m.settings.renew_before, now)
    }

    /// Serves the stored certificate, or a placeholder until one is issued.
    fn restore(&mut self) {
        match storage::load_certificate(&self.paths, self.name()) {
            Some(Ok(loaded)) => {
                tracing::info!(name = self.name(), serial = %loaded.info.serial, not_after = %crate::telemetry::time::format(loaded.info.not_after), "serving the stored ACME certificate");
                self.current = Some(loaded.info.clone());
                self.m.store.set_issued(Entry { name: self.name().to_owned(), source: Source::Acme, loaded, last_renewal: None, default: false });
                return;
            }
            Some(Err(e)) => tracing::warn!(name = self.name(), error = %e.report(), "the stored ACME certificate cannot be served; requesting a new one"),
            None => {}
        }
        self.placeholder();
    }

    /// Until the CA issues one, handshakes for the ACME names get a self-signed certificate
    /// (clients get an answer, and TLS-ALPN-01 has a listener that completes handshakes) —
    /// unless a configured certificate already covers every name.
    fn placeholder(&self) {
        let names = &self.m.settings.names;
        let others: Vec<Entry> = self.m.store.entries().into_iter().filter(|e| e.name != self.name()).collect();
        if names.iter().all(|n| others.iter().any(|e| covers(&e.loaded.info.names, n))) {
            return;
        }
        match placeholder_certificate(names) {
            Ok(loaded) => {
                self.m.store.set_issued(Entry { name: self.name().to_owned(), source: Source::SelfSigned, loaded, last_renewal: None, default: false })
            }
            Err(e) => tracing::warn!(error = %e, "cannot make a temporary self-signed certificate for the ACME names"),
        }
    }

    /// One bounded attempt; on success the new certificate serves new handshakes at once. On
    /// failure the old one stays, and the error is logged and recorded; returns the pause
    /// before the next try.
    async fn attempt(&mut self, reason: &str) -> Result<(), Duration> {
        let name = self.name().to_owned();
        tracing::info!(name, reason, directory = %self.m.settings.directory, "requesting a certificate from the ACME CA");
        let result = match tokio::time::timeout(ATTEMPT_LIMIT, self.try_issue()).await {
            Ok(r) => r,
            Err(_) => Err(AcmeError::Timeout { step: "the certificate request", limit: ATTEMPT_LIMIT }),
        };
        match result {
            Ok((loaded, storage_problem)) => {
                let info = loaded.info.clone();
                let not_after = crate::telemetry::time::format(info.not_after);
                let mut message = format!("issued by {}, serial {}, valid until {not_after}", info.issuer, info.serial);
                if let Some(p) = &storage_problem {
                    message.push_str(&format!("; not stored ({p}): the next start requests a new one"));
                }
                self.m.store.set_issued(Entry { name: name.clone(), source: Source::Acme, loaded, last_renewal: None, default: false });
                self.m.store.record_renewal(&name, Renewal { at: SystemTime::now(), ok: true, message });
                tracing::info!(name, serial = %info.serial, not_after, "ACME certificate issued; new handshakes use it");
                self.current = Some(info);
                self.backoff = self.m.settings.retry_backoff;
                Ok(())
            }
            Err(e) => {
                let retry_in = self.backoff;
                let error = e.report();
                let message = format!("{error} (next attempt in {})", humantime::format_duration(retry_in));
                self.m.store.record_renewal(&name, Renewal { at: SystemTime::now(), ok: false, message });
                let serving = if self.current.is_some() { "the previous certificate" } else { "no ACME certificate yet" };
                tracing::warn!(name, error, retry_in = ?retry_in, serving, "ACME certificate request failed");
                self.backoff = next_backoff(self.backoff, self.m.settings.retry_backoff);
                Err(retry_in)
            }
        }
    }

    /// Account, order, storage. Returns the certificate, and why it could not be stored if so
    /// (it is served all the same).
    async fn try_issue(&mut self) -> Result<(Loaded, Option<String>), AcmeError> {
        let s = &self.m.settings;
        self.paths.ensure()?;
        let roots = match &self.roots {
            Some(r) => r.clone(),
            None => self.roots.insert(http::roots(s.directory_ca_pem.as_deref())?).clone(),
        };
        let account = match &self.account {
            Some(a) => a.clone(),
            None => self.account.insert(account::load_or_create(s, &self.paths, &roots).await?).clone(),
        };
        let issued = match issue::issue(&account, &s.names, s.challenge, &self.m.store).await {
            Err(e) if e.problem_type() == Some(account::ACCOUNT_DOES_NOT_EXIST) => {
                tracing::warn!(directory = %s.directory, "the CA no longer knows the stored ACME account; registering a new one");
                self.account = None;
                let account = self.account.insert(account::create(s, &self.paths, &roots).await?).clone();
                issue::issue(&account, &s.names, s.challenge, &self.m.store).await?
            }
            other => other?,
        };
        let stored = storage::save_certificate(&self.paths, self.name(), &issued.chain_pem, &issued.key_pem).err().map(|e| e.report());
        if let Some(p) = &stored {
            tracing::warn!(error = %p, "cannot store the issued certificate");
        }
        Ok((issued.loaded, stored))
    }
}

#[async_trait]
impl BackgroundService for AcmeManager {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut requests = self.renew_requests.lock().await;
        let mut r = Renewer::new(self);
        let challenge = match self.settings.challenge {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        };
        tracing::info!(names = ?self.settings.names, directory = %self.settings.directory, challenge, dir = %r.paths.root.display(), "ACME manager started");
        r.restore();
        let mut requests_open = true;
        // Why an attempt is wanted (none while the certificate is fresh), and not before when.
        let mut pending: Option<&'static str> = None;
        let mut retry_at = Instant::now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = SystemTime::now();
            let wait = match (pending, r.due(now)) {
                (Some(_), _) => retry_at.saturating_duration_since(Instant::now()),
                (None, Due::Now(reason)) => {
                    pending = Some(reason);
                    retry_at.saturating_duration_since(Instant::now())
                }
                // Woken at the renewal time, or every check_interval before it (a clock that
                // jumped, a suspended machine).
                (None, Due::At(t)) => t.duration_since(now).unwrap_or_default().min(self.settings.check_interval),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                req = requests.recv(), if requests_open => match req {
                    // An operator's request goes ahead of any backoff.
                    Some(name) if name == r.name() => {
                        pending = Some("renewal requested through the admin API");
                        retry_at = Instant::now();
                    }
                    Some(other) => tracing::debug!(name = other, "ignoring a renewal request for a certificate this manager does not issue"),
                    None => requests_open = false,
                },
                _ = shutdown.changed() => return,
            }
            let Some(reason) = pending else { continue };
            if Instant::now() < retry_at {
                continue;
            }
            let outcome = tokio::select! {
                o = r.attempt(reason) => o,
                _ = shutdown.changed() => return,
            };
            // Requests that arrived meanwhile are answered by this attempt.
            while requests.try_recv().is_ok() {}
            match outcome {
                Ok(()) => pending = None,
                Err(pause) => retry_at = Instant::now().checked_add(pause).unwrap_or_else(|| Instant::now() + MAX_BACKOFF),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate issued `age` days ago with `days_left` days to go.
    fn info(names: &[&str], age: u64, days_left: u64) -> CertInfo {
        let now = SystemTime::now();
        CertInfo {
            names: names.iter().map(|s| s.to_string()).collect(),
            issuer: "CN=test".into(),
            serial: "01".into(),
            not_before: now - Duration::from_secs(age * 86_400),
            not_after: now + Duration::from_secs(days_left * 86_400),
        }
    }

    #[test]
    fn schedule() {
        let names = vec!["a.test".to_owned(), "b.test".to_owned()];
        let month = Duration::from_secs(30 * 86_400);
        let now = SystemTime::now();
        assert_eq!(due(None, &names, month, now), Due::Now("no certificate issued yet"));
        assert_eq!(due(Some(&info(&["a.test"], 10, 80)), &names, month, now), Due::Now("the configured names changed"));
        assert!(matches!(due(Some(&info(&["a.test", "b.test"], 80, 10)), &names, month, now), Due::Now(_)));
        let fresh = info(&["b.test", "a.test"], 10, 80);
        assert_eq!(due(Some(&fresh), &names, month, now), Due::At(fresh.not_after - month));
        assert!(matches!(due(Some(&info(&["*.test"], 10, 80)), &["x.test".to_owned()], month, now), Due::At(_)), "a wildcard covers");
        // A 6-day certificate (issued a day ago) against 30 days of renew_before: renewed half-way
        // through, not at once and again and again.
        let short = info(&["a.test", "b.test"], 1, 5);
        assert_eq!(due(Some(&short), &names, month, now), Due::At(short.not_before + Duration::from_secs(3 * 86_400)));
    }

    #[test]
    fn the_placeholder_is_short_lived_and_covers_the_names() {
        let names = vec!["a.test".to_owned(), "b.test".to_owned()];
        let p = placeholder_certificate(&names).unwrap();
        assert_eq!(p.info.names, names);
        let now = SystemTime::now();
        let left = p.info.not_after.duration_since(now).unwrap();
        assert!(left > Duration::from_secs((PLACEHOLDER_DAYS - 1) * 86_400) && left <= Duration::from_secs((PLACEHOLDER_DAYS + 1) * 86_400), "{left:?}");
        assert!(p.info.not_before < now);
        assert!(p.info.issuer.contains("temporary"), "{}", p.info.issuer);
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let first = Duration::from_secs(60);
        let mut b = first;
        let mut seen = vec![];
        for _ in 0..8 {
            seen.push(b.as_secs());
            b = next_backoff(b, first);
        }
        assert_eq!(seen, vec![60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(next_backoff(Duration::from_secs(7200), Duration::from_secs(7200)), Duration::from_secs(7200), "a longer first pause is kept");
    }
}
