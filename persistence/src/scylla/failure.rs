//! How driver failures become [`StoreError`]s, with messages that say what was
//! being done and what the cluster answered.

use crate::StoreError;

/// Adds what was being done to a driver failure.
pub(crate) trait Context<T> {
    /// A request that failed or timed out: [`StoreError::Unavailable`] naming `what`.
    fn context(self, what: &str) -> Result<T, StoreError>;
    /// A reply that could not be decoded: [`StoreError::Corrupt`] naming `what`.
    fn decoded(self, what: &str) -> Result<T, StoreError>;
}

impl<T, E: std::error::Error> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Unavailable(format!("{what}: Scylla: {}", chain(&e))))
    }

    fn decoded(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Corrupt(format!("{what}: {}", chain(&e))))
    }
}

/// The error and its sources, joined.
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn messages_name_the_operation_and_every_cause() {
        let failed: Result<(), Outer> = Err(Outer(std::io::Error::other("refused")));
        match failed.context("appending") {
            Err(StoreError::Unavailable(m)) => assert_eq!(m, "appending: Scylla: outer: refused"),
            other => panic!("{other:?}"),
        }
        let failed: Result<(), Outer> = Err(Outer(std::io::Error::other("bad")));
        assert!(matches!(
            failed.decoded("reading"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
