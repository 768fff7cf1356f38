//! [`KafkaConfig`]: where the bus lives and how long to wait for it.

use std::time::Duration;

/// How to reach the Kafka cluster and which topic carries the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// The broadcast topic, read by every node. Node `n`'s own records go
    /// to the topic [`KafkaConfig::node_topic`] (`{topic}.node-{n}`).
    pub topic: String,
    /// Partitions to create the broadcast topic and each node's topic with.
    /// Records of one key share a partition, so this bounds how many keys
    /// are consumed in parallel; it is only used when Parley creates a topic.
    pub partitions: i32,
    /// Replication factor to create the topic with; `None` leaves it to the
    /// cluster's `default.replication.factor`. Only used when Parley creates
    /// the topic.
    pub replication_factor: Option<i32>,
    /// Whether to create the topic when it is missing. When `false` the topic
    /// must exist before the first node starts.
    pub create_topic: bool,
    /// How long one operation may wait for the cluster: a publish's delivery
    /// reports, fetching metadata and offsets when subscribing, a commit.
    pub timeout: Duration,
    /// The largest Kafka record the producer sends, key, value and framing
    /// included (librdkafka's `message.max.bytes`). A bus record whose
    /// topics do not fit is sent as several (see
    /// [`codec::encode_values`](super::codec::encode_values)); the topic's
    /// `max.message.bytes` on the brokers must allow it.
    pub max_record_bytes: usize,
}

/// The default of [`KafkaConfig::max_record_bytes`]: librdkafka's default
/// `message.max.bytes`, below Apache Kafka's default `message.max.bytes`
/// and `max.message.bytes` (1,048,588).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_000_000;

/// The most bytes librdkafka adds to a record's key and value when it checks
/// them against `message.max.bytes` (its `RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`
/// is 36), rounded up.
pub const RECORD_OVERHEAD: usize = 64;

impl KafkaConfig {
    /// A configuration for `topic` on `bootstrap_servers` with Parley's
    /// defaults: 12 partitions, the cluster's replication factor, the topic
    /// created if missing, a 30 s timeout and records of at most
    /// [`DEFAULT_MAX_RECORD_BYTES`].
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            partitions: 12,
            replication_factor: None,
            create_topic: true,
            timeout: Duration::from_secs(30),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// The topic only node `node_id` reads: `{topic}.node-{node_id}`.
    pub fn node_topic(&self, node_id: u16) -> String {
        format!("{}.node-{node_id}", self.topic)
    }

    /// The topic of `audience`'s stream.
    pub fn topic_of(&self, audience: crate::Audience) -> String {
        match audience {
            crate::Audience::Everyone => self.topic.clone(),
            crate::Audience::Node(node_id) => self.node_topic(node_id),
        }
    }

    /// The largest value a record with a key of `key_len` bytes may have.
    pub fn max_value_bytes(&self, key_len: usize) -> usize {
        self.max_record_bytes
            .saturating_sub(RECORD_OVERHEAD)
            .saturating_sub(key_len)
    }

    /// The timeout in whole milliseconds, as librdkafka settings want it.
    pub(crate) fn timeout_ms(&self) -> String {
        self.timeout.as_millis().max(1).to_string()
    }
}
