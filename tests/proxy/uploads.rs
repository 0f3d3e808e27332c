//! Resumable uploads through the proxy, and project-owned resources (files, caches) sticking to
//! the key that created them.

use crate::harness::*;
use serde_json::Value;
use sha2::Digest;

async fn start_upload(proxy: &Proxy, size: usize) -> reqwest::Response {
    client()
        .post(proxy.url("/upload/v1beta/files"))
        .header("x-goog-api-key", TOKEN)
        .header("X-Goog-Upload-Protocol", "resumable")
        .header("X-Goog-Upload-Command", "start")
        .header("X-Goog-Upload-Header-Content-Length", size.to_string())
        .header("X-Goog-Upload-Header-Content-Type", "text/plain")
        .json(&serde_json::json!({"file": {"display_name": "notes.txt"}}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upload_url_points_at_the_proxy_and_chunks_keep_their_key() {
    let s = setup(&["AIzaA", "AIzaB", "AIzaC"]).await;
    let data = vec![b'x'; 300_000];
    let r = start_upload(&s.proxy, data.len()).await;
    assert_eq!(r.status(), 200);
    let url = r.headers()["x-goog-upload-url"].to_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("http://{}/upload/v1beta/files?upload_id=", s.proxy.addr)), "{url}");
    // Chunks go to that URL without a key, the way the Python SDK sends them.
    let c = client();
    let first = c.post(&url).header("X-Goog-Upload-Command", "upload").header("X-Goog-Upload-Offset", "0").body(data[..100_000].to_vec()).send().await.unwrap();
    let upload_status = first.headers().get("x-goog-upload-status").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(first.status(), 200, "{:?}", first.text().await);
    assert_eq!(upload_status.as_deref(), Some("active"));
    let last = c
        .post(&url)
        .header("X-Goog-Upload-Command", "upload, finalize")
        .header("X-Goog-Upload-Offset", "100000")
        .body(data[100_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), 200);
    assert_eq!(last.headers()["x-goog-upload-status"], "final");
    let file: Value = last.json().await.unwrap();
    let name = file["file"]["name"].as_str().unwrap().to_owned();
    assert_eq!(file["file"]["sizeBytes"], "300000");

    let upload_keys = keys_seen(&s.mock, "/upload/");
    assert_eq!(upload_keys.len(), 3);
    assert!(upload_keys.iter().all(|k| *k == upload_keys[0]), "every upload request uses one key: {upload_keys:?}");

    // Later requests naming the file stick to that key, whatever round robin says.
    for _ in 0..4 {
        let r = c.get(s.proxy.url(&format!("/v1beta/{name}"))).header("x-goog-api-key", TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let file_id = name.trim_start_matches("files/");
    let body = serde_json::json!({"contents": [{"parts": [{"fileData": {"mimeType": "text/plain", "fileUri": file["file"]["uri"]}}, {"text": "summarise"}]}]});
    for _ in 0..3 {
        let r = c.post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent")).header("x-goog-api-key", TOKEN).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "a generate call naming the file must use its key");
    }
    let later: Vec<String> =
        s.mock.requests().into_iter().filter(|r| r.path.contains(file_id) || r.path.contains("generateContent")).map(|r| r.key.unwrap_or_default()).collect();
    assert_eq!(later.len(), 7);
    assert!(later.iter().all(|k| *k == upload_keys[0]), "{later:?}");
}

/// An upload session's id is a capability: whoever has it can finish the upload or read its
/// status. The upstream gets it as sent; the access log, the request log and the diagnostics
/// show only its fingerprint (the first 12 hex digits of its SHA-256, as keys are shown).
#[tokio::test(flavor = "multi_thread")]
async fn upload_ids_reach_the_upstream_but_only_their_fingerprint_is_logged() {
    let s = setup(&["AIzaA"]).await;
    let data = vec![b'x'; 1000];
    let r = start_upload(&s.proxy, data.len()).await;
    assert_eq!(r.status(), 200);
    let url = r.headers()["x-goog-upload-url"].to_str().unwrap().to_owned();
    let id = url.split("upload_id=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    assert!(id.len() >= 8, "{url}");
    let last = chunk(&url, "upload, finalize", 0, &data).await;
    assert_eq!(last.status(), 200, "{:?}", last.text().await);

    let forwarded = s.mock.requests().into_iter().filter_map(|r| r.query).find(|q| q.contains("upload_id")).expect("the chunk reached the mock");
    assert!(forwarded.contains(&format!("upload_id={id}&")), "the upstream gets the real id: {forwarded}");

    let fingerprint: String = sha2::Sha256::digest(id.as_bytes())[..6].iter().map(|b| format!("{b:02x}")).collect();
    let shown = format!("/upload/v1beta/files?upload_id=redacted:{fingerprint}&upload_protocol=resumable");
    let log = s.proxy.wait_for_records(2);
    let paths: Vec<&str> = log.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/upload/v1beta/files", shown.as_str()], "{log:?}");
    let rows = s.proxy.wait_for_request_rows(2).await;
    let row_paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(row_paths, [shown.as_str(), "/upload/v1beta/files"], "newest first: {rows:?}");
    let proxy = s.proxy;
    let (stdout, stderr) = (proxy.stdout(), proxy.stderr());
    let db = proxy.state_db();
    let dir = proxy.stop();
    for (what, text) in [("access log", &stdout), ("diagnostics", &stderr)] {
        assert!(!text.contains(&id), "the {what} shows the upload id: {text}");
    }
    // The request log as stored (the binding table keeps the id on purpose: a restart must
    // still let the upload finish).
    let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open the state store");
    let leaked: i64 = conn.query_row("SELECT count(*) FROM request_log WHERE instr(path, ?1) > 0", [&id], |r| r.get(0)).expect("query");
    assert_eq!(leaked, 0);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_upload_id_without_a_token_is_refused() {
    let s = setup(&["AIzaA"]).await;
    let r = client()
        .post(s.proxy.url("/upload/v1beta/files?upload_id=forged&upload_protocol=resumable"))
        .header("X-Goog-Upload-Command", "upload, finalize")
        .header("X-Goog-Upload-Offset", "0")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(s.mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_contents_stick_to_their_key() {
    let s = setup(&["AIzaA", "AIzaB"]).await;
    let c = client();
    let r = c
        .post(s.proxy.url("/v1beta/cachedContents"))
        .header("x-goog-api-key", TOKEN)
        .json(&serde_json::json!({"model": "models/gemini-2.5-flash", "contents": [{"role": "user", "parts": [{"text": "long context"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cache: Value = r.json().await.unwrap();
    let name = cache["name"].as_str().unwrap().to_owned();
    let body = serde_json::json!({"cachedContent": name, "contents": [{"parts": [{"text": "q"}]}]});
    for _ in 0..4 {
        let r = c.post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent")).header("x-goog-api-key", TOKEN).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let keys: Vec<String> = s.mock.requests().into_iter().map(|r| r.key.unwrap_or_default()).collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_whose_key_is_rate_limited_is_not_sent_to_another_key() {
    let s = setup(&["AIzaOWNER", "AIzaOTHER"]).await;
    let c = client();
    let r = c
        .post(s.proxy.url("/v1beta/cachedContents"))
        .header("x-goog-api-key", TOKEN)
        .json(&serde_json::json!({"model": "models/gemini-2.5-flash", "contents": [{"parts": [{"text": "ctx"}]}]}))
        .send()
        .await
        .unwrap();
    let name = r.json::<Value>().await.unwrap()["name"].as_str().unwrap().to_owned();
    let owner = s.mock.requests()[0].key.clone().unwrap();
    s.mock.set_key(&owner, mock_gemini::KeyMode::rate_limited("25s").into());
    let body = serde_json::json!({"cachedContent": name, "contents": [{"parts": [{"text": "q"}]}]});
    let r = c.post(s.proxy.url("/v1beta/models/gemini-2.5-flash:generateContent")).header("x-goog-api-key", TOKEN).json(&body).send().await.unwrap();
    // Another key could not see the cache (it would answer 403): the client gets the owner's
    // 429, with a Retry-After it can act on.
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((24..=25).contains(&retry), "the owner key's own delay: {retry}");
    let generate_keys = keys_seen(&s.mock, "generateContent");
    assert_eq!(generate_keys, vec![owner]);
}

/// Keys the mock saw for the requests after the first `from`.
fn keys_since(mock: &mock_gemini::MockGemini, from: usize) -> Vec<String> {
    mock.requests().into_iter().skip(from).map(|r| r.key.unwrap_or_default()).collect()
}

/// Sends a chunk to an upload URL without any key, as the Python SDK does.
async fn chunk(url: &str, command: &str, offset: usize, data: &[u8]) -> reqwest::Response {
    client().post(url).header("X-Goog-Upload-Command", command).header("X-Goog-Upload-Offset", offset.to_string()).body(data.to_vec()).send().await.unwrap()
}

/// Every key is its own project at the mock, as keys of separate Google projects are: a file
/// asked for with another key than its creator's gets a 403. After a restart the proxy must
/// still know which key created what, and which key an unfinished upload belongs to.
#[tokio::test(flavor = "multi_thread")]
async fn files_and_an_unfinished_upload_keep_their_key_across_a_restart() {
    let Setup { mock, proxy } = setup(&["AIzaA", "AIzaB", "AIzaC"]).await;
    let data = vec![b'x'; 200_000];

    // A finished upload.
    let r = start_upload(&proxy, data.len()).await;
    assert_eq!(r.status(), 200);
    let url = r.headers()["x-goog-upload-url"].to_str().unwrap().to_owned();
    let last = chunk(&url, "upload, finalize", 0, &data).await;
    assert_eq!(last.status(), 200);
    let file: Value = last.json().await.unwrap();
    let name = file["file"]["name"].as_str().unwrap().to_owned();
    let file_key = keys_seen(&mock, "/upload/")[0].clone();

    // An upload started and half sent.
    let before = mock.requests().len();
    let r = start_upload(&proxy, data.len()).await;
    assert_eq!(r.status(), 200);
    let url2 = r.headers()["x-goog-upload-url"].to_str().unwrap().to_owned();
    let first = chunk(&url2, "upload", 0, &data[..100_000]).await;
    assert_eq!(first.status(), 200, "{:?}", first.text().await);
    let upload2_keys = keys_since(&mock, before);
    assert_eq!(upload2_keys.len(), 2);
    assert_eq!(upload2_keys[0], upload2_keys[1]);

    // A graceful restart (SIGTERM), as a deploy does.
    let proxy = proxy.restart();
    assert!(proxy.stderr().contains("restored which keys own files, caches and upload sessions"), "{}", proxy.stderr());

    // Requests naming the file, by path and in a body, all go out with its creator's key.
    let before = mock.requests().len();
    let c = client();
    for _ in 0..4 {
        let r = c.get(proxy.url(&format!("/v1beta/{name}"))).header("x-goog-api-key", TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    let body = serde_json::json!({"contents": [{"parts": [{"fileData": {"mimeType": "text/plain", "fileUri": file["file"]["uri"]}}, {"text": "summarise"}]}]});
    for _ in 0..3 {
        let r = c.post(proxy.url("/v1beta/models/gemini-2.5-flash:generateContent")).header("x-goog-api-key", TOKEN).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    let later = keys_since(&mock, before);
    assert_eq!(later.len(), 7);
    assert!(later.iter().all(|k| *k == file_key), "every request naming the file uses {file_key}: {later:?}");

    // The unfinished upload finishes, keyless, on the key it started with (without the
    // session the proxy would refuse a chunk that carries no key with a 401).
    let before = mock.requests().len();
    let last = chunk(&url2, "upload, finalize", 100_000, &data[100_000..]).await;
    assert_eq!(last.status(), 200, "{:?}", last.text().await);
    assert_eq!(last.headers()["x-goog-upload-status"], "final");
    let file2: Value = last.json().await.unwrap();
    assert_eq!(file2["file"]["sizeBytes"], "200000");
    assert_eq!(keys_since(&mock, before), vec![upload2_keys[0].clone()]);
}

/// A crash loses at most the bindings of the last second or so: once the state store has one,
/// it survives a `kill -9`.
#[tokio::test(flavor = "multi_thread")]
async fn a_cache_keeps_its_key_after_a_crash() {
    let Setup { mock, proxy } = setup(&["AIzaOWNER", "AIzaOTHER"]).await;
    let c = client();
    let r = c
        .post(proxy.url("/v1beta/cachedContents"))
        .header("x-goog-api-key", TOKEN)
        .json(&serde_json::json!({"model": "models/gemini-2.5-flash", "contents": [{"parts": [{"text": "ctx"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let name = r.json::<Value>().await.unwrap()["name"].as_str().unwrap().to_owned();
    let owner = mock.requests()[0].key.clone().unwrap();
    proxy.wait_for_binding("owner", &name);

    let proxy = proxy.restart_after_crash();
    let before = mock.requests().len();
    let body = serde_json::json!({"cachedContent": name, "contents": [{"parts": [{"text": "q"}]}]});
    for _ in 0..4 {
        let r = c.post(proxy.url("/v1beta/models/gemini-2.5-flash:generateContent")).header("x-goog-api-key", TOKEN).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    assert_eq!(keys_since(&mock, before), vec![owner; 4]);
}
