//! [`OfflineQueue`] for [`PostgresStore`]: delivered cursors, in `delivered`.

use async_trait::async_trait;

use super::cursor_queue::CursorKind;
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
        self.timed(
            "marking messages delivered",
            self.mark_cursor(CursorKind::Delivered, conversation_id, user, seq),
        )
        .await
    }

    async fn delivered(&self, user: &str, conversation_id: &str) -> Result<u64, StoreError> {
        self.timed("reading a delivered cursor", async {
            delivered::get(&self.client().await?, user, conversation_id).await
        })
        .await
    }
}
