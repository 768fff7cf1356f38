//! [`OfflineQueue`] for [`EmbeddedStore`]: delivered cursors in the
//! `delivered_cursors` table, advanced in the group-commit writer's next
//! commit and read on the blocking pool.

use async_trait::async_trait;

use super::{delivered, EmbeddedStore};
use crate::{OfflineQueue, StoreError};

#[async_trait]
impl OfflineQueue for EmbeddedStore {
    async fn mark_delivered(
        &self,
        user: &str,
        conversation_id: &str,
        seq: u64,
    ) -> Result<u64, StoreError> {
        self.inner
            .committer
            .advance_cursor(delivered::mark(user, conversation_id, seq))
            .await
    }

    async fn delivered(&self, user: &str, conversation_id: &str) -> Result<u64, StoreError> {
        let (user, conversation_id) = (user.to_owned(), conversation_id.to_owned());
        self.run_history_read(move |db| delivered::get(db, &user, &conversation_id))
            .await
    }
}
