//! Group commit for history appends: one writer thread turns every append that
//! is waiting at the same moment into a single batch, made durable by one
//! append to the history log (see `history_log`).
//!
//! Read and delivered cursor advances ride along: they are queued on the same
//! channel and made durable in the same batch, so moving a cursor costs no
//! sync of its own.
//!
//! Making a write durable costs a sync, which takes far longer than checking a
//! message, so syncing each append on its own caps the store at one append
//! per sync. Instead, `append` queues its request on a channel and awaits its
//! answer, and the writer thread loops:
//!
//! 1. it blocks until a request arrives, then takes every other request
//!    already queued, up to [`MAX_BATCH`] in all;
//! 2. it checks the requests in queue order against a read snapshot of the
//!    database plus the rows it logged that the database does not hold yet
//!    (`history_sequencer`, `history_pending`): each sees the seqs,
//!    idempotency entries and amends of the requests before it, so requests
//!    for the same conversation, and even retries of one another, come out
//!    exactly as if each had been stored on its own; every row a request
//!    changes goes into the batch's log record;
//! 3. it appends the record to the history log and syncs it (`fdatasync`):
//!    this is the batch's durability point, and it answers each request
//!    through its oneshot channel;
//! 4. it hands the record to the history applier (`history_applier`), which
//!    writes it into the database's tables behind the writer, with
//!    checkpoints, so no answer waits for redb. Reads wait for the applier to
//!    reach what was durable when they began, so nothing acknowledged is
//!    missing from a read, and nothing is visible before it is durable.
//!
//! After a crash, `history_recovery` replays what the log holds beyond the
//! database's last durable commit. Once the applier has checkpointed, the
//! writer deletes the log's segments the checkpoint covers; when it stops, it
//! waits for the applier's last checkpoint and empties the log, so a clean
//! shutdown leaves an empty log.
//!
//! Queueing and answering are separate steps ([`GroupCommitter::enqueue`]): a
//! request's place is fixed when it enters the channel, so one caller can queue
//! several requests back to back, have them committed in that order (in one
//! batch or in consecutive ones), and await their answers afterwards.
//!
//! A request that is refused on its own (an amend of a missing seq, a corrupt
//! row) is checked before anything of it is recorded, so it fails alone and
//! the rest of the batch commits. If reading the snapshot fails, every request
//! of the batch gets that error and none of it was logged. If appending the
//! record fails, or the applier fails, the log and the database may disagree,
//! so the writer refuses every later request with [`StoreError::Unavailable`]
//! until the store is reopened, which replays the log; the batch's requests
//! got an error and may or may not be stored, like any request that times
//! out, and retrying them is safe. A batch that changed nothing (only retries
//! and refusals) logs nothing.
//!
//! The writer and the applier each own a handle to the database. Dropping the
//! [`GroupCommitter`] (when the last [`EmbeddedStore`](super::EmbeddedStore)
//! clone goes) closes the channel; the writer answers whatever is still
//! queued, lets the applier finish and checkpoint, then exits, and the drop
//! waits for it, so the database file is closed by the time the store is gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, TableHandle};
use tokio::sync::oneshot;

use super::cursor_table::CursorTable;
use super::history_applier::{self, ApplyProgress, LoggedRecord};
use super::history_log::{HistoryLog, RecordBuilder};
use super::history_pending::PendingRows;
use super::history_sequencer::{Sequencer, Snapshot};
use super::{delivered, read_cursors, Failure};
use crate::{AppendRequest, Appended, PendingAppend, StoreError};

/// The most requests one commit takes; more wait for the next one.
pub const MAX_BATCH: usize = 1024;

/// How often, at most, the writer drops the pending rows the database has
/// caught up with.
const PRUNE_INTERVAL: Duration = Duration::from_millis(50);

/// How often the history applier makes the database itself durable (a
/// checkpoint), after which the log it covers is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCheckpoint {
    /// A checkpoint is due this long after the last one.
    pub interval: Duration,
    /// A checkpoint is due once this many bytes were logged since the last
    /// one; bounds the log's size and the time replaying it takes.
    pub bytes: u64,
}

impl Default for HistoryCheckpoint {
    fn default() -> Self {
        HistoryCheckpoint {
            interval: Duration::from_millis(200),
            bytes: 64 * 1024 * 1024,
        }
    }
}

/// Counters of the history writer's commits, for tests and diagnostics.
///
/// `requests / commits` is the average batch size. Both count only batches that
/// were committed, and keeping them costs relaxed atomic additions per commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Batches made durable (logged and committed) by the history writer
    /// since the store opened.
    pub commits: u64,
    /// Append requests answered from those commits (new messages, retries and
    /// refused requests alike).
    pub requests: u64,
    /// Checkpoints: durable commits of the database itself, each emptying the
    /// history log.
    pub checkpoints: u64,
    /// Bytes appended to the history log.
    pub log_bytes: u64,
}

/// A cursor to move forward (never back) in one of the cursor tables.
pub(super) struct CursorAdvance {
    /// The cursor table.
    pub(super) table: CursorTable,
    /// The first part of the cursor's key.
    pub(super) scope: String,
    /// The second part of the cursor's key.
    pub(super) name: String,
    /// Where the cursor moves to, unless it is already there or beyond.
    pub(super) seq: u64,
}

/// One queued write and where its answer goes.
enum Job {
    /// A history append.
    Append {
        request: AppendRequest,
        reply: oneshot::Sender<Result<Appended, StoreError>>,
    },
    /// A cursor advance; the answer is the cursor after it.
    Cursor {
        advance: CursorAdvance,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

/// The counters behind [`GroupCommitStats`], shared with the writer thread.
#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    requests: AtomicU64,
    /// Shared with the applier, which makes the checkpoints.
    checkpoints: Arc<AtomicU64>,
    log_bytes: AtomicU64,
}

/// The handle to the history writer thread.
pub(super) struct GroupCommitter {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    /// `None` only while dropping.
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    /// Where the applier stands, for reads to wait on.
    progress: Arc<ApplyProgress>,
    /// Held by a test to keep the writer from taking its next batch.
    #[cfg(test)]
    intake: Arc<std::sync::Mutex<()>>,
}

impl GroupCommitter {
    /// Starts the writer thread and the applier thread for `db`, logging to
    /// `log`, which must be positioned where `db` stands (see
    /// `history_recovery::recover`).
    pub(super) fn start(
        db: Arc<Database>,
        log: HistoryLog,
        checkpoint: HistoryCheckpoint,
    ) -> Result<GroupCommitter, StoreError> {
        let (jobs, queue) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let progress = Arc::new(ApplyProgress::new(log.end()));
        let applier = history_applier::start(
            Arc::clone(&db),
            log.end(),
            checkpoint,
            Arc::clone(&progress),
            Arc::clone(&counters.checkpoints),
        )?;
        #[cfg(test)]
        let intake = Arc::new(std::sync::Mutex::new(()));
        let writer_counters = Arc::clone(&counters);
        let writer_progress = Arc::clone(&progress);
        #[cfg(test)]
        let writer_intake = Arc::clone(&intake);
        let writer = std::thread::Builder::new()
            .name("history-writer".to_owned())
            .spawn(move || {
                let mut writer = Writer {
                    db: &db,
                    log,
                    record: RecordBuilder::default(),
                    pending: PendingRows::default(),
                    applied: 0,
                    last_prune: Instant::now(),
                    checkpointed: 0,
                    applier: Some(applier),
                    progress: &writer_progress,
                    failed: None,
                    counters: &writer_counters,
                    #[cfg(test)]
                    intake: writer_intake,
                };
                writer.run(&queue);
            })
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the history writer thread: {e}"))
            })?;
        Ok(GroupCommitter {
            jobs: Some(jobs),
            writer: Some(writer),
            counters,
            progress,
            #[cfg(test)]
            intake,
        })
    }

    /// Waits until the database holds every history batch acknowledged so
    /// far; reads of the history and cursor tables call it first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the history applier has stopped after a failure.
    pub(super) fn wait_applied(&self) -> Result<(), StoreError> {
        self.progress.wait_applied()
    }

    /// Keeps the writer from taking its next batch while the guard lives.
    #[cfg(test)]
    pub(super) fn hold_intake(&self) -> std::sync::MutexGuard<'_, ()> {
        self.intake.lock().expect("intake lock")
    }

    /// Queues `request` for the next commit and waits until it is durable.
    pub(super) async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        self.enqueue(request).await
    }

    /// Queues `request` behind every request queued before it and returns at
    /// once; the answer resolves when the commit holding it is durable.
    pub(super) fn enqueue(&self, request: AppendRequest) -> PendingAppend {
        let (reply, answer) = oneshot::channel();
        let queued = self.queue(Job::Append { request, reply });
        Box::pin(async move {
            if !queued {
                return Err(writer_stopped());
            }
            answer.await.map_err(|_| writer_stopped())?
        })
    }

    /// Moves a cursor forward in the next commit and waits until it is
    /// durable; answers the cursor after the call.
    pub(super) async fn advance_cursor(&self, advance: CursorAdvance) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        if !self.queue(Job::Cursor { advance, reply }) {
            return Err(writer_stopped());
        }
        answer.await.map_err(|_| writer_stopped())?
    }

    /// Puts `job` on the writer's queue; `false` if the writer has stopped.
    fn queue(&self, job: Job) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok())
    }

    /// The writer's counters so far.
    pub(super) fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
            checkpoints: self.counters.checkpoints.load(Ordering::Relaxed),
            log_bytes: self.counters.log_bytes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for GroupCommitter {
    /// Closes the queue and waits for the writer to answer what is left and exit.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the history writer thread panicked");
            }
        }
    }
}

/// The error for an append the writer can no longer answer.
fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the history writer has stopped".to_owned())
}

/// The cursor table called `name`, if there is one (for replaying the log).
pub(super) fn cursor_table_named(name: &str) -> Option<CursorTable> {
    [read_cursors::READ_CURSORS, delivered::DELIVERED]
        .into_iter()
        .find(|table| table.name() == name)
}

/// The writer thread's state.
struct Writer<'a> {
    db: &'a Database,
    log: HistoryLog,
    /// The record of the batch being checked (its buffer is reused).
    record: RecordBuilder,
    /// Rows logged that the database did not hold at the last snapshot.
    pending: PendingRows,
    /// The log position the database held every batch up to at the last prune.
    applied: u64,
    /// When the pending rows were last pruned.
    last_prune: Instant,
    /// The position of the applier's last checkpoint the log has caught up with.
    checkpointed: u64,
    /// The applier thread; `None` once joined.
    applier: Option<JoinHandle<()>>,
    progress: &'a ApplyProgress,
    /// Why the writer refuses every request, once logging a batch or
    /// applying one has failed.
    failed: Option<String>,
    counters: &'a Counters,
    #[cfg(test)]
    intake: Arc<std::sync::Mutex<()>>,
}

/// Why a batch failed.
enum BatchFailure {
    /// Before its record was logged: nothing of it is stored anywhere.
    Unlogged(Failure),
    /// Logging it: the log's tail is unknown, so nothing more may be written.
    Logged(StoreError),
}

impl Writer<'_> {
    /// One batch per loop, until the queue closes; then lets the applier
    /// finish and empties the log.
    fn run(&mut self, queue: &mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            #[cfg(test)]
            let intake = Arc::clone(&self.intake);
            #[cfg(test)]
            let _held = intake.lock();
            self.follow_applier();
            if let Some(why) = &self.failed {
                let error = StoreError::Unavailable(why.clone());
                first.fail(error.clone());
                for job in queue.try_iter() {
                    job.fail(error.clone());
                }
                continue;
            }
            let mut batch = vec![first];
            batch.extend(queue.try_iter().take(MAX_BATCH - 1));
            match self.log_batch(&batch) {
                Ok((outcomes, logged)) => {
                    if logged {
                        self.counters.commits.fetch_add(1, Ordering::Relaxed);
                        self.counters
                            .requests
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                    let spent = answer(batch, outcomes);
                    if logged {
                        self.hand_to_applier(spent);
                    }
                }
                Err(BatchFailure::Unlogged(failure)) => {
                    let error = StoreError::from(failure);
                    tracing::error!(%error, requests = batch.len(), "history batch failed");
                    for job in batch {
                        job.fail(error.clone());
                    }
                }
                Err(BatchFailure::Logged(error)) => {
                    tracing::error!(
                        %error,
                        requests = batch.len(),
                        "history batch failed while being logged; \
                         history writes are refused until the store is reopened"
                    );
                    self.failed = Some(format!(
                        "the history writer stopped after a failure ({error}); \
                         reopening the store recovers from the history log"
                    ));
                    for job in batch {
                        job.fail(error.clone());
                    }
                }
            }
        }
        self.stop_applier();
    }

    /// Takes in what the applier did since the last batch: deletes the log
    /// segments its checkpoints cover, and stops on its failure.
    fn follow_applier(&mut self) {
        let (checkpointed, failed) = self.progress.checkpointed();
        if let Some(why) = failed {
            self.failed.get_or_insert(why);
            return;
        }
        if checkpointed > self.checkpointed {
            self.checkpointed = checkpointed;
            if let Err(error) = self.log.checkpointed_up_to(checkpointed) {
                // The segments stay until the next checkpoint; recovery skips
                // what the database covers.
                tracing::warn!(%error, "could not delete history log segments");
            }
        }
    }

    /// Hands the batch just logged to the applier, waiting while its queue
    /// is full; its answered requests go along, to be freed there.
    fn hand_to_applier(&mut self, spent: Vec<AppendRequest>) {
        let record = LoggedRecord {
            payload: self.record.payload().to_vec(),
            end: self.log.end(),
            spent,
        };
        if !self.progress.handoff().push(record) {
            // The applier stopped: it has recorded why, which the next batch reads.
            self.failed.get_or_insert_with(|| {
                "the history applier has stopped; reopening the store recovers \
                 from the history log"
                    .to_owned()
            });
        }
    }

    /// Closes the applier's queue, waits for its last checkpoint, and
    /// empties the log if that covers all of it.
    fn stop_applier(&mut self) {
        self.progress.handoff().close();
        if let Some(applier) = self.applier.take() {
            if applier.join().is_err() {
                tracing::error!("the history applier thread panicked");
            }
        }
        let (checkpointed, failed) = self.progress.checkpointed();
        if failed.is_none() && self.failed.is_none() && checkpointed >= self.log.end() {
            if let Err(error) = self.log.checkpointed() {
                tracing::warn!(%error, "could not delete history log segments");
            }
        }
    }

    /// Checks `jobs` in order against a fresh snapshot and the pending rows;
    /// if anything changed, logs the batch's record. Returns each job's
    /// outcome and whether a record was logged.
    fn log_batch(&mut self, jobs: &[Job]) -> Result<(Vec<Outcome>, bool), BatchFailure> {
        let unlogged = |e: redb::Error| BatchFailure::Unlogged(Failure::from(e));
        let mut snapshot = Snapshot::open(self.db).map_err(unlogged)?;
        // Pending rows are never older than the snapshot's (each key holds
        // the newest logged value), so pruning only bounds memory: it runs
        // at most every PRUNE_INTERVAL, not on every batch.
        if snapshot.position() > self.applied && self.last_prune.elapsed() >= PRUNE_INTERVAL {
            self.applied = snapshot.position();
            self.pending.prune(self.applied);
            self.last_prune = Instant::now();
        }
        self.record.clear();
        let mut sequencer = Sequencer::new(&mut snapshot, &self.pending, jobs.len());
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            let outcome = match job {
                Job::Append { request, .. } => Outcome::Append(
                    sequencer
                        .append(request, &mut self.record)
                        .map_err(unlogged)?,
                ),
                Job::Cursor { advance, .. } => Outcome::Cursor(
                    sequencer
                        .advance_cursor(
                            advance.table,
                            &advance.scope,
                            &advance.name,
                            advance.seq,
                            &mut self.record,
                        )
                        .map_err(unlogged)?,
                ),
            };
            outcomes.push(outcome);
        }
        let rows = sequencer.finish();
        if self.record.entries() == 0 {
            return Ok((outcomes, false));
        }
        let start = self.log.end();
        let end = self
            .log
            .append(&mut self.record)
            .map_err(|e| BatchFailure::Logged(e.into()))?;
        self.counters
            .log_bytes
            .fetch_add(end - start, Ordering::Relaxed);
        self.pending.merge(rows, start);
        self.progress.logged(end);
        Ok((outcomes, true))
    }
}

/// Answers each job of a batch with its outcome; returns the append
/// requests, which the caller frees elsewhere (they were allocated by other
/// threads, and freeing them is not this thread's job).
fn answer(batch: Vec<Job>, outcomes: Vec<Outcome>) -> Vec<AppendRequest> {
    let mut spent = Vec::with_capacity(batch.len());
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        // The caller may have given up waiting; the write stands regardless.
        match (job, outcome) {
            (Job::Append { reply, request }, Outcome::Append(outcome)) => {
                let _ = reply.send(outcome);
                spent.push(request);
            }
            (Job::Cursor { reply, .. }, Outcome::Cursor(cursor)) => {
                let _ = reply.send(Ok(cursor));
            }
            (job, _) => job.fail(writer_stopped()),
        }
    }
    spent
}

impl Job {
    /// Answers the job with `error`.
    fn fail(self, error: StoreError) {
        match self {
            Job::Append { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Job::Cursor { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// What checking one job gave.
enum Outcome {
    /// An append's own outcome.
    Append(Result<Appended, StoreError>),
    /// The cursor after an advance.
    Cursor(u64),
}

#[cfg(test)]
mod tests {
    //! These tests hold the writer's intake while they queue appends, so
    //! the writer cannot start a batch until every request is queued: what ends up
    //! in one commit is then fixed, not a matter of timing.

    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Waker};

    use super::*;
    use crate::embedded::EmbeddedStore;
    use crate::{Amend, HistoryStore};

    type PendingAppend<'a> =
        Pin<Box<dyn Future<Output = Result<Appended, StoreError>> + Send + 'a>>;

    fn request(
        conversation: &str,
        sender: &str,
        client_message_id: &str,
        payload: &[u8],
    ) -> AppendRequest {
        AppendRequest {
            conversation_id: conversation.to_owned(),
            sender: sender.to_owned(),
            client_message_id: client_message_id.to_owned(),
            message_id: rand::random(),
            server_time_ms: 1_700_000_000_000,
            payload: payload.to_vec(),
            amend: None,
        }
    }

    fn amend(
        conversation: &str,
        client_message_id: &str,
        target_seq: u64,
        payload: &[u8],
    ) -> AppendRequest {
        AppendRequest {
            amend: Some(Amend {
                target_seq,
                payload: payload.to_vec(),
            }),
            ..request(conversation, "alice", client_message_id, b"edit")
        }
    }

    /// Queues `requests` while the intake is held (checking that none can
    /// finish meanwhile), then releases the lock and awaits every outcome.
    async fn append_as_one_queue(
        store: &EmbeddedStore,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Appended, StoreError>> {
        let lock = store.inner.committer.hold_intake();
        let mut pending: Vec<PendingAppend<'_>> =
            requests.into_iter().map(|r| store.append(r)).collect();
        let mut cx = Context::from_waker(Waker::noop());
        for append in &mut pending {
            // The first poll queues the request; the answer needs a batch, which needs the intake.
            assert!(
                append.as_mut().poll(&mut cx).is_pending(),
                "no append may finish while the intake is held"
            );
        }
        drop(lock);
        let mut outcomes = Vec::with_capacity(pending.len());
        for append in pending {
            outcomes.push(append.await);
        }
        outcomes
    }

    fn commits_and_requests(store: &EmbeddedStore) -> (u64, u64) {
        let stats = store.group_commit_stats();
        (stats.commits, stats.requests)
    }

    fn open() -> (EmbeddedStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        (store, dir)
    }

    #[tokio::test]
    async fn queued_appends_commit_together_as_if_one_by_one() {
        let (store, _dir) = open();
        assert_eq!(store.group_commit_stats(), GroupCommitStats::default());
        let first = request("a", "alice", "a1", b"first");
        let requests = vec![
            first.clone(),
            request("a", "bob", "b1", b"typo"),
            request("a", "alice", "a1", b"retry of the first"),
            amend("a", "bad", 9, b"no such message"),
            amend("a", "e1", 2, b"fixed"),
            request("b", "alice", "a1", b"other conversation"),
            request("a", "alice", "bad", b"reuses the refused id"),
        ];
        let outcomes = append_as_one_queue(&store, requests).await;

        let seqs: Vec<Result<(u64, bool), String>> = outcomes
            .iter()
            .map(|o| match o {
                Ok(appended) => Ok((appended.seq, appended.duplicate)),
                Err(e) => Err(format!("{e:?}")),
            })
            .collect();
        assert_eq!(seqs[0], Ok((1, false)));
        assert_eq!(seqs[1], Ok((2, false)));
        assert_eq!(
            seqs[2],
            Ok((1, true)),
            "a retry within the batch is a duplicate"
        );
        assert!(
            matches!(outcomes[3], Err(StoreError::NotFound(_))),
            "the bad amend fails alone: {:?}",
            outcomes[3]
        );
        assert_eq!(
            seqs[4],
            Ok((3, false)),
            "an amend may target a message of its own batch"
        );
        assert_eq!(
            seqs[5],
            Ok((1, false)),
            "other conversations count on their own"
        );
        assert_eq!(
            seqs[6],
            Ok((4, false)),
            "a refused request claims no client message id"
        );
        let retry = outcomes[2].as_ref().expect("retry");
        assert_eq!(
            (retry.message_id, retry.server_time_ms),
            (first.message_id, first.server_time_ms)
        );

        assert_eq!(
            commits_and_requests(&store),
            (1, 7),
            "the whole queue must take one commit"
        );
        let amended = store.get("a", 2).await.expect("get").expect("message 2");
        assert_eq!(amended.payload, b"fixed");
        assert_eq!(store.last_seq("a").await.expect("last_seq"), 4);
        assert_eq!(store.last_seq("b").await.expect("last_seq"), 1);
    }

    #[tokio::test]
    async fn a_queue_longer_than_a_batch_takes_more_commits() {
        let (store, _dir) = open();
        let extra = 5;
        let requests = (0..MAX_BATCH + extra)
            .map(|i| request("c", "alice", &format!("m{i}"), b"x"))
            .collect();
        let outcomes = append_as_one_queue(&store, requests).await;
        for (i, outcome) in outcomes.iter().enumerate() {
            let appended = outcome.as_ref().expect("every append succeeds");
            assert_eq!(appended.seq, i as u64 + 1, "seqs follow queue order");
        }
        assert_eq!(
            commits_and_requests(&store),
            (2, (MAX_BATCH + extra) as u64),
            "a full batch, then the rest"
        );
    }

    #[tokio::test]
    async fn a_batch_that_writes_nothing_is_not_committed() {
        let (store, _dir) = open();
        let original = request("d", "alice", "once", b"x");
        store.append(original.clone()).await.expect("first append");
        let requests = vec![
            original.clone(),
            original.clone(),
            amend("d", "bad", 7, b"y"),
        ];
        let outcomes = append_as_one_queue(&store, requests).await;
        assert!(outcomes[0]
            .as_ref()
            .is_ok_and(|a| a.duplicate && a.seq == 1));
        assert!(outcomes[1]
            .as_ref()
            .is_ok_and(|a| a.duplicate && a.seq == 1));
        assert!(matches!(outcomes[2], Err(StoreError::NotFound(_))));
        assert_eq!(
            commits_and_requests(&store),
            (1, 1),
            "only the first append needed a commit"
        );
    }

    #[tokio::test]
    async fn cursor_advances_share_the_appends_commit() {
        use crate::{MetadataStore, OfflineQueue};

        let (store, _dir) = open();
        let lock = store.inner.committer.hold_intake();
        let mut append = store.append(request("f", "alice", "m1", b"x"));
        let mut read = store.mark_read("f", "bob", 1);
        let mut delivered = store.mark_delivered("bob", "f", 1);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(append.as_mut().poll(&mut cx).is_pending());
        assert!(read.as_mut().poll(&mut cx).is_pending());
        assert!(delivered.as_mut().poll(&mut cx).is_pending());
        drop(lock);
        assert_eq!(append.await.expect("append").seq, 1);
        assert_eq!(read.await.expect("read cursor"), 1);
        assert_eq!(delivered.await.expect("delivered cursor"), 1);
        assert_eq!(
            commits_and_requests(&store),
            (1, 3),
            "the cursors must move in the append's commit"
        );

        // A cursor that stays where it is writes nothing and commits nothing.
        assert_eq!(store.mark_read("f", "bob", 0).await.expect("no move"), 1);
        assert_eq!(store.group_commit_stats().commits, 1);
        let cursors = store.read_cursors("f").await.expect("read cursors");
        assert_eq!(cursors.len(), 1);
        assert_eq!(
            (cursors[0].user.as_str(), cursors[0].read_up_to),
            ("bob", 1)
        );
        assert_eq!(store.delivered("bob", "f").await.expect("delivered"), 1);
    }

    fn everything() -> crate::PageRequest {
        crate::PageRequest {
            after_seq: 0,
            before_seq: u64::MAX,
            limit: 100,
            direction: crate::Direction::Forward,
        }
    }

    /// Copies the store's files as they are on disk now: what a `kill -9`
    /// at this moment would leave behind.
    fn crash_image(from: &std::path::Path, to: &std::path::Path) {
        let log = crate::embedded::HISTORY_LOG_DIR;
        std::fs::create_dir_all(to.join(log)).expect("image dirs");
        std::fs::copy(
            from.join(crate::embedded::DATABASE_FILE_NAME),
            to.join(crate::embedded::DATABASE_FILE_NAME),
        )
        .expect("copy the database");
        for segment in std::fs::read_dir(from.join(log)).expect("log dir") {
            let segment = segment.expect("segment");
            std::fs::copy(segment.path(), to.join(log).join(segment.file_name()))
                .expect("copy a segment");
        }
    }

    #[tokio::test]
    async fn answers_do_not_wait_for_the_applier_and_a_crash_before_it_loses_nothing() {
        let (store, dir) = open();
        store
            .append(request("k", "alice", "m1", b"applied"))
            .await
            .expect("append");
        assert_eq!(store.last_seq("k").await.expect("read"), 1);
        // The applier needs the database's write lock; the writer does not.
        let lock = store.inner.db.begin_write().expect("hold the write lock");
        let second = store
            .append(request("k", "alice", "m2", b"logged only"))
            .await
            .expect("answered while the applier is held up");
        let retry = store
            .append(request("k", "alice", "m2", b"retry"))
            .await
            .expect("retry");
        let amend = store
            .append(amend("k", "e1", 2, b"edited"))
            .await
            .expect("an amend of a message only the log holds");
        assert_eq!((second.seq, retry.seq, retry.duplicate), (2, 2, true));
        assert_eq!(amend.seq, 3);

        let image = tempfile::tempdir().expect("tempdir");
        crash_image(dir.path(), image.path());
        // A read begun now waits for the applier, then sees every answer.
        let read = tokio::spawn({
            let store = store.clone();
            async move { store.fetch("k", everything()).await }
        });
        drop(lock);
        let seen = read.await.expect("read task").expect("fetch");
        assert_eq!(
            seen.iter()
                .map(|m| m.payload.as_slice())
                .collect::<Vec<_>>(),
            vec![&b"applied"[..], b"edited", b"edit"]
        );

        let recovered = EmbeddedStore::open(image.path()).expect("open the crash image");
        assert_eq!(recovered.recovery().replayed_records, 3);
        let messages = recovered.fetch("k", everything()).await.expect("fetch");
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert_eq!(messages[1].payload, b"edited");
        assert_eq!(messages[1].client_message_id, "m2");
        let again = recovered
            .append(request("k", "alice", "m2", b"retry after the crash"))
            .await
            .expect("retry");
        assert_eq!((again.seq, again.duplicate), (2, true));
        let next = recovered
            .append(request("k", "bob", "b1", b"next"))
            .await
            .expect("append");
        assert_eq!(next.seq, 4);
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_writer_and_closes_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let clone = store.clone();
        let appended = store
            .append(request("e", "alice", "m", b"kept"))
            .await
            .expect("append");
        drop(store);
        drop(clone);
        // The writer held its own handle to the database; reopening proves it let go.
        let reopened =
            EmbeddedStore::open(dir.path()).expect("reopen once every handle is dropped");
        let message = reopened
            .get("e", appended.seq)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(message.payload, b"kept");
    }

    use crate::MetadataStore as _;

    fn log_segments(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join(crate::embedded::HISTORY_LOG_DIR))
            .expect("log dir")
            .count()
    }

    #[tokio::test]
    async fn batches_are_logged_and_checkpointed_once_the_log_is_big_enough() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = crate::embedded::EmbeddedOptions {
            history_checkpoint: HistoryCheckpoint {
                interval: Duration::from_secs(3600),
                bytes: 300,
            },
        };
        let store = EmbeddedStore::open_with(dir.path(), options).expect("open");
        store
            .append(request("g", "alice", "m1", &[1; 100]))
            .await
            .expect("append");
        let stats = store.group_commit_stats();
        assert_eq!((stats.commits, stats.checkpoints), (1, 0));
        assert!(stats.log_bytes > 100, "{stats:?}");
        assert_eq!(log_segments(dir.path()), 1, "the batch is in the log");
        // Over 300 bytes logged since the last checkpoint once this batch is
        // applied: the applier checkpoints before it reports the batch
        // applied, which a read waits for.
        store
            .append(request("g", "alice", "m2", &[2; 300]))
            .await
            .expect("append");
        assert_eq!(store.last_seq("g").await.expect("read"), 2);
        assert_eq!(store.group_commit_stats().checkpoints, 1);
        // The writer deletes what the checkpoint covers before its next batch.
        store
            .append(request("g", "alice", "m3", &[3; 10]))
            .await
            .expect("append");
        let stats = store.group_commit_stats();
        assert_eq!((stats.commits, stats.checkpoints), (3, 1));
        assert_eq!(
            log_segments(dir.path()),
            1,
            "the checkpoint emptied the log; only m3 is in it"
        );
        store.mark_read("g", "bob", 3).await.expect("read");
        assert_eq!(log_segments(dir.path()), 1);
        assert_eq!(store.group_commit_stats().checkpoints, 1);
        drop(store);
        assert_eq!(log_segments(dir.path()), 0, "closing checkpoints");
        let reopened = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.recovery().replayed_records, 0);
        assert_eq!(reopened.last_seq("g").await.expect("last"), 3);
    }

    #[tokio::test]
    async fn a_batch_that_writes_nothing_logs_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = crate::embedded::EmbeddedOptions {
            history_checkpoint: HistoryCheckpoint {
                interval: Duration::from_secs(3600),
                bytes: u64::MAX,
            },
        };
        let store = EmbeddedStore::open_with(dir.path(), options).expect("open");
        let original = request("h", "alice", "once", b"x");
        store.append(original.clone()).await.expect("append");
        let logged = store.group_commit_stats().log_bytes;
        let retry = store.append(original).await.expect("retry");
        assert!(retry.duplicate);
        assert_eq!(store.mark_read("h", "bob", 0).await.expect("no move"), 0);
        assert_eq!(store.group_commit_stats().log_bytes, logged);
        assert_eq!(log_segments(dir.path()), 1);
    }
}
