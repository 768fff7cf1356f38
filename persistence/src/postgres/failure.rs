//! How PostgreSQL and pool failures become [`StoreError`]s, with messages that
//! say what was being done and what the server answered.
//!
//! tokio-postgres prints a server error as just "db error"; the mapping here
//! spells out the severity, SQLSTATE code, message and detail instead.

use std::time::Duration;

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::StoreError;

/// Adds what was being done to a tokio-postgres failure.
pub(crate) trait Context<T> {
    /// Maps the error to a [`StoreError`] that names `what`.
    fn context(self, what: &str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn context(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| db_error(what, &e))
    }
}

/// True if `error` is the server refusing a duplicate key.
pub(crate) fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Classifies a tokio-postgres failure during `what`.
///
/// Everything is [`StoreError::Unavailable`] (the transaction was rolled back,
/// so the operation had no effect), except data the server holds but Parley
/// cannot decode, which is [`StoreError::Corrupt`].
pub(crate) fn db_error(what: &str, error: &tokio_postgres::Error) -> StoreError {
    if error.is_closed() {
        return StoreError::Unavailable(format!("{what}: the connection to PostgreSQL was lost"));
    }
    if let Some(db) = error.as_db_error() {
        let mut message = format!(
            "{what}: PostgreSQL {} {}: {}",
            db.severity(),
            db.code().code(),
            db.message()
        );
        if let Some(detail) = db.detail() {
            message.push_str(&format!(" ({detail})"));
        }
        let code = db.code().code();
        if code.starts_with("08") || code.starts_with("57P") {
            message.push_str(" [the server is unreachable, restarting or shutting down]");
        }
        return StoreError::Unavailable(message);
    }
    let mut message = format!("{what}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    StoreError::Unavailable(message)
}

/// Classifies a failure to get a connection from the pool.
pub(crate) fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(e) => db_error("connecting to PostgreSQL", &e),
        PoolError::Timeout(kind) => StoreError::Unavailable(format!(
            "no PostgreSQL connection available in time ({kind:?} timed out)"
        )),
        other => StoreError::Unavailable(format!("PostgreSQL connection pool: {other}")),
    }
}

/// Reads column `index` of `row`; a value of the wrong type or NULL where none
/// may be is [`StoreError::Corrupt`].
pub(crate) fn column<'a, T>(row: &'a tokio_postgres::Row, index: usize) -> Result<T, StoreError>
where
    T: tokio_postgres::types::FromSql<'a>,
{
    row.try_get(index).map_err(|e| {
        let name = row
            .columns()
            .get(index)
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| format!("#{index}"));
        StoreError::Corrupt(format!("column {name}: {e}"))
    })
}

/// Runs `operation`, failing with [`StoreError::Unavailable`] after `timeout`.
pub(crate) async fn within<T>(
    timeout: Duration,
    what: &str,
    operation: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, operation).await {
        Ok(outcome) => outcome,
        Err(_) => Err(StoreError::Unavailable(format!(
            "{what}: PostgreSQL did not answer within {timeout:?}"
        ))),
    }
}
