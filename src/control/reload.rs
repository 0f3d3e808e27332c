//! SIGHUP: re-read the config file and apply it (Pingora itself does not handle SIGHUP).

use super::ConfigManager;
use crate::store::comment::Author;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

pub struct SighupReloader {
    pub manager: Arc<ConfigManager>,
}

#[async_trait]
impl BackgroundService for SighupReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload through the admin API instead");
                return;
            }
        };
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    match self.manager.reload_from_disk(&Author::Sighup.to_string()).await {
                        Ok(applied) => tracing::info!(
                            changed = applied.changed,
                            certificates_changed = applied.certificates_changed,
                            version = applied.version,
                            "SIGHUP: configuration reloaded"
                        ),
                        Err(e) => tracing::error!(error = %e, problems = ?problems(&e), "SIGHUP: reload rejected; the running configuration stays in force"),
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn problems(e: &super::ApplyError) -> Vec<String> {
    match e {
        super::ApplyError::Invalid(p) => p.iter().map(|p| p.to_string()).collect(),
        _ => Vec::new(),
    }
}
