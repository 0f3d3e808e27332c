//! Admin API handlers, one module per resource.

pub mod access;
pub mod certificates;
pub mod clients;
pub mod config;
pub mod health;
pub mod keys;
pub mod observe;

use super::error::{ApiError, ApiResult};

/// Runs a blocking state-store call off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::internal(format!("state store: {e}"))),
        Err(e) => {
            // A bug, not the caller's doing: the details go to the log, not to the client.
            tracing::error!(error = %e, "an admin state-store task failed");
            Err(ApiError::internal("internal error in the state store (logged)"))
        }
    }
}
