//! The control plane's core, shared by the admin API and signals: applying a new configuration
//! (validate completely, write atomically, swap the snapshot, record a version and an audit
//! entry), reloading from disk on SIGHUP, and keeping key state and resource ownership in the
//! state store.

pub mod bindings;
pub mod key_sync;
pub mod reload;

use crate::config::edit::{ConfigDoc, EditError};
use crate::config::redact::{self, UnredactError};
use crate::config::{self, ConfigSource, EnvLookup, LocatedProblem, ProcessEnv, Settings};
use crate::gateway::{Runtime, Shared};
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the configuration is not valid")]
    Invalid(Vec<LocatedProblem>),
    #[error("{0}")]
    ReadOnly(String),
    #[error("cannot write the configuration file: {0}")]
    Io(String),
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    Unredact(#[from] UnredactError),
}

/// What applying a configuration did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    /// Config version recorded in the state store.
    pub version: Option<i64>,
    /// False when the new text equals the running one.
    pub changed: bool,
    /// Settings that only take effect after a restart.
    pub restart_needed: Vec<String>,
}

/// Owns the running configuration: its text, where it lives, and how it changes.
pub struct ConfigManager {
    pub source: ConfigSource,
    shared: Arc<Shared>,
    db: Option<Arc<Store>>,
    metrics: Arc<Metrics>,
    /// The running text. The lock also serialises changes: one at a time.
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
        let real = redact::unredact(text, &current)?;
        config::parse_str(&real, &self.origin(), self.env()).map_err(|e| ApplyError::Invalid(e.problems().to_vec()))
    }

    /// Re-reads the config file (SIGHUP).
    pub async fn reload_from_disk(&self, actor: &str) -> Result<Applied, ApplyError> {
        let ConfigSource::File(path) = &self.source else {
            return Err(ApplyError::ReadOnly("the proxy runs from environment variables: there is no file to reload".into()));
        };
        let text = std::fs::read_to_string(path).map_err(|e| ApplyError::Io(format!("{}: {e}", path.display())))?;
        let mut guard = self.text.lock().await;
        self.apply_locked(&mut guard, text, actor, "config.reload", "reloaded from disk", false).await
    }

    /// Replaces the configuration with `text` (placeholders of the running secrets allowed).
    pub async fn replace(&self, text: &str, actor: &str, comment: &str) -> Result<Applied, ApplyError> {
        let mut guard = self.text.lock().await;
        let real = redact::unredact(text, &guard)?;
        self.apply_locked(&mut guard, real, actor, "config.replace", comment, true).await
    }

    /// Applies an edit of the running document (add keys, add a client...).
    pub async fn edit<T>(
        &self,
        actor: &str,
        action: &str,
        comment: &str,
        f: impl FnOnce(&mut ConfigDoc, &dyn EnvLookup) -> Result<T, EditError>,
    ) -> Result<(T, Applied), ApplyError> {
        let mut guard = self.text.lock().await;
        let mut doc = ConfigDoc::parse(&guard)?;
        let out = f(&mut doc, self.env())?;
        let applied = self.apply_locked(&mut guard, doc.text(), actor, action, comment, true).await?;
        Ok((out, applied))
    }

    async fn apply_locked(
        &self,
        current: &mut String,
        text: String,
        actor: &str,
        action: &str,
        comment: &str,
        write_file: bool,
    ) -> Result<Applied, ApplyError> {
        let settings = match config::parse_str(&text, &self.origin(), self.env()) {
            Ok(s) => s,
            Err(e) => {
                self.metrics.reload(false);
                let problems = e.problems().to_vec();
                tracing::warn!(actor, problems = problems.len(), first = %problems.first().map(|p| p.to_string()).unwrap_or_default(), "configuration rejected; the running one stays in force");
                return Err(ApplyError::Invalid(problems));
            }
        };
        if write_file {
            match &self.source {
                ConfigSource::File(path) => write_atomically(path, &text).map_err(|e| ApplyError::Io(format!("{}: {e}", path.display())))?,
                ConfigSource::Environment => {
                    return Err(ApplyError::ReadOnly(
                        "the proxy runs from environment variables, not a config file: start it with `-c FILE` to change its configuration over the API".into(),
                    ))
                }
            }
        }
        let changed = *current != text;
        let restart_needed = restart_needed(&self.boot, &settings);
        // New certificate files (or self-signed names) serve new handshakes at once.
        if let (Some(front), Some(t)) = (&self.shared.tls, &settings.tls) {
            match crate::tls::configured_entries(t, &self.data_dir.join("tls")) {
                Ok(entries) => front.store.set_configured(entries),
                Err(e) => return Err(ApplyError::Invalid(vec![LocatedProblem { line: None, column: None, message: format!("tls: {e}") }])),
            }
        }
        let old = self.shared.runtime.load_full();
        let runtime = Runtime::build(settings, &*self.shared.store, Some(&old));
        self.shared.runtime.store(Arc::new(runtime));
        *current = text;
        self.metrics.reload(true);
        let mut version = None;
        if let Some(db) = &self.db {
            let (db2, text_copy, actor_s, comment_s) = (db.clone(), current.clone(), actor.to_owned(), comment.to_owned());
            version = tokio::task::spawn_blocking(move || db2.add_config_version(&text_copy, &actor_s, &comment_s)).await.ok().and_then(Result::ok);
            let detail = serde_json::json!({"version": version, "comment": comment, "changed": changed, "restart_needed": restart_needed});
            let (db, actor_s, action_s) = (db.clone(), actor.to_owned(), action.to_owned());
            let _ = tokio::task::spawn_blocking(move || db.add_audit(&actor_s, &action_s, "config", &detail)).await;
        }
        tracing::info!(actor, action, version, changed, restart_needed = ?restart_needed, "configuration applied");
        Ok(Applied { version, changed, restart_needed })
    }
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
/// temp file in the same directory, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir: PathBuf = path.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        // Keep the operator's permissions (the file holds secrets).
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
