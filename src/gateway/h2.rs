//! HTTP/2 clients (negotiated by ALPN on TLS listeners). Each HTTP/2 stream is bridged to the
//! HTTP/1.1 data plane through an in-memory pipe: the request is rewritten as HTTP/1.1, its body
//! passed on as it arrives, and the HTTP/1.1 answer is turned back into HTTP/2 frames as it
//! arrives. One code path decides keys, retries, limits, timeouts, accounting and shutdown (a
//! request in flight, its cut and its record) whatever the client speaks; the bridge costs a copy
//! per chunk, which only HTTP/2 clients pay (the SDKs use HTTP/1.1).
//!
//! A client that resets its stream, or whose connection ends, while the data plane waits for the
//! upstream is noticed by the bridge (it watches the stream while it waits for the answer) and
//! passed on through a flag the data plane's request checks as it would a socket (see
//! `wire::PeerWatch`): the request ends as a 499 as an HTTP/1.1 client's does.

use super::{Gateway, Shared};
use crate::http1::{ChunkedDecoder, Framing, ResponseHead, HOP_BY_HOP};
use crate::wire::PeerWatch;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::apps::{HttpServerApp, ReusedHttpStream, ServerApp};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest, SocketDigest, TimingDigest};
use pingora::protocols::{Peek, Shutdown, Ssl, UniqueID, UniqueIDType};
use pingora::server::ShutdownWatch;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf, ReadHalf, WriteHalf};

/// Pipe capacity: a stream's chunks pass through without waiting on each other.
const PIPE: usize = 64 * 1024;

pub struct H2Bridge {
    pub shared: Arc<Shared>,
}

/// The data plane's end of the pipe, looking like a client connection (with the real client's
/// address and TLS details) to the HTTP/1.1 code.
#[derive(Debug)]
struct PipeIo {
    inner: DuplexStream,
    socket: Option<Arc<SocketDigest>>,
    ssl: Option<Arc<SslDigest>>,
    /// Raised by the bridge when it stops carrying the stream (see [`Leaving`]).
    gone: Arc<AtomicBool>,
}

/// How the data plane watches a bridged stream's client: the flag of its pipe, `None` for any
/// other stream. (The socket digest a pipe carries is the HTTP/2 connection's, whose descriptor
/// may already be closed and reused: it is never polled.)
pub(super) fn peer_watch(stream: &pingora::protocols::Stream) -> Option<PeerWatch> {
    stream.as_any().downcast_ref::<PipeIo>().map(|p| PeerWatch::Flag(p.gone.clone()))
}

/// Raises the pipe's flag when the bridge stops, however it stops: the client reset its stream
/// or its connection ended (what the flag is for), or the answer was complete or cut (the data
/// plane no longer waits on anything then).
struct Leaving(Arc<AtomicBool>);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl AsyncRead for PipeIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PipeIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for PipeIo {
    async fn shutdown(&mut self) {
        let _ = AsyncWriteExt::shutdown(&mut self.inner).await;
    }
}

impl UniqueID for PipeIo {
    fn id(&self) -> UniqueIDType {
        0
    }
}

impl Ssl for PipeIo {
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.ssl.clone()
    }
}

impl GetTimingDigest for PipeIo {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl GetProxyDigest for PipeIo {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for PipeIo {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.socket.clone()
    }
}

impl Peek for PipeIo {}

#[async_trait]
impl HttpServerApp for H2Bridge {
    async fn process_new_http(self: &Arc<Self>, mut session: ServerSession, shutdown: &ShutdownWatch) -> Option<ReusedHttpStream> {
        // The HTTP/1.1 request head.
        let req = session.req_header();
        let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
        let authority = req
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| req.headers.get("host").and_then(|h| h.to_str().ok()).map(str::to_owned))
            .unwrap_or_default();
        let mut head = Vec::with_capacity(1024);
        head.extend_from_slice(format!("{} {path} HTTP/1.1\r\nhost: {authority}\r\n", req.method.as_str()).as_bytes());
        for (name, value) in req.headers.iter() {
            let n = name.as_str();
            if n == "host" || HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(n)) {
                continue;
            }
            head.extend_from_slice(n.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        // The body's framing: the length the client declared (HTTP/2 holds it to it), else chunks.
        let declared = req.headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        let framing = match declared {
            _ if session.is_body_empty() => BodyFraming::Length(0),
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::Chunked,
        };
        match framing {
            BodyFraming::Length(n) => head.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
            BodyFraming::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        head.extend_from_slice(b"connection: close\r\n\r\n");

        let digest = session.digest();
        let gone = Arc::new(AtomicBool::new(false));
        let _leaving = Leaving(gone.clone());
        let io = {
            let (ours, theirs) = tokio::io::duplex(PIPE);
            let pipe = PipeIo { inner: theirs, socket: digest.and_then(|d| d.socket_digest.clone()), ssl: digest.and_then(|d| d.ssl_digest.clone()), gone };
            let gateway = Arc::new(Gateway { shared: self.shared.clone() });
            let sd = shutdown.clone();
            tokio::spawn(async move { gateway.process_new(Box::new(pipe), &sd).await });
            ours
        };
        let (mut rd, mut wr) = tokio::io::split(io);
        let mut buf = BytesMut::with_capacity(16 * 1024);
        // The data plane reads the body as it comes (with its limit, its timeout and its memory
        // budget), and counts the request in flight from its head on: a shutdown waits for it,
        // or cuts and logs it, as it does an HTTP/1.1 request.
        let forwarded = match wr.write_all(&head).await {
            Ok(()) => forward_body(&mut session, &mut wr, &mut rd, &mut buf, framing).await,
            Err(_) => Forwarded::Answered,
        };
        if forwarded == Forwarded::ClientGone {
            // Closing the pipe tells the data plane the client went away.
            return None;
        }
        // The write side stays open until the data plane has answered (closing it early would
        // look like a client going away); it is dropped with the pipe.
        match relay_back(&mut session, &mut rd, buf).await {
            Ok(()) => {}
            // The data plane ended the answer early (a request cut at shutdown, an upstream that
            // failed midway): end the client's stream for certain, rather than leave it open.
            Err(Ended::Cut) => session.shutdown_with_reason(h2::Reason::INTERNAL_ERROR),
            // Nobody to tell: the flag (raised as this returns) ends the data plane's request.
            Err(Ended::ClientGone) => return None,
        }
        let _ = session.finish().await;
        None
    }
}

/// How the request body is framed on the pipe.
#[derive(Clone, Copy)]
enum BodyFraming {
    Length(u64),
    Chunked,
}

/// How passing the body on ended.
#[derive(Debug, PartialEq, Eq)]
enum Forwarded {
    /// The whole body went through.
    Complete,
    /// The data plane answered, or closed the pipe, before taking the whole body (a refusal, or
    /// a request cut at shutdown): what it sent is in the buffer.
    Answered,
    /// The client reset its stream or went away.
    ClientGone,
}

/// Passes the request body on to the data plane as it arrives, while watching the pipe: an
/// answer (or the pipe's end) before the whole body went through stops the passing, so that it
/// reaches the client at once instead of after a body nobody reads.
async fn forward_body(
    session: &mut ServerSession,
    wr: &mut WriteHalf<DuplexStream>,
    rd: &mut ReadHalf<DuplexStream>,
    buf: &mut BytesMut,
    framing: BodyFraming,
) -> Forwarded {
    let chunked = matches!(framing, BodyFraming::Chunked);
    if matches!(framing, BodyFraming::Length(0)) {
        return Forwarded::Complete;
    }
    loop {
        // Both are cancel-safe: a read that loses the race has taken nothing.
        let data = tokio::select! {
            biased;
            _ = rd.read_buf(buf) => return Forwarded::Answered,
            data = session.read_request_body() => data,
        };
        let written = match data {
            Ok(Some(data)) if chunked => {
                let size = format!("{:x}\r\n", data.len());
                write_parts(wr, &[size.as_bytes(), &data, b"\r\n"]).await
            }
            Ok(Some(data)) => wr.write_all(&data).await,
            Ok(None) => {
                let end = if chunked { write_parts(wr, &[b"0\r\n\r\n"]).await } else { Ok(()) };
                return if end.is_ok() { Forwarded::Complete } else { Forwarded::Answered };
            }
            Err(_) => return Forwarded::ClientGone,
        };
        if written.is_err() {
            return Forwarded::Answered;
        }
    }
}

async fn write_parts(wr: &mut WriteHalf<DuplexStream>, parts: &[&[u8]]) -> std::io::Result<()> {
    for p in parts {
        wr.write_all(p).await?;
    }
    Ok(())
}

/// Why an answer did not reach the client whole.
enum Ended {
    /// The data plane's answer was cut short or was not valid, or writing it failed.
    Cut,
    /// The client reset its stream, or its connection ended, while the answer was awaited.
    ClientGone,
}

/// Reads more of the answer from the pipe into `buf` (0: the pipe's end), unless the client
/// resets its stream or its connection ends first. Both waits are cancel-safe.
async fn read_answer(session: &mut ServerSession, rd: &mut ReadHalf<DuplexStream>, buf: &mut BytesMut) -> Result<usize, Ended> {
    let Some(closed) = session.watch_h2_stream_close() else { return rd.read_buf(buf).await.map_err(|_| Ended::Cut) };
    tokio::select! {
        biased;
        read = rd.read_buf(buf) => read.map_err(|_| Ended::Cut),
        _ = closed => Err(Ended::ClientGone),
    }
}

/// Reads the HTTP/1.1 answer from the pipe (its start may be in `buf` already) and writes it as
/// HTTP/2, watching the client's stream while it waits for the next piece.
async fn relay_back(session: &mut ServerSession, rd: &mut ReadHalf<DuplexStream>, mut buf: BytesMut) -> Result<(), Ended> {
    let res = loop {
        match ResponseHead::parse(&mut buf, 256 * 1024) {
            Ok(Some(h)) if h.status == 100 => continue,
            Ok(Some(h)) => break h,
            Ok(None) => {}
            Err(_) => return Err(Ended::Cut),
        }
        if read_answer(session, rd, &mut buf).await? == 0 {
            return Err(Ended::Cut);
        }
    };
    let framing = res.framing(session.req_header().method.as_ref()).map_err(|_| Ended::Cut)?;
    let mut out = ResponseHeader::build(res.status, None).map_err(|_| Ended::Cut)?;
    for (name, value) in res.headers() {
        if HOP_BY_HOP.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name)) && !name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        if let (Ok(n), Ok(v)) = (std::str::from_utf8(name), http::HeaderValue::from_bytes(value)) {
            let _ = out.append_header(n.to_ascii_lowercase(), v);
        }
    }
    session.write_response_header(Box::new(out)).await.map_err(|_| Ended::Cut)?;
    let mut decoder = ChunkedDecoder::new();
    let mut remaining = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    loop {
        if !buf.is_empty() {
            let chunk = buf.split().freeze();
            let (data, done) = match framing {
                Framing::None => (Bytes::new(), true),
                Framing::Length(_) => {
                    let take = (remaining.min(chunk.len() as u64)) as usize;
                    remaining -= take as u64;
                    (chunk.slice(..take), remaining == 0)
                }
                Framing::Chunked => {
                    let mut decoded = BytesMut::new();
                    let end = decoder.feed(&chunk, |d| decoded.extend_from_slice(d)).map_err(|_| Ended::Cut)?;
                    (decoded.freeze(), end.is_some())
                }
                Framing::UntilClose => (chunk, false),
            };
            if !data.is_empty() || done {
                session.write_response_body(data, done).await.map_err(|_| Ended::Cut)?;
            }
            if done {
                return Ok(());
            }
        } else if matches!(framing, Framing::None) || (matches!(framing, Framing::Length(0))) {
            session.write_response_body(Bytes::new(), true).await.map_err(|_| Ended::Cut)?;
            return Ok(());
        }
        if read_answer(session, rd, &mut buf).await? == 0 {
            // Only a close-delimited answer may end here; anything else was cut.
            if matches!(framing, Framing::UntilClose) {
                session.write_response_body(Bytes::new(), true).await.map_err(|_| Ended::Cut)?;
                return Ok(());
            }
            return Err(Ended::Cut);
        }
    }
}
