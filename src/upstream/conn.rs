//! HTTP/1.1 connections to the upstream: checkout from an idle pool (or a new connection through
//! Pingora's connector), one write for head and small bodies, response heads read with a
//! first-byte timeout, and checkin for reuse once a response has been read to its end.

use super::target::UpstreamTarget;
use crate::deadline::{Deadline, Stopped, Timer};
use crate::http1::{HeadError, ResponseHead};
use crate::wire::{PeerWatch, Wire};
use bytes::BytesMut;
use futures::FutureExt;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamFailure {
    #[error("cannot connect to the upstream: {0}")]
    Connect(String),
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the upstream connection broke: {0}")]
    Broken(String),
    #[error("the upstream sent an invalid response: {0}")]
    Protocol(String),
    /// Not the upstream's doing: the client the answer was for went away while the proxy waited
    /// for it, and the wait was given up. Never held against a key.
    #[error("the client went away while the proxy waited for the upstream")]
    ClientGone,
}

/// Largest response head accepted from the upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Bodies up to this size are copied behind the head and sent in one write.
const COALESCE_LIMIT: usize = 16 * 1024;
/// Read buffer growth step once an answer turns out to be long (a stream, a file).
const READ_CHUNK: usize = 16 * 1024;
/// The first read of an answer. Most answers (head and JSON) fit in it; with hundreds of
/// requests in flight, a 16 KiB buffer for each one fell out of the allocator's per-thread
/// caches (measured with jemalloc: thousands of instructions per request in its arena).
const FIRST_READ: usize = 4096;

/// One HTTP/1.1 connection to the upstream, with its read buffer.
pub struct UpstreamConn {
    stream: Wire,
    /// Bytes read but not consumed yet.
    pub buf: BytesMut,
    /// Whether this connection carried an earlier request (a failure before any response byte
    /// on a reused connection is the server closing an idle connection, not an answer).
    pub reused: bool,
    /// The upstream closed its side (end of a close-delimited body, or a failure).
    pub eof: bool,
    generation: u64,
}

struct Idle {
    conn: UpstreamConn,
    /// When it was checked in, on the coarse clock (idle times count in seconds).
    since: Instant,
}

/// Makes and keeps upstream connections.
pub struct UpstreamClient {
    connector: TransportConnector,
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
}

impl UpstreamClient {
    /// `ca_bundle`: a PEM file of the roots to trust for the upstream (the system roots when
    /// absent).
    pub fn new(max_idle: usize, ca_bundle: Option<String>) -> Self {
        // Pingora's own keep-alive pool is not used: idle connections are kept here, where
        // taking one costs a mutex push/pop and no cross-thread wake-up.
        let mut options = ConnectorOptions::new(0);
        options.ca_file = ca_bundle;
        UpstreamClient { connector: TransportConnector::new(Some(options)), idle: Mutex::new(Vec::new()), max_idle }
    }

    /// A connection to `target`: an idle one when available, otherwise a new one.
    pub async fn checkout(&self, target: &UpstreamTarget) -> Result<UpstreamConn, UpstreamFailure> {
        let keep_for = target.settings.keepalive_idle;
        loop {
            let candidate = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.pop()
            };
            let Some(mut c) = candidate else { break };
            if c.conn.generation != target.generation || crate::clock::coarse_now().saturating_duration_since(c.since) >= keep_for || !c.conn.looks_alive() {
                continue;
            }
            c.conn.reused = true;
            return Ok(c.conn);
        }
        self.connect(target).await
    }

    /// A new connection, never a pooled one.
    pub async fn connect(&self, target: &UpstreamTarget) -> Result<UpstreamConn, UpstreamFailure> {
        let addr = target.next_addr().await.map_err(UpstreamFailure::Connect)?;
        let peer = target.peer(addr);
        // Boxed: Pingora's connect future (TCP and TLS handshake) is about 9 KB, and inline it
        // would make every request's state that big, though it only runs for new connections.
        let stream = Box::pin(self.connector.new_stream(&peer)).await.map_err(|e| {
            if e.etype() == &pingora::ErrorType::ConnectTimedout {
                UpstreamFailure::Timeout(target.settings.connect_timeout)
            } else {
                UpstreamFailure::Connect(connect_cause(&e))
            }
        })?;
        Ok(UpstreamConn { stream: Wire::adopt(stream), buf: BytesMut::new(), reused: false, eof: false, generation: target.generation })
    }

    /// Returns a connection whose last response was read completely, for reuse.
    pub fn checkin(&self, mut conn: UpstreamConn) {
        if !conn.buf.is_empty() || conn.eof {
            // Bytes beyond the response, or a closed connection: not reusable.
            return;
        }
        // An idle connection keeps no buffer: the next request takes a fresh one, the memory
        // the thread's last request freed and still in cache (a buffer kept per connection is
        // cold by the time the connection is used again when hundreds take turns).
        conn.buf = BytesMut::new();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= self.max_idle {
            // Drop the oldest: it is the likeliest to have been closed by the server.
            idle.remove(0);
        }
        idle.push(Idle { conn, since: crate::clock::coarse_now() });
    }

    /// Closes idle connections older than `max_idle_time`.
    pub fn sweep(&self, max_idle_time: Duration) {
        let now = crate::clock::coarse_now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| now.saturating_duration_since(c.since) < max_idle_time);
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl UpstreamConn {
    /// A non-blocking check that an idle connection was not closed by the server.
    fn looks_alive(&mut self) -> bool {
        let mut probe = [0u8; 1];
        // Pending means nothing to read: alive. Ready(0) is EOF, Ready(n) unexpected bytes,
        // Ready(Err) a broken socket: all unusable.
        tokio::task::unconstrained(self.stream.read(&mut probe)).now_or_never().is_none()
    }

    /// Writes `head` and `body` (coalesced when small) and flushes.
    pub async fn send(&mut self, head: &mut Vec<u8>, body: &[u8], timeout: Duration) -> Result<(), UpstreamFailure> {
        let write = async {
            if body.len() <= COALESCE_LIMIT {
                head.extend_from_slice(body);
                self.stream.write_all(head).await?;
            } else {
                self.stream.write_all(head).await?;
                self.stream.write_all(body).await?;
            }
            self.stream.flush().await
        };
        match crate::deadline::timeout(timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(UpstreamFailure::Broken(format!("while sending the request: {e}"))),
            Err(_) => Err(UpstreamFailure::Timeout(timeout)),
        }
    }

    /// Reads more bytes into `buf`, waiting at most `timeout`, on `timer` (the client
    /// connection's timer for upstream waits, see [`Timer`]). Returns 0 at end of stream. While
    /// it waits, `watch` (the client the answer is for, if any) is asked now and then whether it
    /// is still there ([`UpstreamFailure::ClientGone`] if not).
    pub async fn read_more(&mut self, timeout: Duration, timer: &mut Timer, watch: Option<&PeerWatch>) -> Result<usize, UpstreamFailure> {
        self.read_within(&mut Deadline::after(timeout), timeout, timer, watch).await
    }

    /// Reads more bytes into `buf` before `deadline` (which stands for `timeout`, for errors),
    /// on `timer`, watching `watch`.
    async fn read_within(
        &mut self,
        deadline: &mut Deadline,
        timeout: Duration,
        timer: &mut Timer,
        watch: Option<&PeerWatch>,
    ) -> Result<usize, UpstreamFailure> {
        let step = if self.buf.capacity() == 0 { FIRST_READ } else { READ_CHUNK };
        if self.buf.capacity() - self.buf.len() < step / 2 {
            self.buf.reserve(step);
        }
        let read = self.stream.read_buf(&mut self.buf);
        match deadline.run_watched(timer, read, watch).await {
            Ok(Ok(0)) => {
                self.eof = true;
                Ok(0)
            }
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(UpstreamFailure::Broken(e.to_string())),
            Err(Stopped::Elapsed) => Err(UpstreamFailure::Timeout(timeout)),
            Err(Stopped::Gone) => Err(UpstreamFailure::ClientGone),
        }
    }

    /// Reads the final (non-1xx) response head, waiting at most `timeout` in all, on `timer`
    /// and watching `watch` as [`UpstreamConn::read_more`] does.
    pub async fn read_head(&mut self, timeout: Duration, timer: &mut Timer, watch: Option<&PeerWatch>) -> Result<ResponseHead, UpstreamFailure> {
        let mut deadline = Deadline::after(timeout);
        loop {
            // Usually empty at first (nothing arrives before the request is sent).
            let parsed = if self.buf.is_empty() { Ok(None) } else { ResponseHead::parse(&mut self.buf, MAX_RESPONSE_HEAD) };
            match parsed {
                Ok(Some(head)) if (100..200).contains(&head.status) && head.status != 101 => continue,
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(HeadError::TooLarge(n)) => return Err(UpstreamFailure::Protocol(format!("response head larger than {n} bytes"))),
                Err(e) => return Err(UpstreamFailure::Protocol(e.to_string())),
            }
            match self.read_within(&mut deadline, timeout, timer, watch).await {
                Ok(0) if self.buf.is_empty() => return Err(UpstreamFailure::Broken("closed before answering".into())),
                Ok(0) => return Err(UpstreamFailure::Broken("closed in the middle of the response head".into())),
                Ok(_) => {}
                Err(UpstreamFailure::Timeout(_)) => return Err(UpstreamFailure::Timeout(timeout)),
                Err(e) => return Err(e),
            }
        }
    }
}

/// What a client is told of a failed connect: the root cause ("Connection refused (os error
/// 111)", a TLS verification failure), without Pingora's chain of error type, upstream address,
/// scheme and SNI, which are the operator's business and are in the proxy's own debug log.
fn connect_cause(e: &pingora::Error) -> String {
    tracing::debug!(error = %e, "upstream connect failed");
    match &e.cause {
        Some(cause) => cause.to_string(),
        None => e.etype().as_str().to_owned(),
    }
}
