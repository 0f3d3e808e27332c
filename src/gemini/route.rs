//! What a request path means to Gemini: which API surface, which model, which project-owned
//! resource it names. Pure functions over the path and query; no I/O.

/// The API surface a path belongs to; decides how the upstream key is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/v1/...`, `/v1beta/...`: the key goes in `x-goog-api-key`.
    Native,
    /// `/v1beta/openai/...`: the key goes in `Authorization: Bearer`.
    OpenAi,
    /// `/upload/v1*/files`: resumable uploads (native auth).
    Upload,
}

/// What the request does, as far as key handling and accounting care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Generate,
    StreamGenerate,
    CountTokens,
    Embed,
    ListModels,
    GetModel,
    OpenAiChat,
    OpenAiEmbeddings,
    OpenAiModels,
    /// First request of a resumable upload (`X-Goog-Upload-Command: start`, or a one-shot upload).
    UploadStart,
    /// A later request of a resumable upload, addressed by `upload_id`.
    UploadChunk,
    /// Creates a project-owned resource (files, cachedContents, batches...) whose name the
    /// response carries.
    CreateResource,
    Other,
}

/// A parsed Gemini path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub surface: Surface,
    pub action: Action,
    /// Model without the `models/` prefix (`gemini-2.5-flash`, or `tunedModels/x`).
    pub model: Option<&'a str>,
    /// A project-owned resource named by the path (`files/abc`, `cachedContents/x`).
    pub resource: Option<&'a str>,
}

/// Resource collections that belong to the project of the key that created them.
pub const OWNED_COLLECTIONS: &[&str] = &["files", "cachedContents", "batches", "operations", "fileSearchStores", "tunedModels"];

/// Parses `path` (no query). `None` means it is not a Gemini API path.
pub fn parse<'a>(method: &str, path: &'a str) -> Option<Route<'a>> {
    if let Some(rest) = path.strip_prefix("/upload/") {
        let (_version, rest) = split_version(rest)?;
        if rest == "files" || rest.starts_with("files?") {
            return Some(Route { surface: Surface::Upload, action: Action::UploadStart, model: None, resource: None });
        }
        return None;
    }
    let rest = path.strip_prefix('/')?;
    let (version, rest) = split_version(rest)?;
    if let Some(oa) = rest.strip_prefix("openai/") {
        if version != "v1beta" {
            return None;
        }
        let action = match oa {
            "chat/completions" => Action::OpenAiChat,
            "embeddings" => Action::OpenAiEmbeddings,
            "models" => Action::OpenAiModels,
            _ if oa.starts_with("models/") => Action::OpenAiModels,
            _ => Action::Other,
        };
        let model = oa.strip_prefix("models/").filter(|m| !m.is_empty());
        return Some(Route { surface: Surface::OpenAi, action, model, resource: None });
    }

    let mut route = Route { surface: Surface::Native, action: Action::Other, model: None, resource: None };
    // Model calls: models/{m}[:method] or tunedModels/{m}[:method].
    // The method follows the last `:`; a byte search from the end, since the generic
    // `rsplit_once(char)` (a reverse searcher around `memrchr`) cost 250 instructions on every
    // request for a string with the `:` a dozen bytes from its end.
    let (target, method_name) = match rest.bytes().rposition(|b| b == b':') {
        Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(m) = target.strip_prefix("models/") {
        if !m.is_empty() && !m.contains('/') {
            route.model = Some(m);
        } else if let Some((model, _)) = m.split_once('/') {
            // models/{m}/operations/{id}: a long-running operation of that model.
            route.model = Some(model);
            if m.contains("/operations/") {
                route.resource = Some(target);
            }
        }
    } else if target.starts_with("tunedModels/") {
        route.model = Some(target);
        route.resource = Some(first_two_segments(target));
    }
    route.action = match (method_name, route.model) {
        (Some("generateContent"), Some(_)) => Action::Generate,
        (Some("streamGenerateContent"), Some(_)) => Action::StreamGenerate,
        (Some("countTokens"), Some(_)) => Action::CountTokens,
        (Some("embedContent" | "batchEmbedContents"), Some(_)) => Action::Embed,
        (Some("batchGenerateContent" | "asyncBatchEmbedContent" | "predictLongRunning"), Some(_)) => Action::CreateResource,
        (None, Some(_)) if method == "GET" && route.resource.is_none() => Action::GetModel,
        (None, None) if target == "models" => Action::ListModels,
        _ => Action::Other,
    };
    if route.resource.is_none() {
        for coll in OWNED_COLLECTIONS {
            if let Some(id_part) = target.strip_prefix(coll).and_then(|r| r.strip_prefix('/')) {
                if !id_part.is_empty() {
                    route.resource = Some(first_two_segments(target));
                } else if method == "POST" {
                    route.action = Action::CreateResource;
                }
            } else if target == *coll && method == "POST" {
                route.action = Action::CreateResource;
            }
        }
    }
    Some(route)
}

fn first_two_segments(s: &str) -> &str {
    match s.match_indices('/').nth(1) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn split_version(rest: &str) -> Option<(&str, &str)> {
    // Prefixes compared in place: a search for the '/' cost more than the comparison.
    ["v1beta", "v1", "v1alpha"].into_iter().find_map(|v| Some((v, rest.strip_prefix(v)?.strip_prefix('/')?)))
}

/// Finds the value of query parameter `name` (raw, still percent-encoded).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        // Names are compared decoded, as Google reads them: `%6Bey=` is `key=`.
        (percent_decode(k) == name).then_some(v)
    })
}

/// The query parameter naming a resumable upload session. Its value is a capability (whoever
/// has it can send the rest of the upload, or read its status), so it is never logged.
pub const UPLOAD_ID: &str = "upload_id";

/// The query string as forwarded upstream: without any `key=` parameter (the client's
/// credential).
pub fn without_key_param(query: &str) -> String {
    filtered_query(query, false)
}

/// The query string as logged: as forwarded, with each `upload_id` value replaced by
/// `redacted:` and its fingerprint (the chunks of one upload can still be grouped, and the
/// value cannot be recovered).
pub fn logged_query(query: &str) -> String {
    filtered_query(query, true)
}

/// Whether the query names an upload session (then the logged query differs from the one
/// forwarded).
pub fn has_upload_id(query: &str) -> bool {
    query_param(query, UPLOAD_ID).is_some()
}

fn filtered_query(query: &str, redact_upload_id: bool) -> String {
    let mut out = String::with_capacity(query.len());
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (name, value) = kv.split_once('=').unwrap_or((kv, ""));
        let decoded = percent_decode(name);
        if decoded == "key" {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        if redact_upload_id && decoded == UPLOAD_ID && !value.is_empty() {
            use std::fmt::Write;
            // Writing into a String cannot fail.
            let _ = write!(out, "{name}=redacted:{}", crate::secret::Fingerprint::of(value.as_bytes()));
            continue;
        }
        out.push_str(kv);
    }
    out
}

/// Decodes `%XX` escapes and `+` (as a space); invalid escapes are kept as written.
pub fn percent_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Finds the project-owned resources a JSON request body refers to: `cachedContents/...`
/// and `files/...` (inside a `fileUri`). Cheap when there are none: a SIMD substring search.
pub fn referenced_resources(body: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for prefix in ["cachedContents/", "files/"] {
        for pos in memchr::memmem::find_iter(body, prefix.as_bytes()) {
            // Skip occurrences inside a longer word (e.g. "myfiles/").
            if pos > 0 && body[pos - 1].is_ascii_alphanumeric() {
                continue;
            }
            let id_start = pos + prefix.len();
            let id_len = body[id_start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_').count();
            if id_len > 0 {
                let name = String::from_utf8_lossy(&body[pos..id_start + id_len]).into_owned();
                if !found.contains(&name) {
                    found.push(name);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_model_calls() {
        let r = parse("POST", "/v1beta/models/gemini-2.5-flash:generateContent").unwrap();
        assert_eq!((r.surface, r.action, r.model), (Surface::Native, Action::Generate, Some("gemini-2.5-flash")));
        let r = parse("POST", "/v1/models/gemini-2.5-pro:streamGenerateContent").unwrap();
        assert_eq!((r.action, r.model), (Action::StreamGenerate, Some("gemini-2.5-pro")));
        let r = parse("POST", "/v1beta/models/text-embedding-004:batchEmbedContents").unwrap();
        assert_eq!(r.action, Action::Embed);
        let r = parse("GET", "/v1beta/models/gemini-2.0-flash").unwrap();
        assert_eq!((r.action, r.model), (Action::GetModel, Some("gemini-2.0-flash")));
        let r = parse("GET", "/v1/models").unwrap();
        assert_eq!((r.action, r.model), (Action::ListModels, None));
        let r = parse("POST", "/v1beta/tunedModels/my-tune:generateContent").unwrap();
        assert_eq!((r.action, r.model, r.resource), (Action::Generate, Some("tunedModels/my-tune"), Some("tunedModels/my-tune")));
    }

    #[test]
    fn owned_resources() {
        let r = parse("GET", "/v1beta/files/abc123").unwrap();
        assert_eq!(r.resource, Some("files/abc123"));
        let r = parse("DELETE", "/v1/cachedContents/xyz").unwrap();
        assert_eq!(r.resource, Some("cachedContents/xyz"));
        let r = parse("POST", "/v1beta/cachedContents").unwrap();
        assert_eq!((r.action, r.resource), (Action::CreateResource, None));
        let r = parse("GET", "/v1beta/files").unwrap();
        assert_eq!((r.action, r.resource), (Action::Other, None));
        let r = parse("GET", "/v1beta/models/veo-3:predictLongRunning").unwrap();
        assert_eq!(r.action, Action::CreateResource);
        let r = parse("GET", "/v1beta/models/veo-3/operations/op1").unwrap();
        assert_eq!((r.model, r.resource), (Some("veo-3"), Some("models/veo-3/operations/op1")));
        let r = parse("GET", "/v1beta/batches/b1").unwrap();
        assert_eq!(r.resource, Some("batches/b1"));
    }

    #[test]
    fn openai_and_upload_paths() {
        let r = parse("POST", "/v1beta/openai/chat/completions").unwrap();
        assert_eq!((r.surface, r.action), (Surface::OpenAi, Action::OpenAiChat));
        let r = parse("GET", "/v1beta/openai/models/gemini-2.5-flash").unwrap();
        assert_eq!((r.action, r.model), (Action::OpenAiModels, Some("gemini-2.5-flash")));
        let r = parse("POST", "/upload/v1beta/files").unwrap();
        assert_eq!((r.surface, r.action), (Surface::Upload, Action::UploadStart));
        assert!(parse("GET", "/").is_none());
        assert!(parse("GET", "/v2/models").is_none());
        assert!(parse("GET", "/upload/v1beta/other").is_none());
    }

    #[test]
    fn key_parameter_is_removed() {
        assert_eq!(without_key_param("alt=sse&key=gp-123"), "alt=sse");
        assert_eq!(without_key_param("key=x"), "");
        assert_eq!(without_key_param("keyring=1&pageSize=5"), "keyring=1&pageSize=5");
        assert_eq!(query_param("alt=sse&key=gp%2D1", "key"), Some("gp%2D1"));
        // An encoded name is the same parameter to Google: found, and never logged or forwarded.
        assert_eq!(query_param("alt=sse&%6Bey=gp-2", "key"), Some("gp-2"));
        assert_eq!(query_param("alt=sse&k%65y=gp-3&x=1", "key"), Some("gp-3"));
        assert_eq!(without_key_param("alt=sse&%6Bey=gp-2&k%65y=gp-3&%6B%65%79&keys=1"), "alt=sse&keys=1");
        // An upload session's id is forwarded as it is, and logged only as a fingerprint.
        let q = "upload_id=AbC-123_secret&upload_protocol=resumable&key=gp-1";
        assert_eq!(without_key_param(q), "upload_id=AbC-123_secret&upload_protocol=resumable");
        let fp = crate::secret::Fingerprint::of(b"AbC-123_secret");
        assert_eq!(logged_query(q), format!("upload_id=redacted:{fp}&upload_protocol=resumable"));
        assert_eq!(logged_query("upload%5Fid=AbC-123_secret"), format!("upload%5Fid=redacted:{fp}"));
        assert!(has_upload_id("x=1&upload%5fid=z") && !has_upload_id("alt=sse&upload_ids=1"));
        assert_eq!(logged_query("alt=sse&key=gp-1&upload_ids=1"), "alt=sse&upload_ids=1");
        assert_eq!(percent_decode("gp%2D1"), "gp-1");
        assert_eq!(percent_decode("a%zz"), "a%zz");
    }

    #[test]
    fn body_references() {
        let body = br#"{"cachedContent":"cachedContents/c-1","contents":[{"parts":[{"fileData":{"fileUri":"https://generativelanguage.googleapis.com/v1beta/files/f_9"}}]}]}"#;
        assert_eq!(referenced_resources(body), vec!["cachedContents/c-1".to_string(), "files/f_9".to_string()]);
        assert!(referenced_resources(b"{\"text\":\"myfiles/x\"}").is_empty());
    }
}
