//! The request every connection sends, and an HTTP/1.1 response parser that says when a
//! response is complete (Content-Length or chunked body).

/// The bytes of one POST (or GET without a body) to `path` on `host`.
pub fn request(method: &str, host: &str, path: &str, headers: &[String], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A whole response of `len` bytes with this status; `close` when the server said it
    /// will close the connection.
    Done {
        status: u16,
        len: usize,
        close: bool,
    },
    Invalid(&'static str),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether `buf` starts with a whole response, and how long it is.
pub fn parse(buf: &[u8]) -> Parsed {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Parsed::Incomplete;
    };
    let head = &buf[..head_end];
    let Ok(head) = std::str::from_utf8(head) else {
        return Parsed::Invalid("response head is not UTF-8");
    };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Parsed::Invalid("not an HTTP/1.x status line");
    }
    let Some(status) = parts.next().and_then(|s| s.parse::<u16>().ok()) else {
        return Parsed::Invalid("no status code");
    };
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Invalid("header line without a colon");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) => length = Some(n),
                Err(_) => return Parsed::Invalid("bad content-length"),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let body_start = head_end + 4;
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Parsed::Done { status, len: body_start, close };
    }
    if chunked {
        return match chunked_end(&buf[body_start..]) {
            Ok(Some(n)) => Parsed::Done { status, len: body_start + n, close },
            Ok(None) => Parsed::Incomplete,
            Err(e) => Parsed::Invalid(e),
        };
    }
    match length {
        Some(n) if buf.len() >= body_start + n => Parsed::Done { status, len: body_start + n, close },
        Some(_) => Parsed::Incomplete,
        None => Parsed::Invalid("response without content-length or chunked body"),
    }
}

/// Where a chunked body that starts `body` ends (`None`: not yet all there).
fn chunked_end(body: &[u8]) -> Result<Option<usize>, &'static str> {
    let mut pos = 0;
    loop {
        let Some(eol) = find(&body[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&body[pos..pos + eol]).map_err(|_| "chunk size is not UTF-8")?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        pos += eol + 2;
        if size == 0 {
            // No trailers: an empty line at once; with trailers, they end with one.
            let rest = &body[pos..];
            return Ok(if rest.starts_with(b"\r\n") { Some(pos + 2) } else { find(rest, b"\r\n\r\n").map(|i| pos + i + 4) });
        }
        if body.len() < pos + size + 2 {
            return Ok(None);
        }
        if &body[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF");
        }
        pos += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_responses_complete_at_their_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse(&r[..r.len() - 1]), Parsed::Incomplete);
        assert_eq!(parse(r), Parsed::Done { status: 200, len: r.len(), close: false });
        let mut two = r.to_vec();
        two.extend_from_slice(b"HTTP/1.1");
        assert_eq!(parse(&two), Parsed::Done { status: 200, len: r.len(), close: false });
    }

    #[test]
    fn chunked_responses_complete_after_the_last_chunk() {
        let r = b"HTTP/1.1 429 Too Many Requests\r\ntransfer-encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n";
        for cut in 1..r.len() {
            assert_eq!(parse(&r[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        assert_eq!(parse(r), Parsed::Done { status: 429, len: r.len(), close: true });
        let trailers = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(parse(trailers), Parsed::Done { status: 200, len: trailers.len(), close: false });
    }

    #[test]
    fn garbage_is_invalid() {
        assert!(matches!(parse(b"SSH-2.0\r\n\r\n"), Parsed::Invalid(_)));
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\n\r\n"), Parsed::Invalid(_)));
    }
}
