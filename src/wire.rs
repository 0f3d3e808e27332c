//! A connection's byte stream as the data plane reads and writes it: plain TCP held as tokio's
//! own socket, anything else (TLS, HTTP/2 bridges) as Pingora's boxed stream.
//!
//! Why not always Pingora's stream: every read on it passes through a trait object, a rewind
//! buffer check, a zero-sized buffered reader and writer, and timing bookkeeping that reads the
//! clock twice whenever a read has to wait, none of which the data plane uses. On plain TCP,
//! which is what an upstream on a private network and every benchmark speak, that was about 2%
//! of the proxy's CPU per request. Pingora offers no way to take the socket out of its stream,
//! so the socket is duplicated and Pingora's handle closed: one `dup` per connection.

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
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
