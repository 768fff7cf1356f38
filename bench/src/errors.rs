//! A thread-safe tally of errors by kind, so a run can report not just how
//! many things failed but what failed ("connect: Connection refused" × 37).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counts errors, grouped by a short description of their kind.
#[derive(Debug, Default)]
pub struct ErrorTally {
    total: AtomicU64,
    kinds: Mutex<BTreeMap<String, u64>>,
}

impl ErrorTally {
    /// Counts one error of the given kind.
    pub fn record(&self, kind: impl Into<String>) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        *kinds.entry(kind.into()).or_insert(0) += 1;
    }

    /// Errors counted so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Errors counted so far, by kind.
    pub fn by_kind(&self) -> BTreeMap<String, u64> {
        self.kinds.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_errors_by_kind() {
        let tally = ErrorTally::default();
        tally.record("connect: refused");
        tally.record("connect: refused");
        tally.record("publish: queue closed");
        assert_eq!(tally.total(), 3);
        let kinds = tally.by_kind();
        assert_eq!(kinds["connect: refused"], 2);
        assert_eq!(kinds["publish: queue closed"], 1);
    }
}
