//! ACME (RFC 8555) issuance and renewal (being written).

use super::store::CertStore;
use crate::config::AcmeSettings;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// Issues and renews the configured certificate.
pub struct AcmeManager {
    pub settings: AcmeSettings,
    pub store: Arc<CertStore>,
    /// Account credentials and issued certificates live here.
    pub dir: PathBuf,
    pub renew_requests: tokio::sync::Mutex<UnboundedReceiver<String>>,
}

#[async_trait]
impl BackgroundService for AcmeManager {
    async fn start(&self, _shutdown: ShutdownWatch) {}
}
