//! [`SessionStore`] for [`EmbeddedStore`]: changes go through the session
//! writer's group commit, loads run on the blocking pool.

use async_trait::async_trait;

use super::{session_tables, EmbeddedStore};
use crate::sessions::{SessionOp, SessionStore, StoredSession};
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
}
