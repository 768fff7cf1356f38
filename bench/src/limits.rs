//! Process resource limits: many connections need many file descriptors, so
//! the bench raises its soft `RLIMIT_NOFILE` to the hard limit at start-up.
//! Brokers started by the comparison runner inherit the raised limit.

/// Raises the soft open-files limit to the hard limit and returns the new
/// soft limit.
pub fn raise_nofile() -> Result<u64, LimitError> {
    rlimit::increase_nofile_limit(u64::MAX).map_err(LimitError)
}

/// The current soft open-files limit (`None` if it can't be read).
pub fn nofile() -> Option<u64> {
    rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
}

/// A warning if `connections` sockets (plus a margin for everything else)
/// would not fit in the open-files limit.
pub fn connection_warning(connections: usize) -> Option<String> {
    let limit = nofile()?;
    let needed = connections as u64 + 64;
    (needed > limit).then(|| {
        format!(
            "{connections} connections need about {needed} open files but the limit is {limit}; \
             connections past it will fail (the hard limit can only be raised with privileges, e.g. ulimit -Hn)"
        )
    })
}

/// The open-files limit could not be raised.
#[derive(Debug, thiserror::Error)]
#[error("cannot raise the open-files limit (RLIMIT_NOFILE): {0}")]
pub struct LimitError(#[source] std::io::Error);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_limit_equals_the_hard_limit() {
        let raised = raise_nofile().expect("raise RLIMIT_NOFILE");
        let (soft, hard) = rlimit::Resource::NOFILE.get().expect("read RLIMIT_NOFILE");
        assert_eq!(raised, soft);
        assert_eq!(soft, hard);
        assert_eq!(nofile(), Some(soft));
    }

    #[test]
    fn warns_only_when_connections_exceed_the_limit() {
        let limit = nofile().expect("read RLIMIT_NOFILE");
        assert_eq!(connection_warning(10), None);
        let warning = connection_warning(limit as usize).expect("over the limit");
        assert!(warning.contains(&limit.to_string()), "{warning}");
    }
}
