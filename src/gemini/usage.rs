//! Token usage read from response bytes as they pass: `usageMetadata` on native responses and
//! SSE chunks, `usage` on the OpenAI-compatible surface. Nothing is held back from the client:
//! the scanner keeps a copy of the last bytes and parses once, when the body ends.

use serde::Deserialize;
use serde_json::Value;

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
        let marker: &[u8] = if self.openai { b"\"usage\"" } else { b"\"usageMetadata\"" };
        // The last report wins (counts are cumulative); if the body was cut inside it, fall
        // back to the one before.
        let hits: Vec<usize> = memchr::memmem::rfind_iter(&self.tail, marker).take(8).collect();
        hits.into_iter().find_map(|pos| self.parse_after(&self.tail[pos + marker.len()..]))
    }

    fn parse_after(&self, rest: &[u8]) -> Option<Usage> {
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let rest = rest[start..].strip_prefix(b":")?;
        // Straight into the typed struct: no intermediate `Value` tree (this runs on every answer).
        let mut de = serde_json::Deserializer::from_slice(rest);
        if self.openai {
            let u = OpenAiUsage::deserialize(&mut de).ok()?;
            Some(Usage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
                cached_tokens: u.prompt_tokens_details.map(|d| d.cached_tokens).unwrap_or(0),
                total_tokens: u.total_tokens.max(u.prompt_tokens + u.completion_tokens),
            })
        } else {
            let u = UsageMetadata::deserialize(&mut de).ok()?;
            let input = u.prompt_token_count + u.tool_use_prompt_token_count;
            let output = u.candidates_token_count + u.thoughts_token_count;
            Some(Usage {
                input_tokens: input,
                output_tokens: output,
                cached_tokens: u.cached_content_token_count,
                total_tokens: u.total_token_count.max(input + output),
            })
        }
    }
}

#[derive(Deserialize)]
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
