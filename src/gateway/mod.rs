//! The data plane: a Pingora `ServerApp` that speaks HTTP/1.1 to clients itself (a lean
//! forwarding layer, see DESIGN.md for why not `ProxyHttp`), and per request authenticates the
//! client, picks a key from the pool, forwards with retries on other keys, and relays the answer
//! byte for byte. The modules it calls (auth, gemini, pool, upstream) know nothing of it.

mod cors;
pub mod counters;
pub mod cut;
mod downstream;
mod exchange;
pub mod h2;
pub mod hygiene;
pub mod probe;
mod relay;
mod respond;
mod underway;

use crate::auth::ClientTable;
use crate::config::Settings;
use crate::limits::{Limits, MemoryLimits};
use crate::pool::store::StateStore;
use crate::pool::Pool;
use crate::telemetry::access_log::AccessLog;
use crate::upstream::{UpstreamClient, UpstreamTarget};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use counters::{Refusals, Slots};
use downstream::{Downstream, NextHead};
use hygiene::Hygiene;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// One immutable configuration snapshot with everything built from it. Requests hold the
/// snapshot they started with; a reload swaps in a new one.
pub struct Runtime {
    /// Distinguishes snapshots (for caches keyed by configuration).
    pub generation: u64,
    pub settings: Arc<Settings>,
    pub pools: Vec<Pool>,
    pub clients: ClientTable,
    pub target: Arc<UpstreamTarget>,
    pub hygiene: Hygiene,
}

impl Runtime {
    /// Builds a snapshot. Key state comes from `store`, so keys that stay keep their state; the
    /// upstream target (and its pooled connections) is kept when the upstream did not change.
    pub fn build(settings: Settings, store: &dyn StateStore, previous: Option<&Runtime>) -> Runtime {
        let pools = settings.pools.iter().map(|p| Pool::build(p, store)).collect();
        let clients = ClientTable::new(&settings);
        let target = match previous {
            Some(prev) if prev.target.settings == settings.upstream => prev.target.clone(),
            _ => Arc::new(UpstreamTarget::new(settings.upstream.clone())),
        };
        let hygiene = Hygiene::new(&settings.hygiene, &settings.upstream, settings.access.cors.enabled());
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        Runtime { generation, settings: Arc::new(settings), pools, clients, target, hygiene }
    }
}

/// State shared by every connection of the data plane.
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    pub store: Arc<dyn StateStore>,
    pub upstream: UpstreamClient,
    pub access_log: AccessLog,
    /// Requests being handled right now (for graceful shutdown).
    pub inflight: AtomicUsize,
    /// Given when a shutdown's grace period is over: requests still in flight are cut.
    pub cut: cut::Cut,
    /// Memory for buffered request bodies, in KiB.
    pub body_budget: Arc<Semaphore>,
    /// Per-client and per-address limits.
    pub limits: Arc<dyn Limits>,
    pub refusals: Refusals,
    pub connections: Slots,
    pub streams: Slots,
    /// TLS termination, when TLS listeners are configured.
    pub tls: Option<TlsFront>,
    request_ids: AtomicU64,
}

/// What TLS listeners need: the addresses (to tell TLS connections from plain ones), the
/// certificates and the handshake.
pub struct TlsFront {
    pub store: Arc<crate::tls::store::CertStore>,
    pub acceptor: pingora::listeners::tls::Acceptor,
    pub listeners: Vec<std::net::SocketAddr>,
    pub handshake_timeout: std::time::Duration,
}

impl Shared {
    pub fn new(runtime: Runtime, store: Arc<dyn StateStore>, access_log: AccessLog, tls: Option<TlsFront>, upstream_roots: Option<String>) -> Arc<Shared> {
        let budget_kib = runtime.settings.server.buffered_bytes_limit / 1024;
        Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            store,
            upstream: UpstreamClient::new(512, upstream_roots),
            access_log,
            inflight: AtomicUsize::new(0),
            cut: cut::Cut::default(),
            body_budget: Arc::new(Semaphore::new(budget_kib.min(Semaphore::MAX_PERMITS))),
            limits: Arc::new(MemoryLimits::new()),
            refusals: Refusals::default(),
            connections: Slots::default(),
            streams: Slots::default(),
            tls,
            request_ids: AtomicU64::new(first_request_id(std::time::SystemTime::now())),
        })
    }

    fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// The first request id of this run: the start time in Unix seconds times a million, so that
/// ids stay unique across restarts (the access log and the request log outlive a process) as
/// long as a run averages under a million requests a second, and stay below 2^53 (JavaScript
/// reads them exactly) for two centuries.
fn first_request_id(start: std::time::SystemTime) -> u64 {
    let secs = start.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    secs.saturating_mul(1_000_000).max(1)
}

/// The Pingora application serving client connections.
pub struct Gateway {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl ServerApp for Gateway {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        crate::courtesy::data_plane_thread();
        let max = self.shared.runtime.load().settings.access.max_connections;
        let Some(_slot) = self.shared.connections.acquire(max) else {
            self.shared.refusals.count("max_connections");
            let mut ds = Downstream::new(stream);
            respond::head_error(&mut ds, 503, "the proxy is at its connection limit; retry shortly").await;
            return None;
        };
        // Boxed: the TLS handshake's state (about 7 KB) is only needed at the start, and would
        // otherwise stay inside the connection's task for its whole life.
        let stream = match Box::pin(self.tls_front(stream)).await {
            Front::Http1(s) => s,
            Front::Http2(s) => {
                let bridge = Arc::new(h2::H2Bridge { shared: self.shared.clone() });
                return ServerApp::process_new(&bridge, s, shutdown).await;
            }
            Front::Done => return None,
        };
        let mut ds = Downstream::new(stream);
        let mut first = true;
        // Whether the connection's wait for shutdown has been polled (see `cut::unless_cut`).
        let mut shutdown_registered = false;
        loop {
            let (idle, head_timeout, max_head) = {
                let rt = self.shared.runtime.load();
                let s = &rt.settings.server;
                (if first { s.header_timeout } else { s.keepalive_timeout }, s.header_timeout, s.max_header_bytes)
            };
            match ds.next_head(idle, head_timeout, max_head, shutdown).await {
                NextHead::Head(head) => {
                    // The snapshot is taken when the request arrives, not when the connection
                    // started waiting for it: a reload applies to every request after it.
                    let rt = self.shared.runtime.load_full();
                    // Boxed: the request's state (about 4 KB) then exists only while a request
                    // is in flight, instead of inside every connection's task for its whole life
                    // (10,000 idle keep-alive clients would pin 40 MB).
                    let mut wait = ds.shutdown_wait.take();
                    let request = boxed_in_place(|| exchange::handle(&self.shared, &rt, &mut ds, head));
                    let ended = cut::unless_cut(&self.shared.cut, shutdown, &mut wait, &mut shutdown_registered, request).await;
                    ds.shutdown_wait = wait;
                    // Cut at the end of a shutdown's grace period: the request wrote its record
                    // when its state was dropped; the client sees the connection close.
                    let keep = ended?;
                    if !keep || *shutdown.borrow() {
                        ds.shutdown().await;
                        return None;
                    }
                }
                NextHead::Closed | NextHead::Idle => return None,
                NextHead::TimedOut => {
                    respond::head_error(&mut ds, 408, "the request head did not arrive in time").await;
                    return None;
                }
                NextHead::Invalid(e) => {
                    respond::head_error(&mut ds, e.status(), &e.to_string()).await;
                    return None;
                }
            }
            first = false;
        }
    }
}

/// Boxes the future `make` returns, allocating first so that the future can be built in its
/// heap slot: `Box::pin(f())` builds it on the stack and then copies all of it (4 KB for a
/// request, most of it space for states not yet reached) into the box.
#[inline(always)]
fn boxed_in_place<F: std::future::Future>(make: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    let slot = Box::<F>::new_uninit();
    Box::into_pin(Box::write(slot, make()))
}

/// What a connection turned out to be once TLS (if any) was set up.
enum Front {
    Http1(Stream),
    Http2(Stream),
    /// Nothing more to do (a failed handshake, or a TLS-ALPN-01 validation connection).
    Done,
}

impl Gateway {
    /// Terminates TLS on connections that arrived on a TLS listener, and tells HTTP/2 (by ALPN)
    /// from HTTP/1.1.
    async fn tls_front(&self, stream: Stream) -> Front {
        let Some(front) = &self.shared.tls else { return Front::Http1(stream) };
        // Already TLS: an HTTP/2 stream bridged to HTTP/1.1.
        if stream.get_ssl_digest().is_some() {
            return Front::Http1(stream);
        }
        let local = stream.get_socket_digest().and_then(|d| d.local_addr().and_then(|a| a.as_inet().copied()));
        if !local.is_some_and(|l| front.listeners.contains(&l)) {
            return Front::Http1(stream);
        }
        // Pingora hands listeners' connections over as plain TCP streams; the handshake needs
        // the concrete type back.
        let Ok(l4) = stream.into_any().downcast::<pingora::protocols::l4::stream::Stream>() else { return Front::Done };
        let tls = match tokio::time::timeout(front.handshake_timeout, front.acceptor.tls_handshake(*l4)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return Front::Done;
            }
            Err(_) => {
                self.shared.refusals.count("slow_handshake");
                return Front::Done;
            }
        };
        let stream: Stream = Box::new(tls);
        match stream.selected_alpn_proto() {
            Some(pingora::protocols::ALPN::H2) => Front::Http2(stream),
            // acme-tls/1: the CA only needed the handshake and its certificate.
            Some(pingora::protocols::ALPN::Custom(_)) => Front::Done,
            _ => Front::Http1(stream),
        }
    }
}

/// IP rules at accept time, before any byte is read (Pingora's connection filter). Peers that
/// are trusted proxies are let through: the client behind them is checked per request.
pub struct AccessFilter {
    pub shared: Arc<Shared>,
}

impl std::fmt::Debug for AccessFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessFilter")
    }
}

#[async_trait]
impl pingora::listeners::ConnectionFilter for AccessFilter {
    async fn should_accept(&self, addr: Option<&std::net::SocketAddr>) -> bool {
        let Some(addr) = addr else { return true };
        let rt = self.shared.runtime.load();
        let access = &rt.settings.access;
        let ip = addr.ip();
        if crate::limits::ip::is_trusted_proxy(access, ip) || crate::limits::ip::permitted(access, ip) {
            return true;
        }
        self.shared.refusals.count("ip_denied");
        false
    }
}

#[cfg(test)]
mod tests {
    use super::first_request_id;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn request_ids_of_a_later_run_start_above_an_earlier_runs() {
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let first = first_request_id(start);
        // An earlier run of an hour at 100,000 requests a second stays below the next run's ids.
        let after_an_hour = first + 3600 * 100_000;
        assert!(after_an_hour < first_request_id(start + Duration::from_secs(3600)));
        // JavaScript (the admin UI) reads integers exactly up to 2^53.
        assert!(first_request_id(UNIX_EPOCH + Duration::from_secs(200 * 365 * 86_400)) < 1 << 53);
        assert_eq!(first_request_id(UNIX_EPOCH), 1);
    }
}
