//! Live counters shared by a scenario's tasks, and the once-a-second progress
//! line they feed on stderr.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::errors::ErrorTally;

/// Counters updated by a scenario's tasks as things happen.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections currently open.
    pub connected: AtomicU64,
    /// Messages published (handed to the client).
    pub sent: AtomicU64,
    /// Publishes acknowledged (PUBACK or PUBCOMP).
    pub acked: AtomicU64,
    /// Distinct messages received.
    pub received: AtomicU64,
    /// Messages received more than once.
    pub duplicates: AtomicU64,
    /// Connections closed by the broker while held.
    pub dropped: AtomicU64,
    /// Errors, by kind.
    pub errors: ErrorTally,
}

/// Counts one connection in [`Counters::connected`] for as long as it lives.
#[derive(Debug)]
pub struct OpenConnection<'a>(&'a AtomicU64);

impl<'a> OpenConnection<'a> {
    /// Counts a newly opened connection.
    pub fn new(counters: &'a Counters) -> OpenConnection<'a> {
        counters.connected.fetch_add(1, Ordering::Relaxed);
        OpenConnection(&counters.connected)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A point-in-time copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Counters::connected`].
    pub connected: u64,
    /// See [`Counters::sent`].
    pub sent: u64,
    /// See [`Counters::acked`].
    pub acked: u64,
    /// See [`Counters::received`].
    pub received: u64,
    /// See [`Counters::dropped`].
    pub dropped: u64,
    /// Total errors.
    pub errors: u64,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connected: self.connected.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            errors: self.errors.total(),
        }
    }
}

/// Which fields the progress line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Connection load: open connections and drops.
    Connections,
    /// Message load: sent, acked and received, with per-second rates.
    Messages,
}

/// Formats one progress line from two snapshots one interval apart.
pub fn line(
    style: Style,
    elapsed: Duration,
    now: Snapshot,
    before: Snapshot,
    interval: Duration,
) -> String {
    let secs = interval.as_secs_f64().max(1e-9);
    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
    match style {
        Style::Connections => format!(
            "[{:>4}s] connected {} (+{:.0}/s) | dropped {} | errors {}",
            elapsed.as_secs(),
            now.connected,
            rate(now.connected, before.connected),
            now.dropped,
            now.errors
        ),
        Style::Messages => format!(
            "[{:>4}s] connected {} | sent {} ({:.0}/s) | acked {} | received {} ({:.0}/s) | errors {}",
            elapsed.as_secs(),
            now.connected,
            now.sent,
            rate(now.sent, before.sent),
            now.acked,
            now.received,
            rate(now.received, before.received),
            now.errors
        ),
    }
}

/// A running progress printer; stop it with [`Progress::stop`].
pub struct Progress {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Prints a progress line to stderr every second until stopped; does
    /// nothing if `enabled` is false.
    pub fn start(counters: Arc<Counters>, style: Style, enabled: bool) -> Progress {
        let stop = CancellationToken::new();
        let task = enabled.then(|| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let interval = Duration::from_secs(1);
                let started = Instant::now();
                let mut ticker =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                let mut before = counters.snapshot();
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = ticker.tick() => {
                            let now = counters.snapshot();
                            eprintln!("{}", line(style, started.elapsed(), now, before, interval));
                            before = now;
                        }
                    }
                }
            })
        });
        Progress { stop, task }
    }

    /// Stops printing and waits for the printer to finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_line_shows_totals_and_rates() {
        let before = Snapshot {
            sent: 1000,
            received: 900,
            ..Snapshot::default()
        };
        let now = Snapshot {
            connected: 4,
            sent: 3000,
            acked: 2900,
            received: 2900,
            errors: 1,
            ..Snapshot::default()
        };
        let text = line(
            Style::Messages,
            Duration::from_secs(3),
            now,
            before,
            Duration::from_secs(1),
        );
        assert_eq!(
            text,
            "[   3s] connected 4 | sent 3000 (2000/s) | acked 2900 | received 2900 (2000/s) | errors 1"
        );
    }

    #[test]
    fn open_connections_are_counted_while_alive() {
        let counters = Counters::default();
        let a = OpenConnection::new(&counters);
        let b = OpenConnection::new(&counters);
        assert_eq!(counters.snapshot().connected, 2);
        drop(a);
        assert_eq!(counters.snapshot().connected, 1);
        drop(b);
        assert_eq!(counters.snapshot().connected, 0);
    }

    #[test]
    fn connection_line_shows_growth() {
        let before = Snapshot {
            connected: 100,
            ..Snapshot::default()
        };
        let now = Snapshot {
            connected: 350,
            dropped: 2,
            ..Snapshot::default()
        };
        let text = line(
            Style::Connections,
            Duration::from_secs(12),
            now,
            before,
            Duration::from_secs(1),
        );
        assert_eq!(
            text,
            "[  12s] connected 350 (+250/s) | dropped 2 | errors 0"
        );
    }
}
