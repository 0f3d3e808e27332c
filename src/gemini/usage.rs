//! Token usage read from response bytes as they pass: `usageMetadata` on native responses and
//! SSE chunks, `usage` on the OpenAI-compatible surface. Nothing is held back from the client:
//! the scanner keeps a copy of the last bytes and parses once, when the body ends.

use memchr::memmem::Finder;
use serde::Deserialize;
use serde_json::Value;
use std::sync::LazyLock;

/// Tokens one request consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub total_tokens: u64,
}

/// How many trailing bytes are kept. Gemini puts `usageMetadata` after the candidates, so
/// the final chunk's counts are always near the end of the body.
const TAIL: usize = 64 * 1024;

/// Collects the tail of a body and extracts usage from it at the end.
#[derive(Debug)]
pub struct UsageScanner {
    openai: bool,
    tail: Vec<u8>,
}

impl UsageScanner {
    pub fn new(openai: bool) -> Self {
        UsageScanner { openai, tail: Vec::new() }
    }

    /// Feeds decoded body bytes (no chunked framing).
    pub fn feed(&mut self, data: &[u8]) {
        if data.len() >= TAIL {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - TAIL..]);
            return;
        }
        let total = self.tail.len() + data.len();
        if total > 2 * TAIL {
            self.tail.drain(..total - TAIL);
        }
        self.tail.extend_from_slice(data);
    }

    /// The usage of the last complete report in the body, if any.
    pub fn finish(&self) -> Option<Usage> {
        // The searchers are built once: building one costs more than searching a typical answer.
        static NATIVE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usageMetadata\""));
        static OPENAI: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
        let finder: &Finder<'static> = if self.openai { &OPENAI } else { &NATIVE };
        let marker = finder.needle();
        // The last report wins (counts are cumulative); if the body was cut inside it, fall
        // back to the one before. Searched forwards: memchr's forward search is vectorised,
        // its reverse one is not, and a body holds few reports.
        let mut hits = [0usize; 8];
        let mut found = 0;
        for pos in finder.find_iter(&self.tail) {
            hits[found % hits.len()] = pos;
            found += 1;
        }
        let kept = found.min(hits.len());
        (0..kept).map(|back| hits[(found - 1 - back) % hits.len()]).find_map(|pos| self.parse_after(&self.tail[pos + marker.len()..]))
    }

    fn parse_after(&self, rest: &[u8]) -> Option<Usage> {
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let rest = rest[start..].strip_prefix(b":")?;
        if !self.openai {
            // Straight into the typed struct: no intermediate `Value` tree (this runs on every
            // answer), and through the shortcut when the report is the usual flat one.
            return flat_counts(rest).or_else(|| UsageMetadata::deserialize(&mut serde_json::Deserializer::from_slice(rest)).ok()).map(Usage::from);
        }
        let u = OpenAiUsage::deserialize(&mut serde_json::Deserializer::from_slice(rest)).ok()?;
        Some(Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cached_tokens: u.prompt_tokens_details.map(|d| d.cached_tokens).unwrap_or(0),
            total_tokens: u.total_tokens.max(u.prompt_tokens + u.completion_tokens),
        })
    }
}

/// `usageMetadata` read without serde when it is what Gemini sends: an object whose counts
/// are plain integers (nested details, strings and other values are skipped). `None` for
/// anything else (escaped keys, numbers with a fraction or exponent, a cut-off object), which
/// the general parser then handles: this is a shortcut, never a second opinion.
fn flat_counts(json: &[u8]) -> Option<UsageMetadata> {
    let mut r = Reader { s: json, i: 0 };
    r.ws();
    r.eat(b'{')?;
    let mut u = UsageMetadata::default();
    r.ws();
    // `{}`: nothing counted. Otherwise key-value pairs up to the closing brace.
    if r.peek()? != b'}' {
        loop {
            r.ws();
            let key = r.plain_string()?;
            r.ws();
            r.eat(b':')?;
            r.ws();
            let slot = match key {
                b"promptTokenCount" => Some(&mut u.prompt_token_count),
                b"candidatesTokenCount" => Some(&mut u.candidates_token_count),
                b"thoughtsTokenCount" => Some(&mut u.thoughts_token_count),
                b"toolUsePromptTokenCount" => Some(&mut u.tool_use_prompt_token_count),
                b"cachedContentTokenCount" => Some(&mut u.cached_content_token_count),
                b"totalTokenCount" => Some(&mut u.total_token_count),
                _ => None,
            };
            match slot {
                Some(v) => *v = r.integer()?,
                None => r.skip_value(0)?,
            }
            r.ws();
            match r.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    Some(u)
}

/// A cursor over JSON bytes for [`flat_counts`].
struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    /// A string without escapes, as its raw bytes.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let len = memchr::memchr2(b'"', b'\\', &self.s[start..])?;
        if self.s[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        Some(&self.s[start..start + len])
    }

    /// A non-negative integer that fits in a u64 (what token counts are).
    fn integer(&mut self) -> Option<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        // "1.5", "1e3", "-1" or no digits at all: not a plain count.
        let plain = self.i > start && !matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        plain.then_some(v)
    }

    /// Skips one value of any kind (strings may hold escapes; nesting is bounded).
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > 32 {
            return None;
        }
        match self.peek()? {
            b'"' => {
                self.i += 1;
                loop {
                    let at = memchr::memchr2(b'"', b'\\', &self.s[self.i..])?;
                    self.i += at + 1;
                    if self.s[self.i - 1] == b'"' {
                        return Some(());
                    }
                    self.i += 1; // the escaped byte
                }
            }
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                self.ws();
                if self.peek()? == close {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        self.skip_value(depth + 1)?; // the key (a string)
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b if b == close => return Some(()),
                        _ => return None,
                    }
                }
            }
            _ => {
                // Numbers and literals run to the next delimiter.
                let start = self.i;
                while self.peek().is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')) {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    total_token_count: u64,
}

impl From<UsageMetadata> for Usage {
    fn from(u: UsageMetadata) -> Usage {
        let input = u.prompt_token_count + u.tool_use_prompt_token_count;
        let output = u.candidates_token_count + u.thoughts_token_count;
        Usage { input_tokens: input, output_tokens: output, cached_tokens: u.cached_content_token_count, total_tokens: u.total_token_count.max(input + output) }
    }
}

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<CachedDetails>,
}

#[derive(Deserialize)]
struct CachedDetails {
    #[serde(default)]
    cached_tokens: u64,
}

/// The `name` of a resource a creating call returned (`files/abc`, `cachedContents/x`),
/// read from the start of the response body.
pub fn created_resource_name(body_head: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body_head).ok()?;
    let obj = v.get("file").unwrap_or(&v);
    let name = obj.get("name")?.as_str()?;
    crate::gemini::route::OWNED_COLLECTIONS.iter().any(|c| name.starts_with(c) || name.contains("/operations/")).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(openai: bool, parts: &[&[u8]]) -> Option<Usage> {
        let mut s = UsageScanner::new(openai);
        for p in parts {
            s.feed(p);
        }
        s.finish()
    }

    #[test]
    fn sse_takes_the_last_cumulative_report_across_split_reads() {
        let a: &[u8] = b"data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":1,\"totalTokenCount\":6}}\r\n\r\ndata: {\"candidates\":[],\"usageMe";
        let b: &[u8] = b"tadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":9,\"thoughtsTokenCount\":3,\"totalTokenCount\":17}}\r\n\r\n";
        let u = scan(false, &[a, b]).unwrap();
        assert_eq!((u.input_tokens, u.output_tokens, u.total_tokens), (5, 12, 17));
    }

    #[test]
    fn a_truncated_final_report_falls_back_to_the_previous_one() {
        let body: &[u8] =
            b"data: {\"usageMetadata\":{\"promptTokenCount\":2,\"candidatesTokenCount\":4,\"totalTokenCount\":6}}\n\ndata: {\"usageMetadata\":{\"promptTok";
        assert_eq!(scan(false, &[body]).unwrap().output_tokens, 4);
    }

    #[test]
    fn pretty_printed_json_and_openai_usage() {
        let native = b"{\n  \"candidates\": [],\n  \"usageMetadata\": {\n    \"promptTokenCount\": 7,\n    \"candidatesTokenCount\": 3,\n    \"totalTokenCount\": 10\n  }\n}\n";
        assert_eq!(scan(false, &[native]).unwrap().input_tokens, 7);
        let stream: &[u8] = b"data: {\"choices\":[],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":8,\"total_tokens\":12}}\n\ndata: [DONE]\n\n";
        let u = scan(true, &[stream]).unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (4, 8));
        assert_eq!(scan(true, &[b"data: {\"usage\":null}\n\n"]), None);
    }

    /// The shortcut reads what serde reads, and steps aside for what it does not handle.
    #[test]
    fn the_shortcut_agrees_with_the_general_parser() {
        let cases: &[&[u8]] = &[
            br#"{"promptTokenCount": 8, "candidatesTokenCount": 12, "totalTokenCount": 20, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}], "thoughtsTokenCount": 3}"#,
            br#"{"promptTokenCount":1,"cachedContentTokenCount":4,"cacheTokensDetails":[{"modality":"TEXT","tokenCount":4}],"toolUsePromptTokenCount":2,"trafficType":"ON_DEMAND \"x\" \\","totalTokenCount":1}"#,
            br#"{}"#,
            br#"{"promptTokenCount":null,"candidatesTokenCount":2}"#,
            br#"{"promptTokenCount":1.5}"#,
            br#"{"prompt\u0054okenCount":5}"#,
            br#"{"promptTokenCount":5"#,
            br#"{"nested":{"a":[1,{"b":true}],"c":"}"},"promptTokenCount":9}"#,
        ];
        for &json in cases {
            let general = UsageMetadata::deserialize(&mut serde_json::Deserializer::from_slice(json)).ok().map(|u| {
                let input = u.prompt_token_count + u.tool_use_prompt_token_count;
                let output = u.candidates_token_count + u.thoughts_token_count;
                Usage {
                    input_tokens: input,
                    output_tokens: output,
                    cached_tokens: u.cached_content_token_count,
                    total_tokens: u.total_token_count.max(input + output),
                }
            });
            if let Some(fast) = flat_counts(json).map(Usage::from) {
                assert_eq!(Some(fast), general, "{}", String::from_utf8_lossy(json));
            }
            let mut body = b"{\"usageMetadata\":".to_vec();
            body.extend_from_slice(json);
            assert_eq!(scan(false, &[&body]), general, "{}", String::from_utf8_lossy(json));
        }
        assert!(flat_counts(br#"{"promptTokenCount":1.5}"#).is_none());
        assert!(flat_counts(br#"{"prompt\u0054okenCount":5}"#).is_none());
        assert_eq!(flat_counts(br#"{"promptTokenCount": 8, "x": [{"y": "\"}"}], "totalTokenCount": 9}"#).map(|u| Usage::from(u).total_tokens), Some(9));
    }

    #[test]
    fn many_reports_take_the_last_that_parses() {
        let mut body = Vec::new();
        for n in 1..=20u64 {
            body.extend_from_slice(format!("data: {{\"usageMetadata\":{{\"promptTokenCount\":1,\"candidatesTokenCount\":{n}}}}}\r\n\r\n").as_bytes());
        }
        assert_eq!(scan(false, &[&body]).unwrap().output_tokens, 20);
        body.extend_from_slice(b"data: {\"usageMetadata\":{\"promptTok");
        assert_eq!(scan(false, &[&body]).unwrap().output_tokens, 20);
    }

    #[test]
    fn long_bodies_keep_only_the_tail() {
        let mut s = UsageScanner::new(false);
        let filler = vec![b'x'; 300 * 1024];
        s.feed(b"{\"usageMetadata\":{\"promptTokenCount\":1}}");
        s.feed(&filler);
        s.feed(b",\"usageMetadata\":{\"promptTokenCount\":2,\"candidatesTokenCount\":2}}");
        assert_eq!(s.finish().unwrap().input_tokens, 2);
        assert!(s.tail.len() <= 2 * TAIL);
    }

    #[test]
    fn created_resources() {
        assert_eq!(created_resource_name(br#"{"file":{"name":"files/abc","uri":"x"}}"#).as_deref(), Some("files/abc"));
        assert_eq!(created_resource_name(br#"{"name":"cachedContents/c1"}"#).as_deref(), Some("cachedContents/c1"));
        assert_eq!(created_resource_name(br#"{"name":"models/gemini"}"#), None);
    }
}
