//! Group commit for PostgreSQL history appends: queued appends are written
//! in batches, one transaction (and one WAL flush) per batch.
//!
//! [`AppendQueue::enqueue`] puts a request on one of a few lanes, chosen by
//! its conversation, and returns at once: a request's place among its
//! conversation's appends is fixed there, since one lane handles its
//! requests strictly in queue order. Each lane is a task that takes
//! everything queued on it (up to [`MAX_BATCH`]), appends the run of plain
//! messages in one transaction (`batched_appends`), appends a request with
//! an amend on its own (it reads and changes an earlier entry), and answers
//! each request once its transaction has committed. Lanes work in parallel
//! on separate connections; a conversation's appends always share a lane,
//! so its seqs follow queue order.
//!
//! A batch that fails as a whole with [`StoreError::Unavailable`] answers
//! every request of it with that error (like a single append, a batch whose
//! commit was sent may still have been stored: a retry is then answered as a
//! duplicate). A batch the server refuses for one of its rows is rolled back
//! and its requests are appended one at a time, so each gets its own answer.
//! The lanes end when the last clone of the store is dropped, after
//! answering what was queued.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::batched_appends::{self, BatchOutcome};
use super::failure::{self, within};
use super::messages;
use crate::{AppendRequest, Appended, PendingAppend, StoreError};

/// The most requests one batch takes; more wait for the next one.
pub const MAX_BATCH: usize = 1024;

/// Counters of the history writers' batches, for tests and diagnostics.
///
/// `requests / batches` is the average batch size; requests appended one at
/// a time (amends, refused batches) are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendBatchStats {
    /// Batches of more than one request applied in one transaction.
    pub batches: u64,
    /// Requests answered from those batches.
    pub requests: u64,
}

/// The counters behind [`AppendBatchStats`], shared with the lanes.
#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    requests: AtomicU64,
}

/// One queued append and where its answer goes.
struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// The lanes' queues.
pub(super) struct AppendQueue {
    lanes: Vec<mpsc::UnboundedSender<Job>>,
    /// Picks a lane by conversation (fixed for the process's lifetime).
    hasher: std::collections::hash_map::RandomState,
    counters: Arc<Counters>,
}

impl AppendQueue {
    /// Starts `lanes` lane tasks (at least one) appending through `pool`,
    /// each batch bounded by `operation_timeout`. Must run inside a Tokio
    /// runtime.
    pub(super) fn start(pool: &Pool, lanes: usize, operation_timeout: Duration) -> AppendQueue {
        let counters = Arc::new(Counters::default());
        let lanes = (0..lanes.max(1))
            .map(|_| {
                let (jobs, queue) = mpsc::unbounded_channel();
                let lane = Lane {
                    pool: pool.clone(),
                    timeout: operation_timeout,
                    counters: Arc::clone(&counters),
                };
                tokio::spawn(lane.run(queue));
                jobs
            })
            .collect();
        AppendQueue {
            lanes,
            hasher: std::collections::hash_map::RandomState::new(),
            counters,
        }
    }

    /// The batches applied so far.
    pub(super) fn stats(&self) -> AppendBatchStats {
        AppendBatchStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
        }
    }

    /// Queues `request` behind every request of its conversation queued
    /// before it; the answer resolves once its batch has committed.
    pub(super) fn enqueue(&self, request: AppendRequest) -> PendingAppend {
        let hash = self.hasher.hash_one(&request.conversation_id);
        let lane = (hash % self.lanes.len() as u64) as usize;
        let (reply, answer) = oneshot::channel();
        let queued = self.lanes[lane].send(Job { request, reply }).is_ok();
        Box::pin(async move {
            if !queued {
                return Err(writer_stopped());
            }
            answer.await.map_err(|_| writer_stopped())?
        })
    }
}

/// The error for an append no lane can answer any more.
fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the PostgreSQL history writer has stopped".to_owned())
}

/// One lane's task: what it appends through and what it counts.
struct Lane {
    pool: Pool,
    timeout: Duration,
    counters: Arc<Counters>,
}

impl Lane {
    /// A batch per loop, until every sender is gone.
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            let mut rest = jobs.drain(..).peekable();
            while rest.peek().is_some() {
                // A run of plain appends, or one append with an amend.
                let mut run = Vec::new();
                while let Some(job) = rest.next_if(|job| job.request.amend.is_none()) {
                    run.push(job);
                }
                if run.is_empty() {
                    run.extend(rest.next());
                }
                self.answer(run).await;
            }
        }
    }

    /// Appends `run` (one amend, or plain appends only) and answers each job.
    async fn answer(&self, run: Vec<Job>) {
        let (pool, timeout) = (&self.pool, self.timeout);
        let requests: Vec<&AppendRequest> = run.iter().map(|job| &job.request).collect();
        let batched = if run.len() > 1 {
            within(timeout, "appending a batch of messages", async {
                let mut client = pool.get().await.map_err(failure::pool_error)?;
                batched_appends::append_all(&mut client, &requests).await
            })
            .await
        } else {
            Ok(BatchOutcome::OneByOne)
        };
        let outcomes: Vec<Result<Appended, StoreError>> = match batched {
            Ok(BatchOutcome::Applied(outcomes)) => {
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .requests
                    .fetch_add(run.len() as u64, Ordering::Relaxed);
                outcomes.into_iter().map(Ok).collect()
            }
            Ok(BatchOutcome::OneByOne) => {
                let mut outcomes = Vec::with_capacity(run.len());
                for job in &run {
                    outcomes.push(
                        within(timeout, "appending a message", async {
                            let mut client = pool.get().await.map_err(failure::pool_error)?;
                            messages::append(&mut client, job.request.clone()).await
                        })
                        .await,
                    );
                }
                outcomes
            }
            Err(error) => {
                tracing::warn!(%error, requests = run.len(), "history batch failed");
                run.iter().map(|_| Err(error.clone())).collect()
            }
        };
        for (job, outcome) in run.into_iter().zip(outcomes) {
            // The caller may have stopped waiting; the append stands regardless.
            let _ = job.reply.send(outcome);
        }
    }
}
