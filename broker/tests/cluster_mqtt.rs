//! Plain MQTT across the nodes of a cluster, against a real PostgreSQL:
//! publishes, wildcards, retained messages, wills and shared groups reach
//! subscribers on other nodes, and only the nodes that need them.
//!
//! PostgreSQL comes from `PARLEY_TEST_POSTGRES` and Kafka (tansu) from
//! `PARLEY_TEST_KAFKA`, as in `tests/cluster.rs`: without them the tests
//! print why and pass, except under `CI`. Most tests run the nodes in this
//! process over [`SharedBus`], an in-memory bus that keeps one global order
//! and carries every record through the Kafka record codec (so format 3,
//! the forwarded publishes' format, is what travels); one runs over tansu.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use chat_core::rules::{Access, AclRuleConfig};
use common::memory_bus::SharedBus;
use common::shared_postgres::{fresh_database, rand_u32};
use common::{metric, sign_up, test_config, v4, v5, within, TestNode};
use parley::cluster_mqtt::ClusterMqtt;
use parley::config::{BusKind, Config, StorageBackend};
use parley::server::Node;
use persistence::{Audience, BusRecord};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;

const PASSWORD: &str = "device password";

impl SharedBus {
    /// The forwarded plain MQTT records from log index `from` on, with the
    /// nodes they are for.
    fn plain_records(&self, from: usize) -> Vec<(Audience, BusRecord)> {
        self.0.log.lock().unwrap()[from..]
            .iter()
            .filter(|(_, r)| r.mqtt.is_some())
            .cloned()
            .collect()
    }
}

fn rule(filter: &str) -> AclRuleConfig {
    AclRuleConfig {
        access: Access::ReadWrite,
        filter: filter.into(),
        users: Vec::new(),
    }
}

/// Node `node_id`'s configuration on the database at `url`, with plain
/// topics open to every user.
fn config(dir: &std::path::Path, url: &str, node_id: u16) -> Config {
    let mut config = test_config(dir);
    config.node_id = node_id;
    config.storage.backend = StorageBackend::Postgres;
    config.storage.postgres.url = url.to_owned();
    config.storage.postgres.max_connections = 4;
    config.acl = ["sensors/#", "jobs/#", "state/#", "status/#", "control/#"]
        .into_iter()
        .map(rule)
        .collect();
    config
}

/// Node `node_id` in this process, on `url` and the in-memory `bus`.
async fn node(url: &str, bus: &SharedBus, node_id: u16) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), url, node_id);
    let node = Node::start_with_bus(config, Some(Arc::new(bus.clone())))
        .await
        .expect("node starts");
    TestNode { node, dir }
}

/// Nodes 1..=n on `url` and `bus`, with users alice, bob and carol.
async fn cluster(url: &str, bus: &SharedBus, n: u16) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        nodes.push(node(url, bus, id).await);
    }
    for user in ["alice", "bob", "carol"] {
        sign_up(&nodes[0], user, PASSWORD).await;
    }
    nodes
}

fn routing(node: &TestNode) -> Arc<ClusterMqtt> {
    node.node
        .cluster_mqtt()
        .expect("a cluster node routes plain MQTT")
}

/// Waits until `node` knows that node `other` subscribes to `filter`.
async fn knows_route(node: &TestNode, other: u16, filter: &str) {
    let mqtt = routing(node);
    within(&format!("node {other}'s route {filter}"), async {
        mqtt.wait_until(|m| {
            m.routes()
                .routes_of(other)
                .iter()
                .any(|r| &*r.filter == filter)
        })
        .await
    })
    .await;
}

/// Waits until `node` routed at least `n` records of other nodes.
async fn received(node: &TestNode, n: u64) {
    let mqtt = routing(node);
    within(&format!("{n} forwarded records"), async {
        mqtt.wait_until(|m| m.counts.received.load(Ordering::Relaxed) >= n)
            .await
    })
    .await;
}

/// A v5 client of `user` on `node`, subscribed to `filters` at QoS 2.
async fn subscriber(
    node: &TestNode,
    client_id: &str,
    user: &str,
    filters: &[&str],
) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    let (client, mut el) = v5::connect(v5::options(node, client_id, user, PASSWORD)).await;
    client
        .subscribe_many(filters.iter().map(|f| Filter::new(*f, QoS::ExactlyOnce)))
        .await
        .unwrap();
    let codes = v5::next_matching(&mut el, "SUBACK", |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(codes.len(), filters.len());
    (client, el)
}

/// Polls `el` until the publish acknowledgement of its QoS arrives
/// (PUBACK for 1, PUBCOMP for 2); returns whether it was a success.
async fn acknowledged(el: &mut rumqttc::v5::EventLoop, qos: QoS) -> bool {
    v5::next_matching(el, "the publish's acknowledgement", |p| match (p, qos) {
        (Packet::PubAck(ack), QoS::AtLeastOnce) => {
            Some(ack.reason == rumqttc::v5::mqttbytes::v5::PubAckReason::Success)
        }
        (Packet::PubComp(comp), QoS::ExactlyOnce) => {
            Some(comp.reason == rumqttc::v5::mqttbytes::v5::PubCompReason::Success)
        }
        _ => None,
    })
    .await
}

/// Polls `el` until it has written a PUBLISH (a QoS 0 one has no answer).
async fn sent(el: &mut rumqttc::v5::EventLoop) {
    use rumqttc::v5::Event;
    use rumqttc::Outgoing;
    within("the PUBLISH to be written", async {
        loop {
            match el.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("connection failed: {e:?}"),
            }
        }
    })
    .await
}

/// Publishes at QoS 1 or 2 and waits for its acknowledgement.
async fn publish(
    client: &rumqttc::v5::AsyncClient,
    el: &mut rumqttc::v5::EventLoop,
    topic: &str,
    qos: QoS,
    retain: bool,
    payload: &'static [u8],
) {
    client
        .publish(topic, qos, retain, Bytes::from_static(payload))
        .await
        .unwrap();
    assert!(acknowledged(el, qos).await, "{topic} acknowledged");
}

fn properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3_600),
        response_topic: Some("control/replies".into()),
        correlation_data: Some(Bytes::from_static(b"corr-7")),
        user_properties: vec![("site".into(), "north".into()), ("site".into(), "b".into())],
        content_type: Some("text/plain".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn plain_publishes_cross_nodes_at_every_qos_with_their_properties() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    let nodes = cluster(&url, &bus, 3).await;
    let (_s2, mut on_two) = subscriber(&nodes[1], "s2", "bob", &["sensors/+/temp"]).await;
    let (_s3, mut on_three) = subscriber(&nodes[2], "s3", "carol", &["sensors/#"]).await;
    knows_route(&nodes[0], 2, "sensors/+/temp").await;
    knows_route(&nodes[0], 3, "sensors/#").await;
    let from = bus.len();

    let (publisher, mut p_el) = v5::connect(v5::options(&nodes[0], "p", "alice", PASSWORD)).await;
    for (qos, payload) in [
        (QoS::AtMostOnce, "zero"),
        (QoS::AtLeastOnce, "one"),
        (QoS::ExactlyOnce, "two"),
    ] {
        publisher
            .publish_with_properties("sensors/k1/temp", qos, false, payload, properties())
            .await
            .unwrap();
        if qos == QoS::AtMostOnce {
            sent(&mut p_el).await;
        } else {
            assert!(acknowledged(&mut p_el, qos).await, "{payload} acknowledged");
        }
        for el in [&mut on_two, &mut on_three] {
            let got = v5::next_publish(el).await;
            assert_eq!(
                (&got.topic[..], &got.payload[..], got.qos),
                (&b"sensors/k1/temp"[..], payload.as_bytes(), qos)
            );
            let p = got.properties.expect("properties kept");
            let sent = properties();
            assert_eq!(p.user_properties, sent.user_properties);
            assert_eq!(p.content_type, sent.content_type);
            assert_eq!(p.payload_format_indicator, Some(1));
            assert_eq!(p.response_topic, sent.response_topic);
            assert_eq!(p.correlation_data, sent.correlation_data);
            let left = p.message_expiry_interval.expect("expiry kept");
            assert!(left > 0 && left <= 3_600, "expiry left: {left}");
        }
    }
    // Only node 3's wildcard matches this one.
    publisher
        .publish("sensors/door", QoS::AtLeastOnce, false, "open")
        .await
        .unwrap();
    assert!(acknowledged(&mut p_el, QoS::AtLeastOnce).await);
    assert_eq!(&v5::next_publish(&mut on_three).await.payload[..], b"open");
    let forwarded = metric(&nodes[0], "parley_cluster_mqtt_forwarded_total ").await;
    assert_eq!(forwarded, Some(4.0), "one forward per publish");
    // Each forward is one record per target node, on that node's stream.
    let mut per_node = std::collections::BTreeMap::new();
    for (audience, record) in bus.plain_records(from) {
        let Audience::Node(node) = audience else {
            panic!("a forwarded publish on the broadcast stream: {record:?}");
        };
        *per_node.entry(node).or_insert(0) += 1;
    }
    assert_eq!(per_node, [(2, 3), (3, 4)].into_iter().collect());
    assert!(metric(&nodes[1], "parley_cluster_mqtt_routes ").await >= Some(2.0));
}

#[tokio::test]
async fn only_the_nodes_with_subscribers_get_a_record_and_local_subscribers_get_one_copy() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    let nodes = cluster(&url, &bus, 3).await;
    let (_s1, mut on_one) = subscriber(&nodes[0], "s1", "bob", &["jobs/#"]).await;
    let (_s2, mut on_two) = subscriber(&nodes[1], "s2", "bob", &["jobs/+"]).await;
    knows_route(&nodes[0], 2, "jobs/+").await;
    let (publisher, mut p_el) = v5::connect(v5::options(&nodes[0], "p", "alice", PASSWORD)).await;

    // Nobody elsewhere subscribes to this topic: nothing goes on the bus.
    let from = bus.len();
    publish(
        &publisher,
        &mut p_el,
        "jobs/a/b",
        QoS::AtLeastOnce,
        false,
        b"local",
    )
    .await;
    assert_eq!(&v5::next_publish(&mut on_one).await.payload[..], b"local");
    assert!(
        bus.plain_records(from).is_empty(),
        "no record for node 1 alone"
    );

    // Node 2 subscribes: one record, for node 2 only.
    let from = bus.len();
    publish(
        &publisher,
        &mut p_el,
        "jobs/1",
        QoS::AtLeastOnce,
        false,
        b"first",
    )
    .await;
    publish(
        &publisher,
        &mut p_el,
        "jobs/2",
        QoS::AtLeastOnce,
        false,
        b"second",
    )
    .await;
    for payload in [&b"first"[..], b"second"] {
        assert_eq!(&v5::next_publish(&mut on_two).await.payload[..], payload);
        assert_eq!(
            &v5::next_publish(&mut on_one).await.payload[..],
            payload,
            "the publisher's node delivers once, in order"
        );
    }
    let records = bus.plain_records(from);
    assert_eq!(records.len(), 2);
    for (audience, record) in &records {
        assert_eq!(
            *audience,
            Audience::Node(2),
            "on node 2's own stream: node 3 has no subscriber"
        );
        let targets: Vec<u16> = record
            .mqtt
            .as_ref()
            .unwrap()
            .nodes
            .iter()
            .map(|t| t.node)
            .collect();
        assert_eq!(targets, [2]);
    }
    received(&nodes[1], 2).await;

    // No second copy reached node 1's subscriber: the next message is the next one.
    publish(
        &publisher,
        &mut p_el,
        "jobs/3",
        QoS::AtLeastOnce,
        false,
        b"third",
    )
    .await;
    assert_eq!(&v5::next_publish(&mut on_one).await.payload[..], b"third");
    // Node 3 never read a record it had no subscriber for.
    let three = routing(&nodes[2]);
    assert_eq!(three.counts.not_addressed.load(Ordering::Relaxed), 0);
    assert_eq!(three.counts.received.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn retained_messages_reach_every_node_including_one_started_later() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    let nodes = cluster(&url, &bus, 2).await;
    let (publisher, mut p_el) = v5::connect(v5::options(&nodes[0], "p", "alice", PASSWORD)).await;
    publish(
        &publisher,
        &mut p_el,
        "state/lamp",
        QoS::AtLeastOnce,
        true,
        b"on",
    )
    .await;
    received(&nodes[1], 1).await;

    // Subscribing later on node 2: the retained message is there.
    let (_s2, mut on_two) = subscriber(&nodes[1], "s2", "bob", &["state/+"]).await;
    let got = v5::next_publish(&mut on_two).await;
    assert_eq!((&got.payload[..], got.retain), (&b"on"[..], true));

    // A node started now loads it from the store.
    let three = node(&url, &bus, 3).await;
    let (_s3, mut on_three) = subscriber(&three, "s3", "carol", &["state/#"]).await;
    let got = v5::next_publish(&mut on_three).await;
    assert_eq!(
        (&got.topic[..], &got.payload[..], got.retain),
        (&b"state/lamp"[..], &b"on"[..], true)
    );

    // Deleted on node 2 (an empty retained payload): gone everywhere.
    let (deleter, mut d_el) = v5::connect(v5::options(&nodes[1], "d", "bob", PASSWORD)).await;
    publish(
        &deleter,
        &mut d_el,
        "state/lamp",
        QoS::AtLeastOnce,
        true,
        b"",
    )
    .await;
    received(&nodes[0], 1).await;
    received(&three, 1).await;
    for (node, user) in [(&nodes[0], "alice"), (&three, "carol")] {
        let (_late, mut late) = subscriber(node, "late", user, &["state/#"]).await;
        // Nothing retained comes before this marker.
        let (marker, mut m_el) = v5::connect(v5::options(node, "m", user, PASSWORD)).await;
        publish(
            &marker,
            &mut m_el,
            "state/marker",
            QoS::AtLeastOnce,
            false,
            b"marker",
        )
        .await;
        let got = v5::next_publish(&mut late).await;
        assert_eq!(&got.payload[..], b"marker", "the deleted message is gone");
    }
    let four = node(&url, &bus, 4).await;
    let (_s4, mut on_four) = subscriber(&four, "s4", "carol", &["state/#"]).await;
    let (marker, mut m_el) = v5::connect(v5::options(&four, "m4", "carol", PASSWORD)).await;
    publish(
        &marker,
        &mut m_el,
        "state/marker",
        QoS::AtLeastOnce,
        false,
        b"marker",
    )
    .await;
    assert_eq!(&v5::next_publish(&mut on_four).await.payload[..], b"marker");
    assert_eq!(
        metric(&four, "parley_cluster_mqtt_retained_loaded_total ").await,
        Some(0.0),
        "a node started after the deletion loads nothing"
    );
}

#[tokio::test]
async fn wills_of_clients_on_one_node_reach_subscribers_on_another() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    let nodes = cluster(&url, &bus, 2).await;
    let (_w, mut watcher) = subscriber(&nodes[1], "w", "bob", &["status/#"]).await;
    knows_route(&nodes[0], 2, "status/#").await;

    let mut device = v4::options(&nodes[0], "dev", "alice", PASSWORD);
    device.set_last_will(rumqttc::LastWill::new(
        "status/dev",
        "gone",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let (_device, device_el) = v4::connect(device).await;
    drop(device_el); // closes the socket without DISCONNECT
    let will = v5::next_publish(&mut watcher).await;
    assert_eq!(
        (&will.topic[..], &will.payload[..]),
        (&b"status/dev"[..], &b"gone"[..])
    );

    // A delayed will (MQTT 5) goes out after its delay, also across nodes.
    let mut delayed = v5::options(&nodes[0], "late", "alice", PASSWORD);
    delayed.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        "status/late",
        "later",
        QoS::AtLeastOnce,
        false,
        Some(rumqttc::v5::mqttbytes::v5::LastWillProperties {
            delay_interval: Some(1),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![("why".into(), "lost".into())],
        }),
    ));
    delayed.set_session_expiry_interval(Some(60));
    let (_delayed, delayed_el) = v5::connect(delayed).await;
    drop(delayed_el);
    let will = v5::next_publish(&mut watcher).await;
    assert_eq!(
        (&will.topic[..], &will.payload[..]),
        (&b"status/late"[..], &b"later"[..])
    );
}

#[tokio::test]
async fn a_shared_group_across_two_nodes_gets_each_message_once() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    let nodes = cluster(&url, &bus, 3).await;
    let filters = ["$share/workers/jobs/#", "control/end"];
    let (_m2, mut on_two) = subscriber(&nodes[1], "w2", "bob", &filters).await;
    let (_m3, mut on_three) = subscriber(&nodes[2], "w3", "bob", &filters).await;
    knows_route(&nodes[0], 2, "$share/workers/jobs/#").await;
    knows_route(&nodes[0], 3, "$share/workers/jobs/#").await;
    knows_route(&nodes[0], 3, "control/end").await;
    knows_route(&nodes[0], 2, "control/end").await;

    let (publisher, mut p_el) = v5::connect(v5::options(&nodes[0], "p", "alice", PASSWORD)).await;
    const JOBS: usize = 10;
    for i in 0..JOBS {
        let topic = format!("jobs/{i}");
        publisher
            .publish(topic, QoS::AtLeastOnce, false, format!("job {i}"))
            .await
            .unwrap();
        assert!(acknowledged(&mut p_el, QoS::AtLeastOnce).await);
    }
    publish(
        &publisher,
        &mut p_el,
        "control/end",
        QoS::AtLeastOnce,
        false,
        b"end",
    )
    .await;
    let mut seen = Vec::new();
    for el in [&mut on_two, &mut on_three] {
        loop {
            let got = v5::next_publish(el).await;
            if &got.payload[..] == b"end" {
                break;
            }
            seen.push(String::from_utf8(got.payload.to_vec()).unwrap());
        }
    }
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), JOBS, "each job once in the cluster: {seen:?}");
    assert_eq!(distinct.len(), JOBS);

    // Node 3 leaves gracefully: node 1 forgets its routes at once, and node
    // 2's member gets every job.
    let mut nodes = nodes;
    let three = nodes.pop().unwrap();
    drop(on_three);
    three.node.shutdown().await.expect("node 3 shuts down");
    let one = routing(&nodes[0]);
    within("node 3's routes to go", async {
        one.wait_until(|m| m.routes().routes_of(3).is_empty()).await
    })
    .await;
    for i in 0..4 {
        publisher
            .publish(
                format!("jobs/after/{i}"),
                QoS::AtLeastOnce,
                false,
                format!("after {i}"),
            )
            .await
            .unwrap();
        assert!(acknowledged(&mut p_el, QoS::AtLeastOnce).await);
        assert_eq!(
            v5::next_publish(&mut on_two).await.payload,
            format!("after {i}").into_bytes()
        );
    }
}

#[tokio::test]
async fn a_publish_the_bus_refuses_is_not_acknowledged() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    let nodes = cluster(&url, &bus, 2).await;
    let (_s, mut on_two) = subscriber(&nodes[1], "s2", "bob", &["sensors/#"]).await;
    knows_route(&nodes[0], 2, "sensors/#").await;
    let (v5_client, mut v5_el) = v5::connect(v5::options(&nodes[0], "p5", "alice", PASSWORD)).await;
    let (v4_client, mut v4_el) = v4::connect(v4::options(&nodes[0], "p4", "alice", PASSWORD)).await;

    bus.0.refuse.store(true, Ordering::SeqCst);
    // MQTT 5: PUBACK 0x80, and the client may publish again.
    v5_client
        .publish("sensors/a", QoS::AtLeastOnce, false, "lost")
        .await
        .unwrap();
    assert!(
        !acknowledged(&mut v5_el, QoS::AtLeastOnce).await,
        "not acknowledged as a success"
    );
    // MQTT 3.1.1 cannot say so: the connection ends without a PUBACK.
    v4_client
        .publish("sensors/b", rumqttc::QoS::AtLeastOnce, false, "lost")
        .await
        .unwrap();
    within("the 3.1.1 connection to end", async {
        loop {
            match v4_el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    panic!("a publish the bus refused was acknowledged")
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    })
    .await;
    assert_eq!(
        metric(&nodes[0], "parley_cluster_mqtt_forward_errors_total ").await,
        Some(2.0)
    );

    bus.0.refuse.store(false, Ordering::SeqCst);
    publish(
        &v5_client,
        &mut v5_el,
        "sensors/a",
        QoS::AtLeastOnce,
        false,
        b"again",
    )
    .await;
    assert_eq!(&v5::next_publish(&mut on_two).await.payload[..], b"again");
}

/// The variable naming the Kafka-protocol test broker (`host:port`).
const KAFKA_VAR: &str = "PARLEY_TEST_KAFKA";

/// The Kafka broker, a fresh database and a fresh topic, or `None` (after
/// printing why) when the test should skip; a missing variable fails under `CI`.
async fn kafka_cluster() -> Option<(String, String, String)> {
    let kafka = match std::env::var(KAFKA_VAR) {
        Ok(kafka) if !kafka.trim().is_empty() => kafka,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{KAFKA_VAR} is not set, but CI is"
            );
            eprintln!("skipping a Kafka test: {KAFKA_VAR} is not set (`. .ci/kafka.sh`)");
            return None;
        }
    };
    let url = fresh_database().await?;
    let topic = format!(
        "parley-cluster-mqtt-{}-{:08x}",
        std::process::id(),
        rand_u32()
    );
    Some((kafka, url, topic))
}

/// Node `id` in this process on Kafka, with a node lease of one second.
async fn kafka_node(kafka: &str, url: &str, topic: &str, id: u16) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), url, id);
    config.cluster.bus = BusKind::Kafka;
    config.cluster.kafka.bootstrap_servers = kafka.to_owned();
    config.cluster.kafka.topic = topic.to_owned();
    config.cluster.kafka.partitions = 3;
    config.cluster.node_lease_ttl_ms = 1_000;
    let node = Node::start(config).await.expect("node starts on Kafka");
    TestNode { node, dir }
}

/// Starts the `parley` binary as node `node_id` on Kafka (node lease of one
/// second, plain topics open) and waits until it is up; returns the process
/// and its MQTT port.
async fn spawn_kafka_node(
    dir: &std::path::Path,
    (kafka, url, topic): (&str, &str, &str),
    node_id: u16,
) -> (tokio::process::Child, u16) {
    use common::process::free_port;
    let (mqtt, http) = (free_port(), free_port());
    let config = dir.join("parley.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = {node_id}\ndata_dir = {:?}\n\
             [storage]\nbackend = \"postgres\"\n[storage.postgres]\nurl = {url:?}\nmax_connections = 4\n\
             [cluster]\nbus = \"kafka\"\nnode_lease_ttl_ms = 1000\n\
             [cluster.kafka]\nbootstrap_servers = {kafka:?}\ntopic = {topic:?}\npartitions = 3\n\
             [mqtt]\ntcp = \"127.0.0.1:{mqtt}\"\nws = \"off\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [auth]\njwt_secret = \"test-secret-test-secret-test-secret-0123\"\n\
             [[acl]]\naccess = \"readwrite\"\nfilter = \"sensors/#\"\n",
            dir.join("data"),
        ),
    )
    .unwrap();
    let child = common::process::spawn_parley_config(&config).await;
    (child, mqtt)
}

#[tokio::test]
async fn a_node_killed_with_9_loses_its_routes_and_its_clients_wills_are_published() {
    let Some((kafka, url, topic)) = kafka_cluster().await else {
        return;
    };
    let one = kafka_node(&kafka, &url, &topic, 1).await;
    sign_up(&one, "alice", PASSWORD).await;
    sign_up(&one, "bob", PASSWORD).await;
    let (_watcher, mut watcher) = subscriber(&one, "watcher", "alice", &["sensors/+/will"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, port) = spawn_kafka_node(dir.path(), (&kafka, &url, &topic), 2).await;
    let mut options = rumqttc::v5::MqttOptions::new("doomed", "127.0.0.1", port);
    options.set_credentials("bob", PASSWORD);
    options.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        "sensors/doomed/will",
        "node gone",
        QoS::AtLeastOnce,
        false,
        None,
    ));
    let (client, mut events) = v5::connect(options).await;
    client
        .subscribe("sensors/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    v5::next_matching(&mut events, "SUBACK", |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await;
    knows_route(&one, 2, "sensors/#").await;

    // kill -9: nothing is withdrawn; the routes go when node 2's lease runs out.
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("the process ends");
    let mqtt = routing(&one);
    within("node 2's routes to expire", async {
        mqtt.wait_until(|m| m.routes().routes_of(2).is_empty())
            .await
    })
    .await;
    assert!(metric(&one, "parley_cluster_mqtt_nodes_expired_total ").await >= Some(1.0));
    assert!(mqtt.routes().targets("sensors/x").is_empty());
    // The will of the client on the dead node is published by node 1.
    let will = v5::next_publish(&mut watcher).await;
    assert_eq!(
        (&will.topic[..], &will.payload[..]),
        (&b"sensors/doomed/will"[..], &b"node gone"[..])
    );
    assert_eq!(
        metric(&one, "parley_cluster_mqtt_orphaned_wills_total ").await,
        Some(1.0)
    );
}

#[tokio::test]
async fn plain_mqtt_and_retained_messages_cross_nodes_over_kafka() {
    let Some((kafka, url, topic)) = kafka_cluster().await else {
        return;
    };
    let start = |id: u16| {
        let (url, kafka, topic) = (url.clone(), kafka.clone(), topic.clone());
        async move { kafka_node(&kafka, &url, &topic, id).await }
    };
    let one = start(1).await;
    let two = start(2).await;
    for user in ["alice", "bob", "carol"] {
        sign_up(&one, user, PASSWORD).await;
    }
    let (_s, mut on_two) = subscriber(&two, "s2", "bob", &["sensors/+/temp"]).await;
    knows_route(&one, 2, "sensors/+/temp").await;
    let (publisher, mut p_el) = v5::connect(v5::options(&one, "p", "alice", PASSWORD)).await;
    publisher
        .publish_with_properties(
            "sensors/k9/temp",
            QoS::ExactlyOnce,
            false,
            "22",
            properties(),
        )
        .await
        .unwrap();
    assert!(acknowledged(&mut p_el, QoS::ExactlyOnce).await);
    let got = v5::next_publish(&mut on_two).await;
    assert_eq!((&got.payload[..], got.qos), (&b"22"[..], QoS::ExactlyOnce));
    assert_eq!(
        got.properties.expect("properties").user_properties,
        properties().user_properties
    );

    publish(
        &publisher,
        &mut p_el,
        "state/door",
        QoS::AtLeastOnce,
        true,
        b"closed",
    )
    .await;
    received(&two, 2).await;
    let three = start(3).await;
    for (i, node) in [&two, &three].into_iter().enumerate() {
        let (_late, mut late) = subscriber(node, &format!("late{i}"), "carol", &["state/#"]).await;
        let got = v5::next_publish(&mut late).await;
        assert_eq!((&got.payload[..], got.retain), (&b"closed"[..], true));
    }
}
