//! HTTP/2 clients (negotiated by ALPN on TLS listeners). Each HTTP/2 stream is bridged to the
//! HTTP/1.1 data plane through an in-memory pipe: the request is rewritten as HTTP/1.1 and the
//! HTTP/1.1 answer is turned back into HTTP/2 frames as it arrives. One code path decides keys,
//! retries and accounting whatever the client speaks; the bridge costs a copy per chunk, which
//! only HTTP/2 clients pay (the SDKs use HTTP/1.1).

use super::{Gateway, Shared};
use crate::http1::{ChunkedDecoder, Framing, ResponseHead, HOP_BY_HOP};
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
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

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

fn error_header(status: u16) -> Box<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(1)).unwrap_or_else(|_| ResponseHeader::build(500, None).expect("500 is a valid status"));
    let _ = h.insert_header("content-type", "application/json; charset=UTF-8");
    Box::new(h)
}

#[async_trait]
impl HttpServerApp for H2Bridge {
    async fn process_new_http(self: &Arc<Self>, mut session: ServerSession, shutdown: &ShutdownWatch) -> Option<ReusedHttpStream> {
        let limit = self.shared.runtime.load().settings.server.body_limit;
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
        // The body, bounded like any other.
        let mut body = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(b)) if body.len() + b.len() > limit => {
                    let err = crate::gemini::error::ApiError::body_too_large(limit);
                    let _ = session.write_response_header(error_header(413)).await;
                    let _ = session.write_response_body(Bytes::from(err.to_json(false)), true).await;
                    return None;
                }
                Ok(Some(b)) => body.extend_from_slice(&b),
                Ok(None) => break,
                Err(_) => return None,
            }
        }
        head.extend_from_slice(format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes());

        let digest = session.digest();
        let io = {
            let (ours, theirs) = tokio::io::duplex(PIPE);
            let pipe = PipeIo { inner: theirs, socket: digest.and_then(|d| d.socket_digest.clone()), ssl: digest.and_then(|d| d.ssl_digest.clone()) };
            let gateway = Arc::new(Gateway { shared: self.shared.clone() });
            let sd = shutdown.clone();
            tokio::spawn(async move { gateway.process_new(Box::new(pipe), &sd).await });
            ours
        };
        let (mut rd, mut wr) = tokio::io::split(io);
        let body = body.freeze();
        // The write side stays open until the data plane has answered (closing it early would
        // look like a client going away), then the writer is dropped with it.
        let writer = tokio::spawn(async move {
            if wr.write_all(&head).await.is_ok() && wr.write_all(&body).await.is_ok() {
                let _ = wr.flush().await;
            }
            std::future::pending::<()>().await;
            drop(wr);
        });
        let _ = relay_back(&mut session, &mut rd).await;
        writer.abort();
        let _ = session.finish().await;
        None
    }
}

/// Reads the HTTP/1.1 answer from the pipe and writes it as HTTP/2.
async fn relay_back(session: &mut ServerSession, rd: &mut tokio::io::ReadHalf<DuplexStream>) -> Result<(), ()> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let res = loop {
        match ResponseHead::parse(&mut buf, 256 * 1024) {
            Ok(Some(h)) if h.status == 100 => continue,
            Ok(Some(h)) => break h,
            Ok(None) => {}
            Err(_) => return Err(()),
        }
        if rd.read_buf(&mut buf).await.map_err(|_| ())? == 0 {
            return Err(());
        }
    };
    let framing = res.framing(session.req_header().method.as_ref()).map_err(|_| ())?;
    let mut out = ResponseHeader::build(res.status, None).map_err(|_| ())?;
    for (name, value) in res.headers() {
        if HOP_BY_HOP.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name)) && !name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        if let (Ok(n), Ok(v)) = (std::str::from_utf8(name), http::HeaderValue::from_bytes(value)) {
            let _ = out.append_header(n.to_ascii_lowercase(), v);
        }
    }
    session.write_response_header(Box::new(out)).await.map_err(|_| ())?;
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
                    let end = decoder.feed(&chunk, |d| decoded.extend_from_slice(d)).map_err(|_| ())?;
                    (decoded.freeze(), end.is_some())
                }
                Framing::UntilClose => (chunk, false),
            };
            if !data.is_empty() || done {
                session.write_response_body(data, done).await.map_err(|_| ())?;
            }
            if done {
                return Ok(());
            }
        } else if matches!(framing, Framing::None) || (matches!(framing, Framing::Length(0))) {
            session.write_response_body(Bytes::new(), true).await.map_err(|_| ())?;
            return Ok(());
        }
        if rd.read_buf(&mut buf).await.map_err(|_| ())? == 0 {
            // Only a close-delimited answer may end here; anything else was cut.
            if matches!(framing, Framing::UntilClose) {
                session.write_response_body(Bytes::new(), true).await.map_err(|_| ())?;
                return Ok(());
            }
            session.shutdown_with_reason(h2::Reason::INTERNAL_ERROR);
            return Err(());
        }
    }
}
