//! A connection's byte stream as the data plane reads and writes it: plain TCP held as tokio's
//! own socket, anything else (TLS, HTTP/2 bridges) as Pingora's boxed stream.
//!
//! Why not always Pingora's stream: every read on it passes through a trait object, a rewind
//! buffer check, a zero-sized buffered reader and writer, and timing bookkeeping that reads the
//! clock twice whenever a read has to wait, none of which the data plane uses. On plain TCP,
//! which is what an upstream on a private network and every benchmark speak, that was about 2%
//! of the proxy's CPU per request. Pingora offers no way to take the socket out of its stream,
//! so the socket is duplicated and Pingora's handle closed: one `dup` per connection.
//!
//! Also here: [`PeerWatch`], how the data plane asks whether a client is still connected while
//! its request waits for the upstream, without reading from the client's connection.

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::TlsStream;
use pingora::protocols::{Stream, UniqueID};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum Wire {
    Tcp(TcpStream),
    Pingora(Stream),
}

impl Wire {
    /// Takes over a stream Pingora accepted or connected: plain TCP becomes a tokio socket,
    /// anything else stays as it is. Must run inside the runtime that will poll it.
    pub fn adopt(stream: Stream) -> Wire {
        if stream.get_ssl_digest().is_some() {
            return Wire::Pingora(stream);
        }
        let tcp = match stream.as_any().downcast_ref::<L4Stream>().map(Self::tcp_of) {
            Some(Ok(tcp)) => tcp,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "keeping Pingora's stream: its socket could not be taken over");
                return Wire::Pingora(stream);
            }
            // Not Pingora's plain stream (an HTTP/2 bridge, say).
            None => return Wire::Pingora(stream),
        };
        // Pingora's handle goes (closing its descriptor, not the connection: the duplicate
        // holds it open).
        drop(stream);
        Wire::Tcp(tcp)
    }

    fn tcp_of(l4: &L4Stream) -> io::Result<TcpStream> {
        // SAFETY: the descriptor belongs to `l4`, which outlives this borrow; it is only
        // duplicated here, never closed.
        let fd = unsafe { BorrowedFd::borrow_raw(l4.as_raw_fd()) };
        let owned = fd.try_clone_to_owned()?;
        let std_tcp = std::net::TcpStream::from(owned);
        // Unix sockets and other kinds are refused here (local_addr of a non-TCP socket fails or
        // is not an inet address).
        std_tcp.local_addr()?;
        std_tcp.set_nonblocking(true)?;
        TcpStream::from_std(std_tcp)
    }

    pub fn is_tls(&self) -> bool {
        match self {
            Wire::Tcp(_) => false,
            Wire::Pingora(s) => s.get_ssl_digest().is_some(),
        }
    }

    /// Ready once the socket has bytes to read (or an end or error to report), without taking
    /// a buffer for them. Streams that cannot tell (TLS, bridges) are ready at once: their
    /// read does the waiting.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Wire::Tcp(s) => s.poll_read_ready(cx),
            Wire::Pingora(_) => Poll::Ready(Ok(())),
        }
    }

    /// How to tell whether the client went away: its TCP socket, plain or under TLS (a client
    /// that closes a TLS connection closes its TCP connection too). Streams of any other kind
    /// (an HTTP/2 bridge, see `gateway::h2`) are not watched from here.
    pub fn peer_watch(&self) -> PeerWatch {
        let fd = match self {
            Wire::Tcp(s) => Some(s.as_raw_fd()),
            Wire::Pingora(s) => {
                let any = s.as_any();
                match (any.downcast_ref::<TlsStream<L4Stream>>(), any.downcast_ref::<L4Stream>()) {
                    // Pingora's unique id of a TCP stream is its descriptor, and a TLS stream's
                    // is that of the TCP stream under it (its socket digest keeps the
                    // descriptor to itself).
                    (Some(tls), _) => Some(tls.id()),
                    (None, Some(l4)) => Some(l4.as_raw_fd()),
                    (None, None) => None,
                }
            }
        };
        fd.map_or(PeerWatch::Blind, PeerWatch::Socket)
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Wire::Tcp(s) => s.peer_addr().ok(),
            Wire::Pingora(s) => s.get_socket_digest().and_then(|d| d.peer_addr().and_then(|a| a.as_inet().copied())),
        }
    }
}

impl AsyncRead for Wire {
    #[inline]
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Wire::Pingora(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Wire {
    #[inline]
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Wire::Pingora(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Wire::Pingora(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Wire::Tcp(s) => s.is_write_vectored(),
            Wire::Pingora(s) => s.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_flush(cx),
            Wire::Pingora(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Wire::Pingora(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How often a request waiting for the upstream checks that its client is still connected.
///
/// One second, as nginx notices a client that left within a moment: a client that gave up (or
/// timed out and retries) has its concurrency permit, the key's in-flight count and the
/// upstream connection back within about a second, long before the minutes a thinking model
/// or a paused stream can take. The check is a `poll(2)` with no timeout, made only by a wait
/// that has lasted a whole interval, on the timer the wait arms anyway: a request answered
/// within a second makes none, and a ten-minute generation makes 600 (noise beside its
/// answer). Much shorter would start costing ordinary requests of a few seconds a wake-up
/// each tenth of a second; much longer would leave a retrying client refused by its own
/// abandoned requests.
pub const CLIENT_CHECK: Duration = Duration::from_secs(1);

/// Whether the client on a connection has gone, asked without reading from the connection (a
/// pipelined next request waiting in the socket is not a close). Lives beside the connection it
/// watches, and must not outlive it (it may hold the connection's descriptor).
pub enum PeerWatch {
    /// A TCP socket, polled for the peer's FIN (`POLLRDHUP`), a reset or an error.
    Socket(RawFd),
    /// A flag raised by whoever carries the client's bytes (the HTTP/2 bridge, when the client
    /// resets its stream or its connection ends).
    Flag(Arc<AtomicBool>),
    /// Nothing to ask: never reports the client gone.
    Blind,
}

impl crate::deadline::Watch for PeerWatch {
    fn every(&self) -> Duration {
        CLIENT_CHECK
    }

    fn gone(&self) -> bool {
        match self {
            PeerWatch::Socket(fd) => hung_up(*fd),
            PeerWatch::Flag(raised) => raised.load(Ordering::Acquire),
            PeerWatch::Blind => false,
        }
    }
}

/// The peer's end-of-stream (Linux reports it apart from readable data, so a FIN behind a
/// pipelined request counts, as it does for nginx); elsewhere only a hang-up or error is seen.
#[cfg(any(target_os = "linux", target_os = "android"))]
const PEER_CLOSED: libc::c_short = libc::POLLRDHUP;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const PEER_CLOSED: libc::c_short = 0;

/// Whether the socket `fd` saw its peer close (FIN) or reset the connection, without reading
/// from it. A client that only shut down its sending side (HTTP allows it, hardly any client
/// does it) looks the same, and is taken as gone as nginx takes it.
fn hung_up(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: PEER_CLOSED, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call; a timeout of 0 never blocks. A
    // descriptor that is not open comes back as POLLNVAL, which says nothing about the client.
    let ready = unsafe { libc::poll(&mut p, 1, 0) };
    ready > 0 && p.revents & (PEER_CLOSED | libc::POLLHUP | libc::POLLERR) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadline::Watch;
    use std::io::Write;

    #[test]
    fn a_socket_is_gone_once_its_peer_closes_not_while_it_sends() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let watch = PeerWatch::Socket(server.as_raw_fd());
        assert!(!watch.gone());
        // Bytes waiting to be read (a pipelined request) are not a close, and stay unread.
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!watch.gone());
        // A close behind them is seen all the same.
        drop(client);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !watch.gone() {
            assert!(std::time::Instant::now() < deadline, "the close was never seen");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut pending = [0u8; 64];
        assert_eq!(std::io::Read::read(&mut &server, &mut pending).unwrap(), 18, "the request is still there to read");
    }

    #[test]
    fn a_flag_or_nothing_to_watch() {
        let raised = Arc::new(AtomicBool::new(false));
        let watch = PeerWatch::Flag(raised.clone());
        assert!(!watch.gone());
        raised.store(true, Ordering::Release);
        assert!(watch.gone());
        assert!(!PeerWatch::Blind.gone());
    }
}
