//! [`HistoryStore`] for [`PostgresStore`]: the message log, in `messages`.
//!
//! Appends go through the group-commit lanes (`append_queue`): whatever is
//! queued at the same moment is written in one transaction, and `append`
//! returns once that commit is durable (with the server's default
//! `synchronous_commit = on`). [`HistoryStore::enqueue`] is the queueing
//! step alone. With `history_writers(0)` each append is its own
//! transaction instead, run by its caller.

use async_trait::async_trait;

use super::{messages, PostgresStore};
use crate::{
    AppendRequest, Appended, HistoryStore, PageRequest, PendingAppend, StoreError, StoredMessage,
};

#[async_trait]
impl HistoryStore for PostgresStore {
    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        match &self.appends {
            Some(appends) => appends.enqueue(request).await,
            None => {
                self.timed("appending a message", async {
                    messages::append(&mut self.client().await?, request).await
                })
                .await
            }
        }
    }

    async fn enqueue(&self, request: AppendRequest) -> PendingAppend {
        match &self.appends {
            Some(appends) => appends.enqueue(request),
            None => Box::pin(std::future::ready(self.append(request).await)),
        }
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
