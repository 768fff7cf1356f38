//! Undelivered state: how far each user has been delivered in each
//! conversation.
//!
//! Parley does not write one queue entry per recipient per message (a message
//! to a large group would cost one write per member). Instead each user has a
//! delivered cursor per conversation, advanced by the client's DELIVERED
//! receipts; what a user missed is every message above that cursor, which
//! the broker reads from history on reconnect.

use async_trait::async_trait;

use crate::StoreError;

/// Per-user, per-conversation delivered cursors.
#[async_trait]
pub trait OfflineQueue: Send + Sync + 'static {
    /// Advances `user`'s delivered cursor in `conversation_id` to `seq`; never moves it back.
    /// Returns the cursor after the call.
    async fn mark_delivered(
        &self,
        user: &str,
        conversation_id: &str,
        seq: u64,
    ) -> Result<u64, StoreError>;
    /// The user's delivered cursor in one conversation (0 if nothing was delivered).
    async fn delivered(&self, user: &str, conversation_id: &str) -> Result<u64, StoreError>;
}
