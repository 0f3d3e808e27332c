//! Everything we know about Gemini's wire format, in one place: paths and models (`route`),
//! the error envelope (`error`), token usage (`usage`), quota reset times (`quota_reset`) and
//! the shape of an API key (`api_key`).

pub mod api_key;
pub mod error;
pub mod quota_reset;
pub mod route;
pub mod usage;
