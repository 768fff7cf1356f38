//! The Kafka backend of the cluster bus ([`ClusterBus`]), for Apache Kafka,
//! Redpanda or any broker that speaks the Kafka protocol.
//!
//! The bus is one broadcast topic, read by every node, and one topic per
//! node (`{topic}.node-{n}`, created when node `n` subscribes), read by that
//! node alone. Each [`BusRecord`] (a fan-out: its topics and its payload
//! once) becomes one Kafka record, in the topic of its [`Audience`], keyed
//! by [`BusRecord::key`] (or, past [`KafkaConfig::max_record_bytes`],
//! several in a row, each with a run of its topics), so all records of a
//! conversation (or of a user's presence) in one topic land in one
//! partition and keep their order. Publishing goes through one idempotent
//! producer (`acks=all`) per node and returns only when every record is
//! acknowledged; each node consumes every partition of the broadcast topic
//! and of its own and commits its progress in the consumer group
//! `parley-node-{node_id}`. `docs/cluster.md` describes the layout and its
//! guarantees.
//!
//! - [`config`]: the settings, [`KafkaConfig`].
//! - [`codec`]: the layout of a record.
//! - `admin`: creating the topic, waiting for its partitions.
//! - `producer`: publishing with delivery reports.
//! - `consumer`: a node's consumer and its commits.

mod admin;
pub mod codec;
pub mod config;
mod consumer;
mod producer;

use async_trait::async_trait;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;

pub use config::KafkaConfig;
pub use consumer::group_id;

use crate::{Audience, BusConsumer, BusRecord, ClusterBus, StoreError};

/// The cluster bus on a Kafka topic.
pub struct KafkaBus {
    config: KafkaConfig,
    publisher: producer::Publisher,
}

impl KafkaBus {
    /// Connects to the cluster, creates the topic if it is missing and
    /// `config.create_topic` is set, and waits until the topic's partitions
    /// are known (at most `config.timeout`).
    pub async fn connect(config: KafkaConfig) -> Result<Self, StoreError> {
        admin::ensure_topic(&config, &config.topic).await?;
        let publisher = producer::Publisher::new(&config)?;
        let (producer, topic, timeout) = (
            publisher.producer().clone(),
            config.topic.clone(),
            config.timeout,
        );
        admin::partitions(&config, &config.topic, move || {
            admin::topic_partitions(producer.client(), &topic, timeout)
        })
        .await?;
        Ok(Self { config, publisher })
    }

    /// The configuration this bus was connected with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }
}

#[async_trait]
impl ClusterBus for KafkaBus {
    async fn publish_to(&self, records: Vec<(Audience, BusRecord)>) -> Result<(), StoreError> {
        self.publisher.publish(records).await
    }

    async fn subscribe(&self, node_id: u16) -> Result<Box<dyn BusConsumer>, StoreError> {
        let consumer = consumer::subscribe(&self.config, node_id).await?;
        Ok(Box::new(consumer))
    }
}

/// A Kafka error as a [`StoreError`], saying what was being done.
fn unavailable(doing: &str, e: KafkaError) -> StoreError {
    StoreError::Unavailable(format!("kafka: {doing}: {e}"))
}
