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

/// Where a cluster keeps its retained plain MQTT messages, and which nodes
/// are alive (the nodes' routes expire with their node lease).
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
}
