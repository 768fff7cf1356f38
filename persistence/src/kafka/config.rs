//! [`KafkaConfig`]: where the bus lives and how long to wait for it.

use std::time::Duration;

/// How to reach the Kafka cluster and which topic carries the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// The one topic that carries every bus record.
    pub topic: String,
    /// Partitions to create the topic with. Records of one key share a
    /// partition, so this bounds how many keys are consumed in parallel; it is
    /// only used when Parley creates the topic.
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
}

impl KafkaConfig {
    /// A configuration for `topic` on `bootstrap_servers` with Parley's
    /// defaults: 12 partitions, the cluster's replication factor, the topic
    /// created if missing, and a 30 s timeout.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            partitions: 12,
            replication_factor: None,
            create_topic: true,
            timeout: Duration::from_secs(30),
        }
    }

    /// The timeout in whole milliseconds, as librdkafka settings want it.
    pub(crate) fn timeout_ms(&self) -> String {
        self.timeout.as_millis().max(1).to_string()
    }
}
