//! [`NodeLeases`] for [`PostgresStore`]: routes each method to
//! `node_leases`, under the operation timeout.

use std::time::Duration;

use async_trait::async_trait;

use super::{node_leases, PostgresStore};
use crate::{Lease, LeaseHolder, NodeLeases, StoreError};

#[async_trait]
impl NodeLeases for PostgresStore {
    async fn acquire(
        &self,
        node_id: u16,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.timed("taking a node lease", async {
            node_leases::acquire(&self.client().await?, node_id, holder, ttl).await
        })
        .await
    }

    async fn release(&self, node_id: u16, holder_id: &str) -> Result<bool, StoreError> {
        self.timed("releasing a node lease", async {
            node_leases::release(&self.client().await?, node_id, holder_id).await
        })
        .await
    }

    async fn lease(&self, node_id: u16) -> Result<Option<Lease>, StoreError> {
        self.timed("reading a node lease", async {
            node_leases::get(&self.client().await?, node_id).await
        })
        .await
    }
}
