//! Runs the [`ClusterBus`] conformance suite against [`KafkaBus`] on a real
//! Kafka-protocol broker, every check on its own topic.
//!
//! The broker comes from `PARLEY_TEST_KAFKA` (`host:port`; `.ci/kafka.sh`
//! starts a throwaway tansu broker and sets it). Without it the checks print
//! why and pass, except when `CI` is set: there they fail, so a CI that lost
//! its broker cannot go green.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use persistence::conformance::bus::{fan_out_arrives_whole, BusFixture};
use persistence::kafka::{KafkaBus, KafkaConfig};
use persistence::{ClusterBus, StoreError};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// The variable naming the test broker.
const ADDR_VAR: &str = "PARLEY_TEST_KAFKA";

/// Partitions of each check's topic: several, so keys spread over partitions.
const PARTITIONS: i32 = 4;

/// The test broker's address; `None` (after printing why) if the tests should skip.
///
/// # Panics
///
/// If the variable is unset while `CI` is set.
fn broker() -> Option<String> {
    match std::env::var(ADDR_VAR) {
        Ok(addr) if !addr.trim().is_empty() => Some(addr),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{ADDR_VAR} is not set, but CI is: the Kafka tests must run in CI \
                     (.ci/test starts tansu with .ci/kafka.sh and exports {ADDR_VAR})"
                );
            }
            eprintln!(
                "skipping a Kafka test: {ADDR_VAR} is not set \
                 (`. .ci/kafka.sh` starts a throwaway tansu broker and sets it)"
            );
            None
        }
    }
}

/// A topic name no other check or run uses.
fn unique_topic(tag: &str) -> String {
    format!(
        "parley-test-{tag}-{}-{:012x}",
        std::process::id(),
        rand::random::<u64>() & 0xffff_ffff_ffff
    )
}

/// A bus on a fresh topic of the test broker, and a plain producer for garbage.
struct KafkaFixture {
    bus: Arc<KafkaBus>,
    raw: FutureProducer,
}

impl KafkaFixture {
    async fn new(addr: String) -> Self {
        Self::with_config(addr, |_| {}).await
    }

    /// A fixture whose bus settings are the test defaults changed by `tweak`.
    async fn with_config(addr: String, tweak: impl FnOnce(&mut KafkaConfig)) -> Self {
        let mut config = KafkaConfig::new(&addr, unique_topic("bus"));
        config.partitions = PARTITIONS;
        tweak(&mut config);
        let bus = KafkaBus::connect(config)
            .await
            .unwrap_or_else(|e| panic!("connect to {ADDR_VAR}={addr}: {e}"));
        let raw = ClientConfig::new()
            .set("bootstrap.servers", &addr)
            .create()
            .expect("create the raw producer");
        Self {
            bus: Arc::new(bus),
            raw,
        }
    }
}

#[async_trait]
impl BusFixture for KafkaFixture {
    fn bus(&self) -> Arc<dyn ClusterBus> {
        Arc::clone(&self.bus) as Arc<dyn ClusterBus>
    }

    async fn publish_raw(&self, key: &[u8], value: &[u8]) {
        let record = FutureRecord::to(&self.bus.config().topic)
            .key(key)
            .payload(value);
        self.raw
            .send(record, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce raw bytes: {e}"));
    }
}

/// The shared [`persistence::conformance::bus`] checks.
mod conformance {
    // A block that returns from the test (skipping it) when there is no
    // broker, and otherwise yields the future of the fixture.
    persistence::bus_conformance_tests!({
        let Some(addr) = crate::broker() else {
            return;
        };
        crate::KafkaFixture::new(addr)
    });
}

/// A topic that must exist but does not is reported within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_is_unavailable_not_a_hang() {
    let Some(addr) = broker() else {
        return;
    };
    let mut config = KafkaConfig::new(&addr, unique_topic("missing"));
    config.create_topic = false;
    config.timeout = Duration::from_secs(3);
    let started = Instant::now();
    let result = KafkaBus::connect(config).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "connecting to a missing topic without creating it must fail as Unavailable"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it must fail within about the timeout, took {:?}",
        started.elapsed()
    );
}

/// A node's first subscribe starts at the end of the bus: what was published
/// before it is not delivered, what is published after it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_starts_at_the_end() {
    let Some(addr) = broker() else {
        return;
    };
    let fixture = KafkaFixture::new(addr).await;
    let bus = fixture.bus();
    let record = |seq: u8| persistence::BusRecord {
        key: "start".into(),
        topics: vec!["parley/test/start".into()],
        payload: vec![seq],
        qos: 1,
        retain: false,
        origin_node: 1,
        mqtt: None,
    };
    bus.publish(vec![record(1)]).await.expect("publish before");
    let mut consumer = bus.subscribe(4242).await.expect("subscribe");
    let published = Instant::now();
    bus.publish(vec![record(2)]).await.expect("publish after");
    let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("the record published after subscribing must arrive")
        .expect("next");
    eprintln!("publish + consume round trip: {:?}", published.elapsed());
    assert_eq!(
        delivery.record,
        record(2),
        "a new node must start after what was published before it subscribed"
    );
}

/// A fan-out as large as Parley's defaults allow (1,024 members, a 64 KiB
/// message) is one Kafka record under the default record size limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_default_fan_out_is_one_kafka_record() {
    let Some(addr) = broker() else {
        return;
    };
    let fixture = KafkaFixture::new(addr).await;
    let parts = fan_out_arrives_whole(&fixture, 1024, 64 * 1024 + 1024).await;
    assert_eq!(parts, 1, "the fan-out must arrive as one record");
}

/// A fan-out whose topics do not fit in `max_record_bytes` is carried as
/// several records of its key, in order, and arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_past_the_record_limit_arrives_in_several_records() {
    let Some(addr) = broker() else {
        return;
    };
    let fixture = KafkaFixture::with_config(addr, |c| c.max_record_bytes = 4096).await;
    // 300 topics of 38 bytes each (length included) and a 1,000-byte payload
    // need 12,409 bytes: 4 records of at most 79 topics each.
    let parts = fan_out_arrives_whole(&fixture, 300, 1000).await;
    assert_eq!(parts, 4, "the fan-out must be split to fit the limit");
}
