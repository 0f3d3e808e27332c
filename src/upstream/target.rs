//! The upstream's address: host, port and TLS from the config, IP addresses resolved
//! asynchronously and refreshed in the background (never a blocking lookup on a request).

use crate::config::UpstreamSettings;
use arc_swap::ArcSwap;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

static GENERATIONS: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
pub struct UpstreamTarget {
    pub settings: UpstreamSettings,
    addrs: ArcSwap<Vec<SocketAddr>>,
    next: AtomicUsize,
    /// Distinguishes connections to this target from those to an earlier one after a reload.
    pub generation: u64,
}

impl UpstreamTarget {
    pub fn new(settings: UpstreamSettings) -> Self {
        // An IP literal needs no lookup.
        let addrs = match settings.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, settings.port)],
            Err(_) => Vec::new(),
        };
        UpstreamTarget { settings, addrs: ArcSwap::from_pointee(addrs), next: AtomicUsize::new(0), generation: GENERATIONS.fetch_add(1, Ordering::Relaxed) }
    }

    /// Whether the same upstream is meant (same host, port and scheme).
    pub fn same_endpoint(&self, other: &UpstreamSettings) -> bool {
        self.settings.host == other.host && self.settings.port == other.port && self.settings.tls == other.tls
    }

    fn is_literal(&self) -> bool {
        self.settings.host.parse::<IpAddr>().is_ok()
    }

    /// Looks the host up again. Keeps the old addresses if the lookup fails.
    pub async fn refresh(&self) -> Result<(), String> {
        if self.is_literal() {
            return Ok(());
        }
        let host = format!("{}:{}", self.settings.host, self.settings.port);
        match tokio::net::lookup_host(host).await {
            Ok(found) => {
                let mut v: Vec<SocketAddr> = found.collect();
                v.sort();
                v.dedup();
                if v.is_empty() {
                    return Err(format!("{} resolved to no address", self.settings.host));
                }
                if **self.addrs.load() != v {
                    self.addrs.store(Arc::new(v));
                }
                Ok(())
            }
            Err(e) => Err(format!("cannot resolve {}: {e}", self.settings.host)),
        }
    }

    /// The next address to connect to, resolving first if nothing is known yet.
    pub async fn next_addr(&self) -> Result<SocketAddr, String> {
        if self.addrs.load().is_empty() {
            self.refresh().await?;
        }
        let addrs = self.addrs.load();
        if addrs.is_empty() {
            return Err(format!("{} has no known address", self.settings.host));
        }
        Ok(addrs[self.next.fetch_add(1, Ordering::Relaxed) % addrs.len()])
    }

    /// A Pingora peer for a new connection to `addr`.
    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.settings.tls, self.settings.host.clone());
        peer.options.alpn = ALPN::H1;
        peer.options.connection_timeout = Some(self.settings.connect_timeout);
        peer.options.total_connection_timeout = Some(self.settings.connect_timeout);
        peer
    }
}
