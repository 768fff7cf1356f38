//! The consuming side: one consumer per node, reading every partition of the
//! broadcast topic and of the node's own topic (`{topic}.node-{n}`, created
//! here if missing and allowed) from where that node left off.
//!
//! The consumer does not join a group's partition assignment: a node must
//! read *every* partition of both, so it assigns them all to itself. The consumer
//! group `parley-node-{node_id}` only stores the node's committed offsets,
//! which is what lets a restarted node resume after the last record it
//! acknowledged. Starting positions are resolved before
//! [`subscribe`] returns: the committed offset where there is one, otherwise
//! the partition's end at that moment, so every record published after
//! `subscribe` returns is delivered, and a brand-new node does not replay
//! history. That end is committed right away, so a node that stops before
//! acknowledging anything still resumes from where it first started.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::codec::decode;
use super::{admin, unavailable, KafkaConfig};
use crate::{Audience, BusConsumer, BusPosition, Delivery, StoreError};

/// The consumer group that stores node `node_id`'s offsets.
pub fn group_id(node_id: u16) -> String {
    format!("parley-node-{node_id}")
}

/// One node's consumer of the bus topics.
pub(super) struct KafkaConsumer {
    consumer: Arc<StreamConsumer>,
    /// The broadcast topic.
    topic: String,
    /// This node's own topic.
    node_topic: String,
    node_id: u16,
    timeout: Duration,
    /// Per topic (broadcast or own) and partition, the offset committed by
    /// this consumer (the next record to read), so acks never move a
    /// partition back.
    committed: HashMap<(Audience, i32), i64>,
}

/// Starts consuming the bus topic as node `node_id`; see the module docs.
pub(super) async fn subscribe(
    config: &KafkaConfig,
    node_id: u16,
) -> Result<KafkaConsumer, StoreError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", group_id(node_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Only used if a committed offset is no longer in the log (the node
        // was away longer than the topic's retention): resume at the end.
        .set("auto.offset.reset", "latest")
        .set("socket.timeout.ms", config.timeout_ms())
        // How long the broker may hold a fetch that finds no new record.
        // Kafka answers as soon as a record arrives anyway; brokers that
        // always wait it out (tansu) deliver at most this much later.
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(|e| unavailable("creating the consumer", e))?;
    let consumer = Arc::new(consumer);
    let topic = config.topic.clone();
    let node_topic = config.node_topic(node_id);
    let timeout = config.timeout;
    admin::ensure_topic(config, &node_topic).await?;

    let mut committed = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for (audience, name) in [
        (Audience::Everyone, topic.clone()),
        (Audience::Node(node_id), node_topic.clone()),
    ] {
        let partitions = {
            let (consumer, wanted) = (Arc::clone(&consumer), name.clone());
            admin::partitions(config, &name, move || {
                admin::topic_partitions(consumer.client(), &wanted, timeout)
            })
            .await?
        };
        let start = {
            let (consumer, name) = (Arc::clone(&consumer), name.clone());
            tokio::task::spawn_blocking(move || {
                start_offsets(&consumer, &name, &partitions, timeout)
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("kafka: offsets task: {e}")))??
        };
        for (&partition, &offset) in &start {
            assignment
                .add_partition_offset(&name, partition, Offset::Offset(offset))
                .map_err(|e| unavailable("building the assignment", e))?;
            committed.insert((audience, partition), offset);
        }
    }
    consumer
        .assign(&assignment)
        .map_err(|e| unavailable("assigning the bus partitions", e))?;
    tracing::debug!(node_id, topic = %topic, node_topic = %node_topic, ?committed, "subscribed to the cluster bus");
    Ok(KafkaConsumer {
        consumer,
        topic,
        node_topic,
        node_id,
        timeout,
        committed,
    })
}

/// Where to start reading each partition: the group's committed offset, or
/// the partition's current end when the group has none. Blocking.
fn start_offsets(
    consumer: &StreamConsumer,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<HashMap<i32, i64>, StoreError> {
    let mut wanted = TopicPartitionList::new();
    for &partition in partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, timeout)
        .map_err(|e| unavailable("fetching committed offsets", e))?;
    let mut start = HashMap::with_capacity(partitions.len());
    let mut fresh = TopicPartitionList::new();
    for &partition in partitions {
        let offset = match committed
            .find_partition(topic, partition)
            .map(|p| p.offset())
        {
            Some(Offset::Offset(offset)) if offset >= 0 => offset,
            _ => {
                let (_low, high) = consumer
                    .fetch_watermarks(topic, partition, timeout)
                    .map_err(|e| unavailable("fetching the partition's end", e))?;
                fresh
                    .add_partition_offset(topic, partition, Offset::Offset(high))
                    .map_err(|e| unavailable("building the commit", e))?;
                high
            }
        };
        start.insert(partition, offset);
    }
    // Record where a new node starts, so that if it stops before acking
    // anything in a partition, it resumes there and not at a later end.
    if fresh.count() > 0 {
        consumer
            .commit(&fresh, CommitMode::Sync)
            .map_err(|e| unavailable("committing the starting offsets", e))?;
    }
    Ok(start)
}

#[async_trait]
impl BusConsumer for KafkaConsumer {
    /// Waits for the next record. A record that is not a bus record this
    /// build can decode is skipped with a warning (no node could ever read
    /// it); a Kafka error is returned as [`StoreError::Unavailable`] and the
    /// consumer stays usable.
    async fn next(&mut self) -> Result<Delivery, StoreError> {
        loop {
            let message = self
                .consumer
                .recv()
                .await
                .map_err(|e| unavailable("consuming", e))?;
            let stream = if message.topic() == self.node_topic {
                Audience::Node(self.node_id)
            } else {
                Audience::Everyone
            };
            let position = BusPosition {
                stream,
                partition: message.partition(),
                offset: message.offset(),
            };
            match decode(message.key(), message.payload()) {
                Ok(record) => return Ok(Delivery { record, position }),
                Err(e) => tracing::warn!(
                    topic = %message.topic(),
                    partition = position.partition,
                    offset = position.offset,
                    error = %e,
                    "skipping a record on the cluster bus that is not a bus record"
                ),
            }
        }
    }

    /// Commits `position.offset + 1` for its topic and partition and waits for the
    /// cluster to confirm. Acking a position at or before one acked already
    /// does nothing. Each call is one round trip, so a busy node may ack only
    /// the latest position per partition now and then: an ack covers
    /// everything before it in its partition.
    async fn ack(&mut self, position: BusPosition) -> Result<(), StoreError> {
        let next = position.offset.saturating_add(1);
        let slot = (position.stream, position.partition);
        if self.committed.get(&slot).is_some_and(|&done| done >= next) {
            return Ok(());
        }
        let topic = match position.stream {
            Audience::Everyone => &self.topic,
            Audience::Node(_) => &self.node_topic,
        };
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(topic, position.partition, Offset::Offset(next))
            .map_err(|e| unavailable("building the commit", e))?;
        let consumer = Arc::clone(&self.consumer);
        let timeout = self.timeout;
        tokio::time::timeout(
            timeout,
            tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync)),
        )
        .await
        .map_err(|_| StoreError::Unavailable(format!("kafka: commit took over {timeout:?}")))?
        .map_err(|e| StoreError::Unavailable(format!("kafka: commit task: {e}")))?
        .map_err(|e| unavailable("committing", e))?;
        self.committed.insert(slot, next);
        Ok(())
    }
}
