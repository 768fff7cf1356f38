//! [`MetadataStore`] for [`PostgresStore`]: routes each method to its table
//! module, under the operation timeout.

use async_trait::async_trait;

use super::cursor_queue::CursorKind;
use super::{conversations, push_targets, read_cursors, relations, users, PostgresStore};
use crate::{
    ConversationRecord, MetadataStore, NewUser, PushTarget, ReadCursor, Relation, RelationRecord,
    StoreError, UserRecord,
};

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError> {
        self.timed("creating a user", async {
            users::create(&self.client().await?, user).await
        })
        .await
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.timed("looking a user up", async {
            users::get(&self.client().await?, username).await
        })
        .await
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<(), StoreError> {
        self.timed("disabling or enabling a user", async {
            users::set_disabled(&self.client().await?, username, disabled).await
        })
        .await
    }

    /// Every committed write is durable in PostgreSQL already; this only
    /// checks that the server is reachable.
    async fn flush(&self) -> Result<(), StoreError> {
        self.timed("flushing", async {
            let client = self.client().await?;
            client
                .simple_query("")
                .await
                .map_err(|e| super::failure::db_error("flushing", &e))?;
            Ok(())
        })
        .await
    }

    async fn create_conversation(
        &self,
        record: ConversationRecord,
    ) -> Result<ConversationRecord, StoreError> {
        self.timed("creating a conversation", async {
            conversations::create(&mut self.client().await?, record).await
        })
        .await
    }

    async fn get_conversation(&self, id: &str) -> Result<Option<ConversationRecord>, StoreError> {
        self.timed("looking a conversation up", async {
            conversations::get(&self.client().await?, id).await
        })
        .await
    }

    async fn update_conversation(
        &self,
        record: ConversationRecord,
        expected_version: u64,
    ) -> Result<ConversationRecord, StoreError> {
        self.timed("updating a conversation", async {
            conversations::update(&mut self.client().await?, record, expected_version).await
        })
        .await
    }

    async fn conversations_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.timed("listing a user's conversations", async {
            conversations::of_user(&self.client().await?, user).await
        })
        .await
    }

    async fn mark_read(
        &self,
        conversation_id: &str,
        user: &str,
        seq: u64,
    ) -> Result<u64, StoreError> {
        self.timed(
            "marking messages read",
            self.mark_cursor(CursorKind::Read, conversation_id, user, seq),
        )
        .await
    }

    async fn read_cursors(&self, conversation_id: &str) -> Result<Vec<ReadCursor>, StoreError> {
        self.timed("listing read cursors", async {
            read_cursors::list(&self.client().await?, conversation_id).await
        })
        .await
    }

    async fn put_push_target(&self, target: PushTarget) -> Result<(), StoreError> {
        self.timed("storing a push target", async {
            push_targets::put(&self.client().await?, &target).await
        })
        .await
    }

    async fn push_targets(&self, user: &str) -> Result<Vec<PushTarget>, StoreError> {
        self.timed("listing push targets", async {
            push_targets::list(&self.client().await?, user).await
        })
        .await
    }

    async fn delete_push_target(&self, user: &str, device_id: &str) -> Result<(), StoreError> {
        self.timed("deleting a push target", async {
            push_targets::delete(&self.client().await?, user, device_id).await
        })
        .await
    }

    async fn put_relation(&self, record: RelationRecord) -> Result<(), StoreError> {
        self.timed("storing a relation", async {
            relations::put(&self.client().await?, &record).await
        })
        .await
    }

    async fn relations_of(&self, user: &str) -> Result<Vec<RelationRecord>, StoreError> {
        self.timed("listing relations", async {
            relations::list(&self.client().await?, user).await
        })
        .await
    }

    async fn delete_relation(
        &self,
        user: &str,
        other: &str,
        relation: Relation,
    ) -> Result<(), StoreError> {
        self.timed("deleting a relation", async {
            relations::delete(&self.client().await?, user, other, relation).await
        })
        .await
    }
}
