//! Errors of the admin API, as JSON in the same envelope the data plane uses.

use crate::config::edit::EditError;
use crate::config::LocatedProblem;
use crate::control::ApplyError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// `{"error": {...}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: u16,
    pub status: &'static str,
    pub message: String,
    /// Config problems with their place, for validation failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemView>,
}

/// A config problem at a line and column (1-based; absent for problems without a place).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemView {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl From<&LocatedProblem> for ProblemView {
    fn from(p: &LocatedProblem) -> Self {
        ProblemView { line: p.line, column: p.column, message: p.message.clone() }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: StatusCode,
    pub message: String,
    pub problems: Vec<ProblemView>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), problems: Vec::new(), retry_after: None }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

fn grpc_status(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 | 413 | 415 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            ErrorBody { error: ErrorDetail { code: self.code.as_u16(), status: grpc_status(self.code), message: self.message, problems: self.problems } };
        let mut res = (self.code, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                res.headers_mut().insert("retry-after", v);
            }
        }
        res
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Invalid(problems) => ApiError {
                code: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("the configuration is not valid ({} problem(s)); the running one stays in force", problems.len()),
                problems: problems.iter().map(ProblemView::from).collect(),
                retry_after: None,
            },
            ApplyError::ReadOnly(m) => ApiError::conflict(m),
            e @ ApplyError::EditedOnDisk(_) => ApiError::conflict(e.to_string()),
            ApplyError::Io(m) => ApiError::internal(m),
            ApplyError::Edit(e) => match e {
                EditError::NoSuchPool(_) | EditError::NoSuchClient(_) | EditError::NoSuchKey(_) => ApiError::not_found(e.to_string()),
                EditError::ClientExists(_) | EditError::KeyExists(_) => ApiError::conflict(e.to_string()),
                EditError::Syntax(_) | EditError::NoPools | EditError::Layout { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            },
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
