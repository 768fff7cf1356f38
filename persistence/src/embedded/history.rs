//! [`HistoryStore`] for [`EmbeddedStore`]: appends go through the group-commit
//! writer (see `group_commit`), which also gives [`HistoryStore::enqueue`] its
//! order-at-enqueue; reads run on the blocking pool against the
//! history tables (see `messages`).

use async_trait::async_trait;

use super::{messages, EmbeddedStore};
use crate::{
    AppendRequest, Appended, HistoryStore, PageRequest, PendingAppend, StoreError, StoredMessage,
};

#[async_trait]
impl HistoryStore for EmbeddedStore {
    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        self.inner.committer.append(request).await
    }

    async fn enqueue(&self, request: AppendRequest) -> PendingAppend {
        self.inner.committer.enqueue(request)
    }

    async fn fetch(
        &self,
        conversation_id: &str,
        page: PageRequest,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let conversation_id = conversation_id.to_owned();
        self.run_history_read(move |db| messages::fetch(db, &conversation_id, page))
            .await
    }

    async fn get(
        &self,
        conversation_id: &str,
        seq: u64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let conversation_id = conversation_id.to_owned();
        self.run_history_read(move |db| messages::get(db, &conversation_id, seq))
            .await
    }

    async fn last_seq(&self, conversation_id: &str) -> Result<u64, StoreError> {
        let conversation_id = conversation_id.to_owned();
        self.run_history_read(move |db| messages::last_seq(db, &conversation_id))
            .await
    }
}
