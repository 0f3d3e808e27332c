//! What crosses the proxy and what does not: the upstream request head (client credential,
//! hop-by-hop and proxy-revealing headers removed, our key injected) and the client's response
//! head (upstream software headers removed, upload URLs pointed back at the proxy).

use crate::config::{HygieneSettings, UpstreamSettings};
use crate::gemini::route::Surface;
use crate::http1::name::LowerName;
use crate::http1::{self, RequestHead, ResponseHead, HOP_BY_HOP};

/// Header rules, precomputed once per config snapshot: lower-case names to drop.
#[derive(Debug, Clone)]
pub struct Hygiene {
    request_skip: SkipList,
    response_skip: SkipList,
}

/// Names to drop, grouped by length: a header is compared only with the listed names of its
/// own length, which for most headers a request carries is none (about 20 names are listed).
#[derive(Debug, Clone)]
struct SkipList {
    /// Sorted by length.
    names: Vec<LowerName>,
    /// The names of length `n` are `names[by_len[n]..by_len[n + 1]]`.
    by_len: [usize; MAX_LEN + 2],
    /// Names too long for [`LowerName`] (a configured one, perhaps), compared the slow way.
    long: Vec<Box<[u8]>>,
}

const MAX_LEN: usize = LowerName::CAP;

impl SkipList {
    fn new(all: Vec<Box<[u8]>>) -> Self {
        let (mut names, mut long) = (Vec::new(), Vec::new());
        for n in all {
            match std::str::from_utf8(&n).ok().and_then(LowerName::new) {
                Some(short) => names.push(short),
                None => long.push(n),
            }
        }
        names.sort_by_key(LowerName::len);
        let mut by_len = [0; MAX_LEN + 2];
        for (len, slot) in by_len.iter_mut().enumerate() {
            *slot = names.iter().take_while(|n| n.len() < len).count();
        }
        SkipList { names, by_len, long }
    }

    fn contains(&self, name: &[u8]) -> bool {
        let len = name.len();
        if len > MAX_LEN {
            return self.long.iter().any(|s| s.eq_ignore_ascii_case(name));
        }
        let same_length = &self.names[self.by_len[len]..self.by_len[len + 1]];
        same_length.iter().any(|s| s.matches(name))
    }
}

/// Request headers that carry the client's credential or that we set ourselves.
const CREDENTIAL_AND_OURS: &[&str] = &["host", "x-goog-api-key", "authorization", "expect", super::exchange::POOL_HEADER];

/// Header names a `Connection` header makes hop-by-hop, beyond `close` and `keep-alive`.
fn connection_listed(value: Option<&[u8]>) -> Vec<&[u8]> {
    value
        .into_iter()
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
        .collect()
}

fn names<'a>(lists: impl IntoIterator<Item = &'a str>) -> Vec<Box<[u8]>> {
    let mut out: Vec<Box<[u8]>> = Vec::new();
    for n in lists {
        let lower: Box<[u8]> = n.trim().to_ascii_lowercase().into_bytes().into_boxed_slice();
        if !out.contains(&lower) {
            out.push(lower);
        }
    }
    out
}

impl Hygiene {
    /// `cors`: the proxy answers CORS itself, so the upstream's verdict is dropped.
    pub fn new(settings: &HygieneSettings, upstream: &UpstreamSettings, cors: bool) -> Self {
        let accept_encoding = upstream.strip_accept_encoding.then_some("accept-encoding");
        let upstream_cors = if cors { super::cors::UPSTREAM_HEADERS } else { &[] };
        Hygiene {
            request_skip: SkipList::new(names(
                HOP_BY_HOP.iter().chain(CREDENTIAL_AND_OURS).copied().chain(settings.strip_request.iter().map(String::as_str)).chain(accept_encoding),
            )),
            response_skip: SkipList::new(names(HOP_BY_HOP.iter().chain(upstream_cors).copied().chain(settings.strip_response.iter().map(String::as_str)))),
        }
    }

    /// Writes the upstream request head up to (not including) the key header, content length
    /// and final CRLF, which differ per attempt: see [`finish_upstream_head`].
    pub fn upstream_head_prefix(&self, req: &RequestHead, upstream: &UpstreamSettings, path_and_query: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(req.method().as_bytes());
        out.push(b' ');
        out.extend_from_slice(upstream.path_prefix.as_bytes());
        out.extend_from_slice(path_and_query.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(upstream.host_header.as_bytes());
        out.extend_from_slice(b"\r\n");
        let extra = if req.connection_names_headers() { connection_listed(req.header("connection")) } else { Vec::new() };
        for (name, value) in req.headers() {
            if self.request_skip.contains(name) || extra.iter().any(|e| e.eq_ignore_ascii_case(name)) {
                continue;
            }
            http1::write_header(out, name, value);
        }
    }

    /// Writes the client's response head for `res`. `rewrite_upload_url` maps an upstream
    /// upload session URL to the proxy's own; framing lines are added by the caller.
    pub fn response_head(&self, res: &ResponseHead, out: &mut Vec<u8>, mut rewrite_upload_url: impl FnMut(&[u8]) -> Option<String>) {
        http1::write_status_line(out, res.status);
        let extra = if res.connection_names_headers() { connection_listed(res.header("connection")) } else { Vec::new() };
        for (name, value) in res.headers() {
            if self.response_skip.contains(name) || extra.iter().any(|e| e.eq_ignore_ascii_case(name)) {
                continue;
            }
            // Google sends the session URL twice (upload and control); both must lead back here.
            if name.eq_ignore_ascii_case(b"x-goog-upload-url") || name.eq_ignore_ascii_case(b"x-goog-upload-control-url") {
                if let Some(rewritten) = rewrite_upload_url(value) {
                    http1::write_header(out, name, rewritten.as_bytes());
                    continue;
                }
            }
            http1::write_header(out, name, value);
        }
    }
}

/// Completes an upstream head: the key in the place this surface expects it, the body length,
/// and the blank line.
pub fn finish_upstream_head(out: &mut Vec<u8>, surface: Surface, key: &str, body_len: usize, method: &str) {
    match surface {
        Surface::OpenAi => {
            out.extend_from_slice(b"authorization: Bearer ");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Surface::Native | Surface::Upload => http1::write_header(out, b"x-goog-api-key", key.as_bytes()),
    }
    if body_len > 0 || !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
        http1::write_content_length(out, body_len as u64);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_STRIP_REQUEST, DEFAULT_STRIP_RESPONSE};
    use bytes::BytesMut;
    use std::time::Duration;

    fn upstream() -> UpstreamSettings {
        UpstreamSettings {
            base_url: "https://generativelanguage.googleapis.com".into(),
            tls: true,
            host: "generativelanguage.googleapis.com".into(),
            port: 443,
            host_header: "generativelanguage.googleapis.com".into(),
            path_prefix: String::new(),
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            keepalive_idle: Duration::from_secs(1),
            max_attempts: 1,
            retry_backoff: Duration::from_millis(1),
            strip_accept_encoding: true,
            ca_file: None,
        }
    }

    fn hygiene() -> Hygiene {
        let s = HygieneSettings {
            strip_request: DEFAULT_STRIP_REQUEST.iter().map(|s| s.to_string()).collect(),
            strip_response: DEFAULT_STRIP_RESPONSE.iter().map(|s| s.to_string()).collect(),
        };
        Hygiene::new(&s, &upstream(), false)
    }

    #[test]
    fn upstream_head_drops_credentials_and_revealing_headers() {
        let raw = "POST /v1beta/models/m:generateContent?key=gp-client HTTP/1.1\r\nHost: proxy.local\r\nX-Goog-Api-Key: gp-client\r\nAuthorization: Bearer gp-client\r\nX-Forwarded-For: 10.0.0.1\r\nVia: 1.1 lb\r\nConnection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nAccept-Encoding: gzip\r\nUser-Agent: google-genai-sdk/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n";
        let req = RequestHead::parse(&mut BytesMut::from(raw.as_bytes()), 8192).unwrap().unwrap();
        let mut out = Vec::new();
        hygiene().upstream_head_prefix(&req, &upstream(), "/v1beta/models/m:generateContent", &mut out);
        finish_upstream_head(&mut out, Surface::Native, "AIzaUPSTREAM", 2, "POST");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /v1beta/models/m:generateContent HTTP/1.1\r\nhost: generativelanguage.googleapis.com\r\n"), "{text}");
        for gone in ["gp-client", "10.0.0.1", "Via:", "X-Secret-Hop", "Accept-Encoding", "proxy.local", "Connection"] {
            assert!(!text.contains(gone), "{gone} leaked: {text}");
        }
        assert!(text.contains("User-Agent: google-genai-sdk/1.0\r\n"));
        assert!(text.contains("x-goog-api-key: AIzaUPSTREAM\r\n"));
        assert!(text.ends_with("content-length: 2\r\n\r\n"));
    }

    #[test]
    fn configured_names_of_any_length_are_dropped() {
        let long = format!("x-{}", "l".repeat(70));
        let near = format!("x-{}", "l".repeat(69));
        let s = HygieneSettings { strip_request: vec![" X-Custom ".into(), long.clone()], strip_response: vec![] };
        let h = Hygiene::new(&s, &upstream(), false);
        let raw = format!("GET / HTTP/1.1\r\nx-custom: 1\r\nX-Custoo: 2\r\n{}: 3\r\n{near}: 4\r\n\r\n", long.to_uppercase());
        let req = RequestHead::parse(&mut BytesMut::from(raw.as_bytes()), 8192).unwrap().unwrap();
        let mut out = Vec::new();
        h.upstream_head_prefix(&req, &upstream(), "/", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains(": 1\r\n") && !text.contains(": 3\r\n"), "{text}");
        assert!(text.contains("X-Custoo: 2\r\n") && text.contains(&format!("{near}: 4\r\n")), "{text}");
    }

    #[test]
    fn skip_lists_find_names_of_every_length() {
        let listed: Vec<String> = (1..=40).step_by(3).map(|n| "k".repeat(n)).collect();
        let list = SkipList::new(names(listed.iter().map(String::as_str)));
        for n in 1..=41 {
            let name = "K".repeat(n);
            assert_eq!(list.contains(name.as_bytes()), listed.contains(&"k".repeat(n)), "length {n}");
        }
        assert!(!list.contains(b""));
    }

    #[test]
    fn openai_surface_gets_a_bearer_key() {
        let mut out = Vec::new();
        finish_upstream_head(&mut out, Surface::OpenAi, "AIzaK", 0, "GET");
        assert_eq!(out, b"authorization: Bearer AIzaK\r\n\r\n");
    }

    #[test]
    fn response_head_strips_server_headers_and_rewrites_upload_url() {
        let raw = "HTTP/1.1 200 OK\r\nServer: scaffolding on HTTPServer2\r\nAlt-Svc: h3=\":443\"\r\nX-Goog-Upload-URL: https://generativelanguage.googleapis.com/upload/v1beta/files?upload_id=U1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        let res = ResponseHead::parse(&mut BytesMut::from(raw.as_bytes()), 8192).unwrap().unwrap();
        let mut out = Vec::new();
        hygiene().response_head(&res, &mut out, |_| Some("http://127.0.0.1:8080/upload/v1beta/files?upload_id=U1".into()));
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("scaffolding") && !text.contains("Alt-Svc") && !text.contains("Transfer-Encoding"), "{text}");
        assert!(text.contains("X-Goog-Upload-URL: http://127.0.0.1:8080/upload/v1beta/files?upload_id=U1\r\n"), "{text}");
    }
}
