//! The store's error type: every failure says which file and which operation.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A failure of the state store. Every variant names the database (or directory) and the
/// operation, so that a log line alone is enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot open the database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(
        "the database {path} has schema version {found}, newer than this build knows ({supported}); \
         run a newer gemini-proxy or point --data-dir elsewhere"
    )]
    TooNew { path: PathBuf, found: i64, supported: i64 },
    #[error("migration {version} ({name}) failed on {path}: {source}")]
    Migration { path: PathBuf, version: i64, name: &'static str, source: rusqlite::Error },
    #[error("{op} failed on {path}: {source}")]
    Sqlite { op: &'static str, path: PathBuf, source: rusqlite::Error },
    #[error("cannot start the store writer thread: {0}")]
    Spawn(std::io::Error),
    #[error("the store writer has stopped")]
    WriterStopped,
    #[error("the store writer did not flush within {0:?}")]
    FlushTimeout(Duration),
    #[error("the store writer could not commit: {0}")]
    FlushFailed(String),
}

/// Attaches the operation and database path to a rusqlite result.
pub(crate) trait Context<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { op, path: path.to_path_buf(), source })
    }
}
