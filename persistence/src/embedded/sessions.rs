//! [`SessionStore`] for [`EmbeddedStore`]: changes go through the session
//! writer's group commit, loads (start-up index, queue pages) run on the
//! blocking pool.

use async_trait::async_trait;

use super::{session_tables, EmbeddedStore};
use crate::sessions::{SessionOp, SessionStore, StoredQueued, StoredSession, StoredSessionIndex};
use crate::StoreError;

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn apply(&self, ops: Vec<SessionOp>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.inner.sessions.apply(ops).await
    }

    async fn load(&self) -> Result<Vec<StoredSession>, StoreError> {
        self.run_blocking(session_tables::load).await
    }

    async fn load_index(&self) -> Result<Vec<StoredSessionIndex>, StoreError> {
        self.run_blocking(session_tables::load_index).await
    }

    async fn load_queue(
        &self,
        key: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredQueued>, StoreError> {
        let key = key.to_owned();
        self.run_blocking(move |db| session_tables::load_queue(db, &key, from_seq, limit))
            .await
    }
}
