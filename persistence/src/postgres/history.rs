//! [`HistoryStore`] for [`PostgresStore`]: the message log, in `messages`.
//!
//! PostgreSQL groups concurrent commits into shared WAL flushes by itself, so
//! each append is its own short transaction; `append` returns once the commit
//! is durable (with the server's default `synchronous_commit = on`).

use async_trait::async_trait;

use super::{messages, PostgresStore};
use crate::{AppendRequest, Appended, HistoryStore, PageRequest, StoreError, StoredMessage};

#[async_trait]
impl HistoryStore for PostgresStore {
    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        self.timed("appending a message", async {
            messages::append(&mut self.client().await?, request).await
        })
        .await
    }

    async fn fetch(
        &self,
        conversation_id: &str,
        page: PageRequest,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.timed("fetching history", async {
            messages::fetch(&self.client().await?, conversation_id, page).await
        })
        .await
    }

    async fn get(
        &self,
        conversation_id: &str,
        seq: u64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        self.timed("reading a message", async {
            messages::get(&self.client().await?, conversation_id, seq).await
        })
        .await
    }

    async fn last_seq(&self, conversation_id: &str) -> Result<u64, StoreError> {
        self.timed("reading the last seq", async {
            messages::last_seq(&self.client().await?, conversation_id).await
        })
        .await
    }
}
