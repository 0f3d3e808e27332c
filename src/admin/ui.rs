//! The embedded admin UI: the single-page app built from `web/` (or, when it was not built, a
//! placeholder page saying how to build it; `build.rs` chooses), served at `/` on the admin
//! listener.
//!
//! Caching: files under `/assets/` carry a content hash in their names (vite's output), so they
//! are cached for a year as immutable; everything else, `index.html` first, is `no-cache` with
//! an ETag, so a new build is picked up at the next load. Unknown paths get `index.html` (the
//! app's history-mode router shows the page), except under `/api`, `/metrics`, `/healthz` and
//! `/readyz`, which keep the API's JSON 404, and except missing files (a name with an
//! extension), which get a 404 rather than HTML in place of a script.

use super::error::ApiError;
use super::AdminState;
use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use rust_embed::RustEmbed;
use std::borrow::Cow;

#[derive(RustEmbed)]
#[folder = "$GEMINI_PROXY_UI_DIR"]
struct Assets;

/// Hashed build output: never changes under the same name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else: the browser may keep it but must ask (a cheap 304 thanks to the ETag).
const REVALIDATE: &str = "no-cache";
/// The app loads only its own scripts and talks only to this origin. Inline styles are allowed
/// because Element Plus and CodeMirror set style attributes and inject style elements.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";
/// First path segments that belong to the server: an unknown path under them is an API 404.
const RESERVED: [&str; 4] = ["api", "metrics", "healthz", "readyz"];

/// Routes serving the UI: `/` and every path no other admin route claims. Merge them before
/// the admin router's JSON fallback; they answer any method (GET and HEAD get the UI, others
/// the same JSON 404 the fallback gives) so that no unknown route turns into a 405.
pub fn routes() -> Router<AdminState> {
    router()
}

/// The same routes for any router state (they use none).
fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", any(serve)).route("/{*path}", any(serve))
}

async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    respond(&method, uri.path(), &headers)
}

/// The answer for `method path`: a file of the build, `index.html` for an app route, or a 404.
fn respond(method: &Method, path: &str, headers: &HeaderMap) -> Response {
    let rel = path.trim_start_matches('/');
    let first = rel.split('/').next().unwrap_or("");
    if RESERVED.contains(&first) || (method != Method::GET && method != Method::HEAD) {
        return ApiError::not_found("no such admin route").into_response();
    }
    if rel.split('/').any(|s| s == "." || s == "..") || rel.contains(['\\', '\0']) {
        return ApiError::not_found("no such file").into_response();
    }
    let name = if rel.is_empty() { "index.html" } else { rel };
    if let Some(file) = Assets::get(name) {
        let cache = if name.starts_with("assets/") { IMMUTABLE } else { REVALIDATE };
        return file_response(name, file, cache, headers);
    }
    let last = rel.rsplit('/').next().unwrap_or("");
    if rel.starts_with("assets/") || last.contains('.') {
        return ApiError::not_found(format!("no such file: /{rel}")).into_response();
    }
    match Assets::get("index.html") {
        Some(index) => file_response("index.html", index, REVALIDATE, headers),
        None => ApiError::not_found("the admin UI is missing from this build").into_response(),
    }
}

fn file_response(name: &str, file: rust_embed::EmbeddedFile, cache: &'static str, headers: &HeaderMap) -> Response {
    let hash = file.metadata.sha256_hash();
    let etag = format!("\"{}\"", hash[..16].iter().map(|b| format!("{b:02x}")).collect::<String>());
    let mut res = if if_none_match(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = match file.data {
            Cow::Borrowed(b) => Bytes::from_static(b),
            Cow::Owned(v) => Bytes::from(v),
        };
        let mime = mime_guess::from_path(name).first_or_octet_stream();
        let text = mime.type_() == mime_guess::mime::TEXT || matches!(mime.subtype().as_str(), "javascript" | "json" | "xml" | "svg");
        let ctype = if text && mime.get_param("charset").is_none() { format!("{mime}; charset=utf-8") } else { mime.to_string() };
        let mut res = Body::from(body).into_response();
        insert(&mut res, CONTENT_TYPE, &ctype);
        res
    };
    insert(&mut res, CACHE_CONTROL, cache);
    insert(&mut res, ETAG, &etag);
    insert(&mut res, HeaderName::from_static("x-content-type-options"), "nosniff");
    if name.ends_with(".html") {
        insert(&mut res, HeaderName::from_static("content-security-policy"), CSP);
        insert(&mut res, HeaderName::from_static("x-frame-options"), "DENY");
        insert(&mut res, HeaderName::from_static("referrer-policy"), "no-referrer");
    }
    res
}

fn insert(res: &mut Response, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().insert(name, v);
    }
}

/// Whether the request's `If-None-Match` names `etag` (or is `*`).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    /// The admin router's shape: real routes, the UI, then the JSON fallback.
    fn app() -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/api/v1/keys", get(|| async { "keys" }))
            .merge(router())
            .fallback(|| async { ApiError::not_found("no such admin route") })
    }

    async fn start() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });
        format!("http://{addr}")
    }

    fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
        r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[tokio::test]
    async fn index_and_app_routes_get_the_page_uncached() {
        let base = start().await;
        let c = reqwest::Client::new();
        for path in ["/", "/keys", "/config/versions", "/index.html"] {
            let r = c.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(header(&r, "cache-control"), "no-cache", "{path}");
            assert!(header(&r, "content-type").starts_with("text/html"), "{path}");
            assert!(header(&r, "content-security-policy").contains("frame-ancestors 'none'"), "{path}");
            let etag = header(&r, "etag").to_owned();
            assert!(r.text().await.unwrap().contains("<html"), "{path}");
            let again = c.get(format!("{base}{path}")).header("if-none-match", &etag).send().await.unwrap();
            assert_eq!(again.status(), 304, "{path}");
        }
    }

    #[tokio::test]
    async fn server_paths_keep_their_answers() {
        let base = start().await;
        let c = reqwest::Client::new();
        assert_eq!(c.get(format!("{base}/healthz")).send().await.unwrap().text().await.unwrap(), "ok");
        assert_eq!(c.get(format!("{base}/api/v1/keys")).send().await.unwrap().text().await.unwrap(), "keys");
        for (method, path) in [
            ("GET", "/api/v1/nope"),
            ("GET", "/api"),
            ("POST", "/api/v1/nope"),
            ("DELETE", "/api/v1/keys/x/y"),
            ("GET", "/metrics/x"),
            ("POST", "/keys"),
            ("GET", "/assets/missing-1234.js"),
            ("GET", "/favicon.ico"),
        ] {
            let r = c.request(method.parse().unwrap(), format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 404, "{method} {path}");
            assert!(header(&r, "content-type").starts_with("application/json"), "{method} {path}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], 404, "{method} {path}");
        }
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable() {
        let Some(asset) = Assets::iter().find(|n| n.starts_with("assets/")) else {
            return; // the placeholder build has no assets
        };
        let base = start().await;
        let r = reqwest::get(format!("{base}/{asset}")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "cache-control"), IMMUTABLE);
        assert_eq!(
            header(&r, "content-type"),
            mime_guess::from_path(asset.as_ref()).first_or_octet_stream().essence_str().to_owned()
                + if asset.ends_with(".js") || asset.ends_with(".css") { "; charset=utf-8" } else { "" }
        );
    }

    #[test]
    fn traversal_is_refused() {
        let h = HeaderMap::new();
        for p in ["/../Cargo.toml", "/assets/../../build.rs", "/a/./b", "/x\\y"] {
            assert_eq!(respond(&Method::GET, p, &h).status(), 404, "{p}");
        }
    }

    #[test]
    fn etags_match_lists_and_weak_forms() {
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"a\", W/\"b\""));
        assert!(if_none_match(&h, "\"b\""));
        assert!(!if_none_match(&h, "\"c\""));
    }
}
