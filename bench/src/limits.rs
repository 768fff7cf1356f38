//! Process resource limits: many connections need many file descriptors, so
//! the bench raises its soft `RLIMIT_NOFILE` to the hard limit at start-up.
//! Brokers started by the comparison runner inherit the raised limit.
//!
//! It also sizes its descriptor table up front: Linux doubles a process's
//! table as descriptors are opened, and in a multi-threaded process each
//! doubling stalls the thread opening a descriptor (and every other thread
//! opening one) for an RCU grace period, 10–17 ms on the benchmark machine.
//! A connection storm crosses every doubling, so without this the bench's
//! own stalls showed in the storm's latencies of whichever broker ran first.

/// Raises the soft open-files limit to the hard limit and returns the new
/// soft limit.
pub fn raise_nofile() -> Result<u64, LimitError> {
    rlimit::increase_nofile_limit(u64::MAX).map_err(LimitError)
}

/// Grows the descriptor table once, before the runtime starts its threads,
/// to hold `descriptors` (clamped to the soft open-files limit) by placing
/// one descriptor at the highest number and closing it; the kernel never
/// shrinks the table. Returns the number of descriptors covered.
pub fn presize_descriptor_table(descriptors: u64) -> std::io::Result<u64> {
    let covered = descriptors.min(nofile().unwrap_or(0));
    let Ok(highest) = i32::try_from(covered.saturating_sub(1)) else {
        return Ok(0);
    };
    if highest < 64 {
        return Ok(0);
    }
    let anchor = std::fs::File::open("/dev/null")?;
    drop(rustix::io::fcntl_dupfd_cloexec(&anchor, highest)?);
    Ok(covered)
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
    fn the_descriptor_table_is_presized_to_the_limit() {
        let limit = nofile().expect("open-files limit");
        let covered = presize_descriptor_table(u64::MAX).expect("presize");
        assert_eq!(covered, limit);
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let slots: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("FDSize");
        assert!(slots >= covered, "{slots} slots for {covered} descriptors");
    }

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
