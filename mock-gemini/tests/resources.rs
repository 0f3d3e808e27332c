//! Project-owned resources: the resumable upload handshake, files, cachedContents, and the 403s on foreign ones.

mod common;

use common::{post_json, send, Resp};
use mock_gemini::{KeyBehaviour, KeyMode, MockConfig, MockGemini};
use serde_json::{json, Value};
use std::net::SocketAddr;

async fn mock() -> MockGemini {
    MockGemini::start(MockConfig::default()).await.expect("start mock")
}

/// Starts an upload and returns the path+query part of the returned upload URL.
async fn start_upload(addr: SocketAddr, key: &str, size: usize) -> (Resp, String) {
    let size = size.to_string();
    let r = post_json(
        addr,
        "/upload/v1beta/files",
        &[
            ("x-goog-api-key", key),
            ("x-goog-upload-protocol", "resumable"),
            ("x-goog-upload-command", "start"),
            ("x-goog-upload-header-content-length", &size),
            ("x-goog-upload-header-content-type", "text/plain"),
        ],
        &json!({"file": {"display_name": "notes"}}),
    )
    .await;
    let url = r.header("x-goog-upload-url").unwrap_or_default().to_string();
    let path = url.strip_prefix("https://generativelanguage.googleapis.com").unwrap_or(&url).to_string();
    (r, path)
}

async fn chunk(addr: SocketAddr, path: &str, command: &str, offset: usize, data: &[u8]) -> Resp {
    let offset = offset.to_string();
    send(addr, "POST", path, &[("x-goog-upload-command", command), ("x-goog-upload-offset", &offset)], data).await
}

/// Uploads `data` for `key` in one go and returns the file JSON.
async fn upload(addr: SocketAddr, key: &str, data: &[u8]) -> Value {
    let (_, path) = start_upload(addr, key, data.len()).await;
    let r = chunk(addr, &path, "upload, finalize", 0, data).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["file"].clone()
}

fn generate_with(parts: Value) -> Value {
    json!({"contents":[{"role":"user","parts": parts}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn resumable_upload_handshake_matches_google() {
    let m = mock().await;
    let (r, path) = start_upload(m.addr(), "AIzaU", 11).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-goog-upload-status"), Some("active"));
    let url = r.header("x-goog-upload-url").expect("upload url");
    assert!(url.starts_with("https://generativelanguage.googleapis.com/upload/v1beta/files?upload_id="), "{url}");
    assert!(url.ends_with("&upload_protocol=resumable"), "{url}");

    // Chunks need no key: the upload_id authorises them.
    let r = chunk(m.addr(), &path, "upload", 0, b"hello ").await;
    assert_eq!((r.status, r.header("x-goog-upload-status")), (200, Some("active")));
    let wrong = chunk(m.addr(), &path, "upload", 3, b"world").await;
    assert_eq!(wrong.status, 400, "a wrong offset is refused");
    assert_eq!(wrong.header("x-goog-upload-status"), Some("active"));
    let q = send(m.addr(), "POST", &path, &[("x-goog-upload-command", "query")], b"").await;
    assert_eq!((q.header("x-goog-upload-status"), q.header("x-goog-upload-size-received")), (Some("active"), Some("6")));

    let r = chunk(m.addr(), &path, "upload, finalize", 6, b"world").await;
    assert_eq!((r.status, r.header("x-goog-upload-status")), (200, Some("final")));
    let file = &r.json()["file"];
    let id = file["name"].as_str().and_then(|n| n.strip_prefix("files/")).expect("files/<id>");
    assert_eq!(file["displayName"], "notes");
    assert_eq!(file["mimeType"], "text/plain");
    assert_eq!(file["sizeBytes"], "11");
    assert_eq!(file["state"], "ACTIVE");
    assert_eq!(file["source"], "UPLOADED");
    assert_eq!(file["uri"], format!("https://generativelanguage.googleapis.com/v1beta/files/{id}"));
    // sha256("hello world") as hex, base64-encoded (Google's quirk).
    assert_eq!(file["sha256Hash"], "Yjk0ZDI3Yjk5MzRkM2UwOGE1MmU1MmQ3ZGE3ZGFiZmFjNDg0ZWZlMzdhNTM4MGVlOTA4OGY3YWNlMmVmY2RlOQ==");
    for field in ["createTime", "updateTime", "expirationTime"] {
        assert!(file[field].as_str().is_some_and(|t| t.ends_with('Z')), "{field}");
    }
    let q = send(m.addr(), "POST", &path, &[("x-goog-upload-command", "query")], b"").await;
    assert_eq!(q.header("x-goog-upload-status"), Some("final"));

    let r = send(
        m.addr(),
        "POST",
        "/upload/v1beta/files?upload_id=nope&upload_protocol=resumable",
        &[("x-goog-upload-command", "upload"), ("x-goog-upload-offset", "0")],
        b"x",
    )
    .await;
    assert_eq!(r.status, 404);

    let r = send(m.addr(), "GET", &format!("/v1/files/{id}"), &[("x-goog-api-key", "AIzaU")], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"], format!("files/{id}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_origin_can_be_the_mock_itself_and_sizes_must_match() {
    let m = MockGemini::start(MockConfig { upload_origin: String::new(), ..MockConfig::default() }).await.expect("start");
    let (r, _) = start_upload(m.addr(), "AIzaU", 4).await;
    let url = r.header("x-goog-upload-url").expect("url");
    assert!(url.starts_with(&format!("{}/upload/v1beta/files?upload_id=", m.base_url())), "{url}");
    let path = url.strip_prefix(&m.base_url()).expect("own origin").to_string();
    let r = chunk(m.addr(), &path, "upload, finalize", 0, b"toolong").await;
    assert_eq!(r.status, 400, "declared 4 bytes, sent 7");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_belong_to_the_uploading_project() {
    let m = mock().await;
    m.set_key("AIzaA1", KeyBehaviour::from(KeyMode::Ok).in_project("alpha"));
    m.set_key("AIzaA2", KeyBehaviour::from(KeyMode::Ok).in_project("alpha"));
    let file = upload(m.addr(), "AIzaA1", b"data").await;
    let name = file["name"].as_str().expect("name").to_string();
    let id = name.trim_start_matches("files/");

    let same_project = send(m.addr(), "GET", &format!("/v1beta/{name}"), &[("x-goog-api-key", "AIzaA2")], b"").await;
    assert_eq!(same_project.status, 200);
    let other = send(m.addr(), "GET", &format!("/v1beta/{name}"), &[("x-goog-api-key", "AIzaB")], b"").await;
    assert_eq!(other.status, 403);
    assert_eq!(other.json()["error"]["message"], format!("You do not have permission to access the File {id} or it may not exist."));

    let listed = send(m.addr(), "GET", "/v1beta/files", &[("x-goog-api-key", "AIzaA2")], b"").await.json();
    assert_eq!(listed["files"].as_array().map(Vec::len), Some(1));
    let empty = send(m.addr(), "GET", "/v1beta/files", &[("x-goog-api-key", "AIzaB")], b"").await.json();
    assert_eq!(empty, json!({}), "Google omits empty lists");

    // Using the file from another project is refused like at Google.
    let body = generate_with(json!([{"fileData": {"fileUri": file["uri"], "mimeType": "text/plain"}}, {"text": "sum up"}]));
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &[("x-goog-api-key", "AIzaB")], &body).await;
    assert_eq!(r.status, 403);
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", &[("x-goog-api-key", "AIzaA2")], &body).await;
    assert_eq!(r.status, 200);

    let del = send(m.addr(), "DELETE", &format!("/v1beta/{name}"), &[("x-goog-api-key", "AIzaB")], b"").await;
    assert_eq!(del.status, 403);
    let del = send(m.addr(), "DELETE", &format!("/v1beta/{name}"), &[("x-goog-api-key", "AIzaA1")], b"").await;
    assert_eq!((del.status, del.json()), (200, json!({})));
    let gone = send(m.addr(), "GET", &format!("/v1beta/{name}"), &[("x-goog-api-key", "AIzaA1")], b"").await;
    assert_eq!(gone.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_contents_belong_to_the_creating_project() {
    let m = mock().await;
    let body = json!({
        "model": "models/gemini-2.5-flash",
        "contents": [{"role":"user","parts":[{"text":"a long document"}]}],
        "ttl": "600s",
        "displayName": "doc",
    });
    let r = post_json(m.addr(), "/v1beta/cachedContents", &[("x-goog-api-key", "AIzaOwner")], &body).await;
    assert_eq!(r.status, 200);
    let cache = r.json();
    let name = cache["name"].as_str().expect("name").to_string();
    assert!(name.starts_with("cachedContents/"));
    assert_eq!(cache["model"], "models/gemini-2.5-flash");
    assert_eq!(cache["usageMetadata"]["totalTokenCount"], 4);
    assert!(cache["expireTime"].as_str().is_some() && cache["createTime"].as_str().is_some());

    let own = send(m.addr(), "GET", &format!("/v1/{name}"), &[("x-goog-api-key", "AIzaOwner")], b"").await;
    assert_eq!(own.status, 200);
    let foreign = send(m.addr(), "GET", &format!("/v1/{name}"), &[("x-goog-api-key", "AIzaOther")], b"").await;
    assert_eq!(foreign.status, 403);
    assert_eq!(foreign.json()["error"]["status"], "PERMISSION_DENIED");

    let use_it = json!({"cachedContent": name, "contents":[{"role":"user","parts":[{"text":"q"}]}]});
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &[("x-goog-api-key", "AIzaOther")], &use_it).await;
    assert_eq!(r.status, 403);
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &[("x-goog-api-key", "AIzaOwner")], &use_it).await;
    assert_eq!(r.status, 200);

    let list = send(m.addr(), "GET", "/v1beta/cachedContents", &[("x-goog-api-key", "AIzaOwner")], b"").await.json();
    assert_eq!(list["cachedContents"].as_array().map(Vec::len), Some(1));
    let patched = send(m.addr(), "PATCH", &format!("/v1beta/{name}"), &[("x-goog-api-key", "AIzaOwner")], br#"{"ttl":"60s"}"#).await;
    assert_eq!(patched.status, 200);
    let del = send(m.addr(), "DELETE", &format!("/v1beta/{name}"), &[("x-goog-api-key", "AIzaOther")], b"").await;
    assert_eq!(del.status, 403);
    let del = send(m.addr(), "DELETE", &format!("/v1beta/{name}"), &[("x-goog-api-key", "AIzaOwner")], b"").await;
    assert_eq!(del.status, 200);

    m.reset();
    let r = post_json(m.addr(), "/v1beta/models/gemini-2.5-flash:generateContent", &[("x-goog-api-key", "AIzaOwner")], &use_it).await;
    assert_eq!(r.status, 403, "reset forgets caches");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunks_are_recorded_with_whatever_key_they_carried() {
    let m = mock().await;
    let (_, path) = start_upload(m.addr(), "AIzaStart", 2).await;
    let offset_0 = [("x-goog-upload-command", "upload"), ("x-goog-upload-offset", "0"), ("x-goog-api-key", "AIzaStart")];
    assert_eq!(send(m.addr(), "POST", &path, &offset_0, b"a").await.status, 200);
    assert_eq!(chunk(m.addr(), &path, "upload, finalize", 1, b"b").await.status, 200);
    let keys: Vec<Option<String>> = m.requests().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, [Some("AIzaStart".to_string()), Some("AIzaStart".to_string()), None]);
}
