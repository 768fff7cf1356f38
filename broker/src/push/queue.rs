//! The bounded queue between the chat path and the push worker, and the
//! counters of what happened to notifications.
//!
//! The chat path only ever offers: when the queue is full the event is
//! dropped and counted, so a slow or unreachable notifier never delays a
//! message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::event::MessageEvent;

/// Counters of the push pipeline since the node started.
#[derive(Debug, Default)]
pub struct PushStats {
    enqueued: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
}

/// A copy of [`PushStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStatsSnapshot {
    /// Messages queued for the worker.
    pub enqueued: u64,
    /// Messages dropped because the queue was full (or the worker gone).
    pub dropped: u64,
    /// Notifications the notifier accepted.
    pub delivered: u64,
    /// Tries that failed and were tried again.
    pub retried: u64,
    /// Notifications given up on (refused, or out of tries).
    pub failed: u64,
}

impl PushStats {
    /// The counters now.
    pub fn snapshot(&self) -> PushStatsSnapshot {
        PushStatsSnapshot {
            enqueued: self.enqueued.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Counts a delivered notification.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a try that will be repeated.
    pub fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a notification given up on.
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The sending side of the queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct PushQueue {
    tx: mpsc::Sender<MessageEvent>,
    stats: Arc<PushStats>,
}

impl PushQueue {
    /// A queue of `capacity` events counting into `stats`, and its receiving end.
    pub fn new(
        capacity: usize,
        stats: Arc<PushStats>,
    ) -> (PushQueue, mpsc::Receiver<MessageEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (PushQueue { tx, stats }, rx)
    }

    /// Queues `event` without waiting; `false` (and counted as dropped) if
    /// the queue is full or the worker has stopped.
    pub fn offer(&self, event: MessageEvent) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                let total = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the push queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the push worker has stopped",
                };
                tracing::warn!(dropped_total = total, "push notification dropped: {why}");
                false
            }
        }
    }

    /// The counters this queue counts into.
    pub fn stats(&self) -> &Arc<PushStats> {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> MessageEvent {
        MessageEvent {
            conversation_id: "alice~bob".into(),
            sender: "alice".into(),
            seq,
            message_id: seq,
            server_time_ms: 0,
            text: None,
            recipients: vec!["bob".into()],
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (queue, mut rx) = PushQueue::new(2, Arc::default());
        assert!(queue.offer(event(1)));
        assert!(queue.offer(event(2)));
        assert!(!queue.offer(event(3)), "the third does not fit");
        let stats = queue.stats().snapshot();
        assert_eq!((stats.enqueued, stats.dropped), (2, 1));

        // What was queued comes out in order; the dropped one never does.
        assert_eq!(rx.try_recv().map(|e| e.seq), Ok(1));
        assert_eq!(rx.try_recv().map(|e| e.seq), Ok(2));
        assert!(rx.try_recv().is_err());
        assert!(queue.offer(event(4)), "room again once drained");
    }

    #[test]
    fn a_stopped_worker_drops_and_counts() {
        let (queue, rx) = PushQueue::new(4, Arc::default());
        drop(rx);
        assert!(!queue.offer(event(1)));
        assert_eq!(queue.stats().snapshot().dropped, 1);
    }
}
