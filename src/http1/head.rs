//! Request and response heads parsed in place: the head's bytes are kept once, and the method,
//! target and headers are ranges into them, so parsing allocates one small vector.

use super::name::LowerName;
use super::Framing;
use bytes::{Bytes, BytesMut};
use std::ops::Range;

/// Most headers a head may carry; more is answered with 431.
pub const MAX_HEADERS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
    #[error("HTTP head is larger than {0} bytes")]
    TooLarge(usize),
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("unsupported transfer coding: {0}")]
    UnsupportedTransferCoding(String),
    #[error("conflicting message framing: {0}")]
    BadFraming(&'static str),
}

impl HeadError {
    /// The status a client gets for this error.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge(_) | HeadError::TooManyHeaders => 431,
            HeadError::UnsupportedTransferCoding(_) => 501,
            _ => 400,
        }
    }
}

type R = Range<u32>;

fn range_of(base: &[u8], part: &[u8]) -> R {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start as u32..(start + part.len()) as u32
}

fn at<'a>(raw: &'a [u8], r: &R) -> &'a [u8] {
    &raw[r.start as usize..r.end as usize]
}

/// The length of a complete head from an httparse result; `None` while incomplete.
fn head_len(parsed: httparse::Result<usize>, buffered: usize, max_bytes: usize) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) if n > max_bytes => Err(HeadError::TooLarge(max_bytes)),
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buffered > max_bytes => Err(HeadError::TooLarge(max_bytes)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

/// Header names asked about on every request or response, in lower case. Their positions are
/// noted in the one pass over the names at parse time, so that asking is an array read
/// instead of a case-insensitive scan of every header (five or so questions per request).
const KNOWN: [&str; 11] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "x-goog-api-key",
    "authorization",
    "expect",
    "x-forwarded-for",
    "x-gemini-proxy-pool",
    "content-type",
    "retry-after",
];
/// [`KNOWN`], prepared for comparison.
static KNOWN_NAMES: [LowerName; KNOWN.len()] = {
    let mut out = [LowerName::known(""); KNOWN.len()];
    let mut i = 0;
    while i < KNOWN.len() {
        out[i] = LowerName::known(KNOWN[i]);
        i += 1;
    }
    out
};
const CONTENT_LENGTH: usize = 0;
const TRANSFER_ENCODING: usize = 1;
const CONNECTION: usize = 2;

/// The slot of a header name in [`KNOWN`] (any case), by length first: most names are ruled
/// out without reading a byte, and the rest are compared with one name known at compile time.
#[inline]
fn known_slot(name: &[u8]) -> Option<usize> {
    #[inline(always)]
    fn is(slot: usize, name: &[u8]) -> Option<usize> {
        KNOWN_NAMES[slot].matches(name).then_some(slot)
    }
    match name.len() {
        4 => is(3, name),
        6 => is(6, name),
        10 => is(2, name),
        11 => is(10, name),
        12 => is(9, name),
        13 => is(5, name),
        14 => is(0, name).or_else(|| is(4, name)),
        15 => is(7, name),
        17 => is(1, name),
        19 => is(8, name),
        _ => None,
    }
}

/// The slot of a name as callers write it (a lower-case literal, so that this folds away).
#[inline(always)]
fn known_literal(name: &str) -> Option<usize> {
    KNOWN.iter().position(|k| *k == name)
}

/// Header storage shared by request and response heads.
#[derive(Debug, Clone)]
struct Fields {
    raw: Bytes,
    headers: Vec<(R, R)>,
    /// For each [`KNOWN`] name, 1 + the index of its first occurrence in `headers` (0: absent).
    first: [u8; KNOWN.len()],
    /// Bit `i` set: [`KNOWN`] name `i` occurs more than once (answers then take the long way).
    repeated: u16,
    /// Framing and `Connection` tokens, worked out once at parse time.
    framing: Result<Option<Framing>, HeadError>,
    connection_close: bool,
    connection_keep_alive: bool,
    /// `Connection` names something besides `close` and `keep-alive` (headers to drop).
    connection_others: bool,
}

/// Where the headers are in a head's bytes, and which of them are known names.
struct Index {
    headers: Vec<(R, R)>,
    first: [u8; KNOWN.len()],
    repeated: u16,
}

impl Index {
    /// From httparse's view of `base` (its headers are slices of `base`), in one pass.
    fn of(base: &[u8], parsed: &[httparse::Header<'_>]) -> Index {
        const _: () = assert!(MAX_HEADERS < u8::MAX as usize && KNOWN.len() <= 16);
        let mut x = Index { headers: Vec::with_capacity(parsed.len()), first: [0; KNOWN.len()], repeated: 0 };
        for (i, h) in parsed.iter().enumerate() {
            let name = h.name.as_bytes();
            if let Some(slot) = known_slot(name) {
                if x.first[slot] == 0 {
                    x.first[slot] = i as u8 + 1;
                } else {
                    x.repeated |= 1 << slot;
                }
            }
            x.headers.push((range_of(base, name), range_of(base, h.value)));
        }
        x
    }
}

impl Fields {
    /// `raw` holds the head's bytes, which `index` was made of.
    fn new(raw: Bytes, index: Index) -> Fields {
        let Index { headers, first, repeated } = index;
        let mut f =
            Fields { raw, headers, first, repeated, framing: Ok(None), connection_close: false, connection_keep_alive: false, connection_others: false };
        const CLOSE: LowerName = LowerName::known("close");
        const KEEP_ALIVE: LowerName = LowerName::known("keep-alive");
        let (mut close, mut keep_alive, mut others) = (false, false, false);
        for token in f.all_known(CONNECTION).flat_map(|v| v.split(|b| *b == b',')).map(<[u8]>::trim_ascii) {
            let (c, k) = (CLOSE.matches(token), KEEP_ALIVE.matches(token));
            close |= c;
            keep_alive |= k;
            others |= !(c || k || token.is_empty());
        }
        (f.connection_close, f.connection_keep_alive, f.connection_others) = (close, keep_alive, others);
        if f.first[CONTENT_LENGTH] != 0 || f.first[TRANSFER_ENCODING] != 0 {
            f.framing = f.compute_framing();
        }
        f
    }

    #[inline]
    fn get(&self, name: &str) -> Option<&[u8]> {
        match known_literal(name) {
            Some(slot) => self.get_known(slot),
            None => self.headers.iter().find(|(n, _)| at(&self.raw, n).eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| at(&self.raw, v)),
        }
    }

    fn get_known(&self, slot: usize) -> Option<&[u8]> {
        let i = self.first[slot].checked_sub(1)?;
        self.headers.get(i as usize).map(|(_, v)| at(&self.raw, v))
    }

    /// Every value of [`KNOWN`] name `slot`, in order.
    fn all_known(&self, slot: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let start = self.first[slot].saturating_sub(1) as usize;
        let (rest, repeated) = if self.first[slot] == 0 { (&self.headers[..0], false) } else { (&self.headers[start..], self.repeated & (1 << slot) != 0) };
        let name = &KNOWN_NAMES[slot];
        // Not repeated: the first occurrence is the only one.
        rest.iter().take(if repeated { usize::MAX } else { 1 }).filter(move |(n, _)| name.matches(at(&self.raw, n))).map(|(_, v)| at(&self.raw, v))
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.iter().map(|(n, v)| (at(&self.raw, n), at(&self.raw, v)))
    }

    /// Framing from Transfer-Encoding / Content-Length, refusing the ambiguous combinations
    /// that enable request smuggling.
    fn compute_framing(&self) -> Result<Option<Framing>, HeadError> {
        if self.first[TRANSFER_ENCODING] != 0 {
            let te = self.all_known(TRANSFER_ENCODING);
            if self.first[CONTENT_LENGTH] != 0 {
                return Err(HeadError::BadFraming("both Transfer-Encoding and Content-Length"));
            }
            let codings: Vec<&[u8]> = te.flat_map(|v| v.split(|b| *b == b',')).map(|c| c.trim_ascii()).filter(|c| !c.is_empty()).collect();
            return match codings.as_slice() {
                [only] if only.eq_ignore_ascii_case(b"chunked") => Ok(Some(Framing::Chunked)),
                _ => Err(HeadError::UnsupportedTransferCoding(codings.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(", "))),
            };
        }
        let mut length: Option<u64> = None;
        for v in self.all_known(CONTENT_LENGTH) {
            // "5, 5" is allowed by RFC 9110 when all values agree.
            for part in v.split(|b| *b == b',') {
                let part = part.trim_ascii();
                if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                    return Err(HeadError::BadFraming("invalid Content-Length"));
                }
                // At most 19 digits: the value fits in a u64.
                let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::BadFraming("conflicting Content-Length values"));
                }
                length = Some(n);
            }
        }
        Ok(length.map(Framing::Length))
    }
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    fields: Fields,
    method: R,
    path: R,
    query: Option<R>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
}

impl RequestHead {
    /// Parses a head at the start of `buf`. On success the head's bytes are split off `buf`
    /// (what remains is the start of the body). `Ok(None)`: incomplete, read more.
    pub fn parse(buf: &mut BytesMut, max_bytes: usize) -> Result<Option<RequestHead>, HeadError> {
        // Uninitialised: filling 128 empty headers (4 KiB) on every parse costs more than
        // parsing a typical head.
        let mut storage = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let Some(len) = head_len(req.parse_with_uninit_headers(buf, &mut storage), buf.len(), max_bytes)? else { return Ok(None) };
        let base: &[u8] = buf;
        // A complete parse always has both; they are taken as ranges of `base`, never of a
        // stand-in string.
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return Err(HeadError::Malformed("request line without a method or a target".into()));
        };
        let method = range_of(base, method.as_bytes());
        // Absolute-form targets (from clients configured to use us as a forward proxy) are
        // reduced to their path; `http://host` alone leaves an empty one, which means `/`.
        let (origin_form, absolute) = match target.strip_prefix("http://").or_else(|| target.strip_prefix("https://")) {
            Some(rest) => (rest.find('/').map(|i| &rest[i..]).unwrap_or(&rest[rest.len()..]), true),
            None => (target, false),
        };
        if !(origin_form.starts_with('/') || absolute && origin_form.is_empty()) {
            return Err(HeadError::Malformed("request target must be a path".into()));
        }
        // memchr rather than `split_once`, whose general searcher costs more to set up than a
        // path takes to scan.
        let (path, query) = match memchr::memchr(b'?', origin_form.as_bytes()) {
            Some(i) => (range_of(base, &origin_form.as_bytes()[..i]), Some(range_of(base, &origin_form.as_bytes()[i + 1..]))),
            None => (range_of(base, origin_form.as_bytes()), None),
        };
        let minor_version = req.version.unwrap_or(1);
        let index = Index::of(base, req.headers);
        let fields = Fields::new(buf.split_to(len).freeze(), index);
        Ok(Some(RequestHead { fields, method, path, query, minor_version }))
    }

    /// The bytes of `r`, which `parse` took from a `&str` (httparse hands out the method and
    /// the target as strings) at character boundaries. Read many times per request, so not
    /// validated again each time.
    fn str_at(&self, r: &R) -> &str {
        let bytes = at(&self.fields.raw, r);
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: `r` is one of `method`, `path` and `query`, each set once in `parse` from the
        // byte range of a `&str` (the method, or the target split at an ASCII '?'), over bytes
        // that `raw` holds unchanged for the life of the head.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    pub fn method(&self) -> &str {
        self.str_at(&self.method)
    }

    pub fn path(&self) -> &str {
        match self.str_at(&self.path) {
            "" => "/",
            p => p,
        }
    }

    pub fn query(&self) -> Option<&str> {
        self.query.as_ref().map(|q| self.str_at(q))
    }

    /// The first value of header `name` (case-insensitive; pass it in lower case).
    #[inline]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields.get(name)
    }

    #[inline]
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields.iter()
    }

    /// Body framing: `Framing::None` when neither header is present.
    pub fn framing(&self) -> Result<Framing, HeadError> {
        Ok(self.fields.framing.clone()?.unwrap_or(Framing::None))
    }

    /// Whether the client wants the connection closed after this exchange.
    pub fn wants_close(&self) -> bool {
        if self.minor_version == 0 {
            !self.fields.connection_keep_alive
        } else {
            self.fields.connection_close
        }
    }

    /// Whether `Connection` names headers (beyond `close` and `keep-alive`), which are then
    /// hop-by-hop too.
    pub fn connection_names_headers(&self) -> bool {
        self.fields.connection_others
    }

    pub fn expects_continue(&self) -> bool {
        self.minor_version >= 1 && self.header("expect").is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
    }
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    fields: Fields,
    pub status: u16,
    pub minor_version: u8,
}

impl ResponseHead {
    /// Parses a response head at the start of `buf`, splitting it off on success.
    pub fn parse(buf: &mut BytesMut, max_bytes: usize) -> Result<Option<ResponseHead>, HeadError> {
        let mut storage = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, &mut storage);
        let Some(len) = head_len(parsed, buf.len(), max_bytes)? else { return Ok(None) };
        let base: &[u8] = buf;
        let code = res.code.unwrap_or(0);
        let minor_version = res.version.unwrap_or(1);
        let index = Index::of(base, res.headers);
        let fields = Fields::new(buf.split_to(len).freeze(), index);
        Ok(Some(ResponseHead { fields, status: code, minor_version }))
    }

    /// The first value of header `name` (case-insensitive; pass it in lower case).
    #[inline]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields.get(name)
    }

    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields.iter()
    }

    /// Body framing of this response to a request with method `method`.
    pub fn framing(&self, method: &str) -> Result<Framing, HeadError> {
        if method == "HEAD" || (100..200).contains(&self.status) || self.status == 204 || self.status == 304 {
            return Ok(Framing::None);
        }
        Ok(self.fields.framing.clone()?.unwrap_or(Framing::UntilClose))
    }

    /// Whether the upstream connection can carry another request after this response.
    pub fn keeps_alive(&self) -> bool {
        if self.minor_version == 0 {
            self.fields.connection_keep_alive
        } else {
            !self.fields.connection_close
        }
    }

    /// Whether `Connection` names headers (beyond `close` and `keep-alive`), which are then
    /// hop-by-hop too.
    pub fn connection_names_headers(&self) -> bool {
        self.fields.connection_others
    }

    /// The raw value of a header as a string, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Result<Option<RequestHead>, HeadError> {
        let mut b = BytesMut::from(text.as_bytes());
        RequestHead::parse(&mut b, 64 * 1024)
    }

    #[test]
    fn parses_in_place_and_leaves_the_body() {
        let mut b = BytesMut::from(
            &b"POST /v1beta/models/x:generateContent?alt=sse&key=k HTTP/1.1\r\nHost: a\r\nX-Goog-Api-Key: t\r\nContent-Length: 4\r\n\r\nbody"[..],
        );
        let h = RequestHead::parse(&mut b, 1024).unwrap().unwrap();
        assert_eq!(h.method(), "POST");
        assert_eq!(h.path(), "/v1beta/models/x:generateContent");
        assert_eq!(h.query(), Some("alt=sse&key=k"));
        assert_eq!(h.header("x-goog-api-key"), Some(&b"t"[..]));
        assert_eq!(h.framing().unwrap(), Framing::Length(4));
        assert_eq!(&b[..], b"body");
        assert!(!h.wants_close());
    }

    #[test]
    fn partial_and_oversized_heads() {
        assert!(req("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        let mut b = BytesMut::from(format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(2000)).as_bytes());
        assert_eq!(RequestHead::parse(&mut b, 1024).unwrap_err().status(), 431);
    }

    #[test]
    fn framing_rules_refuse_smuggling() {
        let both = req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n").unwrap().unwrap();
        assert!(matches!(both.framing(), Err(HeadError::BadFraming(_))));
        let two = req("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").unwrap().unwrap();
        assert!(two.framing().is_err());
        let same = req("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(same.framing().unwrap(), Framing::Length(5));
        let gz = req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(gz.framing().unwrap_err().status(), 501);
        let neg = req("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").unwrap().unwrap();
        assert!(neg.framing().is_err());
        let chunked = req("POST / HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(chunked.framing().unwrap(), Framing::Chunked);
    }

    #[test]
    fn every_known_name_has_its_slot_in_any_case() {
        for (i, name) in KNOWN.iter().enumerate() {
            assert_eq!(known_slot(name.as_bytes()), Some(i), "{name}");
            assert_eq!(known_slot(name.to_ascii_uppercase().as_bytes()), Some(i), "{name}");
            assert_eq!(known_literal(name), Some(i), "{name}");
        }
        assert_eq!(known_slot(b"x-goog-api-kez"), None);
    }

    #[test]
    fn known_names_are_answered_as_a_scan_would() {
        let text = "POST / HTTP/1.1\r\nHOST: a\r\nX-Goog-Api-Key: k1\r\nx-goog-api-key: k2\r\nContent-Type: text/plain\r\n\
                    X-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\nExpect: 100-continue\r\nX-Other: o\r\n\
                    Connection: keep-alive\r\nCONNECTION: close\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n";
        let h = req(text).unwrap().unwrap();
        let scan = |name: &str| h.headers().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v.to_vec());
        for name in KNOWN.iter().copied().chain(["x-other", "X-Other", "Content-Type", "absent", "x-goog-api-kez"]) {
            assert_eq!(h.header(name).map(<[u8]>::to_vec), scan(name), "{name}");
        }
        assert_eq!(h.header("x-goog-api-key"), Some(&b"k1"[..]));
        // Every value of a repeated name counts: both Connection headers, both lengths.
        assert!(h.wants_close());
        assert_eq!(h.framing().unwrap(), Framing::Length(3));
        let conflicting = req("POST / HTTP/1.1\r\nContent-Length: 3\r\nX: y\r\ncontent-LENGTH: 4\r\n\r\n").unwrap().unwrap();
        assert!(conflicting.framing().is_err());
        let te_late = req("POST / HTTP/1.1\r\nContent-Length: 3\r\nX: y\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap().unwrap();
        assert!(matches!(te_late.framing(), Err(HeadError::BadFraming(_))));
    }

    #[test]
    fn keep_alive_rules() {
        assert!(req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().wants_close());
        assert!(!req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().unwrap().wants_close());
        assert!(req("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").unwrap().unwrap().wants_close());
    }

    #[test]
    fn absolute_form_is_reduced_to_the_path() {
        let h = req("GET http://proxy:8080/v1/models?x=1 HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.path(), h.query()), ("/v1/models", Some("x=1")));
        let h = req("GET http://proxy:8080 HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.path(), h.query()), ("/", None));
        assert!(req("GET * HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn response_framing() {
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"[..]);
        let h = ResponseHead::parse(&mut b, 1024).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing("POST").unwrap(), Framing::Chunked);
        assert_eq!(h.framing("HEAD").unwrap(), Framing::None);
        assert!(h.keeps_alive());
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"[..]);
        let h = ResponseHead::parse(&mut b, 1024).unwrap().unwrap();
        assert_eq!(h.framing("GET").unwrap(), Framing::UntilClose);
        assert!(!h.keeps_alive());
    }
}
