//! Admin API handlers, one module per resource.

pub mod access;
pub mod certificates;
pub mod clients;
pub mod config;
pub mod health;
pub mod keys;
pub mod observe;

use super::auth::Actor;
use super::error::{ApiError, ApiResult};
use super::AdminState;

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

/// Records an admin action in the audit log before the action's answer goes out, so that whoever
/// reads the log after the answer finds the entry. The action has happened either way: a failure
/// to record it goes to the log, not to the answer.
pub async fn audit(s: &AdminState, actor: &Actor, action: &str, target: &str, detail: serde_json::Value) {
    let (db, actor, action, target) = (s.db.clone(), actor.label(), action.to_owned(), target.to_owned());
    let done = tokio::task::spawn_blocking(move || db.add_audit(&actor, &action, &target, &detail).map(|_| ())).await;
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot record an audit entry"),
        Err(e) => tracing::error!(error = %e, "the audit entry's task failed"),
    }
}
