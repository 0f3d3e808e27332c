//! Relaying an upstream answer to the client as it arrives: the head with our hygiene applied,
//! then the body chunk by chunk (passed through untouched where the framing allows), while
//! token usage and created resource names are read on the side.

use super::downstream::Downstream;
use super::{Runtime, Shared};
use crate::config::Settings;
use crate::deadline::Timer;
use crate::gemini::route::{query_param, Action, Route, Surface, UPLOAD_ID};
use crate::gemini::usage::{created_resource_name, UsageScanner};
use crate::http1::{self, ChunkError, ChunkedDecoder, Framing, RequestHead, ResponseHead};
use crate::pool::store::UploadSession;
use crate::secret::Fingerprint;
use crate::telemetry::access_log::AccessRecord;
use crate::upstream::{UpstreamConn, UpstreamFailure};
use crate::wire::PeerWatch;
use bytes::Buf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of a creating call's response kept to read the created resource's name.
const CAPTURE: usize = 64 * 1024;

/// What to do with the answer besides relaying it.
pub struct Plan {
    /// Read token usage (`Some(openai_surface)`).
    usage: Option<bool>,
    capture: bool,
    sse: bool,
    client_http10: bool,
    head_only: bool,
}

/// The proxy's own origin as the client sees it (where rewritten upload URLs must point).
pub fn public_origin(head: &RequestHead, settings: &Settings, tls: bool) -> String {
    match &settings.server.public_url {
        Some(u) => u.clone(),
        None => {
            let scheme = if tls { "https" } else { "http" };
            let host = head.header_str("host").map(str::to_owned).unwrap_or_else(|| settings.server.listen[0].to_string());
            format!("{scheme}://{host}")
        }
    }
}

impl Plan {
    /// Whether the answer is an event stream.
    pub fn streams(&self) -> bool {
        self.sse
    }

    pub fn for_request(route: &Route<'_>, head: &RequestHead, res: &ResponseHead) -> Plan {
        let ok = (200..300).contains(&res.status);
        let usage = match route.action {
            Action::Generate | Action::StreamGenerate | Action::Embed | Action::OpenAiChat | Action::OpenAiEmbeddings if ok => {
                Some(route.surface == Surface::OpenAi)
            }
            _ => None,
        };
        let capture = ok && matches!(route.action, Action::CreateResource | Action::UploadStart | Action::UploadChunk);
        let sse = res.header("content-type").is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"));
        Plan { usage, capture, sse, client_http10: head.minor_version == 0, head_only: head.method() == "HEAD" }
    }
}

/// How long the proxy remembers upload sessions and which key owns a created resource.
/// (Gemini files live 48 hours; caches and batches can live longer.)
pub const OWNERSHIP_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Who owns what an answer creates (the upload session its URL opens, the resource its body
/// names): the key that got it, and the client that asked. One small value rather than two
/// closures capturing the request's references, which made every request's state bigger.
pub struct Owner {
    pub key: Fingerprint,
    pub client: Option<Arc<str>>,
}

/// What happened while relaying (besides what the relay counts in the record as it goes).
pub struct Relay {
    /// Status as logged: the upstream's, or 499 when the client went away.
    pub status: u16,
    pub error: Option<String>,
    /// The upstream failed in the middle of the body.
    pub upstream_broke: bool,
    /// The client went away before the answer was complete (`status` is then 499): the attempt
    /// was abandoned, through no fault of the key.
    pub client_left: bool,
    pub created_resource: Option<String>,
    pub client_keep_alive: bool,
}

/// How the client's copy of the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientFraming {
    None,
    Length(u64),
    /// Upstream chunks passed through as they are.
    ChunkedPassthrough,
    /// A close-delimited upstream body re-framed as chunks.
    ChunkedEncode,
    /// Delimited by closing the connection (HTTP/1.0 clients).
    Close,
}

/// Turns raw upstream body bytes into what the client gets, observing the payload on the way.
struct Pump {
    upstream: Framing,
    client: ClientFraming,
    remaining: u64,
    decoder: ChunkedDecoder,
    capture: Option<Vec<u8>>,
    /// Last payload bytes, to know whether an SSE stream stopped between events.
    tail: [u8; 4],
    out: Vec<u8>,
}

enum Emit {
    /// Write the consumed input as it is.
    Raw,
    /// Write `Pump::out`.
    Out,
}

fn observe(scanner: &mut Option<UsageScanner>, capture: &mut Option<Vec<u8>>, tail: &mut [u8; 4], data: &[u8]) {
    if let Some(s) = scanner {
        s.feed(data);
    }
    if let Some(c) = capture {
        if c.len() < CAPTURE {
            let room = CAPTURE - c.len();
            c.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    if data.len() >= 4 {
        tail.copy_from_slice(&data[data.len() - 4..]);
    } else {
        for &b in data {
            tail.rotate_left(1);
            tail[3] = b;
        }
    }
}

impl Pump {
    /// Consumes raw bytes, feeding their payload to `scanner`. Returns how many were part of the
    /// body, whether the body is complete, and what to write.
    fn push(&mut self, raw: &[u8], scanner: &mut Option<UsageScanner>) -> Result<(usize, bool, Emit), ChunkError> {
        let Pump { capture, tail, out, .. } = self;
        match (self.upstream, self.client) {
            (Framing::None, _) => Ok((0, true, Emit::Raw)),
            (Framing::Length(_), _) => {
                let k = (self.remaining.min(raw.len() as u64)) as usize;
                observe(scanner, capture, tail, &raw[..k]);
                self.remaining -= k as u64;
                Ok((k, self.remaining == 0, Emit::Raw))
            }
            (Framing::Chunked, ClientFraming::ChunkedPassthrough) => {
                let end = self.decoder.feed(raw, |d| observe(scanner, capture, tail, d))?;
                Ok((end.unwrap_or(raw.len()), end.is_some(), Emit::Raw))
            }
            (Framing::Chunked, _) => {
                out.clear();
                let end = self.decoder.feed(raw, |d| {
                    observe(scanner, capture, tail, d);
                    out.extend_from_slice(d);
                })?;
                Ok((end.unwrap_or(raw.len()), end.is_some(), Emit::Out))
            }
            (Framing::UntilClose, ClientFraming::ChunkedEncode) => {
                observe(scanner, capture, tail, raw);
                out.clear();
                crate::http1::write_chunk_size(out, raw.len());
                out.extend_from_slice(raw);
                out.extend_from_slice(b"\r\n");
                Ok((raw.len(), false, Emit::Out))
            }
            (Framing::UntilClose, _) => {
                observe(scanner, capture, tail, raw);
                Ok((raw.len(), false, Emit::Raw))
            }
        }
    }

    /// Whether the client could be told "the stream ended with an error" cleanly: SSE framing
    /// between two events, and chunk framing between two chunks.
    fn between_events(&self) -> bool {
        let blank_line = self.tail.ends_with(b"\n\n") || self.tail.ends_with(b"\r\n\r\n");
        let chunk_boundary = match self.client {
            ClientFraming::ChunkedPassthrough => self.decoder.at_chunk_boundary(),
            ClientFraming::ChunkedEncode => true,
            _ => false,
        };
        blank_line && chunk_boundary
    }
}

/// Relays `res` and its body from `conn` to the client.
///
/// What a cut request's record needs is kept up to date in place as the answer goes out: the
/// bytes the client was sent in `log.bytes_out`, and the body in `scanner` (made here when the
/// plan reads usage; the caller takes it and reads the counts, whether the relay finished or not).
#[allow(clippy::too_many_arguments)]
pub async fn relay(
    shared: &Shared,
    rt: &Arc<Runtime>,
    ds: &mut Downstream,
    head: &RequestHead,
    mut conn: UpstreamConn,
    res: ResponseHead,
    plan: Plan,
    retry_after: Option<u64>,
    owner: Owner,
    log: &mut AccessRecord,
    scanner: &mut Option<UsageScanner>,
) -> Relay {
    let up = &rt.settings.upstream;
    let write_timeout = up.idle_timeout;
    let mut result =
        Relay { status: res.status, error: None, upstream_broke: false, client_left: false, created_resource: None, client_keep_alive: !head.wants_close() };
    let upstream_framing = match res.framing(head.method()) {
        Ok(f) => f,
        Err(e) => {
            result.error = Some(format!("upstream response framing: {e}"));
            result.status = 502;
            let err = crate::gemini::error::ApiError::bad_gateway(format!("the upstream sent an invalid response: {e}"));
            log.bytes_out = super::respond::error(ds, &err, false, true, plan.head_only).await.unwrap_or(0);
            result.client_keep_alive = false;
            return result;
        }
    };
    let client = match (upstream_framing, plan.client_http10) {
        (Framing::None, _) => ClientFraming::None,
        (Framing::Length(n), _) => ClientFraming::Length(n),
        (Framing::Chunked, false) => ClientFraming::ChunkedPassthrough,
        (Framing::UntilClose, false) => ClientFraming::ChunkedEncode,
        (Framing::Chunked | Framing::UntilClose, true) => ClientFraming::Close,
    };
    if client == ClientFraming::Close {
        result.client_keep_alive = false;
    }

    // Head.
    let mut pending = Vec::with_capacity(512);
    let tls = ds.tls;
    rt.hygiene.response_head(&res, &mut pending, |upload_url| {
        let origin = public_origin(head, &rt.settings, tls);
        let (rewritten, upload_id) = rewrite_upload_url(upload_url, &origin, &rt.settings.upstream.path_prefix)?;
        // Bound before the URL reaches the client: its first chunk, without a key, can arrive
        // on another connection the moment the client has the URL.
        if let Some(id) = upload_id {
            let session = UploadSession { key: owner.key, client: owner.client.clone(), expires: Instant::now() + OWNERSHIP_TTL };
            shared.store.bind_upload(&id, session);
        }
        Some(rewritten)
    });
    match client {
        ClientFraming::Length(n) => http1::write_content_length(&mut pending, n),
        ClientFraming::ChunkedPassthrough | ClientFraming::ChunkedEncode => http1::write_header(&mut pending, b"transfer-encoding", b"chunked"),
        ClientFraming::None => {
            // HEAD answers and the like: keep the length the upstream announced.
            if let Some(v) = res.header("content-length") {
                http1::write_header(&mut pending, b"content-length", v);
            }
        }
        ClientFraming::Close => {}
    }
    if let Some(secs) = retry_after {
        if res.header("retry-after").is_none() {
            http1::write_header(&mut pending, b"retry-after", secs.to_string().as_bytes());
        }
    }
    if !result.client_keep_alive {
        http1::write_header(&mut pending, b"connection", b"close");
    } else if plan.client_http10 {
        // An HTTP/1.0 client that asked for keep-alive closes unless the answer confirms it.
        http1::write_header(&mut pending, b"connection", b"keep-alive");
    }
    if let Some(grant) = &ds.cors {
        grant.write_headers(&mut pending);
    }
    pending.extend_from_slice(b"\r\n");

    *scanner = plan.usage.map(UsageScanner::new);
    let mut pump = Pump {
        upstream: upstream_framing,
        client,
        remaining: match upstream_framing {
            Framing::Length(n) => n,
            _ => 0,
        },
        decoder: ChunkedDecoder::new(),
        capture: plan.capture.then(Vec::new),
        tail: [0; 4],
        out: Vec::new(),
    };

    // Send the head now unless body bytes are already here to go with it: a stream's client
    // must see the head without waiting for the first event.
    if conn.buf.is_empty() && !matches!(upstream_framing, Framing::None | Framing::Length(0)) {
        if let Err(e) = ds.write_all(&pending, write_timeout).await {
            return client_gone(result, e);
        }
        log.bytes_out += pending.len() as u64;
        pending.clear();
    }

    let mut done = matches!(upstream_framing, Framing::None | Framing::Length(0));
    loop {
        if !conn.buf.is_empty() && !done {
            let (consumed, complete, emit) = match pump.push(&conn.buf, scanner) {
                Ok(r) => r,
                Err(e) => {
                    result.error = Some(format!("upstream body: {e}"));
                    result.upstream_broke = true;
                    result.client_keep_alive = false;
                    break;
                }
            };
            if complete {
                // Before the last bytes go out: a client may name what it created in its very
                // next request, and that request must find the owner known.
                name_created(shared, &owner, &pump, &mut result);
            }
            let data: &[u8] = match emit {
                Emit::Raw => &conn.buf[..consumed],
                Emit::Out => &pump.out,
            };
            let write = if pending.is_empty() { ds.write_all(data, write_timeout).await } else { ds.write_two(&pending, data, write_timeout).await };
            if let Err(e) = write {
                return client_gone(result, e);
            }
            log.bytes_out += (pending.len() + data.len()) as u64;
            pending.clear();
            conn.buf.advance(consumed);
            done = complete;
        }
        if done {
            break;
        }
        // While the upstream is silent (a thinking model, a pause between events), the client
        // is checked every second: one that left ends the relay now, not at the next event.
        // The connection's kept timer: each chunk's wait moves it rather than adding a timer.
        match conn.read_more(up.idle_timeout, &mut ds.upstream_timer, Some(&ds.peer_watch)).await {
            Ok(0) if upstream_framing == Framing::UntilClose => {
                if client == ClientFraming::ChunkedEncode {
                    if let Err(e) = ds.write_all(b"0\r\n\r\n", write_timeout).await {
                        return client_gone(result, e);
                    }
                    log.bytes_out += 5;
                }
                done = true;
                break;
            }
            Ok(0) => {
                midstream_failure(
                    ds,
                    &mut result,
                    &mut log.bytes_out,
                    &pump,
                    plan.sse,
                    "the upstream closed the connection in the middle of the body",
                    write_timeout,
                )
                .await;
                break;
            }
            Ok(_) => {}
            Err(UpstreamFailure::ClientGone) => {
                // The upstream connection goes with the unread rest of the answer.
                return client_gone(result, "it closed its connection while the upstream was silent");
            }
            Err(e) => {
                let msg = match e {
                    UpstreamFailure::Timeout(d) => format!("the upstream sent nothing for {d:?} in the middle of the body"),
                    other => other.to_string(),
                };
                midstream_failure(ds, &mut result, &mut log.bytes_out, &pump, plan.sse, &msg, write_timeout).await;
                break;
            }
        }
    }
    if !pending.is_empty() {
        // A body-less answer: its head goes out alone.
        if let Err(e) = ds.write_all(&pending, write_timeout).await {
            return client_gone(result, e);
        }
        log.bytes_out += pending.len() as u64;
    }

    name_created(shared, &owner, &pump, &mut result);
    if done && res.keeps_alive() && upstream_framing != Framing::UntilClose {
        shared.upstream.checkin(conn);
    }
    result
}

/// Binds the resource a complete captured answer created to the owner's key, once: a named
/// `result.created_resource` means it is done (and the capture is not parsed again).
fn name_created(shared: &Shared, owner: &Owner, pump: &Pump, result: &mut Relay) {
    if result.created_resource.is_some() {
        return;
    }
    let Some(name) = pump.capture.as_deref().and_then(created_resource_name) else { return };
    shared.store.bind_owner(&name, owner.key, OWNERSHIP_TTL);
    result.created_resource = Some(name);
}

/// The relay ends because the client went away (`why`: how that was seen).
fn client_gone(mut result: Relay, why: impl std::fmt::Display) -> Relay {
    result.status = 499;
    result.error = Some(format!("client went away: {why}"));
    result.client_left = true;
    result.client_keep_alive = false;
    result
}

/// The upstream failed after the client got the head. An SSE stream stopped between events is
/// ended cleanly with an error event; anything else is cut, so the client sees an error (never
/// a hang, never a silently truncated body that looks complete).
async fn midstream_failure(ds: &mut Downstream, result: &mut Relay, bytes_out: &mut u64, pump: &Pump, sse: bool, message: &str, write_timeout: Duration) {
    result.upstream_broke = true;
    result.error = Some(message.to_owned());
    result.client_keep_alive = false;
    if sse && pump.between_events() {
        let event = serde_json::json!({"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}});
        let payload = format!("data: {event}\r\n\r\n");
        let chunk = format!("{:x}\r\n{payload}\r\n0\r\n\r\n", payload.len());
        if ds.write_all(chunk.as_bytes(), write_timeout).await.is_ok() {
            *bytes_out += chunk.len() as u64;
        }
    }
}

/// Reads a whole (small) body into `conn.buf` without consuming it, so it can still be relayed,
/// and returns it decoded. `None` if it is larger than `cap`. `timer` and `watch` (the client it
/// is for): as for [`UpstreamConn::read_more`].
pub async fn buffer_body(
    conn: &mut UpstreamConn,
    res: &ResponseHead,
    method: &str,
    idle: Duration,
    cap: usize,
    timer: &mut Timer,
    watch: Option<&PeerWatch>,
) -> Result<Option<Vec<u8>>, UpstreamFailure> {
    let framing = res.framing(method).map_err(|e| UpstreamFailure::Protocol(e.to_string()))?;
    let mut decoder = ChunkedDecoder::new();
    let mut decoded = Vec::new();
    let mut pos = 0;
    loop {
        match framing {
            Framing::None => return Ok(Some(Vec::new())),
            // Announced larger than `cap`: known at once, without reading it.
            Framing::Length(n) if n > cap as u64 => return Ok(None),
            Framing::Length(n) => {
                if conn.buf.len() as u64 >= n {
                    return Ok(Some(conn.buf[..n as usize].to_vec()));
                }
            }
            Framing::Chunked => {
                let end = decoder.feed(&conn.buf[pos..], |d| decoded.extend_from_slice(d)).map_err(|e| UpstreamFailure::Protocol(e.to_string()))?;
                if end.is_some() {
                    return Ok(Some(decoded));
                }
                pos = conn.buf.len();
            }
            Framing::UntilClose => {
                if conn.eof {
                    return Ok(Some(conn.buf.to_vec()));
                }
            }
        }
        if conn.buf.len() > cap {
            return Ok(None);
        }
        if conn.read_more(idle, timer, watch).await? == 0 && framing != Framing::UntilClose {
            return Err(UpstreamFailure::Broken("closed in the middle of an error body".into()));
        }
    }
}

/// Points an upstream upload URL at the proxy: `(new URL, upload_id)`.
pub fn rewrite_upload_url(value: &[u8], origin: &str, upstream_prefix: &str) -> Option<(String, Option<String>)> {
    let value = std::str::from_utf8(value).ok()?;
    let after_scheme = value.find("://").map(|i| i + 3)?;
    let path_start = value[after_scheme..].find('/').map(|i| i + after_scheme)?;
    let path_and_query = &value[path_start..];
    let path_and_query = path_and_query.strip_prefix(upstream_prefix).filter(|p| p.starts_with('/')).unwrap_or(path_and_query);
    let upload_id = path_and_query.split_once('?').and_then(|(_, q)| query_param(q, UPLOAD_ID)).map(str::to_owned);
    Some((format!("{origin}{path_and_query}"), upload_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls_point_back_at_the_proxy() {
        let (url, id) = rewrite_upload_url(
            b"https://generativelanguage.googleapis.com/upload/v1beta/files?upload_id=ABC-1&upload_protocol=resumable",
            "http://127.0.0.1:8080",
            "",
        )
        .unwrap();
        assert_eq!(url, "http://127.0.0.1:8080/upload/v1beta/files?upload_id=ABC-1&upload_protocol=resumable");
        assert_eq!(id.as_deref(), Some("ABC-1"));
        let (url, _) = rewrite_upload_url(b"https://gw.example/gemini/upload/v1/files?upload_id=Z", "https://proxy.example", "/gemini").unwrap();
        assert_eq!(url, "https://proxy.example/upload/v1/files?upload_id=Z");
        assert!(rewrite_upload_url(b"not a url", "http://x", "").is_none());
    }
}
