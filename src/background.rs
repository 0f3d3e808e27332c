//! Long-running tasks beside the data plane, run as Pingora background services: probing and
//! housekeeping (`Maintenance`), and graceful shutdown (`Drain`).

use crate::gateway::probe::UpstreamProbe;
use crate::gateway::Shared;
use crate::pool::prober::probe_round;
use crate::store::StoreWriter;
use crate::telemetry::access_log::AccessLog;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Probes keys, refreshes the upstream's addresses, forgets expired resource ownership and
/// closes stale idle connections.
pub struct Maintenance {
    pub shared: Arc<Shared>,
}

/// How often housekeeping runs; probing and DNS have their own, longer intervals.
const TICK: Duration = Duration::from_secs(1);
const DNS_REFRESH: Duration = Duration::from_secs(60);

#[async_trait]
impl BackgroundService for Maintenance {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let probe = UpstreamProbe { shared: self.shared.clone() };
        let mut last_probe = Instant::now();
        let mut last_dns: Option<Instant> = None;
        let mut last_sweep = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
            let rt = self.shared.runtime.load_full();
            let now = Instant::now();
            if last_dns.is_none_or(|t| now.duration_since(t) >= DNS_REFRESH) {
                last_dns = Some(now);
                if let Err(e) = rt.target.refresh().await {
                    tracing::warn!(error = %e, "upstream address lookup failed; keeping the previous addresses");
                }
            }
            if now.duration_since(last_sweep) >= Duration::from_secs(10) {
                last_sweep = now;
                self.shared.store.sweep(now);
                self.shared.upstream.sweep(rt.settings.upstream.keepalive_idle);
            }
            let policy = &rt.settings.key_health;
            if now.duration_since(last_probe) >= policy.probe_interval {
                last_probe = now;
                let keys = rt.pools.iter().flat_map(|p| p.keys.iter());
                probe_round(keys, &probe, &policy.probe_model).await;
            }
        }
    }
}

/// On SIGTERM Pingora stops accepting and then waits a fixed grace period. This lets the
/// process leave as soon as in-flight requests and streams are done, or when the grace period
/// is over after cutting the requests left (which logs them), and after flushing the access
/// log.
pub struct Drain {
    pub shared: Arc<Shared>,
    pub access_log: AccessLog,
    pub db_writer: StoreWriter,
    pub grace: Duration,
}

/// How long cut requests get to write their records (their tasks only have to wake up and
/// drop them; a thread stuck elsewhere must not hold the exit up).
const CUT_LOGGED_WITHIN: Duration = Duration::from_secs(1);

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        let deadline = Instant::now() + self.grace;
        let waiting = self.shared.inflight.load(Ordering::Acquire);
        tracing::info!(in_flight = waiting, grace_ms = self.grace.as_millis() as u64, "shutting down: no new connections; waiting for in-flight requests");
        while self.shared.inflight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.shared.inflight.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(in_flight = left, "grace period over: cutting the remaining requests");
            // Each cut request writes its record as its connection task drops it, and is
            // counted out after that: wait (briefly) for all of them before the last flush.
            self.shared.cut.fire();
            let logged_by = Instant::now() + CUT_LOGGED_WITHIN;
            while self.shared.inflight.load(Ordering::Acquire) > 0 && Instant::now() < logged_by {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        // Key states and bindings the last requests changed, then the access log (it also
        // forwards records to the state store's queue): both before the store's final flush.
        crate::control::key_sync::persist_changes(&self.shared, &self.db_writer);
        self.access_log.flush();
        if let Err(e) = self.db_writer.flush_within(Duration::from_secs(5)) {
            tracing::error!(error = %e, "could not flush the state store before exiting");
        }
        tracing::info!("shutdown complete");
        std::process::exit(0);
    }
}
