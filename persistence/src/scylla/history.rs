//! [`HistoryStore`] for [`ScyllaStore`]: appends through the protocol of
//! `append`, and pages read bucket by bucket (see `buckets`).

use async_trait::async_trait;

use super::append::{self, Cells, Freshness};
use super::buckets::{spans_ascending, spans_descending, Span};
use super::cells::{message_from_db, to_db, MessageColumns};
use super::ScyllaStore;
use crate::{
    AppendRequest, Appended, Direction, HistoryStore, PageRequest, StoreError, StoredMessage,
};

/// How many times one append runs the protocol before reporting a failure.
const APPEND_ATTEMPTS: usize = 3;

#[async_trait]
impl HistoryStore for ScyllaStore {
    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        // Paxos rounds racing on one partition can time out under contention;
        // the protocol is safe to run again (it finds and finishes its own
        // claim), so a failure early enough is retried after a short pause.
        let started = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            match append::append(self, &request).await {
                Err(StoreError::Unavailable(reason))
                    if attempt < APPEND_ATTEMPTS && started.elapsed() < self.request_timeout() =>
                {
                    tracing::debug!(%reason, attempt, "retrying a Scylla append");
                    let pause = rand::random::<u64>() % (20 * attempt as u64) + 5;
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn fetch(
        &self,
        conversation_id: &str,
        page: PageRequest,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let Some(low) = page.after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        let Some(high) = page.before_seq.checked_sub(1) else {
            return Ok(Vec::new());
        };
        // No seq above i64::MAX is ever stored.
        let high = high.min(i64::MAX as u64);
        if page.limit == 0 || low > high {
            return Ok(Vec::new());
        }
        let limit = page.limit as u64;
        let mut messages = Vec::new();
        match page.direction {
            Direction::Forward => {
                for span in spans_ascending(low, high) {
                    let asked = (limit - messages.len() as u64).min(span.len());
                    let rows = self.read_span(conversation_id, span, asked, true).await?;
                    let got = rows.len() as u64;
                    messages.extend(rows);
                    if messages.len() as u64 >= limit || span.ends_conversation(got, asked) {
                        break;
                    }
                }
            }
            Direction::Backward => {
                let high = high.min(Cells::last_seq(self, conversation_id).await?);
                for span in spans_descending(low, high) {
                    let asked = (limit - messages.len() as u64).min(span.len());
                    let rows = self.read_span(conversation_id, span, asked, false).await?;
                    messages.extend(rows);
                    if messages.len() as u64 >= limit {
                        break;
                    }
                }
                messages.reverse();
            }
        }
        Ok(messages)
    }

    async fn get(
        &self,
        conversation_id: &str,
        seq: u64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        self.message_at(conversation_id, seq, Freshness::Acknowledged)
            .await
    }

    async fn last_seq(&self, conversation_id: &str) -> Result<u64, StoreError> {
        Cells::last_seq(self, conversation_id).await
    }
}

impl ScyllaStore {
    /// Up to `asked` messages of one span, ascending or descending.
    async fn read_span(
        &self,
        conversation_id: &str,
        span: Span,
        asked: u64,
        ascending: bool,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let (Some(bucket), Some(low), Some(high)) =
            (to_db(span.bucket), to_db(span.low), to_db(span.high))
        else {
            return Ok(Vec::new());
        };
        let statement = if ascending {
            &self.statements().page_ascending
        } else {
            &self.statements().page_descending
        };
        let limit = i32::try_from(asked).unwrap_or(i32::MAX);
        let rows: Vec<MessageColumns> = self
            .rows(
                statement,
                (conversation_id, bucket, low, high, limit),
                "reading history",
            )
            .await?;
        rows.into_iter()
            .map(|columns| message_from_db(conversation_id, columns))
            .collect()
    }
}
