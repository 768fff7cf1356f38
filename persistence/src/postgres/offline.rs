//! [`OfflineQueue`] for [`PostgresStore`]: delivered cursors, in `delivered`.

use async_trait::async_trait;

use super::{delivered, PostgresStore};
use crate::{OfflineQueue, StoreError};

#[async_trait]
impl OfflineQueue for PostgresStore {
    async fn mark_delivered(
        &self,
        user: &str,
        conversation_id: &str,
        seq: u64,
    ) -> Result<u64, StoreError> {
        self.timed("marking messages delivered", async {
            delivered::mark(&self.client().await?, user, conversation_id, seq).await
        })
        .await
    }

    async fn delivered(&self, user: &str, conversation_id: &str) -> Result<u64, StoreError> {
        self.timed("reading a delivered cursor", async {
            delivered::get(&self.client().await?, user, conversation_id).await
        })
        .await
    }
}
