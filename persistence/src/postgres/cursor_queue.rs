//! Group commit for cursor moves on PostgreSQL: read and delivered cursor
//! marks are written in batches, one statement (and one commit) per table
//! per batch, instead of one transaction each.
//!
//! A chat node moves a delivered cursor for every delivery a client
//! acknowledges and a read cursor for what a sender has read by sending; at
//! 2,000 messages/s that was ~5,800 transactions a second, each with its own
//! WAL flush, and the server spent more on them than on the history.
//!
//! [`CursorQueue::mark`] queues a mark on one writer task, which takes
//! everything queued (up to [`MAX_BATCH`]), keeps the highest seq asked for
//! each cursor, writes each table's cursors with one upsert (the two tables'
//! statements pipelined on one connection, cursors in byte order of their
//! keys, so two batches never wait for each other in a cycle) and answers
//! every mark once its statement has committed. A mark is answered with the
//! cursor after its batch, at least its own seq: the outcome of the batch's
//! marks made one at a time in ascending seq order, which concurrent callers
//! cannot tell from any other order. A batch that fails answers each of its
//! marks with the error; like a mark that timed out, it may or may not have
//! been stored, and marking again is harmless (cursors only move forward).
//! The writer ends when the last clone of the store is dropped, after
//! answering what was queued.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::cursor_batch::Cursors;
use super::failure::{self, within};
use super::{delivered, read_cursors};
use crate::StoreError;

/// The most marks one batch takes; more wait for the next one.
pub const MAX_BATCH: usize = 1024;

/// Which cursor a mark moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CursorKind {
    /// How far a user has read in a conversation (`read_cursors`).
    Read,
    /// How far a user has been delivered in a conversation
    /// (`delivered_cursors`).
    Delivered,
}

/// Counters of the cursor writer's batches, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CursorBatchStats {
    /// Batches written (each one statement per table it touched).
    pub batches: u64,
    /// Marks answered from those batches.
    pub marks: u64,
}

/// The counters behind [`CursorBatchStats`], shared with the writer.
#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    marks: AtomicU64,
}

/// One queued mark and where its answer goes.
struct Job {
    kind: CursorKind,
    conversation_id: String,
    user: String,
    seq: u64,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// The cursor writer's queue.
pub(super) struct CursorQueue {
    jobs: mpsc::UnboundedSender<Job>,
    counters: Arc<Counters>,
}

impl CursorQueue {
    /// Starts the writer task, writing through `pool`, each batch bounded by
    /// `operation_timeout`. Must run inside a Tokio runtime.
    pub(super) fn start(pool: &Pool, operation_timeout: Duration) -> CursorQueue {
        let counters = Arc::new(Counters::default());
        let (jobs, queue) = mpsc::unbounded_channel();
        let writer = Writer {
            pool: pool.clone(),
            timeout: operation_timeout,
            counters: Arc::clone(&counters),
        };
        tokio::spawn(writer.run(queue));
        CursorQueue { jobs, counters }
    }

    /// The batches written so far.
    pub(super) fn stats(&self) -> CursorBatchStats {
        CursorBatchStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            marks: self.counters.marks.load(Ordering::Relaxed),
        }
    }

    /// Raises `user`'s `kind` cursor in `conversation_id` to `seq` unless it
    /// is higher already; returns the cursor once the move is committed.
    pub(super) async fn mark(
        &self,
        kind: CursorKind,
        conversation_id: &str,
        user: &str,
        seq: u64,
    ) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            kind,
            conversation_id: conversation_id.to_owned(),
            user: user.to_owned(),
            seq,
            reply,
        };
        self.jobs.send(job).map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }
}

/// The error for a mark the writer can no longer answer.
fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the PostgreSQL cursor writer has stopped".to_owned())
}

/// The writer task: what it writes through and what it counts.
struct Writer {
    pool: Pool,
    timeout: Duration,
    counters: Arc<Counters>,
}

/// The highest seq asked for each cursor of one table, by key in the order
/// of the table's primary key; a `BTreeMap` keeps the keys in byte order.
type Highest<'a> = BTreeMap<(&'a str, &'a str), u64>;

impl Writer {
    /// A batch per loop, until every sender is gone.
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            self.answer(&mut jobs).await;
        }
    }

    /// Writes the marks of `jobs` and answers (and removes) each job.
    async fn answer(&self, jobs: &mut Vec<Job>) {
        let written = {
            let mut read = Highest::new();
            let mut delivered = Highest::new();
            for job in jobs.iter() {
                let (marks, key) = match job.kind {
                    CursorKind::Read => (&mut read, (&*job.conversation_id, &*job.user)),
                    CursorKind::Delivered => (&mut delivered, (&*job.user, &*job.conversation_id)),
                };
                let seq = marks.entry(key).or_insert(job.seq);
                *seq = (*seq).max(job.seq);
            }
            within(
                self.timeout,
                "moving cursors",
                self.write(&read, &delivered),
            )
            .await
        };
        if written.is_ok() {
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
            self.counters
                .marks
                .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        }
        for job in jobs.drain(..) {
            let outcome = match &written {
                Ok((read, delivered)) => {
                    let (cursors, key) = match job.kind {
                        CursorKind::Read => (read, (job.conversation_id, job.user)),
                        CursorKind::Delivered => (delivered, (job.user, job.conversation_id)),
                    };
                    cursors.get(&key).copied().ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "the batched cursor update did not return the cursor of {key:?}"
                        ))
                    })
                }
                Err(error) => Err(error.clone()),
            };
            // The caller may have stopped waiting; the move stands regardless.
            let _ = job.reply.send(outcome);
        }
    }

    /// One upsert per table with marks, pipelined on one connection.
    async fn write(
        &self,
        read: &Highest<'_>,
        delivered: &Highest<'_>,
    ) -> Result<(Cursors, Cursors), StoreError> {
        let client = self.pool.get().await.map_err(failure::pool_error)?;
        let read: Vec<_> = read.iter().map(|(key, seq)| (*key, *seq)).collect();
        let delivered: Vec<_> = delivered.iter().map(|(key, seq)| (*key, *seq)).collect();
        let (read, delivered) = tokio::join!(
            async {
                if read.is_empty() {
                    return Ok(Cursors::new());
                }
                read_cursors::mark_many(&client, &read).await
            },
            async {
                if delivered.is_empty() {
                    return Ok(Cursors::new());
                }
                delivered::mark_many(&client, &delivered).await
            },
        );
        Ok((read?, delivered?))
    }
}
