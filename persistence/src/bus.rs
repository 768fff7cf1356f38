//! The cluster bus: how several Parley nodes deliver to each other's clients.
//!
//! On a single node the chat pipeline publishes to its own router. In a
//! cluster every server-side fan-out (a message to the members' inboxes, a
//! receipt, a typing indicator, a presence change) is appended to the bus
//! instead, as one record carrying its topics and its payload once, and each
//! node republishes the payload of every record it reads on each of its
//! topics to its local router, which delivers it to whichever of its clients
//! subscribed. Plain MQTT publishes that subscribers on other nodes need
//! travel the same way, with their MQTT 5 properties ([`MqttForward`]).
//!
//! A record has an [`Audience`]: [`Audience::Everyone`] (the broadcast
//! stream, read by every node) or [`Audience::Node`] (that node's own
//! stream, read by it alone), so a fan-out or a forwarded publish can go
//! only to the nodes that hold its recipients. Records with the same key (a
//! conversation or a user) keep their order within each stream. The Kafka
//! backend is the production one.

use async_trait::async_trait;

use crate::StoreError;

/// One fan-out to carry to every node: a payload to publish on each of
/// several MQTT topics (a message to every member's inbox is one record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusRecord {
    /// Ordering key: records with the same key are consumed in the order
    /// they were published (a conversation id, or a user id for presence).
    pub key: String,
    /// The MQTT topics to publish the payload on at each node, in this
    /// order; at least one.
    pub topics: Vec<String>,
    /// The MQTT payload, the same for every topic.
    pub payload: Vec<u8>,
    /// The QoS to publish with (0 or 1).
    pub qos: u8,
    /// Whether each node's router retains it.
    pub retain: bool,
    /// The node id that published it.
    pub origin_node: u16,
    /// For a plain MQTT publish forwarded between nodes: its MQTT 5
    /// properties, its publisher's namespace and the nodes that need it.
    /// `None` for the chat pipeline's fan-outs.
    pub mqtt: Option<Box<MqttForward>>,
}

/// What a forwarded plain MQTT publish carries besides its topic and payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttForward {
    /// The publisher's namespace (its user), which owns a retained message
    /// for the per-user quota; empty for Parley's own publishes.
    pub namespace: String,
    /// MQTT 5 Payload Format Indicator.
    pub payload_format_indicator: Option<u8>,
    /// MQTT 5 Content Type.
    pub content_type: Option<String>,
    /// MQTT 5 Response Topic.
    pub response_topic: Option<String>,
    /// MQTT 5 Correlation Data.
    pub correlation_data: Option<Vec<u8>>,
    /// MQTT 5 User Properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Seconds left of the Message Expiry Interval when it was forwarded.
    pub message_expiry_secs: Option<u32>,
    /// For a retained publish: its version in the cluster's retained store
    /// (a node keeps the highest it saw per topic); 0 otherwise.
    pub retained_version: u64,
    /// The nodes that have matching subscriptions, each with the shared
    /// groups it delivers to. A retained publish is for every node (each
    /// keeps it), whether listed or not.
    pub nodes: Vec<NodeTarget>,
}

/// One node a forwarded publish is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTarget {
    /// The node id.
    pub node: u16,
    /// The shared groups this node delivers the publish to (one member
    /// each); it skips every other shared group it has members of.
    pub shared: Vec<SharedGroupRef>,
}

/// A shared subscription group of the cluster: `$share/{group}/{filter}` in
/// the namespace of its members' user.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SharedGroupRef {
    /// The members' namespace (user).
    pub namespace: String,
    /// The subscription as written: `$share/{group}/{filter}`.
    pub filter: String,
}

/// Which nodes read a record: the stream it is published to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Audience {
    /// The broadcast stream: every subscribed node reads it.
    #[default]
    Everyone,
    /// Node `n`'s own stream: only node `n` reads it.
    Node(u16),
}

/// Where a consumed record sits on the bus, for acknowledging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusPosition {
    /// The stream the record was read from.
    pub stream: Audience,
    /// The partition (or shard) the record is in.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// A record as consumed, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The record.
    pub record: BusRecord,
    /// Where it is, for [`BusConsumer::ack`].
    pub position: BusPosition,
}

/// The producing side of the bus; shared by all tasks of a node.
#[async_trait]
pub trait ClusterBus: Send + Sync {
    /// Appends `records` to the broadcast stream ([`Audience::Everyone`]);
    /// see [`ClusterBus::publish_to`].
    async fn publish(&self, records: Vec<BusRecord>) -> Result<(), StoreError> {
        self.publish_to(
            records
                .into_iter()
                .map(|record| (Audience::Everyone, record))
                .collect(),
        )
        .await
    }

    /// Appends each record durably to the stream of its [`Audience`]: when
    /// this returns `Ok`, every record is acknowledged by the bus and will
    /// reach every subscribed node of its audience, in order per key within
    /// that stream (records of one call keep their relative order per key
    /// and audience). Records of one key in two streams have no order
    /// between them.
    ///
    /// A record for [`Audience::Node`] `n` is read by node `n` only, once it
    /// has subscribed (before that, its stream may not exist yet: publish to
    /// nodes that are known to have subscribed, such as those holding
    /// sessions in the session directory).
    ///
    /// A backend with a size limit per record may carry a record whose
    /// topics do not fit as several consecutive records of the same key, each
    /// with the same payload and a run of the topics, in order: consumers
    /// then publish every topic once, in order, as if it were one record.
    async fn publish_to(&self, records: Vec<(Audience, BusRecord)>) -> Result<(), StoreError>;

    /// Starts consuming as node `node_id`: its own stream
    /// ([`Audience::Node`]`(node_id)`) and the broadcast stream. Every
    /// record published to either after this call returns, by any node
    /// (this one included), is delivered to the returned consumer, in order
    /// per key within each stream. A node that restarts resumes each stream
    /// after the last record it acknowledged there.
    async fn subscribe(&self, node_id: u16) -> Result<Box<dyn BusConsumer>, StoreError>;
}

/// One node's consuming side of the bus.
#[async_trait]
pub trait BusConsumer: Send {
    /// Waits for the next record.
    async fn next(&mut self) -> Result<Delivery, StoreError>;

    /// Marks everything up to and including `position` (in its stream and
    /// partition) as done, so it is not delivered again after a restart.
    /// Call it only after the record has been handed to the local router.
    async fn ack(&mut self, position: BusPosition) -> Result<(), StoreError>;
}
