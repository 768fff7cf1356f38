//! Message history: the durable, per-conversation ordered log of messages.
//!
//! The backend assigns sequence numbers: strictly increasing per
//! conversation, starting at 1, without gaps. Appends are idempotent on
//! `(conversation, sender, client_message_id)`. Backends batch concurrent
//! appends into one durable commit (group commit); `append` returns only
//! once the message is durable.
//!
//! [`HistoryStore::enqueue`] splits an append in two: the request's place in
//! its conversation is fixed when `enqueue` returns, and the returned
//! [`PendingAppend`] resolves once it is durable. A caller can so have several
//! appends on their way to disk at once and still know their order.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use crate::StoreError;

/// A message to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// The conversation.
    pub conversation_id: String,
    /// The sending user.
    pub sender: String,
    /// The sender's idempotency key.
    pub client_message_id: String,
    /// Server-assigned, globally unique message id (kept only if not a duplicate).
    pub message_id: u64,
    /// Server receive time, ms since the Unix epoch.
    pub server_time_ms: i64,
    /// The message as the broker encodes it (opaque to the store).
    pub payload: Vec<u8>,
    /// For edits and deletes: replace the payload of an earlier message in the same commit.
    pub amend: Option<Amend>,
}

/// Replaces the stored payload of an earlier message (edit or delete tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amend {
    /// The sequence number of the message to change.
    pub target_seq: u64,
    /// Its new payload.
    pub payload: Vec<u8>,
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The message's sequence number in its conversation.
    pub seq: u64,
    /// The message id (the original's for a duplicate).
    pub message_id: u64,
    /// The server time (the original's for a duplicate).
    pub server_time_ms: i64,
    /// True if this was a retry of an already stored message; nothing was written.
    pub duplicate: bool,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The conversation.
    pub conversation_id: String,
    /// Sequence number within the conversation.
    pub seq: u64,
    /// Globally unique message id.
    pub message_id: u64,
    /// The sending user.
    pub sender: String,
    /// The sender's idempotency key.
    pub client_message_id: String,
    /// Server receive time, ms since the Unix epoch.
    pub server_time_ms: i64,
    /// The payload as appended (or as last amended).
    pub payload: Vec<u8>,
}

/// Which end of a range a page is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The oldest messages after `after_seq`.
    Forward,
    /// The newest messages before `before_seq`.
    Backward,
}

/// A page request: messages with `after_seq < seq < before_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Exclusive lower bound (0 = from the start).
    pub after_seq: u64,
    /// Exclusive upper bound (`u64::MAX` = to the end).
    pub before_seq: u64,
    /// Maximum number of messages.
    pub limit: usize,
    /// Which end of the range to take the page from.
    pub direction: Direction,
}

/// An append whose order is fixed, resolving once it is durable (or failed).
///
/// Dropping it does not withdraw the append: the request is applied all the
/// same, only its outcome is not awaited.
pub type PendingAppend = Pin<Box<dyn Future<Output = Result<Appended, StoreError>> + Send>>;

/// The durable message log.
#[async_trait]
pub trait HistoryStore: Send + Sync + 'static {
    /// Appends a message, assigning the next sequence number, durably.
    ///
    /// A retry with the same `(conversation_id, sender, client_message_id)`
    /// returns the original's [`Appended`] with `duplicate: true` and stores nothing
    /// (its payload and amend are ignored).
    /// An `amend` naming a sequence number that does not exist in the conversation
    /// fails with [`StoreError::NotFound`] and appends nothing; a failed append does
    /// not use up its `client_message_id`.
    ///
    /// Concurrent appends behave as if they ran one at a time, in some order.
    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError>;
    /// Queues an append without waiting for it to be durable: like
    /// [`append`](Self::append), except that it returns as soon as the
    /// request's order is fixed, with a [`PendingAppend`] for its outcome.
    ///
    /// Requests enqueued one after another (each `enqueue` returning before
    /// the next one is called) are applied in that order, so a conversation's
    /// seqs follow it, even if their commits overlap. The outcome is the one
    /// `append` would give, and arrives only once the entry is durable.
    ///
    /// The default runs the whole append before returning (no overlap), which
    /// keeps that order for any backend; a backend with a write queue of its
    /// own overrides it.
    async fn enqueue(&self, request: AppendRequest) -> PendingAppend {
        let outcome = self.append(request).await;
        Box::pin(std::future::ready(outcome))
    }
    /// A page of messages with `after_seq < seq < before_seq`, always returned in
    /// ascending sequence order: [`Direction::Forward`] takes the lowest `limit`
    /// of them, [`Direction::Backward`] the highest. A `limit` of 0, an empty
    /// range or an unknown conversation gives an empty page.
    async fn fetch(
        &self,
        conversation_id: &str,
        page: PageRequest,
    ) -> Result<Vec<StoredMessage>, StoreError>;
    /// One message by sequence number; `Ok(None)` if there is no such message.
    async fn get(
        &self,
        conversation_id: &str,
        seq: u64,
    ) -> Result<Option<StoredMessage>, StoreError>;
    /// The highest sequence number of the conversation (0 if empty).
    async fn last_seq(&self, conversation_id: &str) -> Result<u64, StoreError>;
}
