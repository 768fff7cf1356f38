//! Group commit for history appends: one writer thread turns every append that
//! is waiting at the same moment into a single durable commit.
//!
//! Read and delivered cursor advances ride along: they are queued on the same
//! channel and applied in the same transaction, so moving a cursor costs no
//! commit (and no fsync) of its own and never holds the database's write lock
//! between two history commits.
//!
//! A durable commit costs an fsync, which takes far longer than applying a
//! message, so committing each append on its own caps the store at one append
//! per fsync. Instead, `append` queues its request on a channel and awaits its
//! answer, and the writer thread loops:
//!
//! 1. it blocks until a request arrives, then begins a durable write transaction
//!    (waiting for any other writer of the database; requests keep queueing
//!    meanwhile);
//! 2. it takes every other request already queued, up to [`MAX_BATCH`] in all;
//! 3. it applies the requests in queue order inside that one transaction: each
//!    sees the seqs, idempotency entries and amends of the requests before it, so
//!    requests for the same conversation, and even retries of one another, come
//!    out exactly as if each had committed on its own;
//! 4. it commits once with [`redb::Durability::Immediate`] and only then answers
//!    each request through its oneshot channel.
//!
//! Queueing and answering are separate steps ([`GroupCommitter::enqueue`]): a
//! request's place is fixed when it enters the channel, so one caller can queue
//! several requests back to back, have them committed in that order (in one
//! commit or in consecutive ones), and await their answers afterwards.
//!
//! A request that is refused on its own (an amend of a missing seq, a corrupt
//! record) is checked before anything of it is written, so it fails alone and
//! the rest of the batch commits. If the database itself fails (beginning,
//! writing or committing the transaction), every request of the batch gets that
//! error, and since redb transactions are atomic none of the batch was applied.
//! A batch that wrote nothing (only retries and refusals) is rolled back rather
//! than committed, saving the fsync.
//!
//! The writer owns a handle to the database. Dropping the [`GroupCommitter`]
//! (when the last [`EmbeddedStore`](super::EmbeddedStore) clone goes) closes the
//! channel; the writer answers whatever is still queued, then exits, and the drop
//! waits for it, so the database file is closed by the time the store is gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::Database;
use tokio::sync::oneshot;

use super::cursor_table::{self, CursorTable, OpenCursorTables};
use super::messages::HistoryTables;
use super::{begin_durable_write, Failure};
use crate::{AppendRequest, Appended, PendingAppend, StoreError};

/// The most requests one commit takes; more wait for the next one.
pub const MAX_BATCH: usize = 1024;

/// Counters of the history writer's commits, for tests and diagnostics.
///
/// `requests / commits` is the average batch size. Both count only batches that
/// were committed, and keeping them costs two relaxed atomic additions per commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Durable commits made by the history writer since the store opened.
    pub commits: u64,
    /// Append requests answered from those commits (new messages, retries and
    /// refused requests alike).
    pub requests: u64,
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
}

/// The handle to the history writer thread.
pub(super) struct GroupCommitter {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    /// `None` only while dropping.
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl GroupCommitter {
    /// Starts the writer thread for `db`.
    pub(super) fn start(db: Arc<Database>) -> Result<GroupCommitter, StoreError> {
        let (jobs, queue) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let writer_counters = Arc::clone(&counters);
        let writer = std::thread::Builder::new()
            .name("parley-history-writer".to_owned())
            .spawn(move || run_writer(&db, &queue, &writer_counters))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the history writer thread: {e}"))
            })?;
        Ok(GroupCommitter {
            jobs: Some(jobs),
            writer: Some(writer),
            counters,
        })
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

/// The writer thread: one batch per loop, until the queue closes.
fn run_writer(db: &Database, queue: &mpsc::Receiver<Job>, counters: &Counters) {
    while let Ok(first) = queue.recv() {
        let tx = begin_durable_write(db);
        // Whatever queued while the transaction was being begun joins this batch.
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        match tx.and_then(|tx| apply_batch(tx, &batch)) {
            Ok((outcomes, committed)) => {
                if committed {
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                    counters
                        .requests
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    // The caller may have given up waiting; the write stands regardless.
                    match (job, outcome) {
                        (Job::Append { reply, .. }, Outcome::Append(outcome)) => {
                            let _ = reply.send(outcome);
                        }
                        (Job::Cursor { reply, .. }, Outcome::Cursor(cursor)) => {
                            let _ = reply.send(Ok(cursor));
                        }
                        (job, _) => job.fail(writer_stopped()),
                    }
                }
            }
            Err(failure) => {
                let error = StoreError::from(failure);
                tracing::error!(%error, requests = batch.len(), "history batch failed");
                for job in batch {
                    job.fail(same_error(&error));
                }
            }
        }
    }
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

/// What applying one job gave.
enum Outcome {
    /// An append's own outcome.
    Append(Result<Appended, StoreError>),
    /// The cursor after an advance.
    Cursor(u64),
}

/// Applies `jobs` in order inside `tx` and commits it if anything was written;
/// returns each job's outcome and whether a commit happened.
fn apply_batch(tx: redb::WriteTransaction, jobs: &[Job]) -> Result<(Vec<Outcome>, bool), Failure> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut wrote = false;
    {
        let mut history: Option<HistoryTables<'_>> = None;
        let mut cursors = OpenCursorTables::default();
        for job in jobs {
            match job {
                Job::Append { request, .. } => {
                    let tables = match &mut history {
                        Some(tables) => tables,
                        None => history.insert(HistoryTables::open(&tx)?),
                    };
                    let outcome = tables.append(request)?;
                    wrote |= matches!(&outcome, Ok(appended) if !appended.duplicate);
                    outcomes.push(Outcome::Append(outcome));
                }
                Job::Cursor { advance, .. } => {
                    let table = cursors.open(&tx, advance.table)?;
                    let (cursor, moved) = cursor_table::advance_in(
                        table,
                        &advance.scope,
                        &advance.name,
                        advance.seq,
                    )?;
                    wrote |= moved;
                    outcomes.push(Outcome::Cursor(cursor));
                }
            }
        }
        if let Some(tables) = history {
            tables.finish()?;
        }
    }
    if wrote {
        tx.commit()?;
    } else {
        tx.abort()?;
    }
    Ok((outcomes, wrote))
}

/// A copy of `error` for one more request of a failed batch.
fn same_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::AlreadyExists(what) => StoreError::AlreadyExists(what.clone()),
        StoreError::NotFound(what) => StoreError::NotFound(what.clone()),
        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
        StoreError::Conflict(what) => StoreError::Conflict(what.clone()),
        StoreError::Corrupt(why) => StoreError::Corrupt(why.clone()),
    }
}

#[cfg(test)]
mod tests {
    //! These tests hold the database's write lock while they queue appends, so
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

    /// Queues `requests` while the write lock is held (checking that none can
    /// finish meanwhile), then releases the lock and awaits every outcome.
    async fn append_as_one_queue(
        store: &EmbeddedStore,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Appended, StoreError>> {
        let lock = store.inner.db.begin_write().expect("hold the write lock");
        let mut pending: Vec<PendingAppend<'_>> =
            requests.into_iter().map(|r| store.append(r)).collect();
        let mut cx = Context::from_waker(Waker::noop());
        for append in &mut pending {
            // The first poll queues the request; the answer needs a commit, which needs the lock.
            assert!(
                append.as_mut().poll(&mut cx).is_pending(),
                "no append may finish while the write lock is held"
            );
        }
        drop(lock);
        let mut outcomes = Vec::with_capacity(pending.len());
        for append in pending {
            outcomes.push(append.await);
        }
        outcomes
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
            store.group_commit_stats(),
            GroupCommitStats {
                commits: 1,
                requests: 7
            },
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
            store.group_commit_stats(),
            GroupCommitStats {
                commits: 2,
                requests: (MAX_BATCH + extra) as u64
            },
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
            store.group_commit_stats(),
            GroupCommitStats {
                commits: 1,
                requests: 1
            },
            "only the first append needed a commit"
        );
    }

    #[tokio::test]
    async fn cursor_advances_share_the_appends_commit() {
        use crate::{MetadataStore, OfflineQueue};

        let (store, _dir) = open();
        let lock = store.inner.db.begin_write().expect("hold the write lock");
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
            store.group_commit_stats(),
            GroupCommitStats {
                commits: 1,
                requests: 3
            },
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
}
