//! Group commit for MQTT session changes: one writer thread turns every
//! [`SessionStore::apply`](crate::SessionStore::apply) call waiting at the same
//! moment into a single durable commit, as the history writer does for chat
//! messages (see `group_commit`).
//!
//! The thread blocks for a first call, begins a durable write transaction,
//! takes every other call already queued (up to [`MAX_BATCH`](super::MAX_BATCH)),
//! applies them in queue order, commits once with
//! [`redb::Durability::Immediate`] and only then answers each caller. If the
//! batch fails, every caller of it gets the error and, redb transactions being
//! atomic, none of it was applied. Dropping the [`SessionWriter`] closes the
//! queue; the thread answers what is left and exits, and the drop waits for it.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::Database;
use tokio::sync::oneshot;

use super::{begin_durable_write, session_tables, Failure, MAX_BATCH};
use crate::sessions::SessionOp;
use crate::StoreError;

/// One queued call and where its answer goes.
struct Job {
    ops: Vec<SessionOp>,
    reply: oneshot::Sender<Result<(), String>>,
}

/// The handle to the session writer thread.
pub(super) struct SessionWriter {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    /// `None` only while dropping.
    writer: Option<JoinHandle<()>>,
}

impl SessionWriter {
    /// Starts the writer thread for `db`.
    pub(super) fn start(db: Arc<Database>) -> Result<SessionWriter, StoreError> {
        let (jobs, queue) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("parley-session-writer".to_owned())
            .spawn(move || run_writer(&db, &queue))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the session writer thread: {e}"))
            })?;
        Ok(SessionWriter {
            jobs: Some(jobs),
            writer: Some(writer),
        })
    }

    /// Queues `ops` for the next commit and waits until they are durable.
    pub(super) async fn apply(&self, ops: Vec<SessionOp>) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or_else(writer_stopped)?;
        jobs.send(Job { ops, reply })
            .map_err(|_| writer_stopped())?;
        answer
            .await
            .map_err(|_| writer_stopped())?
            .map_err(StoreError::Unavailable)
    }
}

impl Drop for SessionWriter {
    /// Closes the queue and waits for the writer to answer what is left and exit.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the session writer thread panicked");
            }
        }
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the session writer has stopped".to_owned())
}

/// The writer thread: one batch per loop, until the queue closes.
fn run_writer(db: &Database, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        let result = commit(db, &batch);
        if let Err(error) = &result {
            tracing::error!(%error, calls = batch.len(), "MQTT session batch failed");
        }
        for job in batch {
            // The caller may have given up waiting; the batch stands regardless.
            let _ = job.reply.send(result.clone());
        }
    }
}

/// Applies every job of `batch` in order in one durable transaction.
fn commit(db: &Database, batch: &[Job]) -> Result<(), String> {
    let run = || -> Result<(), Failure> {
        let tx = begin_durable_write(db)?;
        for job in batch {
            session_tables::apply(&tx, &job.ops)?;
        }
        tx.commit()?;
        Ok(())
    };
    run().map_err(|failure| StoreError::from(failure).to_string())
}
