//! The conformance suites again, with every call going to one of several
//! independent [`PostgresStore`]s (each with its own pool, as separate broker
//! nodes would have), in turn. So the races the suites start (appends to one
//! conversation, retries of one message, compare-and-set updates, prekey
//! takes, node leases) run between nodes, not just between connections of
//! one pool.
//!
//! Needs `PARLEY_TEST_POSTGRES` (see `postgres_support`).

mod postgres_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use persistence::postgres::PostgresStore;
use persistence::{
    AddOneTimePrekeys, AppendRequest, Appended, ConversationRecord, DeviceBundle, DeviceKeys,
    HistoryStore, KeyDirectory, KeyLimits, Lease, LeaseHolder, MetadataStore, NewUser, NodeLeases,
    OneTimePrekey, PageRequest, PushTarget, PutDeviceKeys, ReadCursor, Relation, RelationRecord,
    StoreError, StoredMessage, UserRecord,
};

/// How many nodes share the database.
const NODES: usize = 3;

/// Several stores on one database; each call goes to the next one in turn.
struct Nodes {
    /// One store (and pool) per node.
    stores: Vec<PostgresStore>,
    /// Counts calls, to pick the node.
    calls: AtomicUsize,
}

impl Nodes {
    /// [`NODES`] stores on this run's test database, or `None` to skip.
    async fn connect() -> Option<Nodes> {
        let mut stores = Vec::with_capacity(NODES);
        for _ in 0..NODES {
            let config = postgres_support::test_config().await?;
            stores.push(
                PostgresStore::connect(config)
                    .await
                    .expect("connect a node to the test database"),
            );
        }
        Some(Nodes {
            stores,
            calls: AtomicUsize::new(0),
        })
    }

    /// The node for the next call.
    fn node(&self) -> &PostgresStore {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        &self.stores[call % self.stores.len()]
    }
}

#[async_trait]
impl HistoryStore for Nodes {
    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        self.node().append(request).await
    }
    async fn fetch(
        &self,
        conversation_id: &str,
        page: PageRequest,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.node().fetch(conversation_id, page).await
    }
    async fn get(
        &self,
        conversation_id: &str,
        seq: u64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        HistoryStore::get(self.node(), conversation_id, seq).await
    }
    async fn last_seq(&self, conversation_id: &str) -> Result<u64, StoreError> {
        self.node().last_seq(conversation_id).await
    }
}

#[async_trait]
impl MetadataStore for Nodes {
    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError> {
        self.node().create_user(user).await
    }
    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.node().get_user(username).await
    }
    async fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<(), StoreError> {
        self.node().set_user_disabled(username, disabled).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.node().flush().await
    }
    async fn create_conversation(
        &self,
        record: ConversationRecord,
    ) -> Result<ConversationRecord, StoreError> {
        self.node().create_conversation(record).await
    }
    async fn get_conversation(&self, id: &str) -> Result<Option<ConversationRecord>, StoreError> {
        self.node().get_conversation(id).await
    }
    async fn update_conversation(
        &self,
        record: ConversationRecord,
        expected_version: u64,
    ) -> Result<ConversationRecord, StoreError> {
        self.node()
            .update_conversation(record, expected_version)
            .await
    }
    async fn conversations_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.node().conversations_of(user).await
    }
    async fn mark_read(
        &self,
        conversation_id: &str,
        user: &str,
        seq: u64,
    ) -> Result<u64, StoreError> {
        self.node().mark_read(conversation_id, user, seq).await
    }
    async fn read_cursors(&self, conversation_id: &str) -> Result<Vec<ReadCursor>, StoreError> {
        self.node().read_cursors(conversation_id).await
    }
    async fn put_push_target(&self, target: PushTarget) -> Result<(), StoreError> {
        self.node().put_push_target(target).await
    }
    async fn push_targets(&self, user: &str) -> Result<Vec<PushTarget>, StoreError> {
        self.node().push_targets(user).await
    }
    async fn delete_push_target(&self, user: &str, device_id: &str) -> Result<(), StoreError> {
        self.node().delete_push_target(user, device_id).await
    }
    async fn put_relation(&self, record: RelationRecord) -> Result<(), StoreError> {
        self.node().put_relation(record).await
    }
    async fn relations_of(&self, user: &str) -> Result<Vec<RelationRecord>, StoreError> {
        self.node().relations_of(user).await
    }
    async fn delete_relation(
        &self,
        user: &str,
        other: &str,
        relation: Relation,
    ) -> Result<(), StoreError> {
        self.node().delete_relation(user, other, relation).await
    }
}

#[async_trait]
impl KeyDirectory for Nodes {
    async fn put_device_keys(
        &self,
        user: &str,
        device_id: &str,
        keys: DeviceKeys,
        limits: KeyLimits,
    ) -> Result<PutDeviceKeys, StoreError> {
        self.node()
            .put_device_keys(user, device_id, keys, limits)
            .await
    }
    async fn device_keys(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<DeviceKeys>, StoreError> {
        self.node().device_keys(user, device_id).await
    }
    async fn add_one_time_prekeys(
        &self,
        user: &str,
        device_id: &str,
        prekeys: Vec<OneTimePrekey>,
        limits: KeyLimits,
    ) -> Result<AddOneTimePrekeys, StoreError> {
        self.node()
            .add_one_time_prekeys(user, device_id, prekeys, limits)
            .await
    }
    async fn take_bundles(&self, user: &str) -> Result<Vec<DeviceBundle>, StoreError> {
        self.node().take_bundles(user).await
    }
    async fn one_time_prekey_count(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        self.node().one_time_prekey_count(user, device_id).await
    }
}

#[async_trait]
impl NodeLeases for Nodes {
    async fn acquire(
        &self,
        node_id: u16,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.node().acquire(node_id, holder, ttl).await
    }
    async fn release(&self, node_id: u16, holder_id: &str) -> Result<bool, StoreError> {
        self.node().release(node_id, holder_id).await
    }
    async fn lease(&self, node_id: u16) -> Result<Option<Lease>, StoreError> {
        self.node().lease(node_id).await
    }
}

/// [`HistoryStore`] across nodes: seqs stay gap-free and ordered.
mod history {
    use std::sync::Arc;

    use persistence::HistoryStore;

    persistence::history_conformance_tests!({
        let Some(nodes) = super::Nodes::connect().await else {
            return;
        };
        std::future::ready(Arc::new(nodes) as Arc<dyn HistoryStore>)
    });
}

/// [`MetadataStore`] across nodes: compare-and-set and unique names hold.
mod metadata {
    use std::sync::Arc;

    use persistence::MetadataStore;

    persistence::metadata_conformance_tests!({
        let Some(nodes) = super::Nodes::connect().await else {
            return;
        };
        std::future::ready(Arc::new(nodes) as Arc<dyn MetadataStore>)
    });
}

/// [`KeyDirectory`] across nodes: limits and one-time prekey hand-out hold.
mod keys {
    use std::sync::Arc;

    use persistence::KeyDirectory;

    persistence::key_directory_conformance_tests!({
        let Some(nodes) = super::Nodes::connect().await else {
            return;
        };
        std::future::ready(Arc::new(nodes) as Arc<dyn KeyDirectory>)
    });
}

/// [`NodeLeases`] across nodes: one live holder per node id.
mod leases {
    use std::sync::Arc;

    use persistence::NodeLeases;

    persistence::node_leases_conformance_tests!({
        let Some(nodes) = super::Nodes::connect().await else {
            return;
        };
        std::future::ready(Arc::new(nodes) as Arc<dyn NodeLeases>)
    });
}
