//! mock-gemini: an in-process (or standalone) fake of Google's Gemini API that gemini-proxy's tests and benchmarks point the proxy at.
//!
//! It speaks plain HTTP on loopback and mimics the real service on the wire: the native
//! `/v1` and `/v1beta` surface, the resumable upload protocol under `/upload/`, and the
//! OpenAI-compatible surface under `/v1beta/openai/`. Every API key is its own project
//! unless told otherwise, and its behaviour (answer normally, 429 with Google's quota
//! details, be invalid, die mid-stream, hang...) can be switched while the mock runs,
//! either through [`MockGemini::set_key`] or over HTTP under `/__mock/`.
//! Everything that arrives (except `/__mock/` calls) is recorded as a [`RecordedRequest`]
//! so tests can assert which key and which headers the proxy sent.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mock_gemini::{KeyMode, MockConfig, MockGemini};
//! let mock = MockGemini::start(MockConfig::default()).await?;
//! mock.set_key("AIzaBUSY", KeyMode::rate_limited("12s").into());
//! // ... point the proxy at mock.base_url(), drive it ...
//! assert!(mock.requests().iter().all(|r| r.header("x-forwarded-for").is_none()));
//! # Ok(()) }
//! ```

mod auth;
mod caches;
mod config;
mod content;
mod control;
mod error;
mod files;
mod generate;
mod models;
mod openai;
mod record;
mod routes;
mod server;
mod state;
mod stream;
mod util;

pub use config::{KeyBehaviour, KeyMode, MockConfig, GOOGLE_ORIGIN};
pub use record::RecordedRequest;
pub use server::MockGemini;
