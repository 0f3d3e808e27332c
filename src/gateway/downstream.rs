//! The client's connection: reading request heads and bodies with the timeouts and limits that
//! keep slow or oversized clients from holding resources, and writing responses.

use crate::deadline::{self, Deadline};
use crate::http1::{ChunkError, ChunkedDecoder, Framing, HeadError, RequestHead};
use crate::wire::{PeerWatch, Wire};
use bytes::{Bytes, BytesMut};
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Outcome of waiting for the next request head.
pub enum NextHead {
    Head(RequestHead),
    /// The client closed the connection between requests.
    Closed,
    /// The connection idled out, or the server is shutting down: close quietly.
    Idle,
    /// The client took too long to send the head.
    TimedOut,
    Invalid(HeadError),
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the client sent the body too slowly")]
    TimedOut,
    #[error("the client closed the connection while sending the body")]
    Closed,
    #[error(transparent)]
    Chunked(#[from] ChunkError),
    #[error("the proxy is holding too many request bodies; retry shortly")]
    Busy,
    #[error("reading the request body failed: {0}")]
    Io(std::io::Error),
}

/// The first read of a request: most heads (and many small bodies) fit; bigger requests take
/// more reads.
const FIRST_READ: usize = 4096;

/// Bodies smaller than this skip the memory budget: accounting would cost more than it saves.
const BUDGET_FREE: usize = 64 * 1024;
/// How long a request may wait for room in the body memory budget.
const BUDGET_WAIT: Duration = Duration::from_secs(10);

pub struct Downstream {
    stream: Wire,
    pub buf: BytesMut,
    pub peer: Option<SocketAddr>,
    /// `peer` formatted once for the access log.
    pub peer_label: Option<Arc<str>>,
    pub tls: bool,
    /// The last static token this connection authenticated with, and for which snapshot: a
    /// keep-alive connection presents the same token on every request.
    pub auth_cache: Option<AuthCache>,
    /// The keep-alive wait's timer, kept across requests (see [`deadline::Timer`]).
    idle_timer: deadline::Timer,
    /// The timer of its requests' waits on the upstream (the answer's head, the chunks of a
    /// relayed body, the backoff between attempts), kept the same way.
    pub upstream_timer: deadline::Timer,
    /// Whether the client is still there, asked while a request waits for the upstream.
    pub peer_watch: PeerWatch,
    /// When the last request's answer was complete: the keep-alive wait counts from there
    /// (a precise reading taken anyway, for the access log). Set by each request.
    pub answered_at: Option<std::time::Instant>,
    /// The current request's CORS grant: every answer to it carries the grant's headers.
    pub cors: Option<super::cors::Grant>,
    /// The keep-alive wait's watch for shutdown, kept across requests like the timers (see
    /// `next_head`); also what wakes a request for a shutdown (see `cut::unless_cut`). Made on
    /// first use.
    pub shutdown_wait: Option<ShutdownWait>,
}

/// A connection's wait for the start of a shutdown (or for the watch to close).
pub type ShutdownWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A successful static-token authentication, remembered for the connection.
pub struct AuthCache {
    pub generation: u64,
    pub token: Box<str>,
    pub client: crate::auth::Client,
}

/// Memory reserved for one buffered request body; released when dropped.
#[derive(Default)]
pub struct BodyPermit {
    _held: Vec<OwnedSemaphorePermit>,
}

impl Downstream {
    pub fn new(stream: Stream) -> Self {
        // An HTTP/2 stream's bridge says when its client left; a socket is asked itself.
        let bridged = super::h2::peer_watch(&stream);
        let stream = Wire::adopt(stream);
        let peer_watch = bridged.unwrap_or_else(|| stream.peer_watch());
        let peer = stream.peer_addr();
        let tls = stream.is_tls();
        let peer_label = peer.map(|p| Arc::from(p.to_string()));
        Downstream {
            stream,
            buf: BytesMut::new(),
            peer,
            peer_label,
            tls,
            auth_cache: None,
            idle_timer: deadline::Timer::default(),
            upstream_timer: deadline::Timer::default(),
            peer_watch,
            answered_at: None,
            cors: None,
            shutdown_wait: None,
        }
    }

    /// Waits for and parses the next request head.
    ///
    /// An idle connection waits up to `idle` for the first byte (and is closed early on
    /// shutdown); once a request has started, the whole head must arrive within `head_timeout`.
    pub async fn next_head(&mut self, idle: Duration, head_timeout: Duration, max_bytes: usize, shutdown: &ShutdownWatch) -> NextHead {
        if self.buf.is_empty() {
            // Waiting on the watch registers a waiter in its list, under a mutex, and
            // dropping the wait takes it out again: about 350 instructions per request when
            // made per wait. One wait made per connection stays registered while requests are
            // served, and a shutdown meanwhile makes it ready at the next keep-alive wait.
            let shutdown_wait = match &mut self.shutdown_wait {
                Some(w) => w,
                None => {
                    if *shutdown.borrow() {
                        return NextHead::Idle;
                    }
                    let mut watch = shutdown.clone();
                    self.shutdown_wait.insert(Box::pin(async move {
                        // A closed watch (the server going away) also ends the wait.
                        let _ = watch.changed().await;
                    }))
                }
            };
            // An idle keep-alive connection holds no buffer (10,000 idle clients would otherwise
            // pin 10,000 of them): a buffer is taken from the allocator once the socket is
            // readable. A fresh buffer is the one the thread's last request freed, still in the
            // CPU's cache, where a buffer kept per connection would be cold by the time its
            // client spoke again (hundreds of connections take turns). One read per request:
            // readiness comes from the reactor, and waiting with a one-byte peek would cost a
            // second system call.
            self.buf = BytesMut::new();
            let stream = &mut self.stream;
            let read_into_fresh = std::future::poll_fn(|cx| {
                // Errors are left to the read, which reports them.
                if stream.poll_read_ready(cx).is_pending() {
                    return std::task::Poll::Pending;
                }
                let mut fresh = BytesMut::with_capacity(FIRST_READ);
                let polled = std::pin::pin!(stream.read_buf(&mut fresh)).poll(cx);
                polled.map(|r| r.map(|_| fresh))
            });
            let mut idle_deadline = match self.answered_at {
                Some(at) => Deadline::since(at, idle),
                None => Deadline::after(idle),
            };
            let got = tokio::select! {
                biased;
                r = idle_deadline.run_on(&mut self.idle_timer, read_into_fresh) => r,
                () = shutdown_wait.as_mut() => return NextHead::Idle,
            };
            match got {
                Ok(Err(_)) => return NextHead::Closed,
                Ok(Ok(fresh)) if fresh.is_empty() => return NextHead::Closed,
                Ok(Ok(fresh)) => self.buf = fresh,
                Err(_) => return NextHead::Idle,
            }
        }
        let mut deadline = Deadline::after(head_timeout);
        loop {
            match RequestHead::parse(&mut self.buf, max_bytes) {
                Ok(Some(h)) => return NextHead::Head(h),
                Ok(None) => {}
                Err(e) => return NextHead::Invalid(e),
            }
            self.buf.reserve(4096);
            match deadline.run(self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return NextHead::Closed,
                Ok(Ok(_)) => {}
                Err(_) => return NextHead::TimedOut,
            }
        }
    }

    /// Reserves memory for a body of `len` bytes (or a first slice of an unknown length).
    pub async fn reserve(budget: &Arc<Semaphore>, len: usize) -> Result<BodyPermit, BodyError> {
        if len < BUDGET_FREE {
            return Ok(BodyPermit::default());
        }
        let kib = u32::try_from(len.div_ceil(1024)).map_err(|_| BodyError::TooLarge(len))?;
        match tokio::time::timeout(BUDGET_WAIT, budget.clone().acquire_many_owned(kib)).await {
            Ok(Ok(p)) => Ok(BodyPermit { _held: vec![p] }),
            _ => Err(BodyError::Busy),
        }
    }

    /// Reads the whole request body, which must arrive within `timeout` (slow clients are cut
    /// off, however they pace their bytes). Chunked bodies are decoded.
    pub async fn read_body(&mut self, framing: Framing, limit: usize, timeout: Duration, budget: &Arc<Semaphore>) -> Result<(Bytes, BodyPermit), BodyError> {
        let mut deadline = Deadline::after(timeout);
        match framing {
            Framing::None | Framing::UntilClose => Ok((Bytes::new(), BodyPermit::default())),
            Framing::Length(n) => {
                let n = usize::try_from(n).map_err(|_| BodyError::TooLarge(limit))?;
                if n > limit {
                    return Err(BodyError::TooLarge(limit));
                }
                let permit = Self::reserve(budget, n).await?;
                if self.buf.len() >= n {
                    return Ok((self.buf.split_to(n).freeze(), permit));
                }
                let mut body = BytesMut::with_capacity(n);
                body.extend_from_slice(&self.buf.split());
                while body.len() < n {
                    match deadline.run(self.stream.read_buf(&mut body)).await {
                        Ok(Ok(0)) => return Err(BodyError::Closed),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(BodyError::Io(e)),
                        Err(_) => return Err(BodyError::TimedOut),
                    }
                }
                // A read may run past the body into a pipelined request: keep that for later.
                if body.len() > n {
                    self.buf = body.split_off(n);
                }
                Ok((body.freeze(), permit))
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                let mut body = BytesMut::new();
                let mut permit = BodyPermit::default();
                let mut reserved = 0usize;
                loop {
                    let mut too_large = false;
                    let end = decoder.feed(&self.buf, |data| {
                        if body.len() + data.len() > limit {
                            too_large = true;
                        } else {
                            body.extend_from_slice(data);
                        }
                    })?;
                    if too_large {
                        return Err(BodyError::TooLarge(limit));
                    }
                    if body.len() >= reserved + BUDGET_FREE {
                        let step = body.len() - reserved;
                        permit._held.extend(Self::reserve(budget, step).await?._held);
                        reserved += step;
                    }
                    match end {
                        Some(consumed) => {
                            let _ = self.buf.split_to(consumed);
                            return Ok((body.freeze(), permit));
                        }
                        None => self.buf.clear(),
                    }
                    self.buf.reserve(16 * 1024);
                    match deadline.run(self.stream.read_buf(&mut self.buf)).await {
                        Ok(Ok(0)) => return Err(BodyError::Closed),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(BodyError::Io(e)),
                        Err(_) => return Err(BodyError::TimedOut),
                    }
                }
            }
        }
    }

    /// Writes `data` and flushes, giving up after `timeout` (a client that stops reading).
    pub async fn write_all(&mut self, data: &[u8], timeout: Duration) -> std::io::Result<()> {
        let w = async {
            self.stream.write_all(data).await?;
            self.stream.flush().await
        };
        match deadline::timeout(timeout, w).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client stopped reading")),
        }
    }

    /// Writes two parts (head and body) and flushes: in one system call where the stream
    /// takes vectored writes (plain TCP does), so that the client gets them in one segment.
    pub async fn write_two(&mut self, a: &[u8], b: &[u8], timeout: Duration) -> std::io::Result<()> {
        let w = async {
            let mut parts = [std::io::IoSlice::new(a), std::io::IoSlice::new(b)];
            let mut left: &mut [std::io::IoSlice<'_>] = &mut parts;
            std::io::IoSlice::advance_slices(&mut left, 0);
            while !left.is_empty() {
                let n = self.stream.write_vectored(left).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                std::io::IoSlice::advance_slices(&mut left, n);
            }
            self.stream.flush().await
        };
        match deadline::timeout(timeout, w).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client stopped reading")),
        }
    }

    /// Closes the write side so the client sees the end promptly.
    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}
