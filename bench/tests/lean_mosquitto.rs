//! The lean MQTT client against a real Mosquitto that each test starts on a
//! free loopback port: QoS 1 publish/subscribe over MQTT 3.1.1 and 5 with
//! more messages than Mosquitto lets wait for the subscriber's PUBACKs (so
//! every delivery must be acknowledged), acknowledgements matched to their
//! tags through a small window, and an MQTT 5 PUBACK refusal (Mosquitto's
//! ACL) reported as a rejection. Without /usr/sbin/mosquitto the tests fail
//! when `CI` is set and skip otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use parley_bench::compare::brokers::{self, RunningBroker, BENCH_MAX_INFLIGHT};
use parley_bench::mqtt::endpoint::Endpoint;
use parley_bench::mqtt::lean::{LeanConnection, LeanEvent, LeanSpec};
use parley_bench::mqtt::{MqttVersion, Qos};
use tempfile::TempDir;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// How long a test may take to see what it waits for before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

async fn mosquitto(
    extra_config: impl FnOnce(&TempDir) -> String,
) -> Option<(RunningBroker, TempDir)> {
    let bin = PathBuf::from(MOSQUITTO);
    if !bin.exists() {
        if std::env::var_os("CI").is_some() {
            panic!("{MOSQUITTO} is missing; CI must install it (apt-get install -y mosquitto)");
        }
        eprintln!("skipping: {MOSQUITTO} is not installed (apt-get install -y mosquitto)");
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = extra_config(&dir);
    let broker = brokers::start_mosquitto(&bin, false, dir.path(), &extra)
        .await
        .expect("start mosquitto");
    Some((broker, dir))
}

async fn open(
    broker: &RunningBroker,
    version: MqttVersion,
    client_id: &str,
    inflight: u16,
) -> LeanConnection<u64> {
    let target = SocketAddr::from(([127, 0, 0, 1], broker.mqtt_port));
    let spec = LeanSpec {
        endpoint: Endpoint {
            target,
            source: None,
            version,
            client_id,
            login: None,
            keepalive: Duration::from_secs(30),
        },
        inflight,
    };
    LeanConnection::connect(&spec).await.expect("connect")
}

/// Subscribes and waits for the SUBACK, which must grant the filter.
async fn subscribe(conn: &mut LeanConnection<u64>, filter: &str) {
    let pkid = conn.subscribe(filter, Qos::AtLeastOnce).unwrap();
    let mut events = Vec::new();
    tokio::time::timeout(PATIENCE, conn.next(&mut events))
        .await
        .expect("SUBACK in time")
        .expect("SUBACK");
    assert_eq!(
        events,
        vec![LeanEvent::SubAck {
            pkid,
            refused: None
        }]
    );
}

async fn publish_and_receive(version: MqttVersion) {
    let Some((broker, _dir)) = mosquitto(|_| String::new()).await else {
        return;
    };
    let mut subscriber = open(&broker, version, "lean-sub", 10).await;
    subscribe(&mut subscriber, "lean/t/#").await;
    let window = 8;
    let mut publisher = open(&broker, version, "lean-pub", window).await;
    assert_eq!(publisher.window(), usize::from(window));

    // More than Mosquitto keeps in flight to one subscriber: the rest only
    // flows once the subscriber's PUBACKs come back.
    let total = u64::from(BENCH_MAX_INFLIGHT) * 3;
    for n in 0..total {
        let payload = Bytes::from(n.to_be_bytes().to_vec());
        publisher
            .publish("lean/t/a", Qos::AtLeastOnce, payload, n)
            .unwrap();
    }
    assert_eq!(publisher.in_flight(), usize::from(window));
    assert_eq!(publisher.waiting() as u64, total - u64::from(window));
    publisher.flush().unwrap();

    let (mut acked, mut received) = (Vec::new(), Vec::new());
    let (mut pub_events, mut sub_events) = (Vec::new(), Vec::new());
    tokio::time::timeout(PATIENCE, async {
        while (acked.len() as u64) < total || (received.len() as u64) < total {
            tokio::select! {
                ready = publisher.ready() => {
                    ready.expect("publisher");
                    publisher.poll(&mut pub_events).expect("publisher");
                }
                ready = subscriber.ready() => {
                    ready.expect("subscriber");
                    subscriber.poll(&mut sub_events).expect("subscriber");
                }
            }
            for event in pub_events.drain(..) {
                match event {
                    LeanEvent::Acked(tag) => acked.push(tag),
                    other => panic!("publisher: unexpected {other:?}"),
                }
            }
            for event in sub_events.drain(..) {
                match event {
                    LeanEvent::Message { topic, payload } => {
                        assert_eq!(topic, "lean/t/a");
                        let bytes: [u8; 8] = payload[..].try_into().expect("8-byte payload");
                        received.push(u64::from_be_bytes(bytes));
                    }
                    other => panic!("subscriber: unexpected {other:?}"),
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "after {PATIENCE:?}: {} of {total} acknowledged, {} received",
            acked.len(),
            received.len()
        )
    });

    // One connection's PUBACKs and deliveries come in publish order.
    let all: Vec<u64> = (0..total).collect();
    assert_eq!(acked, all);
    assert_eq!(received, all);
    assert_eq!((publisher.in_flight(), publisher.waiting()), (0, 0));
    publisher.disconnect().await.expect("disconnect");
    subscriber.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn qos1_publish_subscribe_mqtt311() {
    publish_and_receive(MqttVersion::V4).await;
}

#[tokio::test]
async fn qos1_publish_subscribe_mqtt5() {
    publish_and_receive(MqttVersion::V5).await;
}

#[tokio::test]
async fn mqtt5_puback_refusal_is_a_rejection() {
    let acl = |dir: &TempDir| {
        let path = dir.path().join("acl");
        std::fs::write(&path, "topic readwrite lean/#\n").expect("acl file");
        format!("acl_file {}\n", path.display())
    };
    let Some((broker, _dir)) = mosquitto(acl).await else {
        return;
    };
    let mut conn = open(&broker, MqttVersion::V5, "lean-acl", 4).await;
    conn.publish("closed/x", Qos::AtLeastOnce, Bytes::from_static(b"no"), 1)
        .unwrap();
    conn.publish("lean/x", Qos::AtLeastOnce, Bytes::from_static(b"yes"), 2)
        .unwrap();
    let mut events = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while events.len() < 2 {
            conn.next(&mut events).await.expect("events");
        }
    })
    .await
    .expect("both PUBACKs in time");
    match &events[..] {
        [LeanEvent::Rejected { tag: 1, reason }, LeanEvent::Acked(2)] => {
            assert!(reason.contains("NotAuthorized"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
    conn.disconnect().await.expect("disconnect");
}
