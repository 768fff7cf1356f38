//! How the embedded backend's failures become [`StoreError`]s.
//!
//! Inside a blocking job both a domain outcome (e.g. a taken username) and any
//! redb error can end the job; [`Failure`] carries either, so jobs can use `?`
//! on both, and the mapping to [`StoreError`] lives in one place.

use crate::StoreError;

/// Why a blocking job against the embedded database stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A domain outcome, reported to the caller as it is.
    Store(StoreError),
    /// redb failed.
    Db(redb::Error),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

impl<E: Into<redb::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Db(error.into())
    }
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Store(error) => error,
            Failure::Db(error) => from_redb(error),
        }
    }
}

/// Classifies a redb error: damaged, foreign or incompatible data is [`StoreError::Corrupt`],
/// everything else (IO, locking, a closed database) is [`StoreError::Unavailable`].
fn from_redb(error: redb::Error) -> StoreError {
    match error {
        redb::Error::Corrupted(reason) => StoreError::Corrupt(reason),
        // redb reports a file that is not a redb database at all this way.
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Corrupt(format!("not a Parley database: {io}"))
        }
        redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. } => StoreError::Corrupt(format!(
            "a table does not have the layout this version of Parley expects: {error}"
        )),
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Unavailable(format!("the database is already in use: {error}"))
        }
        other => StoreError::Unavailable(format!("embedded database error: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupted_database_is_corrupt() {
        let mapped = StoreError::from(Failure::from(redb::Error::Corrupted(
            "bad checksum".to_owned(),
        )));
        assert!(
            matches!(&mapped, StoreError::Corrupt(reason) if reason == "bad checksum"),
            "got {mapped:?}"
        );
    }

    #[test]
    fn io_error_is_unavailable() {
        let io = std::io::Error::other("disk on fire");
        let mapped = StoreError::from(Failure::from(redb::Error::Io(io)));
        assert!(
            matches!(&mapped, StoreError::Unavailable(reason) if reason.contains("disk on fire")),
            "got {mapped:?}"
        );
    }

    #[test]
    fn invalid_data_is_corrupt() {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, "magic number mismatch");
        let mapped = StoreError::from(Failure::from(redb::Error::Io(io)));
        assert!(
            matches!(&mapped, StoreError::Corrupt(reason) if reason.contains("magic number")),
            "got {mapped:?}"
        );
    }

    #[test]
    fn domain_outcomes_pass_through_unchanged() {
        let mapped = StoreError::from(Failure::from(StoreError::NotFound("user bob".to_owned())));
        assert!(
            matches!(&mapped, StoreError::NotFound(what) if what == "user bob"),
            "got {mapped:?}"
        );
    }
}
