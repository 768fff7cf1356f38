//! The retained plain MQTT messages of a cluster, shared by its nodes.
//!
//! Each node keeps retained messages in its engine's memory. In a cluster
//! the node that accepts a retained publish (or its deletion, an empty
//! payload) also writes it here before forwarding it to the other nodes,
//! and a node that starts loads every row, so every node ends with the
//! same set, also one started after the publish. Every write gets a
//! version above every earlier one; nodes keep the highest version they saw
//! per topic, so copies that arrive in different orders (two nodes writing
//! one topic at once, a record replayed after a restart) still agree.

use async_trait::async_trait;

use crate::StoreError;

/// One topic's row: its latest retained message, or its deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedRow {
    /// The MQTT topic.
    pub topic: String,
    /// The write's version (higher is newer).
    pub version: u64,
    /// The message, as the bus record a node forwards it in
    /// ([`crate::kafka::codec`]); `None` once deleted.
    pub message: Option<Vec<u8>>,
    /// Milliseconds left of its Message Expiry Interval, if it has one.
    pub expires_in_ms: Option<u64>,
}

/// The will of a connection whose node died, as taken from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanedWill {
    /// The connection's user.
    pub user: String,
    /// Its MQTT client id.
    pub client_id: String,
    /// The will message, as a bus record ([`crate::kafka::codec`]).
    pub will: Vec<u8>,
    /// Its Will Delay Interval, in seconds.
    pub delay_secs: u32,
}

/// Where a cluster keeps its retained plain MQTT messages and the wills of
/// live connections, and which nodes are alive (the nodes' routes and
/// guarded wills go with their node lease).
#[async_trait]
pub trait ClusterMqttStore: Send + Sync + 'static {
    /// Records `message` (a bus record's value; `None` deletes) as the
    /// retained message of `topic`, expiring after `expires_in_secs` if
    /// given. Returns its version, above every earlier write's.
    async fn write_retained(
        &self,
        topic: &str,
        message: Option<&[u8]>,
        expires_in_secs: Option<u32>,
    ) -> Result<u64, StoreError>;

    /// Every row, deleted ones included (their versions still count);
    /// expired messages are left out.
    async fn retained(&self) -> Result<Vec<RetainedRow>, StoreError>;

    /// The node ids whose lease is live.
    async fn live_nodes(&self) -> Result<Vec<u16>, StoreError>;

    /// Keeps the will of connection `connection` of node `node_id` for
    /// `user`'s `client_id` (replacing any will of that key) until
    /// [`ClusterMqttStore::drop_will`], so another node can publish it if
    /// this node dies first.
    async fn guard_will(
        &self,
        user: &str,
        client_id: &str,
        node_id: u16,
        connection: u64,
        will: &[u8],
        delay_secs: u32,
    ) -> Result<(), StoreError>;

    /// Forgets the will guarded for that connection (it ended); a newer
    /// connection's will of the same key stays.
    async fn drop_will(
        &self,
        user: &str,
        client_id: &str,
        node_id: u16,
        connection: u64,
    ) -> Result<(), StoreError>;

    /// Takes (deletes and returns) the guarded wills of nodes whose lease
    /// ran out, and those of `own_node` (left by an earlier run of it if
    /// given): each is returned to exactly one caller.
    async fn take_orphaned_wills(
        &self,
        own_node: Option<u16>,
    ) -> Result<Vec<OrphanedWill>, StoreError>;
}
