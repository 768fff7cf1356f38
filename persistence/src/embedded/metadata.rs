//! [`MetadataStore`] for [`EmbeddedStore`]: each method runs one table operation
//! (users, conversations, read cursors or push targets) on the blocking pool;
//! looking a user up is a point read done in place, and a read cursor moves
//! in the group-commit writer's next commit.

use async_trait::async_trait;

use super::{conversations, push_targets, read_cursors, relations, users, EmbeddedStore};
use crate::{
    ConversationRecord, MetadataStore, NewUser, PushTarget, ReadCursor, Relation, RelationRecord,
    StoreError, UserRecord,
};

#[async_trait]
impl MetadataStore for EmbeddedStore {
    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError> {
        self.run_blocking(move |db| users::create(db, user)).await
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        // Read on every CONNECT: a point read, done in place.
        self.run_point_read(|db| users::get(db, username))
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<(), StoreError> {
        let username = username.to_owned();
        self.run_blocking(move |db| users::set_disabled(db, &username, disabled))
            .await
    }

    /// Every write already commits with immediate durability before it returns,
    /// so there is nothing left to flush.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn create_conversation(
        &self,
        record: ConversationRecord,
    ) -> Result<ConversationRecord, StoreError> {
        self.run_blocking(move |db| conversations::create(db, record))
            .await
    }

    async fn get_conversation(&self, id: &str) -> Result<Option<ConversationRecord>, StoreError> {
        let id = id.to_owned();
        self.run_blocking(move |db| conversations::get(db, &id))
            .await
    }

    async fn update_conversation(
        &self,
        record: ConversationRecord,
        expected_version: u64,
    ) -> Result<ConversationRecord, StoreError> {
        self.run_blocking(move |db| conversations::update(db, record, expected_version))
            .await
    }

    async fn conversations_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let user = user.to_owned();
        self.run_blocking(move |db| conversations::of_user(db, &user))
            .await
    }

    async fn mark_read(
        &self,
        conversation_id: &str,
        user: &str,
        seq: u64,
    ) -> Result<u64, StoreError> {
        self.inner
            .committer
            .advance_cursor(read_cursors::mark_read(conversation_id, user, seq))
            .await
    }

    async fn read_cursors(&self, conversation_id: &str) -> Result<Vec<ReadCursor>, StoreError> {
        let conversation_id = conversation_id.to_owned();
        self.run_history_read(move |db| read_cursors::of_conversation(db, &conversation_id))
            .await
    }

    async fn put_push_target(&self, target: PushTarget) -> Result<(), StoreError> {
        self.run_blocking(move |db| push_targets::put(db, target))
            .await
    }

    async fn push_targets(&self, user: &str) -> Result<Vec<PushTarget>, StoreError> {
        let user = user.to_owned();
        self.run_blocking(move |db| push_targets::of_user(db, &user))
            .await
    }

    async fn delete_push_target(&self, user: &str, device_id: &str) -> Result<(), StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.run_blocking(move |db| push_targets::delete(db, &user, &device_id))
            .await
    }

    async fn put_relation(&self, record: RelationRecord) -> Result<(), StoreError> {
        self.run_blocking(move |db| relations::put(db, record))
            .await
    }

    async fn relations_of(&self, user: &str) -> Result<Vec<RelationRecord>, StoreError> {
        let user = user.to_owned();
        self.run_blocking(move |db| relations::of_user(db, &user))
            .await
    }

    async fn delete_relation(
        &self,
        user: &str,
        other: &str,
        relation: Relation,
    ) -> Result<(), StoreError> {
        let (user, other) = (user.to_owned(), other.to_owned());
        self.run_blocking(move |db| relations::delete(db, &user, &other, relation))
            .await
    }
}
