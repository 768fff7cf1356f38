//! Counting a Parley cluster's bus traffic from the Kafka side: records
//! produced (the end offsets of the bus topics) and records read (the
//! offsets each node's consumer group committed), so a run can report bus
//! records per message for any Parley version, whether it broadcasts every
//! record or addresses records to single nodes.
//!
//! The topics are Parley's broadcast topic `{topic}` and the node topics
//! `{topic}.node-{n}` (absent on versions that broadcast everything, and
//! then counted as empty); node `n` reads as consumer group
//! `parley-node-{n}` and commits each record it has handed to its router.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

/// Where a cluster's bus is and which nodes read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusProbeConfig {
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// The broadcast topic (`[cluster.kafka] topic`).
    pub topic: String,
    /// The node ids of the cluster.
    pub nodes: Vec<u16>,
}

/// The bus's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BusSnapshot {
    /// Records in the bus topics (sum of end offsets).
    pub produced: i64,
    /// Records the nodes committed (sum of their groups' committed offsets).
    pub read: i64,
}

impl BusSnapshot {
    /// What happened between `before` and `self`.
    pub fn since(self, before: BusSnapshot) -> BusSnapshot {
        BusSnapshot {
            produced: self.produced - before.produced,
            read: self.read - before.read,
        }
    }
}

/// How long one metadata or offset request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the counters of the bus `config` names. Blocking.
///
/// # Errors
///
/// If Kafka cannot be reached.
pub fn snapshot(config: &BusProbeConfig) -> anyhow::Result<BusSnapshot> {
    let mut topics = vec![config.topic.clone()];
    topics.extend(config.nodes.iter().map(|n| node_topic(&config.topic, *n)));
    let admin: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .set("group.id", "parley-bench-probe")
        .create()?;
    let mut produced = 0;
    let mut partitions = Vec::new();
    for topic in &topics {
        let ids = partitions_of(&admin, topic)?;
        for &partition in &ids {
            let (_, high) = admin.fetch_watermarks(topic, partition, TIMEOUT)?;
            produced += high;
        }
        partitions.push((topic.clone(), ids));
    }
    let mut read = 0;
    for &node in &config.nodes {
        let group: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap)
            .set("group.id", format!("parley-node-{node}"))
            .set("enable.auto.commit", "false")
            .create()?;
        let mut wanted = TopicPartitionList::new();
        let own = node_topic(&config.topic, node);
        for (topic, ids) in &partitions {
            if *topic != config.topic && *topic != own {
                continue;
            }
            for &partition in ids {
                wanted.add_partition(topic, partition);
            }
        }
        if wanted.count() == 0 {
            continue;
        }
        let committed = group.committed_offsets(wanted, TIMEOUT)?;
        for element in committed.elements() {
            if let Offset::Offset(offset) = element.offset() {
                read += offset;
            }
        }
    }
    Ok(BusSnapshot { produced, read })
}

/// Node `node`'s own topic.
fn node_topic(topic: &str, node: u16) -> String {
    format!("{topic}.node-{node}")
}

/// The partitions of `topic`; none if it does not exist.
fn partitions_of(client: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = client.fetch_metadata(Some(topic), TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}
