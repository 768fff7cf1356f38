//! The error type shared by every store trait and backend.

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The record to create exists already (e.g. a username that is taken).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The record to change does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The backend could not be reached or failed; the operation had no effect.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    /// A compare-and-set update lost a race: the record changed since it was read.
    #[error("{0} was changed concurrently; re-read and retry")]
    Conflict(String),
    /// Stored data could not be decoded; the backend is damaged or from a newer version.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}
