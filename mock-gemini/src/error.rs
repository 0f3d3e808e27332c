//! Google's error envelope (`{"error":{code,message,status,details}}`) and the exact errors the real API returns.

use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};

const SERVICE: &str = "generativelanguage.googleapis.com";

/// An error answer. Rendered as Google's envelope; on the OpenAI-compatible surface the
/// same envelope is wrapped in a one-element JSON array, as Gemini does there.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: StatusCode,
    pub status: &'static str,
    pub message: String,
    pub details: Vec<Value>,
    /// Wrap the envelope in `[...]` (OpenAI-compatible paths).
    pub openai: bool,
    /// Extra response headers (e.g. `X-Goog-Upload-Status` on upload errors).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Send the body in chunks of unknown total size (chunked framing), not Content-Length.
    pub chunked: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: u16,
    message: &'a str,
    status: &'a str,
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    details: &'a [Value],
}

impl ApiError {
    pub fn new(code: StatusCode, status: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, status, message: message.into(), details: Vec::new(), openai: false, headers: Vec::new(), chunked: false }
    }

    pub fn with_details(mut self, details: Vec<Value>) -> Self {
        self.details = details;
        self
    }

    /// Marks the error as belonging to the OpenAI-compatible surface (array-wrapped).
    pub fn openai(mut self) -> Self {
        self.openai = true;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    /// The JSON body exactly as sent.
    pub fn body(&self) -> Vec<u8> {
        let env = Envelope { error: Body { code: self.code.as_u16(), message: &self.message, status: self.status, details: &self.details } };
        let out = if self.openai { serde_json::to_vec(&[env]) } else { serde_json::to_vec(&env) };
        out.unwrap_or_default()
    }

    // ---- The catalogue of errors Google returns ----

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// A path that matches no API method.
    pub fn no_such_path(path: &str) -> Self {
        ApiError::not_found(format!("Requested entity was not found. (no method for path {path})"))
    }

    pub fn invalid_json(err: &serde_json::Error) -> Self {
        ApiError::bad_request(format!("Invalid JSON payload received. {err}"))
    }

    /// Unknown model, or a model that does not offer `method`.
    pub fn model_not_found(model: &str, version: &str, method: &str) -> Self {
        ApiError::not_found(format!(
            "{model} is not found for API version {version}, or is not supported for {method}. \
             Call ListModels to see the list of available models and their supported methods."
        ))
    }

    pub fn unregistered_caller() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API.",
        )
    }

    /// What Google answers when a native path carries an `Authorization` header that is
    /// not an OAuth access token (e.g. a proxy's own client token).
    pub fn not_oauth() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. \
             See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )
        .with_details(vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            "metadata": { "service": SERVICE },
        })])
    }

    /// OpenAI-compatible path without any credential.
    pub fn missing_authorization() -> Self {
        ApiError::bad_request("Missing Authorization header.")
    }

    /// OpenAI-compatible path with an `Authorization` header that is not `Bearer <key>`.
    pub fn invalid_authorization() -> Self {
        ApiError::bad_request("Invalid Authorization header.")
    }

    pub fn key_invalid() -> Self {
        let message = "API key not valid. Please pass a valid API key.";
        ApiError::bad_request(message).with_details(vec![
            json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": { "service": SERVICE },
            }),
            json!({
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            }),
        ])
    }

    pub fn key_suspended(key: &str, project_number: u64) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", format!("Permission denied: Consumer 'api_key:{key}' has been suspended.")).with_details(
            vec![json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "CONSUMER_SUSPENDED",
                "domain": "googleapis.com",
                "metadata": { "consumer": format!("projects/{project_number}"), "service": SERVICE },
            })],
        )
    }

    pub fn key_leaked() -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", "Your API key was reported as leaked. Please use another API key.")
    }

    pub fn key_blocked(project_number: u64) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", format!("Requests to this API {SERVICE} are blocked.")).with_details(vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_SERVICE_BLOCKED",
            "domain": "googleapis.com",
            "metadata": {
                "consumer": format!("projects/{project_number}"),
                "service": SERVICE,
                "apiName": SERVICE,
            },
        })])
    }

    /// 429 with Google's `Help`, `QuotaFailure` and `RetryInfo` details.
    pub fn quota(model: &str, quota_id: &str, quota_value: &str, retry_delay: &str) -> Self {
        let metric = if quota_id.contains("InputTokens") {
            "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
        } else {
            "generativelanguage.googleapis.com/generate_content_free_tier_requests"
        };
        let message = format!(
            "You exceeded your current quota, please check your plan and billing details. \
             For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. \
             To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n\
             * Quota exceeded for metric: {metric}, limit: {quota_value}, model: {model}\n\
             Please retry in {retry_delay}."
        );
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", message).with_details(vec![
            json!({
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [{
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }],
            }),
            json!({
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{
                    "quotaMetric": metric,
                    "quotaId": quota_id,
                    "quotaDimensions": { "location": "global", "model": model },
                    "quotaValue": quota_value,
                }],
            }),
            json!({
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": retry_delay,
            }),
        ])
    }

    /// 429 without details, as an egress or IP throttle answers.
    pub fn quota_bare() -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
    }

    pub fn overloaded() -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    }

    pub fn echoing_key(key: &str) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", format!("Invalid request to ...?key={key}: contents is not specified"))
    }

    /// An error of `code` about `bytes` long whose message ends quoting `key` (see
    /// `KeyMode::HugeError`). Not Google's: its errors are a few hundred bytes.
    pub fn huge(code: u16, bytes: usize, key: &str, chunked: bool) -> Self {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
        let status = match code.as_u16() {
            400 => "INVALID_ARGUMENT",
            403 => "PERMISSION_DENIED",
            429 => "RESOURCE_EXHAUSTED",
            500 => "INTERNAL",
            503 => "UNAVAILABLE",
            _ => "UNKNOWN",
        };
        let padding = "x".repeat(bytes.saturating_sub(key.len() + 100));
        let mut e = ApiError::new(code, status, format!("Request dump: {padding} key={key}"));
        e.chunked = chunked;
        e
    }

    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        )
    }

    pub fn file_denied(id: &str) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", format!("You do not have permission to access the File {id} or it may not exist."))
    }

    pub fn cache_denied() -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", "CachedContent not found (or permission denied)")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let body = if self.chunked {
            // A stream of unknown length: hyper frames it with chunks.
            let pieces: Vec<Result<Bytes, std::convert::Infallible>> = body.chunks(64 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            axum::body::Body::from_stream(futures_util::stream::iter(pieces))
        } else {
            axum::body::Body::from(body)
        };
        let mut resp = (self.code, [(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"))], body).into_response();
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_error_has_googles_shape() {
        let e = ApiError::quota("gemini-2.5-flash", "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "10", "37s");
        let v: Value = serde_json::from_slice(&e.body()).expect("json");
        assert_eq!(v["error"]["code"], 429);
        assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
        assert!(v["error"]["message"].as_str().is_some_and(|m| m.ends_with("Please retry in 37s.")));
        let details = v["error"]["details"].as_array().expect("details");
        assert_eq!(details[0]["@type"], "type.googleapis.com/google.rpc.Help");
        assert_eq!(details[1]["violations"][0]["quotaDimensions"]["model"], "gemini-2.5-flash");
        assert_eq!(details[2]["retryDelay"], "37s");
    }

    #[test]
    fn openai_errors_are_array_wrapped_and_details_omitted_when_empty() {
        let v: Value = serde_json::from_slice(&ApiError::overloaded().openai().body()).expect("json");
        assert_eq!(v[0]["error"]["code"], 503);
        assert!(v[0]["error"].get("details").is_none());
    }
}
