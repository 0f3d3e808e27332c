//! [`MockGemini`]: binds a loopback port, serves the mock in background tasks, and exposes the test-control methods.

use crate::config::{KeyBehaviour, MockConfig};
use crate::record::RecordedRequest;
use crate::routes::app;
use crate::state::Shared;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running mock. Dropping it (or calling [`MockGemini::shutdown`]) closes the listener and
/// every open connection, including requests left hanging by `hang` keys.
pub struct MockGemini {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept_task: Option<JoinHandle<()>>,
}

impl MockGemini {
    /// Binds `127.0.0.1:0` and starts serving in a spawned task. Must be called inside a Tokio runtime.
    pub async fn start(cfg: MockConfig) -> std::io::Result<MockGemini> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), cfg).await
    }

    /// Binds `addr` and starts serving in a spawned task. Errors only if the bind fails.
    pub async fn start_on(addr: SocketAddr, cfg: MockConfig) -> std::io::Result<MockGemini> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(cfg, &format!("http://{addr}")));
        let (stop, stop_rx) = watch::channel(false);
        let accept_task = tokio::spawn(accept_loop(listener, app(shared.clone()), stop_rx));
        Ok(MockGemini { addr, shared, stop, accept_task: Some(accept_task) })
    }

    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets how `key` behaves from the next request on (requests in flight keep the old behaviour).
    pub fn set_key(&self, key: &str, behaviour: KeyBehaviour) {
        self.shared.set_key(key, behaviour);
    }

    /// The behaviour `key` currently has (the default one if never set).
    pub fn key_behaviour(&self, key: &str) -> KeyBehaviour {
        self.shared.behaviour(key)
    }

    /// Every recorded request, oldest first (at most `MockConfig::max_recorded`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// The `seq`s of recorded requests whose connection was closed (by the client: the proxy)
    /// before their answer was complete, in the order the mock saw it: while it delayed or held
    /// the answer (`slow`, `hang`, `x-mock-first-byte-ms`) or in the middle of a streamed body.
    pub fn abandoned(&self) -> Vec<u64> {
        self.shared.abandoned()
    }

    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// All keys back to the default mode, files, caches and uploads forgotten, log cleared.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops accepting, drops every open connection, and waits until the listener is closed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockGemini {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means "stop".
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop(listener: TcpListener, app: axum::Router, mut stop: watch::Receiver<bool>) {
    let service = TowerToHyperService::new(app);
    loop {
        let socket = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        // Streams are many small writes; do not let Nagle hold them back.
        let _ = socket.set_nodelay(true);
        let service = service.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
            // On stop the connection future is dropped, which closes the socket mid-whatever.
            tokio::select! {
                _ = conn => {}
                _ = stopped(&mut stop) => {}
            }
        });
    }
}
