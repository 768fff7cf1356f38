//! The queue of logged records between the history writer and the history
//! applier, built so that handing a record over wakes nobody.
//!
//! The writer logs ~800 records a second at 50,000 messages/s, and the
//! applier takes them in commits of up to [`APPLY_DELAY`]'s worth. A channel
//! would wake the applier for every record, and a woken thread often takes
//! the core from the writer there and then, in the middle of answering its
//! batch. Here the writer only wakes the applier when it matters:
//!
//! - the applier is idle, waiting for a first record;
//! - [`MAX_RECORDS_PER_COMMIT`] records are waiting;
//! - a read waits for the applier ([`RecordHandoff::hurry`]);
//! - the queue closes.
//!
//! Otherwise the applier sleeps until its gathering time is up. At most
//! [`APPLY_QUEUE`] records wait; beyond that the writer waits for room
//! (backpressure).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::history_applier::LoggedRecord;

/// How many logged records may wait for the applier before the writer blocks.
pub const APPLY_QUEUE: usize = 256;

/// The most logged records one applier commit takes.
pub const MAX_RECORDS_PER_COMMIT: usize = 256;

/// How long the applier gathers records for one commit, unless a read is
/// waiting for them.
pub const APPLY_DELAY: Duration = Duration::from_millis(20);

/// The records waiting for the applier, and who waits for whom.
pub(super) struct RecordHandoff {
    /// How long the applier gathers records for one commit.
    gather: Duration,
    state: Mutex<Queued>,
    /// The applier waits here for records, or for its gathering to end.
    arrived: Condvar,
    /// The writer waits here for room.
    room: Condvar,
}

/// What the handoff holds.
#[derive(Default)]
struct Queued {
    records: VecDeque<LoggedRecord>,
    /// The writer will hand over nothing more.
    closed: bool,
    /// The applier takes nothing more (it stopped, or failed).
    applier_gone: bool,
    /// The applier is waiting for a first record.
    applier_idle: bool,
}

impl RecordHandoff {
    /// An empty handoff whose applier gathers records for `gather` per
    /// commit ([`APPLY_DELAY`] in the store).
    pub(super) fn new(gather: Duration) -> RecordHandoff {
        RecordHandoff {
            gather,
            state: Mutex::default(),
            arrived: Condvar::new(),
            room: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, Queued> {
        // Plain values and a queue, consistent after any panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands `record` to the applier, waiting while [`APPLY_QUEUE`] records
    /// wait already. `false` (and the record dropped) if the applier is gone.
    pub(super) fn push(&self, record: LoggedRecord) -> bool {
        let mut state = self.state();
        while state.records.len() >= APPLY_QUEUE && !state.applier_gone {
            state = self
                .room
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if state.applier_gone {
            return false;
        }
        state.records.push_back(record);
        if state.applier_idle || state.records.len() >= MAX_RECORDS_PER_COMMIT {
            state.applier_idle = false;
            self.arrived.notify_one();
        }
        true
    }

    /// No more records will come: the applier takes what is left, then stops.
    pub(super) fn close(&self) {
        self.state().closed = true;
        self.arrived.notify_one();
    }

    /// A read has started waiting for the applier (the caller has made
    /// `next_commit`'s `readers_waiting` true already): the applier stops
    /// gathering and commits what it has at once. Taking the lock to notify
    /// means an applier that had just found no reader waiting is already
    /// asleep and gets the wake-up.
    pub(super) fn hurry(&self) {
        let _state = self.state();
        self.arrived.notify_one();
    }

    /// The applier takes nothing more; a writer waiting for room stops
    /// waiting.
    pub(super) fn applier_gone(&self) {
        self.state().applier_gone = true;
        self.room.notify_all();
    }

    /// The records for the applier's next commit: once one is there, those
    /// that arrive within the gathering time of the first taken, up to
    /// [`MAX_RECORDS_PER_COMMIT`]; fewer if `readers_waiting` (a read
    /// waits for the applier, see [`RecordHandoff::hurry`]) or the queue
    /// closes. `None` once the queue is closed and empty.
    pub(super) fn next_commit(
        &self,
        readers_waiting: impl Fn() -> bool,
    ) -> Option<Vec<LoggedRecord>> {
        let mut state = self.state();
        while state.records.is_empty() {
            if state.closed {
                return None;
            }
            state.applier_idle = true;
            state = self
                .arrived
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.applier_idle = false;
        let deadline = Instant::now() + self.gather;
        loop {
            let now = Instant::now();
            if state.records.len() >= MAX_RECORDS_PER_COMMIT
                || state.closed
                || readers_waiting()
                || now >= deadline
            {
                break;
            }
            state = self
                .arrived
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let take = state.records.len().min(MAX_RECORDS_PER_COMMIT);
        let records = state.records.drain(..take).collect();
        drop(state);
        self.room.notify_one();
        Some(records)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::sync::Arc;

    use super::*;

    /// Longer than any test may take: an applier that waits it out hangs.
    const FOREVER: Duration = Duration::from_secs(3600);

    /// How long a test waits for what must come at once.
    const PATIENCE: Duration = Duration::from_secs(10);

    fn record(end: u64) -> LoggedRecord {
        LoggedRecord {
            payload: Vec::new(),
            end,
            spent: Vec::new(),
        }
    }

    /// The ends of the applier's next commit, taken on a thread of its own;
    /// `None` if it did not come within [`PATIENCE`].
    fn next_commit_soon(handoff: &Arc<RecordHandoff>) -> Option<Option<Vec<u64>>> {
        next_commit_soon_with(handoff, || false)
    }

    /// [`next_commit_soon`] with `readers_waiting` telling whether a read waits.
    fn next_commit_soon_with(
        handoff: &Arc<RecordHandoff>,
        readers_waiting: impl Fn() -> bool + Send + 'static,
    ) -> Option<Option<Vec<u64>>> {
        let (done, commit) = mpsc::channel();
        let handoff = Arc::clone(handoff);
        std::thread::spawn(move || {
            let taken = handoff.next_commit(readers_waiting);
            let _ = done.send(taken.map(|records| records.iter().map(|r| r.end).collect()));
        });
        commit.recv_timeout(PATIENCE).ok()
    }

    #[test]
    fn records_wait_for_the_gathering_time_and_are_taken_in_order() {
        let handoff = Arc::new(RecordHandoff::new(Duration::from_millis(1)));
        for end in 1..=3 {
            assert!(handoff.push(record(end)));
        }
        assert_eq!(next_commit_soon(&handoff), Some(Some(vec![1, 2, 3])));
    }

    #[test]
    fn an_idle_applier_is_woken_by_the_first_record() {
        let handoff = Arc::new(RecordHandoff::new(Duration::ZERO));
        let applier = {
            let handoff = Arc::clone(&handoff);
            std::thread::spawn(move || handoff.next_commit(|| false))
        };
        assert!(handoff.push(record(7)));
        let taken = applier.join().expect("applier thread").expect("a commit");
        assert_eq!(taken.iter().map(|r| r.end).collect::<Vec<_>>(), vec![7]);
    }

    #[test]
    fn a_waiting_read_ends_the_gathering_at_once() {
        let handoff = Arc::new(RecordHandoff::new(FOREVER));
        let reading = Arc::new(AtomicBool::new(true));
        let waiting = |reading: &Arc<AtomicBool>| {
            let reading = Arc::clone(reading);
            move || reading.load(Ordering::Acquire)
        };
        assert!(handoff.push(record(1)));
        assert_eq!(
            next_commit_soon_with(&handoff, waiting(&reading)),
            Some(Some(vec![1]))
        );
        // And a read that starts waiting while the applier gathers.
        reading.store(false, Ordering::Release);
        assert!(handoff.push(record(2)));
        let (done, commit) = mpsc::channel();
        let applier = {
            let (handoff, waiting) = (Arc::clone(&handoff), waiting(&reading));
            std::thread::spawn(move || {
                let _ = done.send(handoff.next_commit(waiting));
            })
        };
        reading.store(true, Ordering::Release);
        handoff.hurry();
        let taken = commit.recv_timeout(PATIENCE).expect("hurried commit");
        assert_eq!(taken.expect("a commit")[0].end, 2);
        applier.join().expect("applier thread");
    }

    #[test]
    fn a_full_commit_is_taken_at_once_and_closing_hands_over_the_rest() {
        let handoff = Arc::new(RecordHandoff::new(FOREVER));
        let full = MAX_RECORDS_PER_COMMIT as u64;
        for end in 0..full {
            assert!(handoff.push(record(end)));
        }
        assert_eq!(
            next_commit_soon(&handoff),
            Some(Some((0..full).collect())),
            "a full commit comes at once"
        );
        for end in full..full + 5 {
            assert!(handoff.push(record(end)));
        }
        handoff.close();
        assert_eq!(
            next_commit_soon(&handoff),
            Some(Some((full..full + 5).collect())),
            "closing hands over the rest at once"
        );
        assert_eq!(next_commit_soon(&handoff), Some(None), "closed and empty");
    }

    #[test]
    fn a_writer_waiting_for_room_stops_when_the_applier_is_gone() {
        let handoff = Arc::new(RecordHandoff::new(FOREVER));
        for end in 0..APPLY_QUEUE as u64 {
            assert!(handoff.push(record(end)));
        }
        let writer = {
            let handoff = Arc::clone(&handoff);
            std::thread::spawn(move || handoff.push(record(u64::MAX)))
        };
        handoff.applier_gone();
        assert!(
            !writer.join().expect("writer thread"),
            "a record for a gone applier is refused"
        );
    }
}
