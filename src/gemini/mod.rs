//! Everything we know about Gemini's wire format, in one place: paths and models (`route`),
//! the error envelope (`error`), token usage (`usage`) and quota reset times (`quota_reset`).

pub mod error;
pub mod quota_reset;
pub mod route;
pub mod usage;
