//! [`MeteredHistory`]: a [`HistoryStore`] that forwards to another one,
//! timing every append, enqueued ones from queueing to durable
//! (`parley_history_append_duration_seconds`), and
//! counting the entries actually stored (`parley_chat_messages_stored_total`;
//! retries answered from the original are not counted).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use persistence::{
    AppendRequest, Appended, HistoryStore, PageRequest, PendingAppend, StoreError, StoredMessage,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::Metrics;

/// A history store that measures its appends.
pub struct MeteredHistory {
    inner: Arc<dyn HistoryStore>,
    append_seconds: Histogram,
    stored: Counter,
}

impl MeteredHistory {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn HistoryStore>, metrics: &Metrics) -> MeteredHistory {
        MeteredHistory {
            inner,
            append_seconds: metrics.history_append_seconds.clone(),
            stored: metrics.chat_messages_stored.clone(),
        }
    }
}

#[async_trait]
impl HistoryStore for MeteredHistory {
    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        let started = Instant::now();
        let result = self.inner.append(request).await;
        self.append_seconds.observe(started.elapsed().as_secs_f64());
        if matches!(
            result,
            Ok(Appended {
                duplicate: false,
                ..
            })
        ) {
            self.stored.inc();
        }
        result
    }

    async fn enqueue(&self, request: AppendRequest) -> PendingAppend {
        let started = Instant::now();
        let pending = self.inner.enqueue(request).await;
        let (append_seconds, stored) = (self.append_seconds.clone(), self.stored.clone());
        Box::pin(async move {
            let result = pending.await;
            append_seconds.observe(started.elapsed().as_secs_f64());
            if matches!(
                result,
                Ok(Appended {
                    duplicate: false,
                    ..
                })
            ) {
                stored.inc();
            }
            result
        })
    }

    async fn fetch(
        &self,
        conversation_id: &str,
        page: PageRequest,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.inner.fetch(conversation_id, page).await
    }

    async fn get(
        &self,
        conversation_id: &str,
        seq: u64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        self.inner.get(conversation_id, seq).await
    }

    async fn last_seq(&self, conversation_id: &str) -> Result<u64, StoreError> {
        self.inner.last_seq(conversation_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persistence::embedded::EmbeddedStore;

    fn request(client_message_id: &str) -> AppendRequest {
        AppendRequest {
            conversation_id: "alice~bob".into(),
            sender: "alice".into(),
            client_message_id: client_message_id.into(),
            message_id: 1,
            server_time_ms: 1,
            payload: b"hello".to_vec(),
            amend: None,
        }
    }

    #[tokio::test]
    async fn counts_stored_entries_but_not_retries_and_times_every_append() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let metrics = Metrics::new();
        let history = MeteredHistory::new(store, &metrics);
        let first = history.append(request("m1")).await.unwrap();
        let retry = history.append(request("m1")).await.unwrap();
        assert!(retry.duplicate && retry.seq == first.seq);
        history.append(request("m2")).await.unwrap();
        let queued = history.enqueue(request("m3")).await;
        let queued_retry = history.enqueue(request("m3")).await;
        assert!(!queued.await.unwrap().duplicate);
        assert!(queued_retry.await.unwrap().duplicate);
        assert_eq!(metrics.chat_messages_stored.get(), 3);
        let text = metrics.encode();
        assert!(
            text.lines()
                .any(|l| l == "parley_history_append_duration_seconds_count 5"),
            "{text}"
        );
        assert_eq!(history.last_seq("alice~bob").await.unwrap(), 3);
    }
}
