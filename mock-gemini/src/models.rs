//! The model catalogue and the `GET /V/models`, `GET /V/models/{m}` methods (which cost no quota).

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::ApiVersion;
use crate::util::json_response;
use axum::extract::{Path, Query};
use axum::response::Response;
use axum::Extension;
use serde::{Deserialize, Serialize};

/// One model as `models.list` describes it.
pub(crate) struct ModelInfo {
    pub id: &'static str,
    pub version: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    pub input_token_limit: u32,
    pub output_token_limit: u32,
    pub methods: &'static [&'static str],
    /// Generation models only: sampling defaults and thinking support.
    pub generation: Option<Sampling>,
    /// Embedding models only: default vector size.
    pub embedding_dims: Option<usize>,
}

pub(crate) struct Sampling {
    pub top_k: u32,
    pub thinking: bool,
}

const GENERATION_METHODS: &[&str] = &["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"];

pub(crate) const CATALOG: &[ModelInfo] = &[
    ModelInfo {
        id: "gemini-2.5-flash",
        version: "001",
        display_name: "Gemini 2.5 Flash",
        description: "Stable version of Gemini 2.5 Flash, our mid-size multimodal model that supports up to 1 million tokens, released in June of 2025.",
        input_token_limit: 1_048_576,
        output_token_limit: 65_536,
        methods: GENERATION_METHODS,
        generation: Some(Sampling { top_k: 64, thinking: true }),
        embedding_dims: None,
    },
    ModelInfo {
        id: "gemini-2.5-pro",
        version: "2.5",
        display_name: "Gemini 2.5 Pro",
        description: "Stable release (June 17th, 2025) of Gemini 2.5 Pro",
        input_token_limit: 1_048_576,
        output_token_limit: 65_536,
        methods: GENERATION_METHODS,
        generation: Some(Sampling { top_k: 64, thinking: true }),
        embedding_dims: None,
    },
    ModelInfo {
        id: "gemini-2.0-flash",
        version: "2.0",
        display_name: "Gemini 2.0 Flash",
        description: "Gemini 2.0 Flash",
        input_token_limit: 1_048_576,
        output_token_limit: 8_192,
        methods: GENERATION_METHODS,
        generation: Some(Sampling { top_k: 40, thinking: false }),
        embedding_dims: None,
    },
    ModelInfo {
        id: "text-embedding-004",
        version: "004",
        display_name: "Text Embedding 004",
        description: "Obtain a distributed representation of a text.",
        input_token_limit: 2_048,
        output_token_limit: 1,
        methods: &["embedContent"],
        generation: None,
        embedding_dims: Some(768),
    },
    ModelInfo {
        id: "gemini-embedding-001",
        version: "001",
        display_name: "Gemini Embedding 001",
        description: "Obtain a distributed representation of a text.",
        input_token_limit: 2_048,
        output_token_limit: 1,
        methods: &["embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent"],
        generation: None,
        embedding_dims: Some(3072),
    },
    ModelInfo {
        id: "imagen-4.0-generate-001",
        version: "001",
        display_name: "Imagen 4",
        description: "Vertex served Imagen 4.0 model",
        input_token_limit: 480,
        output_token_limit: 8_192,
        methods: &["predict"],
        generation: None,
        embedding_dims: None,
    },
];

/// What a model id resolves to: a catalogue model or a tuned model.
pub(crate) enum Resolved {
    Base(&'static ModelInfo),
    /// `tunedModels/{id}`: any id exists and generates text.
    Tuned,
}

impl Resolved {
    /// Whether the model offers the API method (`generateContent`, `embedContent`...).
    pub fn supports(&self, method: &str) -> bool {
        let needed = match method {
            "streamGenerateContent" => "generateContent",
            "batchEmbedContents" => "embedContent",
            m => m,
        };
        match self {
            Resolved::Base(info) => info.methods.contains(&needed),
            Resolved::Tuned => matches!(needed, "generateContent" | "countTokens"),
        }
    }

    pub fn embedding_dims(&self) -> usize {
        match self {
            Resolved::Base(info) => info.embedding_dims.unwrap_or(768),
            Resolved::Tuned => 768,
        }
    }
}

/// Looks up a bare id (`gemini-2.5-flash`) or `tunedModels/x`.
pub(crate) fn resolve(id: &str) -> Option<Resolved> {
    if let Some(tuned) = id.strip_prefix("tunedModels/") {
        return (!tuned.is_empty() && !tuned.contains('/')).then_some(Resolved::Tuned);
    }
    CATALOG.iter().find(|m| m.id == id).map(Resolved::Base)
}

/// A catalogue model in Google's JSON form.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModelJson {
    name: String,
    version: &'static str,
    display_name: &'static str,
    description: &'static str,
    input_token_limit: u32,
    output_token_limit: u32,
    supported_generation_methods: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<bool>,
}

impl ModelJson {
    pub fn of(info: &ModelInfo) -> ModelJson {
        let g = info.generation.as_ref();
        ModelJson {
            name: format!("models/{}", info.id),
            version: info.version,
            display_name: info.display_name,
            description: info.description,
            input_token_limit: info.input_token_limit,
            output_token_limit: info.output_token_limit,
            supported_generation_methods: info.methods,
            temperature: g.map(|_| 1.0),
            top_p: g.map(|_| 0.95),
            top_k: g.map(|s| s.top_k),
            max_temperature: g.map(|_| 2.0),
            thinking: g.and_then(|s| s.thinking.then_some(true)),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageQuery {
    pub page_size: Option<usize>,
    pub page_token: Option<String>,
}

impl PageQuery {
    /// The slice bounds `[start, end)` of the requested page over `total` items and the token of
    /// the next page, if any. Page tokens are opaque to clients; here they encode an offset.
    pub fn window(&self, total: usize, default_size: usize, max_size: usize) -> Result<(usize, usize, Option<String>), ApiError> {
        let size = match self.page_size {
            None | Some(0) => default_size,
            Some(n) => n.min(max_size),
        };
        let start = match self.page_token.as_deref().filter(|t| !t.is_empty()) {
            None => 0,
            Some(t) => t
                .strip_prefix("mockpage-")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n <= total)
                .ok_or_else(|| ApiError::bad_request("Invalid page token."))?,
        };
        let end = (start + size).min(total);
        let next = (end < total).then(|| format!("mockpage-{end}"));
        Ok((start, end, next))
    }

    /// One page of `items` as Google lists resources: `{"<field>": [...], "nextPageToken": ...}`,
    /// both omitted when empty (Google does not send empty lists).
    pub fn page(&self, mut items: Vec<serde_json::Value>, field: &str, default_size: usize, max_size: usize) -> Result<serde_json::Value, ApiError> {
        let (start, end, next) = self.window(items.len(), default_size, max_size)?;
        let mut out = serde_json::Map::new();
        if end > start {
            out.insert(field.to_string(), serde_json::Value::Array(items.drain(start..end).collect()));
        }
        if let Some(token) = next {
            out.insert("nextPageToken".to_string(), serde_json::Value::String(token));
        }
        Ok(serde_json::Value::Object(out))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelList {
    models: Vec<ModelJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// `GET /V/models`: no quota is charged, so rate-limited keys still get 200.
pub(crate) async fn list(Extension(caller): Extension<Caller>, Query(page): Query<PageQuery>) -> Result<Response, ApiError> {
    caller.authenticate()?;
    let (start, end, next_page_token) = page.window(CATALOG.len(), 50, 1000)?;
    let models = CATALOG[start..end].iter().map(ModelJson::of).collect();
    Ok(json_response(&ModelList { models, next_page_token }))
}

/// `GET /V/models/{m}`.
pub(crate) async fn get(Extension(caller): Extension<Caller>, Extension(version): Extension<ApiVersion>, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.authenticate()?;
    match CATALOG.iter().find(|m| m.id == id) {
        Some(info) => Ok(json_response(&ModelJson::of(info))),
        None => Err(ApiError::model_not_found(&format!("models/{id}"), version.as_str(), "getModel")),
    }
}

/// `GET /V/tunedModels/{m}`: any tuned model exists.
pub(crate) async fn get_tuned(Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.authenticate()?;
    Ok(json_response(&serde_json::json!({
        "name": format!("tunedModels/{id}"),
        "displayName": id,
        "baseModel": "models/gemini-2.0-flash",
        "state": "ACTIVE",
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_the_whole_list() {
        let mut token = None;
        let mut seen = 0;
        loop {
            let q = PageQuery { page_size: Some(4), page_token: token.clone() };
            let (start, end, next) = q.window(10, 50, 1000).expect("window");
            assert_eq!(start, seen);
            seen = end;
            token = next;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen, 10);
        let bad = PageQuery { page_size: None, page_token: Some("zzz".into()) };
        assert!(bad.window(10, 50, 1000).is_err());
    }
}
