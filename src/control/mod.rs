//! The control plane's core, shared by the admin API and signals: applying a new configuration
//! (validate completely, refuse to overwrite a file edited behind its back, write atomically,
//! swap the snapshot, record a version and one audit entry when the text changed), reloading
//! from disk on SIGHUP, and keeping key state and resource ownership in the state store.

pub mod bindings;
pub mod key_sync;
pub mod reload;

use crate::config::edit::{ConfigDoc, EditError};
use crate::config::redact;
use crate::config::{self, ConfigSource, EnvLookup, LocatedProblem, ProcessEnv, Settings};
use crate::gateway::{Runtime, Shared};
use crate::store::comment::{ServerComment, VersionComment};
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the configuration is not valid")]
    Invalid(Vec<LocatedProblem>),
    #[error("{0}")]
    ReadOnly(String),
    /// The file no longer holds what was last loaded or written: writing would lose the edit.
    #[error(
        "the config file {} was edited outside the API since it was loaded: reload it first (SIGHUP or POST /api/v1/config/reload), then repeat the change",
        .0.display()
    )]
    EditedOnDisk(PathBuf),
    #[error("cannot write the configuration file: {0}")]
    Io(String),
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// What applying a configuration did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    /// The config version the running configuration is recorded as.
    pub version: Option<i64>,
    /// False when the new text equals the running one (then no version or audit entry is
    /// recorded, and nothing is written).
    pub changed: bool,
    /// Settings that only take effect after a restart.
    pub restart_needed: Vec<String>,
    /// Whether other certificates are served from now on (files replaced on disk are reloaded
    /// even when the config text is the same).
    pub certificates_changed: bool,
}

/// A change to the configuration, as the version history and the audit log record it.
#[derive(Debug, Clone)]
pub struct Change {
    /// Audit action: `config.replace`, `keys.add`, `clients.revoke`...
    pub action: &'static str,
    /// What it changed: `config`, a pool, a client.
    pub target: String,
    /// Shown in the version history: a server comment (with its kind) or a user's words.
    pub comment: VersionComment,
    /// Audit detail (a JSON object); the version and the restart notes are added to it.
    pub detail: serde_json::Value,
}

impl Change {
    /// `comment` is a [`ServerComment`], or a user's words as text.
    pub fn new(action: &'static str, target: impl Into<String>, comment: impl Into<VersionComment>) -> Change {
        Change { action, target: target.into(), comment: comment.into(), detail: serde_json::json!({}) }
    }

    pub fn with_detail(self, detail: serde_json::Value) -> Change {
        Change { detail, ..self }
    }
}

/// Owns the running configuration: its text, where it lives, and how it changes.
pub struct ConfigManager {
    pub source: ConfigSource,
    shared: Arc<Shared>,
    db: Option<Arc<Store>>,
    metrics: Arc<Metrics>,
    /// The running text, which is also what the file held when it was last loaded or written
    /// (a rejected reload leaves both as they were). The lock also serialises changes.
    text: tokio::sync::Mutex<String>,
    /// Settings the process started with (some cannot change without a restart).
    boot: Arc<Settings>,
    /// Where state lives (self-signed certificates are generated there).
    data_dir: PathBuf,
}

impl ConfigManager {
    pub fn new(source: ConfigSource, text: String, shared: Arc<Shared>, db: Option<Arc<Store>>, metrics: Arc<Metrics>, data_dir: PathBuf) -> Self {
        let boot = shared.runtime.load().settings.clone();
        ConfigManager { source, shared, db, metrics, text: tokio::sync::Mutex::new(text), boot, data_dir }
    }

    pub fn env(&self) -> &dyn EnvLookup {
        &ProcessEnv
    }

    fn origin(&self) -> String {
        self.source.to_string()
    }

    /// The running config text.
    pub async fn text(&self) -> String {
        self.text.lock().await.clone()
    }

    /// The running config text with secrets replaced by placeholders.
    pub async fn redacted_text(&self) -> String {
        redact::redact(&self.text().await)
    }

    /// Validates `text` (placeholders allowed) without applying it.
    pub async fn check(&self, text: &str) -> Result<Settings, ApplyError> {
        let current = self.text().await;
        let real = unredact(text, &current)?;
        config::parse_str(&real, &self.origin(), self.env()).map_err(|e| ApplyError::Invalid(e.problems().to_vec()))
    }

    /// Re-reads the config file (SIGHUP).
    pub async fn reload_from_disk(&self, actor: &str) -> Result<Applied, ApplyError> {
        let ConfigSource::File(path) = &self.source else {
            return Err(ApplyError::ReadOnly("the proxy runs from environment variables: there is no file to reload".into()));
        };
        let text = std::fs::read_to_string(path).map_err(|e| ApplyError::Io(format!("{}: {e}", path.display())))?;
        let mut guard = self.text.lock().await;
        self.apply_locked(&mut guard, text, actor, &Change::new("config.reload", "config", ServerComment::ReloadedFromDisk), false).await
    }

    /// Replaces the configuration with `text` (placeholders of the running secrets allowed).
    pub async fn replace(&self, text: &str, actor: &str, comment: VersionComment) -> Result<Applied, ApplyError> {
        let mut guard = self.text.lock().await;
        let real = unredact(text, &guard)?;
        self.apply_locked(&mut guard, real, actor, &Change::new("config.replace", "config", comment), true).await
    }

    /// Applies an edit of the running document (add keys, add a client...). When `f` fails,
    /// nothing is written or recorded.
    pub async fn edit<T>(
        &self,
        actor: &str,
        change: Change,
        f: impl FnOnce(&mut ConfigDoc, &dyn EnvLookup) -> Result<T, EditError>,
    ) -> Result<(T, Applied), ApplyError> {
        let mut guard = self.text.lock().await;
        let mut doc = ConfigDoc::parse(&guard)?;
        let out = f(&mut doc, self.env())?;
        let applied = self.apply_locked(&mut guard, doc.text(), actor, &change, true).await?;
        Ok((out, applied))
    }

    /// Validates `text`, writes it to the file (`write_file`, when it changed), swaps it in,
    /// and records a version and one audit entry when it changed. Any error leaves the file,
    /// the running configuration and the records as they were.
    async fn apply_locked(&self, current: &mut String, text: String, actor: &str, change: &Change, write_file: bool) -> Result<Applied, ApplyError> {
        let settings = self.validate(&text, actor)?;
        let path = if write_file { Some(self.writable_path()?) } else { None };
        let changed = *current != text;
        // Prepared before the file is written: a certificate that fails to load refuses the change.
        let tls_entries = match (&self.shared.tls, &settings.tls) {
            (Some(_), Some(t)) => Some(
                crate::tls::configured_entries(t, &self.data_dir.join("tls"))
                    .map_err(|e| ApplyError::Invalid(vec![LocatedProblem { line: None, column: None, message: format!("tls: {e}") }]))?,
            ),
            _ => None,
        };
        if let (Some(path), true) = (path, changed) {
            ensure_not_edited(path, current)?;
            write_atomically(path, &text).map_err(|e| ApplyError::Io(format!("{}: {e}", path.display())))?;
        }
        // New certificate files (or self-signed names) serve new handshakes at once.
        let certificates_changed = match (&self.shared.tls, tls_entries) {
            (Some(front), Some(entries)) => front.store.set_configured(entries),
            _ => false,
        };
        let restart_needed = restart_needed(&self.boot, &settings);
        let old = self.shared.runtime.load_full();
        let runtime = Runtime::build(settings, &*self.shared.store, Some(&old));
        self.shared.runtime.store(Arc::new(runtime));
        *current = text;
        self.metrics.reload(true);
        let version = if changed { self.record(current, actor, change, &restart_needed).await } else { self.latest_version().await };
        tracing::info!(actor, action = change.action, version, changed, certificates_changed, restart_needed = ?restart_needed, "configuration applied");
        Ok(Applied { version, changed, restart_needed, certificates_changed })
    }

    fn validate(&self, text: &str, actor: &str) -> Result<Settings, ApplyError> {
        config::parse_str(text, &self.origin(), self.env()).map_err(|e| {
            self.metrics.reload(false);
            let problems = e.problems().to_vec();
            tracing::warn!(actor, problems = problems.len(), first = %problems.first().map(|p| p.to_string()).unwrap_or_default(), "configuration rejected; the running one stays in force");
            ApplyError::Invalid(problems)
        })
    }

    /// The file API changes are written to.
    fn writable_path(&self) -> Result<&Path, ApplyError> {
        match &self.source {
            ConfigSource::File(path) => Ok(path),
            ConfigSource::Environment => Err(ApplyError::ReadOnly(
                "the proxy runs from environment variables, not a config file: start it with `-c FILE` to change its configuration over the API".into(),
            )),
        }
    }

    /// Records `text` as a version (unless it is the latest one already) and the change as one
    /// audit entry; returns the version. Failures are logged: the change is applied by now.
    async fn record(&self, text: &str, actor: &str, change: &Change, restart_needed: &[String]) -> Option<i64> {
        let db = self.db.clone()?;
        let (text, actor, change, restart_needed) = (text.to_owned(), actor.to_owned(), change.clone(), restart_needed.to_vec());
        let recorded = tokio::task::spawn_blocking(move || {
            let version = match db.add_config_version_if_new(&text, &actor, &change.comment) {
                Ok((id, _)) => Some(id),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record the config version");
                    None
                }
            };
            let mut detail = change.detail;
            if let Some(d) = detail.as_object_mut() {
                d.insert("version".into(), version.into());
                d.insert("comment".into(), change.comment.text().into());
                d.insert("restart_needed".into(), restart_needed.into());
            }
            if let Err(e) = db.add_audit(&actor, change.action, &change.target, &detail) {
                tracing::warn!(error = %e, "cannot record an audit entry");
            }
            version
        })
        .await;
        recorded.ok().flatten()
    }

    /// The latest recorded version: what an unchanged configuration is recorded as.
    async fn latest_version(&self) -> Option<i64> {
        let db = self.db.clone()?;
        let latest = tokio::task::spawn_blocking(move || db.config_versions(1)).await;
        latest.ok()?.ok()?.first().map(|m| m.id)
    }
}

/// Refuses to write over a file that no longer holds `loaded` (what was last loaded from it
/// or written to it): an operator's edit that was not reloaded yet would be lost.
fn ensure_not_edited(path: &Path, loaded: &str) -> Result<(), ApplyError> {
    match std::fs::read(path) {
        Ok(on_disk) if on_disk == loaded.as_bytes() => Ok(()),
        Ok(_) => Err(ApplyError::EditedOnDisk(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApplyError::EditedOnDisk(path.to_owned())),
        Err(e) => Err(ApplyError::Io(format!("{}: {e}", path.display()))),
    }
}

/// `text` with the running secrets in place of their placeholders. A placeholder that stands
/// for none is a problem of the text, at its line and column like the config's own.
fn unredact(text: &str, current: &str) -> Result<String, ApplyError> {
    redact::unredact(text, current).map_err(|e| ApplyError::Invalid(e.problems(text)))
}

/// Settings that the running process cannot change in place.
fn restart_needed(boot: &Settings, new: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if boot.server.listen != new.server.listen {
        out.push("server.listen (restart, or a graceful upgrade: see DESIGN.md)".into());
    }
    if boot.server.threads != new.server.threads {
        out.push("server.threads".into());
    }
    if boot.server.work_stealing != new.server.work_stealing {
        out.push("server.work_stealing".into());
    }
    if boot.server.buffered_bytes_limit != new.server.buffered_bytes_limit {
        out.push("server.buffered_bytes_limit".into());
    }
    if boot.admin.listen != new.admin.listen || boot.admin.enabled != new.admin.enabled {
        out.push("admin.listen / admin.enabled".into());
    }
    if boot.log.access_log != new.log.access_log || boot.log.level != new.log.level || boot.log.json != new.log.json {
        out.push("[log]".into());
    }
    if boot.state != new.state {
        out.push("[state]".into());
    }
    let tls_listen = |s: &Settings| s.tls.as_ref().map(|t| (t.listen.clone(), t.http2)).unwrap_or_default();
    if tls_listen(boot) != tls_listen(new) {
        out.push("tls.listen / tls.http2".into());
    }
    if boot.tls.as_ref().and_then(|t| t.acme.clone()) != new.tls.as_ref().and_then(|t| t.acme.clone()) {
        out.push("[tls.acme]".into());
    }
    if boot.upstream.ca_file != new.upstream.ca_file {
        out.push("upstream.ca_file".into());
    }
    out
}

/// Writes `text` to `path` so that readers see the old file or the new one, never a mix:
/// temp file in the same directory, fsync, rename, fsync of the directory. A symbolic link is
/// followed, so the file it points to is replaced and the link stays. The temp file is created
/// with the file's permissions (0600 for a new file) before anything is written into it: these
/// files hold secrets.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let path = match std::fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e),
    };
    let dir: PathBuf = path.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o600);
    let written = write_new(&tmp, text, mode).and_then(|()| std::fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `tmp` afresh with `mode` and writes `text` into it, synced to disk.
fn write_new(tmp: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    // Left over by a process that died mid-write (same pid after a restart): not ours to keep.
    if let Err(e) = std::fs::remove_file(tmp) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(e);
        }
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp)?;
    // Exactly the original mode (the umask may have narrowed it), set while the file is empty.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn a_new_file_is_private_and_an_old_one_keeps_its_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.toml");
        write_atomically(&path, "a = 1\n").expect("write");
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).expect("chmod");
        // A temp file left by a dead process with our pid does not stop the write.
        std::fs::write(dir.path().join(format!(".new.toml.tmp-{}", std::process::id())), "stale").expect("stale");
        write_atomically(&path, "a = 2\n").expect("write");
        assert_eq!((std::fs::read_to_string(&path).expect("read").as_str(), mode(&path)), ("a = 2\n", 0o664));
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1, "no temp file left");
    }

    #[test]
    fn a_symbolic_link_is_followed_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
        let real = dir.path().join("etc/proxy.toml");
        std::fs::write(&real, "a = 1\n").expect("write");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let link = dir.path().join("proxy.toml");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        write_atomically(&link, "a = 2\n").expect("write");
        assert!(std::fs::symlink_metadata(&link).expect("lstat").file_type().is_symlink());
        assert_eq!((std::fs::read_to_string(&real).expect("read").as_str(), mode(&real)), ("a = 2\n", 0o640));
    }

    #[test]
    fn a_file_changed_since_it_was_loaded_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, "a = 1\n").expect("write");
        assert!(ensure_not_edited(&path, "a = 1\n").is_ok());
        assert!(matches!(ensure_not_edited(&path, "a = 0\n"), Err(ApplyError::EditedOnDisk(_))));
        std::fs::remove_file(&path).expect("rm");
        assert!(matches!(ensure_not_edited(&path, "a = 1\n"), Err(ApplyError::EditedOnDisk(_))));
    }
}
