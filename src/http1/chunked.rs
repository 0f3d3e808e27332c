//! Chunked transfer coding (RFC 9112 §7.1): a decoder that hands out payload runs and reports
//! where the body ends, so it can both decode request bodies and watch a relayed response.
//! Strict about CRLF and sizes: lenient chunk parsing is how request smuggling starts.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("malformed chunked body: {0}")]
    Invalid(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

const MAX_EXT: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    aux: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder { state: State::Size, size: 0, digits: 0, aux: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the decoder sits between chunks (nothing of a chunk is half-read).
    pub fn at_chunk_boundary(&self) -> bool {
        self.state == State::Size && self.digits == 0
    }

    /// Processes `input`, calling `on_data` with each run of payload bytes. Returns `Some(n)`
    /// when the body (with its trailers) ended at `input[..n]`; bytes after that are not part
    /// of it. Returns `None` when all of `input` was consumed and more is needed.
    pub fn feed(&mut self, input: &[u8], mut on_data: impl FnMut(&[u8])) -> Result<Option<usize>, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits >= 15 {
                            return Err(ChunkError::Invalid("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.size = self.size * 16 + d;
                        self.digits += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => {
                        self.state = State::Ext;
                        self.aux = 0;
                    }
                    b'\r' if self.digits > 0 => self.state = State::SizeLf,
                    _ => return Err(ChunkError::Invalid("bad chunk size")),
                },
                State::Ext => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' {
                        return Err(ChunkError::Invalid("bare LF in chunk extension"));
                    } else {
                        self.aux += 1;
                        if self.aux > MAX_EXT {
                            return Err(ChunkError::Invalid("chunk extension too long"));
                        }
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Invalid("expected LF after chunk size"));
                    }
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                        self.aux = 0;
                    } else {
                        self.state = State::Data;
                    }
                }
                State::Data => {
                    let n = (self.size.min((input.len() - i) as u64)) as usize;
                    on_data(&input[i..i + n]);
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::Invalid("expected CRLF after chunk data"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Invalid("expected CRLF after chunk data"));
                    }
                    self.state = State::Size;
                    self.size = 0;
                    self.digits = 0;
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::EndLf;
                    } else {
                        self.state = State::Trailer;
                        self.aux += 1;
                    }
                }
                State::Trailer => {
                    self.aux += 1;
                    if self.aux > MAX_TRAILERS {
                        return Err(ChunkError::Invalid("trailers too long"));
                    }
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Invalid("expected LF in trailers"));
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Invalid("expected LF at end of chunked body"));
                    }
                    self.state = State::Done;
                    return Ok(Some(i + 1));
                }
                State::Done => return Ok(Some(i)),
            }
            i += 1;
        }
        Ok(if self.state == State::Done { Some(i) } else { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(body: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut offset = 0;
        for part in body.chunks(piece) {
            if let Some(end) = d.feed(part, |data| out.extend_from_slice(data))? {
                return Ok((out, offset + end));
            }
            offset += part.len();
        }
        Err(ChunkError::Invalid("incomplete"))
    }

    #[test]
    fn decodes_whatever_the_read_sizes() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, 100] {
            let (out, end) = decode_in_pieces(body, piece).unwrap();
            assert_eq!(out, b"hello, world");
            assert_eq!(&body[end..], b"NEXT", "piece size {piece}");
        }
    }

    #[test]
    fn rejects_smuggling_shapes() {
        for bad in [&b"5\nhello\n0\n\n"[..], b"-5\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n", b"fffffffffffffffff\r\n", b"\r\n"] {
            assert!(decode_in_pieces(bad, 100).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn boundary_tracking() {
        let mut d = ChunkedDecoder::new();
        assert!(d.at_chunk_boundary());
        d.feed(b"5\r\nhel", |_| {}).unwrap();
        assert!(!d.at_chunk_boundary());
        d.feed(b"lo\r\n", |_| {}).unwrap();
        assert!(d.at_chunk_boundary());
        assert_eq!(d.feed(b"0\r\n\r\n", |_| {}).unwrap(), Some(5));
        assert!(d.is_done());
    }
}
