//! Sizes the process's file-descriptor table once, at start-up.
//!
//! Linux grows a process's descriptor table by doubling it when a new
//! descriptor does not fit (64, 128, …, 16,384 slots). In a process with
//! more than one thread every growth waits for an RCU grace period, and
//! every thread that opens a descriptor meanwhile (an accepted connection, a
//! socket, a file) waits with it. On the benchmark machine that was 10–17 ms
//! per growth, during which no connection was accepted: a connection storm
//! crosses every doubling, and its CONNACK tail was these stalls (at 512,
//! 1,024, 2,048, 4,096, 8,192 and 16,384 open descriptors; see
//! `docs/engine.md`). Single-threaded brokers never wait for them.
//!
//! The kernel never shrinks the table, so opening one descriptor at the
//! highest number wanted and closing it again grows the table once, up
//! front, and removes every later growth below that number. Done before the
//! runtime starts its threads, that one growth does not wait either. The
//! cost is the table: 8 bytes per slot, rounded up to a power of two
//! (256 KiB for 32,768 slots).

use std::io;

/// Grows the descriptor table so that descriptors below `wanted` (clamped
/// to the open-files limit, `RLIMIT_NOFILE`) never make it grow again.
/// Returns the number of descriptors covered (0 when `wanted` is 0 or the
/// limit is too low to matter).
///
/// # Errors
///
/// The descriptor could not be opened or duplicated; the table is then
/// left to grow on demand, as it would without this call.
#[cfg(unix)]
pub fn reserve(wanted: usize) -> io::Result<usize> {
    use rustix::process::{getrlimit, Resource};
    let limit = getrlimit(Resource::Nofile)
        .current
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let covered = wanted.min(limit);
    // The table starts with 64 slots: nothing to do below that.
    if covered <= 64 {
        return Ok(0);
    }
    let highest = i32::try_from(covered - 1).unwrap_or(i32::MAX);
    let anchor = std::fs::File::open("/dev/null")?;
    // The lowest free descriptor at or above `highest`: the table grows to
    // hold it, and dropping it closes it again.
    let placed = rustix::io::fcntl_dupfd_cloexec(&anchor, highest)?;
    drop(placed);
    Ok(covered)
}

/// Does nothing where descriptor tables are not Linux's.
#[cfg(not(unix))]
pub fn reserve(_wanted: usize) -> io::Result<usize> {
    Ok(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The table's size as the kernel reports it (`FDSize` in
    /// `/proc/self/status`).
    fn table_slots() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("FDSize in /proc/self/status")
    }

    #[test]
    fn the_table_is_grown_once_and_keeps_its_size() {
        let limit = usize::try_from(
            rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap_or(u64::MAX),
        )
        .unwrap_or(usize::MAX);
        let wanted = 4_000.min(limit);
        let covered = reserve(wanted).expect("reserve");
        assert_eq!(covered, wanted);
        assert!(
            table_slots() >= covered,
            "table of {} slots after reserving {covered}",
            table_slots()
        );
        // Nothing stays open at the reserved number.
        let next = std::fs::File::open("/dev/null").expect("open");
        use std::os::fd::AsRawFd;
        assert!((next.as_raw_fd() as usize) < covered / 2);
    }

    #[test]
    fn nothing_is_done_for_a_small_or_zero_reservation() {
        assert_eq!(reserve(0).expect("reserve 0"), 0);
        assert_eq!(reserve(64).expect("reserve 64"), 0);
    }

    #[test]
    fn a_reservation_is_clamped_to_the_open_files_limit() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        if let Some(limit) = limit.and_then(|l| usize::try_from(l).ok()) {
            assert_eq!(reserve(usize::MAX).expect("reserve max"), limit);
        }
    }
}
