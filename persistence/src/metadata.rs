//! The metadata store: accounts, conversations, members, read cursors and
//! push targets.

use async_trait::async_trait;

use crate::conversations::{ConversationRecord, ReadCursor};
use crate::{PushTarget, Relation, RelationRecord, StoreError};

/// A user account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The validated username (see `chat_core::ids::UserId`).
    pub username: String,
    /// The encoded password hash (`pbkdf2-sha256$iterations$salt$hash`); never the password.
    pub password_hash: String,
    /// A disabled user can neither log in nor connect.
    pub disabled: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// What sign-up hands to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The validated username.
    pub username: String,
    /// The encoded password hash.
    pub password_hash: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// Durable metadata: users, conversations with their members, read cursors
/// and push targets.
///
/// Every method is atomic: it either fully happens or leaves the store as it was.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Creates a user; [`StoreError::AlreadyExists`] if the username is taken.
    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError>;
    /// Looks a user up by username; `Ok(None)` if there is no such user.
    ///
    /// Usernames are compared exactly, byte for byte: normalising them is the caller's job.
    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Disables or re-enables a user; [`StoreError::NotFound`] if there is no such user.
    async fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<(), StoreError>;
    /// Makes every completed write durable (called on graceful shutdown).
    async fn flush(&self) -> Result<(), StoreError>;

    /// Creates a conversation (its `version` is stored as 1 whatever the input says);
    /// [`StoreError::AlreadyExists`] if the id is taken. Indexes every member.
    async fn create_conversation(
        &self,
        record: ConversationRecord,
    ) -> Result<ConversationRecord, StoreError>;
    /// Looks a conversation up by id; `Ok(None)` if there is no such conversation.
    async fn get_conversation(&self, id: &str) -> Result<Option<ConversationRecord>, StoreError>;
    /// Replaces a conversation if its stored version is `expected_version`, storing
    /// `expected_version + 1`; [`StoreError::Conflict`] if it changed since,
    /// [`StoreError::NotFound`] if it does not exist. Keeps the member index in step.
    ///
    /// `record.id` names the conversation and `record.version` is ignored; the
    /// returned record is what was stored.
    async fn update_conversation(
        &self,
        record: ConversationRecord,
        expected_version: u64,
    ) -> Result<ConversationRecord, StoreError>;
    /// Ids of the conversations `user` is currently a member of, in id order
    /// (empty for a user in none, or no such user).
    async fn conversations_of(&self, user: &str) -> Result<Vec<String>, StoreError>;
    /// Advances `user`'s read cursor in a conversation to `seq` (never moves back);
    /// returns the cursor after the call.
    ///
    /// The store does not check that the conversation exists or that `user` is a
    /// member: that is the caller's decision.
    async fn mark_read(
        &self,
        conversation_id: &str,
        user: &str,
        seq: u64,
    ) -> Result<u64, StoreError>;
    /// Read cursors of every user who has read anything in the conversation (a
    /// cursor above 0), in username order.
    ///
    /// Cursors are not removed with members: a removed member's last cursor stays
    /// listed, and the caller filters by the current member list if it needs to.
    async fn read_cursors(&self, conversation_id: &str) -> Result<Vec<ReadCursor>, StoreError>;

    /// Stores `target` as the push target of `(target.user, target.device_id)`,
    /// replacing the one that device had.
    ///
    /// The store does not check that the user exists nor interpret the kind
    /// or the target: that is the caller's decision.
    async fn put_push_target(&self, target: PushTarget) -> Result<(), StoreError>;
    /// The push targets of `user`, in device id order (empty for a user with
    /// none, or no such user).
    async fn push_targets(&self, user: &str) -> Result<Vec<PushTarget>, StoreError>;
    /// Removes the push target of `user`'s device `device_id`;
    /// [`StoreError::NotFound`] if that device has none.
    async fn delete_push_target(&self, user: &str, device_id: &str) -> Result<(), StoreError>;

    // ----- Relations (blocks and accepted message requests) -----

    /// Records that `record.user` decided `record.relation` about
    /// `record.other`, replacing the time of the same decision made before.
    /// The store does not check that either user exists.
    async fn put_relation(&self, record: RelationRecord) -> Result<(), StoreError>;
    /// Every decision of `user` about others, ordered by other user, then
    /// relation (empty for a user with none, or no such user).
    async fn relations_of(&self, user: &str) -> Result<Vec<RelationRecord>, StoreError>;
    /// Takes back `user`'s decision `relation` about `other`;
    /// [`StoreError::NotFound`] if there is none.
    async fn delete_relation(
        &self,
        user: &str,
        other: &str,
        relation: Relation,
    ) -> Result<(), StoreError>;
}
