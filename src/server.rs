//! Wiring: builds the Pingora server with the data-plane service and the background services,
//! from validated settings. Nothing here runs per request.

use crate::background::{Drain, Maintenance};
use crate::config::{ConfigSource, Settings};
use crate::gateway::{Gateway, Runtime, Shared};
use crate::pool::store::{MemoryStore, StateStore};
use crate::telemetry::access_log::AccessLog;
use anyhow::Context;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::sync::Arc;

/// Starts the proxy and serves until a signal stops it. Only returns on a startup error.
pub fn run(settings: Settings, source: &ConfigSource) -> anyhow::Result<()> {
    crate::telemetry::init_logging(&settings.log);

    // Bind-check first, for a clear message instead of a failure deep inside Pingora.
    for addr in &settings.server.listen {
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    }
    if settings.clients.is_empty() {
        tracing::warn!("no client tokens are configured: any local process can use this proxy (allowed because it only listens on loopback)");
    }
    if settings.key_count() == 0 {
        tracing::warn!("the key pool is empty: every request will be answered 503 until keys are added");
    }

    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let access_log = AccessLog::start(settings.log.access_log);
    let runtime = Runtime::build(settings.clone(), &*store, None);
    let shared = Shared::new(runtime, store, access_log.clone());

    let conf = ServerConf {
        threads: settings.server.threads,
        // Pingora sleeps this long after SIGTERM before stopping its runtimes; `Drain` exits
        // earlier, once in-flight requests are done.
        grace_period_seconds: Some(settings.server.grace_period.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let mut data_plane = Service::new("gemini-proxy".to_owned(), Gateway { shared: shared.clone() });
    for addr in &settings.server.listen {
        data_plane.add_tcp(&addr.to_string());
    }
    server.add_service(data_plane);
    server.add_service(background_service("maintenance", Maintenance { shared: shared.clone() }));
    server.add_service(background_service("drain", Drain { shared, access_log, grace: settings.server.grace_period }));

    let listen: Vec<String> = settings.server.listen.iter().map(|a| a.to_string()).collect();
    tracing::info!(
        listen = ?listen,
        config = %source,
        upstream = %settings.upstream.base_url,
        pools = settings.pools.len(),
        keys = settings.key_count(),
        clients = settings.clients.len(),
        threads = settings.server.threads,
        version = env!("CARGO_PKG_VERSION"),
        "gemini-proxy starting"
    );
    server.run_forever();
}
