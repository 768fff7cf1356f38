//! One connection's chat publishes, handled off the connection loop.
//!
//! A connection hands each chat publish (`s/`, `r/`, `t/`, `q/`) to its
//! [`ChatWorker`], which runs them through the chat pipeline one at a time,
//! in arrival order (so one client's messages keep their order and get
//! increasing `seq`s), and reports each outcome back for the
//! acknowledgement. Meanwhile the connection loop goes on reading the socket
//! and delivering to the client, so a client's own inbox does not wait behind
//! its sends' durable commits.

use std::sync::Arc;
use std::time::Instant;

use chat_core::ids::UserId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::inbound::PendingChat;
use crate::chat::{ChatAck, ChatService};
use crate::metrics::Metrics;

/// How many chat publishes of one connection may wait for the pipeline
/// before the connection stops reading from its socket (backpressure).
pub const MAX_PENDING_CHAT: usize = 64;

/// The outcome of one chat publish, for its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatDone {
    /// QoS of the client's publish.
    pub qos: u8,
    /// Packet id to acknowledge (0 for QoS 0).
    pub pkid: u16,
    /// What the chat pipeline answered.
    pub ack: ChatAck,
}

/// The connection's side of its chat worker task.
pub struct ChatWorker {
    jobs: mpsc::Sender<PendingChat>,
    done: mpsc::UnboundedReceiver<ChatDone>,
    task: JoinHandle<()>,
    /// Submitted publishes whose outcome has not been taken yet.
    in_flight: usize,
    /// When the last outcome was taken (or the worker started).
    last_done: Instant,
}

impl ChatWorker {
    /// Starts the worker for `user`'s connection.
    pub fn start(chat: Arc<ChatService>, metrics: Arc<Metrics>, user: UserId) -> ChatWorker {
        let (jobs, mut queue) = mpsc::channel::<PendingChat>(MAX_PENDING_CHAT);
        let (report, done) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(job) = queue.recv().await {
                let started = Instant::now();
                let ack = chat.handle(&user, job.publish).await;
                metrics.chat_send_took(started.elapsed());
                // A connection that is gone no longer needs the answer; the
                // remaining publishes are still handled (a client that did not
                // get its acknowledgement resends, and retries are idempotent).
                let _ = report.send(ChatDone {
                    qos: job.qos,
                    pkid: job.pkid,
                    ack,
                });
            }
        });
        ChatWorker {
            jobs,
            done,
            task,
            in_flight: 0,
            last_done: Instant::now(),
        }
    }

    /// Queues a publish, waiting while [`MAX_PENDING_CHAT`] are already queued.
    /// `false` if the worker has stopped (it only does when it panicked).
    pub async fn submit(&mut self, job: PendingChat) -> bool {
        let queued = self.jobs.send(job).await.is_ok();
        self.in_flight += usize::from(queued);
        queued
    }

    /// Waits for the next outcome, then takes every other one already there.
    pub async fn finished(&mut self, into: &mut Vec<ChatDone>) {
        let before = into.len();
        match self.done.recv().await {
            Some(done) => into.push(done),
            // Only when the worker is gone: never wake the connection again.
            None => std::future::pending().await,
        }
        while let Ok(done) = self.done.try_recv() {
            into.push(done);
        }
        self.in_flight = self.in_flight.saturating_sub(into.len() - before);
        self.last_done = Instant::now();
    }

    /// How long the worker has had nothing to report.
    pub fn idle_for(&self) -> std::time::Duration {
        self.last_done.elapsed()
    }

    /// Waits until every submitted publish has its outcome in `into`.
    pub async fn settle(&mut self, into: &mut Vec<ChatDone>) {
        while self.in_flight > 0 {
            let before = into.len();
            match self.done.recv().await {
                Some(done) => into.push(done),
                None => break,
            }
            while let Ok(done) = self.done.try_recv() {
                into.push(done);
            }
            self.in_flight = self.in_flight.saturating_sub(into.len() - before);
        }
    }

    /// Whether submitted publishes still await their outcome.
    pub fn is_busy(&self) -> bool {
        self.in_flight > 0
    }

    /// Lets the worker finish what was queued, then ends it.
    pub async fn close(self) {
        drop(self.jobs);
        let _ = self.task.await;
    }
}
