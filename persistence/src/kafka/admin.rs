//! Making sure the bus topic exists, and learning its partitions.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use super::{unavailable, KafkaConfig};
use crate::StoreError;

/// How often to look again while waiting for a topic to appear.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Creates the topic `name` (with `config`'s partitions and replication) if
/// `config` says to and it is missing.
pub(super) async fn ensure_topic(config: &KafkaConfig, name: &str) -> Result<(), StoreError> {
    if !config.create_topic {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("socket.timeout.ms", config.timeout_ms())
        .create()
        .map_err(|e| unavailable("creating the admin client", e))?;
    let replication = TopicReplication::Fixed(config.replication_factor.unwrap_or(-1));
    let topic = NewTopic::new(name, config.partitions, replication);
    let options = AdminOptions::new().operation_timeout(Some(config.timeout));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(|e| unavailable("creating the bus topic", e))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(StoreError::Unavailable(format!(
                    "kafka: creating topic {name}: {code}"
                )))
            }
        }
    }
    Ok(())
}

/// Waits until the cluster's metadata shows `topic` with its partitions,
/// and returns their ids in ascending order.
///
/// `fetch` asks the cluster for the topic's metadata once (a blocking call,
/// run on the blocking pool).
pub(super) async fn partitions<F>(
    config: &KafkaConfig,
    topic: &str,
    fetch: F,
) -> Result<Vec<i32>, StoreError>
where
    F: Fn() -> Result<Vec<i32>, String> + Send + Sync + Clone + 'static,
{
    let deadline = Instant::now() + config.timeout;
    loop {
        let attempt = fetch.clone();
        let last = tokio::task::spawn_blocking(attempt)
            .await
            .map_err(|e| StoreError::Unavailable(format!("kafka: metadata task: {e}")))?;
        let why = match last {
            Ok(mut ids) if !ids.is_empty() => {
                ids.sort_unstable();
                return Ok(ids);
            }
            Ok(_) => "the topic has no partitions yet".to_owned(),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "kafka: topic {topic} not available within {:?}: {why}",
                config.timeout
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Asks the cluster once for `topic`'s partition ids. Blocking.
pub(super) fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, String> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| e.to_string())?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err("not in the cluster's metadata".to_owned());
    };
    if let Some(e) = found.error() {
        return Err(RDKafkaErrorCode::from(e).to_string());
    }
    Ok(found.partitions().iter().map(|p| p.id()).collect())
}
