//! The producing side: an idempotent producer whose publish returns only
//! once the cluster acknowledged every record.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use super::codec::encode_values;
use super::{unavailable, KafkaConfig};
use crate::{Audience, BusRecord, StoreError};

/// How long to wait before enqueueing again when the local queue is full and
/// this publish has nothing of its own in flight to wait for.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// An idempotent producer (`enable.idempotence=true`, `acks=all`) for the bus topic.
pub(super) struct Publisher {
    producer: FutureProducer,
    config: KafkaConfig,
}

impl Publisher {
    /// Creates the producer; it connects lazily.
    pub(super) fn new(config: &KafkaConfig) -> Result<Self, StoreError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // A record is either acknowledged or reported failed within the
            // timeout, so `publish` never hangs on a lost cluster.
            .set("message.timeout.ms", config.timeout_ms())
            // Chat traffic is latency-bound: batch only what is already queued.
            .set("linger.ms", "1")
            .set("message.max.bytes", config.max_record_bytes.to_string())
            .create()
            .map_err(|e| unavailable("creating the producer", e))?;
        Ok(Self {
            producer,
            config: config.clone(),
        })
    }

    /// The underlying producer.
    pub(super) fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Sends `records` in order, each as one Kafka record (or, if its topics
    /// do not fit in one, as several in a row) to the topic of its audience,
    /// and waits for every delivery report.
    pub(super) async fn publish(
        &self,
        records: Vec<(Audience, BusRecord)>,
    ) -> Result<(), StoreError> {
        let mut values = Vec::with_capacity(records.len());
        for (audience, r) in &records {
            let limit = self.config.max_value_bytes(r.key.len());
            let encoded = encode_values(r, limit).map_err(|e| {
                StoreError::Unavailable(format!("kafka: bus record of key {}: {e}", r.key))
            })?;
            let topic = self.config.topic_of(*audience);
            values.extend(
                encoded
                    .into_iter()
                    .map(|value| (topic.clone(), r.key.as_bytes(), value)),
            );
        }
        let deadline = Instant::now() + self.config.timeout;
        let mut pending: VecDeque<DeliveryFuture> = VecDeque::with_capacity(values.len());
        for (topic, key, value) in &values {
            let mut kafka_record = FutureRecord::to(topic).key(*key).payload(value.as_slice());
            loop {
                match self.producer.send_result(kafka_record) {
                    Ok(delivery) => {
                        pending.push_back(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        kafka_record = back;
                        if Instant::now() >= deadline {
                            return Err(StoreError::Unavailable(
                                "kafka: producer queue stayed full".into(),
                            ));
                        }
                        match pending.pop_front() {
                            Some(oldest) => wait_delivered(oldest).await?,
                            None => tokio::time::sleep(QUEUE_FULL_BACKOFF).await,
                        }
                    }
                    Err((e, _)) => return Err(unavailable("enqueueing a record", e)),
                }
            }
        }
        for delivery in pending {
            wait_delivered(delivery).await?;
        }
        Ok(())
    }
}

/// Waits for one record's delivery report.
async fn wait_delivered(delivery: DeliveryFuture) -> Result<(), StoreError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(unavailable("delivering a record", e)),
        Err(_) => Err(StoreError::Unavailable(
            "kafka: the producer was dropped before delivery".into(),
        )),
    }
}
