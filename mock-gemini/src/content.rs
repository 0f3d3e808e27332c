//! Deterministic fake model output: token counts, reply text, stream pieces and embedding vectors.
//!
//! Everything is a pure function of the request so tests can predict it:
//! prompt tokens = ceil(bytes of all `text` strings / 4), reply tokens = words in the reply.

use crate::util::fnv1a;
use serde_json::Value;

/// Bytes of text in a native request: every string under a `text` key, anywhere.
pub(crate) fn native_text_bytes(v: &Value) -> usize {
    match v {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match (k.as_str(), v) {
                ("text", Value::String(s)) => s.len(),
                _ => native_text_bytes(v),
            })
            .sum(),
        Value::Array(items) => items.iter().map(native_text_bytes).sum(),
        _ => 0,
    }
}

/// Bytes of text in OpenAI chat messages: string `content`s and `text` parts.
pub(crate) fn openai_text_bytes(messages: &Value) -> usize {
    match messages {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match (k.as_str(), v) {
                ("content" | "text", Value::String(s)) => s.len(),
                _ => openai_text_bytes(v),
            })
            .sum(),
        Value::Array(items) => items.iter().map(openai_text_bytes).sum(),
        _ => 0,
    }
}

/// Google-ish token estimate: one token per four bytes, rounded up.
pub(crate) fn tokens_for_bytes(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX)
}

/// All `text` strings of a native request or content, joined by spaces (seed for embeddings).
pub(crate) fn joined_text(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => map.iter().for_each(|(k, v)| match (k.as_str(), v) {
            ("text", Value::String(s)) => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(s);
            }
            _ => joined_text(v, out),
        }),
        Value::Array(items) => items.iter().for_each(|i| joined_text(i, out)),
        _ => {}
    }
}

/// Tokens of generated text: one per whitespace-separated word.
pub(crate) fn words(s: &str) -> u32 {
    u32::try_from(s.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// The whole answer of a non-streaming generation.
pub(crate) fn reply_text(model: &str, prompt_tokens: u32) -> String {
    format!("This is a mock answer from {model} to a prompt of {prompt_tokens} tokens.")
}

/// The text of stream chunk `index` (0-based) of `total`, padded with filler words to about
/// `pad_to` bytes when asked (benchmarks use that to size chunks).
pub(crate) fn chunk_text(model: &str, index: u32, total: u32, pad_to: usize) -> String {
    let mut text = format!("Mock chunk {} of {} from {}. ", index + 1, total, model);
    const FILLER: &str = "lorem ";
    while text.len() + FILLER.len() <= pad_to {
        text.push_str(FILLER);
    }
    text
}

/// A unit-length pseudo-random vector seeded by the text, so equal texts embed equally.
pub(crate) fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut state = fnv1a(text.as_bytes()) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            // xorshift64*: cheap, deterministic, good enough for fake vectors.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            ((r >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x = (*x / norm * 1e6).round() / 1e6);
    }
    v
}

/// Ids of Gemini files a request refers to through `fileData.fileUri` (or `file_uri`), i.e.
/// URIs ending in `files/<id>`. Other URIs (gs://, YouTube...) are not files of a project.
pub(crate) fn referenced_files(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("fileUri" | "file_uri", Value::String(uri)) => {
                        if let Some(id) = file_id_of_uri(uri) {
                            out.push(id.to_string());
                        }
                    }
                    _ => referenced_files(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| referenced_files(i, out)),
        _ => {}
    }
}

fn file_id_of_uri(uri: &str) -> Option<&str> {
    let pos = uri.rfind("files/")?;
    let before_ok = pos == 0 || uri[..pos].ends_with('/');
    let id = &uri[pos + "files/".len()..];
    (before_ok && !id.is_empty() && !id.contains('/') && !id.contains('?')).then_some(id)
}

/// The cachedContent id a request uses (`"cachedContent": "cachedContents/<id>"`), if any.
pub(crate) fn referenced_cache(v: &Value) -> Option<String> {
    let name = crate::util::field(v, "cachedContent")?.as_str()?;
    Some(name.strip_prefix("cachedContents/").unwrap_or(name).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_counts_are_predictable() {
        let req = json!({"contents":[{"role":"user","parts":[{"text":"hello world!"}, {"text":"abcd"}]}]});
        assert_eq!(native_text_bytes(&req), 16);
        assert_eq!(tokens_for_bytes(16), 4);
        assert_eq!(tokens_for_bytes(17), 5);
        let msgs = json!([{"role":"user","content":"abcd"},{"role":"user","content":[{"type":"text","text":"efgh"}]}]);
        assert_eq!(openai_text_bytes(&msgs), 8);
        assert_eq!(words(&reply_text("m", 3)), 13);
    }

    #[test]
    fn file_references_are_found_only_for_gemini_files() {
        let req = json!({"contents":[{"parts":[
            {"fileData":{"fileUri":"https://generativelanguage.googleapis.com/v1beta/files/abc123","mimeType":"text/plain"}},
            {"file_data":{"file_uri":"files/def"}},
            {"fileData":{"fileUri":"https://www.youtube.com/watch?v=x"}},
            {"fileData":{"fileUri":"gs://bucket/profiles/x"}}
        ]}], "cachedContent": "cachedContents/c1"});
        let mut ids = Vec::new();
        referenced_files(&req, &mut ids);
        assert_eq!(ids, vec!["abc123".to_string(), "def".to_string()]);
        assert_eq!(referenced_cache(&req).as_deref(), Some("c1"));
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hi", 768);
        assert_eq!(a, embedding("hi", 768));
        assert_ne!(a, embedding("ho", 768));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3);
    }

    #[test]
    fn chunks_pad_to_size() {
        let t = chunk_text("gemini-2.5-flash", 0, 3, 1000);
        assert!(t.len() <= 1000 && t.len() > 990);
    }
}
