//! The history applier: the thread that writes logged history batches into
//! the database, off the path of the requests they answer.
//!
//! A request's answer needs only its batch's record to be durable in the
//! history log (`group_commit`). Writing the same rows into redb's tables
//! takes far longer (page cache lookups, copy-on-write pages), and so do the
//! periodic checkpoints that make the database durable; this thread does
//! both, behind the writer, so neither holds up an acknowledgement:
//!
//! 1. it gathers logged records for up to [`APPLY_DELAY`] after the first
//!    one arrives (at most
//!    [`MAX_RECORDS_PER_COMMIT`](super::history_handoff::MAX_RECORDS_PER_COMMIT),
//!    and at once when a read is waiting for them; the writer hands them
//!    over without waking it, see `history_handoff`), then replays their
//!    entries into one write transaction, exactly as recovery replays the
//!    log after a crash. A
//!    commit's cost grows with the pages it touches, which neighbouring
//!    records share (the tables' upper levels, a conversation's last leaf),
//!    so fewer, larger commits cost far less per message;
//! 2. it records the log position it reached and commits with
//!    [`redb::Durability::None`];
//! 3. once [`HistoryCheckpoint::interval`] has passed or
//!    [`HistoryCheckpoint::bytes`] of log were applied since the last one, it
//!    makes a durable commit (a checkpoint), after which the log up to that
//!    position may be deleted;
//! 4. it publishes the position reached ([`ApplyProgress`]).
//!
//! Reads of the history and cursor tables wait for the applier to reach the
//! position that was durable when they began
//! ([`ApplyProgress::wait_applied`]): whatever was acknowledged before a read
//! began is in what it reads.
//!
//! At most [`APPLY_QUEUE`](super::history_handoff::APPLY_QUEUE) records
//! wait for the applier; beyond that the writer blocks (backpressure), which
//! also bounds the memory the writer's pending rows take.
//!
//! If applying fails, the database no longer holds what the log does: the
//! applier stops, and from then on the writer refuses every request and
//! reads fail with [`StoreError::Unavailable`] until the store is reopened,
//! which replays the log.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::{Database, Durability};

use super::group_commit::HistoryCheckpoint;
use super::history_handoff::{RecordHandoff, APPLY_DELAY};
use super::history_recovery::{record_position, replay_records};
use super::Failure;
use crate::StoreError;

/// The applier thread's nice value: it yields the CPU to the threads that
/// answer requests (Tokio's workers, the history writer), and falls behind
/// them when the machine is busy, which makes its commits larger and cheaper
/// per record. The queue bound keeps it from falling behind too far.
pub const APPLIER_NICE: i32 = 10;

/// One logged record for the applier.
pub(super) struct LoggedRecord {
    /// The record's payload, as the log holds it.
    pub(super) payload: Vec<u8>,
    /// The log position after it.
    pub(super) end: u64,
    /// The requests it answered, freed by the applier rather than on the
    /// writer's path.
    pub(super) spent: Vec<crate::AppendRequest>,
}

/// Where the applier stands, shared by the writer, the applier and readers.
pub(super) struct ApplyProgress {
    /// The log position every acknowledged batch lies before.
    durable: AtomicU64,
    /// Reads waiting for the applier.
    readers: AtomicUsize,
    state: Mutex<Applied>,
    changed: Condvar,
    /// The logged records on their way from the writer to the applier.
    handoff: RecordHandoff,
}

/// What the applier has done so far.
struct Applied {
    /// The log position the database holds every batch up to.
    applied: u64,
    /// The log position of the last checkpoint: the durable database holds
    /// every batch up to it, and the log before it may be deleted.
    checkpointed: u64,
    /// Why the applier stopped, if it did.
    failed: Option<String>,
}

impl ApplyProgress {
    /// Progress of a database that holds the history up to log position `at`.
    pub(super) fn new(at: u64) -> ApplyProgress {
        ApplyProgress {
            durable: AtomicU64::new(at),
            readers: AtomicUsize::new(0),
            state: Mutex::new(Applied {
                applied: at,
                checkpointed: at,
                failed: None,
            }),
            changed: Condvar::new(),
            handoff: RecordHandoff::new(APPLY_DELAY),
        }
    }

    /// The queue the writer hands logged records to the applier through.
    pub(super) fn handoff(&self) -> &RecordHandoff {
        &self.handoff
    }

    /// The writer made the log durable up to `end`.
    pub(super) fn logged(&self, end: u64) {
        self.durable.store(end, Ordering::Release);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Applied> {
        // The state is three plain values, consistent after any panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until the database holds every batch that was durable when it
    /// was called.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the applier has stopped after a failure.
    pub(super) fn wait_applied(&self) -> Result<(), StoreError> {
        let target = self.durable.load(Ordering::Acquire);
        let mut state = self.state();
        let mut counted = false;
        let outcome = loop {
            if let Some(why) = &state.failed {
                break Err(StoreError::Unavailable(why.clone()));
            }
            if state.applied >= target {
                break Ok(());
            }
            if !counted {
                // The applier commits at once rather than gathering more.
                self.readers.fetch_add(1, Ordering::AcqRel);
                self.handoff.hurry();
                counted = true;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        };
        if counted {
            self.readers.fetch_sub(1, Ordering::AcqRel);
        }
        outcome
    }

    /// Whether a read is waiting for the applier.
    fn readers_waiting(&self) -> bool {
        self.readers.load(Ordering::Acquire) > 0
    }

    /// The position of the last checkpoint, and why the applier stopped if it did.
    pub(super) fn checkpointed(&self) -> (u64, Option<String>) {
        let state = self.state();
        (state.checkpointed, state.failed.clone())
    }

    fn publish(&self, applied: u64, checkpointed: u64) {
        let mut state = self.state();
        state.applied = applied;
        state.checkpointed = checkpointed;
        drop(state);
        self.changed.notify_all();
    }

    fn fail(&self, why: String) {
        self.state().failed = Some(why);
        self.changed.notify_all();
    }
}

/// The applier thread's state.
struct Applier {
    db: Arc<Database>,
    progress: Arc<ApplyProgress>,
    checkpoint: HistoryCheckpoint,
    applied: u64,
    checkpointed: u64,
    last_checkpoint: Instant,
    checkpoints: Arc<AtomicU64>,
}

/// Starts the applier for `db`, which holds the history up to log position
/// `at`; the writer hands it logged records through `progress`'s
/// [`ApplyProgress::handoff`]. Returns its thread. `checkpoints` counts the
/// checkpoints it makes.
pub(super) fn start(
    db: Arc<Database>,
    at: u64,
    checkpoint: HistoryCheckpoint,
    progress: Arc<ApplyProgress>,
    checkpoints: Arc<AtomicU64>,
) -> Result<JoinHandle<()>, StoreError> {
    let mut applier = Applier {
        db,
        progress,
        checkpoint,
        applied: at,
        checkpointed: at,
        last_checkpoint: Instant::now(),
        checkpoints,
    };
    std::thread::Builder::new()
        .name("history-applier".to_owned())
        .spawn(move || {
            lower_priority();
            let progress = Arc::clone(&applier.progress);
            let _gone = Gone(&progress);
            applier.run();
        })
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot start the history applier thread: {e}"))
        })
}

/// Tells the writer the applier takes no more records when the applier's
/// thread ends, however it ends.
struct Gone<'a>(&'a ApplyProgress);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.handoff.applier_gone();
    }
}

/// Gives the calling thread (alone) the nice value [`APPLIER_NICE`]; a
/// failure only costs latency under load, so it is logged and ignored.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(error) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), APPLIER_NICE)
    {
        tracing::warn!(%error, "could not lower the history applier's priority");
    }
}

impl Applier {
    /// Applies records until the queue closes, then makes a last checkpoint.
    fn run(&mut self) {
        let progress = Arc::clone(&self.progress);
        while let Some(records) = progress.handoff.next_commit(|| progress.readers_waiting()) {
            if let Err(error) = self.apply(&records) {
                let why = format!(
                    "the history applier stopped after a failure ({error}); \
                     reopening the store recovers from the history log"
                );
                tracing::error!(%error, "history applier failed; history writes are refused");
                self.progress.fail(why);
                return;
            }
            if self.checkpoint_due() {
                self.checkpoint();
            }
            self.progress.publish(self.applied, self.checkpointed);
            // Freed here, at the applier's low priority.
            for record in records {
                drop(record.spent);
            }
        }
        if self.applied > self.checkpointed {
            self.checkpoint();
            self.progress.publish(self.applied, self.checkpointed);
        }
    }

    /// Writes `records` into the database in one non-durable commit.
    fn apply(&mut self, records: &[LoggedRecord]) -> Result<(), StoreError> {
        let Some(end) = records.last().map(|r| r.end) else {
            return Ok(());
        };
        let mut tx = self.db.begin_write().map_err(Failure::from)?;
        replay_records(&tx, records.iter().map(|r| r.payload.as_slice()), end)?;
        tx.set_durability(Durability::None).map_err(Failure::from)?;
        tx.commit().map_err(Failure::from)?;
        self.applied = end;
        Ok(())
    }

    /// Whether something was applied since the last checkpoint and it is
    /// time for the next one.
    fn checkpoint_due(&self) -> bool {
        let since = self.applied - self.checkpointed;
        since > 0
            && (since >= self.checkpoint.bytes
                || self.last_checkpoint.elapsed() >= self.checkpoint.interval)
    }

    /// Makes the database durable with a commit of its own. A failed
    /// checkpoint leaves the log as it is; the next one retries.
    fn checkpoint(&mut self) {
        let commit = || -> Result<(), Failure> {
            let mut tx = self.db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            record_position(&tx, self.applied)?;
            tx.commit()?;
            Ok(())
        };
        self.last_checkpoint = Instant::now();
        match commit() {
            Ok(()) => {
                self.checkpointed = self.applied;
                self.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure) => {
                let error = StoreError::from(failure);
                tracing::warn!(%error, "history checkpoint failed; the log keeps the batches");
            }
        }
    }
}
