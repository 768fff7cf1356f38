//! Several nodes as one service, against a real PostgreSQL (and, where
//! noted, a cluster bus).
//!
//! PostgreSQL comes from `PARLEY_TEST_POSTGRES` (`. .ci/postgres.sh` starts a
//! throwaway server); every test creates a database of its own. Without the
//! variable the tests print why and pass, except when `CI` is set: there
//! they fail, so a CI that lost its server cannot go green.
//!
//! The bus tests run the nodes in this process over [`MemoryBus`], an
//! in-memory [`ClusterBus`] that keeps one global order and gives each node
//! the broadcast records and those addressed to it, so they check the
//! broker's side of the cluster (what goes on the bus and to which nodes,
//! what each node republishes, what a moving client gets through sync)
//! independently of any bus backend.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chat_core::message_id::node_of;
use common::chat::{direct, password_of, sign_up_users, text_of, ChatClient};
use common::memory_bus::{MemoryBus, SharedBus};
use common::shared_postgres::{fresh_database, rand_u32};
use common::{log_in, test_config, TestNode};
use parley::config::{BusKind, StorageBackend};
use parley::server::Node;
use persistence::{Audience, ClusterBus};

/// Starts node `node_id` on the PostgreSQL database at `url`, delivering
/// through `bus` (or only to its own clients).
async fn pg_node(url: &str, node_id: u16, bus: Option<Arc<dyn ClusterBus>>) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.node_id = node_id;
    config.storage.backend = StorageBackend::Postgres;
    config.storage.postgres.url = url.to_owned();
    config.storage.postgres.max_connections = 4;
    config.chat.messages_per_sec = 10_000.0;
    config.chat.message_burst = 10_000;
    let node = Node::start_with_bus(config, bus)
        .await
        .expect("node starts on PostgreSQL");
    TestNode { node, dir }
}

#[tokio::test]
async fn nodes_on_one_database_share_accounts_and_history() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let one = pg_node(&url, 1, None).await;
    let two = pg_node(&url, 2, None).await;

    // Signed up on node 1: known on node 2, for log-in and for MQTT.
    sign_up_users(&one, &["alice", "bob"]).await;
    let token = log_in(&two, "bob", &password_of("bob")).await;
    assert!(!token.is_empty());
    let taken = reqwest::Client::new()
        .post(format!("{}/v1/users", two.http()))
        .json(&serde_json::json!({"username": "alice", "password": "another password"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(taken, 409, "alice is taken on node 2 as well");

    // Alice writes on node 1; Bob, on node 2, finds every entry in history
    // with the seq node 1 stored it under.
    let conv = direct("alice", "bob");
    let mut alice = ChatClient::v5(&one, "alice", "alice-phone").await;
    let mut said = Vec::new();
    for i in 1..=3 {
        let own = alice
            .say(&conv, &format!("a{i}"), &format!("hello {i}"))
            .await;
        assert_eq!(own.seq, i, "seq of a{i}");
        assert_eq!(node_of(own.message_id), 1, "message id carries node 1");
        said.push(own);
    }
    let mut bob = ChatClient::v5(&two, "bob", "bob-laptop").await;
    let history = bob.fetch_all(&conv).await;
    assert_eq!(history, said, "node 2 serves node 1's history");
    let summary = bob.summary(&conv).await;
    assert_eq!(summary.unread, 3);
    assert_eq!(
        summary.last_message.as_ref().and_then(text_of),
        Some("hello 3")
    );

    // Bob answers on node 2: the next seq, a message id of node 2, and
    // Alice finds it from node 1.
    let reply = bob.say(&conv, "b1", "hi alice").await;
    assert_eq!(reply.seq, 4);
    assert_eq!(node_of(reply.message_id), 2);
    let history = alice.fetch_after(&conv, 3, 50).await;
    assert_eq!(history, vec![reply]);
}

/// The variable naming the Kafka-protocol test broker (`host:port`).
const KAFKA_VAR: &str = "PARLEY_TEST_KAFKA";

/// A fresh database and the Kafka broker's address, or `None` (after
/// printing why) when the test should skip; like [`fresh_database`], a
/// missing variable fails under `CI`.
async fn database_and_kafka() -> Option<(String, String)> {
    let kafka = match std::env::var(KAFKA_VAR) {
        Ok(kafka) if !kafka.trim().is_empty() => kafka,
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{KAFKA_VAR} is not set, but CI is: the cluster tests must run in CI \
                     (.ci/test starts a broker with .ci/kafka.sh and exports {KAFKA_VAR})"
                );
            }
            eprintln!(
                "skipping a Kafka cluster test: {KAFKA_VAR} is not set \
                 (`. .ci/kafka.sh` starts a throwaway broker and sets it)"
            );
            return None;
        }
    };
    Some((fresh_database().await?, kafka))
}

/// A topic name no other test uses.
fn fresh_topic() -> String {
    format!(
        "parley-cluster-test-{}-{:08x}",
        std::process::id(),
        rand_u32()
    )
}

/// Three nodes on the database at `url`, with `[cluster] bus = "kafka"` on
/// the broker at `kafka` and a topic of their own.
async fn three_kafka_nodes(url: &str, kafka: &str) -> Vec<TestNode> {
    let topic = fresh_topic();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(kafka_node(url, kafka, &topic, id).await);
    }
    nodes
}

/// Node `node_id` in this process, on the database at `url` and `topic` on
/// the Kafka broker at `kafka`.
async fn kafka_node(url: &str, kafka: &str, topic: &str, node_id: u16) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.node_id = node_id;
    config.storage.backend = StorageBackend::Postgres;
    config.storage.postgres.url = url.to_owned();
    config.storage.postgres.max_connections = 4;
    config.chat.messages_per_sec = 10_000.0;
    config.chat.message_burst = 10_000;
    config.cluster.bus = BusKind::Kafka;
    config.cluster.kafka.bootstrap_servers = kafka.to_owned();
    config.cluster.kafka.topic = topic.to_owned();
    config.cluster.kafka.partitions = 3;
    let node = Node::start(config).await.expect("node starts on Kafka");
    TestNode { node, dir }
}

/// Starts the `parley` binary as node `node_id` of the Kafka cluster (same
/// database, topic and token secret as [`kafka_node`]) and waits until it
/// is up; returns the process and its MQTT port.
async fn spawn_kafka_node(
    dir: &std::path::Path,
    url: &str,
    kafka: &str,
    topic: &str,
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
             [cluster]\nbus = \"kafka\"\n[cluster.kafka]\nbootstrap_servers = {kafka:?}\ntopic = {topic:?}\npartitions = 3\n\
             [mqtt]\ntcp = \"127.0.0.1:{mqtt}\"\nws = \"off\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [auth]\njwt_secret = \"test-secret-test-secret-test-secret-0123\"\n\
             [chat]\nmessages_per_sec = 100000.0\nmessage_burst = 100000\nmessage_requests = false\n",
            dir.join("data"),
        ),
    )
    .unwrap();
    let child = common::process::spawn_parley_config(&config).await;
    (child, mqtt)
}

#[tokio::test]
async fn acknowledged_messages_reach_other_nodes_when_the_sender_node_is_killed() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
    let Some((url, kafka)) = database_and_kafka().await else {
        return;
    };
    let topic = fresh_topic();
    // Node 2 in this process, where Bob is; node 1 a child process.
    let two = kafka_node(&url, &kafka, &topic, 2).await;
    sign_up_users(&two, &["alice", "bob"]).await;
    let mut bob = ChatClient::v5(&two, "bob", "bob-2").await;
    let dir = tempfile::tempdir().unwrap();
    let (mut one, port) = spawn_kafka_node(dir.path(), &url, &kafka, &topic, 1).await;

    // Alice streams through node 1, recording every PUBACK; after 100 of
    // them node 1 is killed with SIGKILL while more are in flight.
    let conv = direct("alice", "bob");
    let mut options = MqttOptions::new("alice-1", "127.0.0.1", port);
    options.set_credentials("alice", password_of("alice"));
    options.set_keep_alive(std::time::Duration::from_secs(30));
    options.set_inflight(32);
    let (alice, mut eventloop) = AsyncClient::new(options, 512);
    let send_to = format!("s/{conv}");
    let sender = tokio::spawn(async move {
        for i in 0..5_000 {
            let message = common::chat::text_message(&format!("m{i:04}"), "streamed");
            let payload = parley_proto::encode_envelope(&message.into());
            if alice
                .publish(send_to.as_str(), QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut sent_by_pkid = std::collections::HashMap::new();
    let mut next_id = 0usize;
    let mut acked = std::collections::BTreeSet::new();
    common::within("100 acknowledgements", async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    sent_by_pkid.insert(pkid, format!("m{next_id:04}"));
                    next_id += 1;
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    acked.insert(sent_by_pkid[&ack.pkid].clone());
                    if acked.len() == 100 {
                        one.start_kill().expect("SIGKILL");
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("connection failed before the kill: {e:?}"),
            }
        }
    })
    .await;
    // Acks already on the wire when the kill landed still count.
    while let Ok(Ok(event)) =
        tokio::time::timeout(std::time::Duration::from_secs(5), eventloop.poll()).await
    {
        if let Event::Incoming(Packet::PubAck(ack)) = event {
            if let Some(id) = sent_by_pkid.get(&ack.pkid) {
                acked.insert(id.clone());
            }
        }
    }
    one.wait().await.unwrap();
    sender.abort();

    // Every acknowledged message was on the bus: Bob, on node 2, receives
    // each of them live, in seq order from 1 without a gap.
    let mut received = std::collections::BTreeSet::new();
    let mut last_seq = 0;
    while !acked.iter().all(|id| received.contains(id)) {
        let message = bob.next_message().await;
        assert_eq!(message.seq, last_seq + 1, "live delivery in seq order");
        last_seq = message.seq;
        received.insert(message.client_message_id);
    }
    // And node 2 serves all of them from PostgreSQL, each stored once.
    let history = bob.fetch_all(&conv).await;
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=history.len() as u64).collect::<Vec<_>>());
    let stored: std::collections::BTreeSet<String> = history
        .iter()
        .map(|m| m.client_message_id.clone())
        .collect();
    assert_eq!(stored.len(), history.len(), "each message stored once");
    assert!(acked.is_subset(&stored), "acknowledged but not stored");
}

/// Three nodes on one database and one bus.
async fn three_nodes(url: &str, bus: &SharedBus) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(pg_node(url, id, Some(Arc::new(bus.clone()))).await);
    }
    nodes
}

#[tokio::test]
async fn direct_and_group_chat_across_three_nodes_over_a_bus() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    chat_across_three_nodes(&three_nodes(&url, &bus).await).await;
}

#[tokio::test]
async fn direct_and_group_chat_across_three_nodes_over_kafka() {
    let Some((url, kafka)) = database_and_kafka().await else {
        return;
    };
    chat_across_three_nodes(&three_kafka_nodes(&url, &kafka).await).await;
}

/// 1:1 and group chat with users on three different nodes: every member
/// gets every message, in seq order; receipts and typing cross nodes.
async fn chat_across_three_nodes(nodes: &[TestNode]) {
    sign_up_users(&nodes[0], &["alice", "bob", "carol"]).await;
    let mut alice = ChatClient::v5(&nodes[0], "alice", "alice-1").await;
    let mut bob = ChatClient::v5(&nodes[1], "bob", "bob-2").await;
    let mut carol = ChatClient::v4(&nodes[2], "carol", "carol-3").await;
    // Every node knows the three sessions before the first send: a fan-out
    // made before a recipient's claim reached the sender's node is replayed
    // to that node later and may arrive behind newer entries (docs/cluster.md,
    // "Ordering"), which is not what this test is about.
    for node in nodes {
        common::within("every node to know the three sessions", async {
            while common::metric(node, "parley_cluster_sessions ")
                .await
                .unwrap_or(0.0)
                < 3.0
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    // 1:1, Alice on node 1 to Bob on node 2: both copies arrive, in seq order.
    let ab = direct("alice", "bob");
    for i in 1..=20u64 {
        let ack = alice
            .send_text(&ab, &format!("ab{i}"), &format!("to bob {i}"))
            .await;
        assert!(ack.is_success(), "ab{i}: {ack:?}");
    }
    let own = alice.next_messages(20).await;
    let got = bob.next_messages(20).await;
    assert_eq!(
        own.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>(),
        "Alice's own copies, in order"
    );
    assert_eq!(got, own, "Bob on node 2 gets every message, in order");

    // A group with a member on every node; each member writes in turn and
    // everyone receives the whole conversation in seq order.
    let group = alice.create_group("three nodes", &["bob", "carol"]).await;
    // Its first entry, the event of its creation, reaches every node too.
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(client.next_event().await.seq, 1, "{}", client.user());
    }
    let mut sent = Vec::new();
    for round in 0..5 {
        for (i, client) in [&mut alice, &mut bob, &mut carol].into_iter().enumerate() {
            let id = format!("g{round}-{i}");
            let ack = client.send_text(&group.id, &id, &id).await;
            assert!(ack.is_success(), "{id}: {ack:?}");
            sent.push(id);
        }
    }
    let mut streams = Vec::new();
    for client in [&mut alice, &mut bob, &mut carol] {
        streams.push(client.next_messages(sent.len()).await);
    }
    for (who, stream) in ["alice", "bob", "carol"].iter().zip(&streams) {
        assert_eq!(
            stream.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (2..=sent.len() as u64 + 1).collect::<Vec<_>>(),
            "{who} gets the group in seq order"
        );
        assert_eq!(
            stream
                .iter()
                .map(|m| m.client_message_id.clone())
                .collect::<Vec<_>>(),
            sent,
            "{who} gets every message of the group"
        );
    }
    let senders: BTreeMap<u16, usize> = streams[0].iter().fold(BTreeMap::new(), |mut n, m| {
        *n.entry(node_of(m.message_id)).or_default() += 1;
        n
    });
    assert_eq!(
        senders,
        BTreeMap::from([(1, 5), (2, 5), (3, 5)]),
        "every node stored a third of them"
    );

    // Receipts cross nodes too: Carol (node 3) reads, Alice (node 1) hears it.
    let ack = carol
        .send_receipt(&group.id, parley_proto::v1::ReceiptKind::Read, 16)
        .await;
    assert!(ack.is_success());
    let receipt = alice.next_receipt().await;
    assert_eq!((receipt.user.as_str(), receipt.up_to_seq), ("carol", 16));
    let _ = bob.next_receipt().await;
    let _ = carol.next_receipt().await;

    // And typing, as one fan-out to the other members' feeds: Bob (node 2)
    // types, Alice (node 1) and Carol (node 3) see it.
    bob.send_typing(&group.id, true).await;
    for client in [&mut alice, &mut carol] {
        let typing = client.next_typing().await;
        assert_eq!((typing.user.as_str(), typing.active), ("bob", true));
    }
}

#[tokio::test]
async fn a_member_added_on_one_node_can_write_through_another() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    member_added_elsewhere(&three_nodes(&url, &bus).await).await;
}

#[tokio::test]
async fn a_member_added_on_one_node_can_write_through_another_over_kafka() {
    let Some((url, kafka)) = database_and_kafka().await else {
        return;
    };
    member_added_elsewhere(&three_kafka_nodes(&url, &kafka).await).await;
}

/// A group changed through node 1 is seen by node 2, which had it cached.
async fn member_added_elsewhere(nodes: &[TestNode]) {
    sign_up_users(&nodes[0], &["alice", "bob", "dave"]).await;
    let mut alice = ChatClient::v5(&nodes[0], "alice", "alice-1").await;
    let mut bob = ChatClient::v5(&nodes[1], "bob", "bob-2").await;
    let group = alice.create_group("growing", &["bob"]).await;
    // Node 2 caches the group with Bob alone as a member besides Alice.
    let first = bob.say(&group.id, "b1", "before dave").await;
    assert_eq!(first.seq, 2, "after the event of the group's creation");
    assert_eq!(alice.next_message().await, first);

    // Dave joins through node 1; node 2 learns it over the bus, so Dave's
    // message sent through node 2 is accepted and reaches everyone.
    alice
        .conversation_op(parley_proto::v1::AddMembers {
            conversation_id: group.id.clone(),
            users: vec!["dave".into()],
        })
        .await;
    let mut dave = ChatClient::v5(&nodes[1], "dave", "dave-2").await;
    let from_dave = common::within("node 2 to accept dave", async {
        loop {
            let ack = dave.send_text(&group.id, "d1", "hello all").await;
            if ack.is_success() {
                return dave.next_message().await;
            }
            // Refused while node 2 has not yet heard of the change: the
            // refusal comes with an error envelope; the retry uses the same
            // client message id, so it is stored at most once.
            let error = dave.next_error().await;
            assert_eq!(
                error.code(),
                parley_proto::v1::ErrorCode::NotAMember,
                "{error:?}"
            );
        }
    })
    .await;
    assert_eq!(from_dave.seq, 4, "after the event of dave's joining");
    assert_eq!(alice.next_message().await, from_dave);
    assert_eq!(bob.next_message().await, from_dave);
}

#[tokio::test]
async fn a_client_moving_to_another_node_catches_up_through_sync() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    moving_between_nodes(&three_nodes(&url, &bus).await).await;
}

#[tokio::test]
async fn a_client_moving_to_another_node_catches_up_over_kafka() {
    let Some((url, kafka)) = database_and_kafka().await else {
        return;
    };
    moving_between_nodes(&three_kafka_nodes(&url, &kafka).await).await;
}

/// A client that reconnects through another node gets what it missed
/// through sync, and live deliveries there.
async fn moving_between_nodes(nodes: &[TestNode]) {
    sign_up_users(&nodes[0], &["alice", "bob"]).await;
    let conv = direct("alice", "bob");
    let mut alice = ChatClient::v5(&nodes[0], "alice", "alice-1").await;
    let mut bob = ChatClient::v5(&nodes[1], "bob", "bob-2").await;
    let first = alice.say(&conv, "m1", "one").await;
    let seen = bob.next_message().await;
    assert_eq!(seen, first);
    let ack = bob
        .send_receipt(&conv, parley_proto::v1::ReceiptKind::Delivered, seen.seq)
        .await;
    assert!(ack.is_success());
    let _ = bob.next_receipt().await;
    let _ = alice.next_receipt().await;
    bob.disconnect().await;

    // While Bob is away, Alice goes on; then Bob comes back through node 3.
    let mut missed = Vec::new();
    for i in 2..=6 {
        missed.push(alice.say(&conv, &format!("m{i}"), &format!("n{i}")).await);
    }
    let mut bob = ChatClient::v5(&nodes[2], "bob", "bob-2").await;
    let summary = bob.summary(&conv).await;
    assert_eq!(summary.delivered_up_to_seq, 1, "the cursor from node 2");
    let caught_up = bob
        .fetch_after(&conv, summary.delivered_up_to_seq, 50)
        .await;
    assert_eq!(caught_up, missed, "everything missed, in order");

    // And live delivery follows him to node 3. Messages Alice sent shortly
    // before he reconnected reach him live as well: node 1 sends node 3
    // what it recently sent Bob elsewhere once it learns he is there (and
    // they may still be on the bus); a client drops those by message id, so
    // only messages he already has may come first.
    let live = alice.say(&conv, "m7", "welcome back").await;
    loop {
        use parley_proto::v1::envelope::Kind;
        match bob.next_envelope().await.kind {
            Some(Kind::Message(next)) if next == live => break,
            Some(Kind::Message(next)) => assert!(
                next == first || missed.contains(&next),
                "only messages Bob already has may arrive before m7: {next:?}"
            ),
            // His own receipt, sent while he was on node 2.
            Some(Kind::Receipt(receipt)) => assert_eq!(
                (receipt.user.as_str(), receipt.up_to_seq),
                ("bob", 1),
                "only receipts Bob already has may arrive before m7"
            ),
            other => panic!("bob: expected a message, got {other:?}"),
        }
    }
    bob.assert_nothing_queued();
}

/// What one fan-out cost the bus: records and bytes (Kafka key and value,
/// as `persistence::kafka::codec` lays them out) produced, records and
/// bytes read by all nodes together, and records read per node.
#[derive(Debug, PartialEq, Eq)]
struct BusCost {
    records: usize,
    bytes: usize,
    reads: usize,
    bytes_read: usize,
    reads_by_node: BTreeMap<u16, usize>,
}

impl MemoryBus {
    /// The cost of the records of `key` from log index `from` on.
    fn cost(&self, key: &str, from: usize) -> BusCost {
        let log = self.log.lock().unwrap();
        let reads = self.reads.lock().unwrap();
        let mut cost = BusCost {
            records: 0,
            bytes: 0,
            reads: 0,
            bytes_read: 0,
            reads_by_node: BTreeMap::new(),
        };
        for (index, (_, record)) in log.iter().enumerate().skip(from) {
            if record.key != key {
                continue;
            }
            let value = persistence::kafka::codec::encode_value(record).expect("encodable");
            let bytes = record.key.len() + value.len();
            cost.records += 1;
            cost.bytes += bytes;
            for &node in reads.get(&index).into_iter().flatten() {
                cost.reads += 1;
                cost.bytes_read += bytes;
                *cost.reads_by_node.entry(node).or_default() += 1;
            }
        }
        cost
    }
}

/// A message to a 50-member group with three members online, one on each
/// node, is one bus record per node (that node's member's inbox and the
/// envelope), each read by its node alone; the 47 members online nowhere
/// cost the bus nothing. It reaches the members on every node.
#[tokio::test]
async fn what_a_group_message_costs_the_bus() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    let nodes = three_nodes(&url, &bus).await;
    let users: Vec<String> = (0..50).map(|i| format!("member{i:02}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    sign_up_users(&nodes[0], &names).await;
    let mut clients = Vec::new();
    for (node, user) in nodes.iter().zip(&names) {
        clients.push(ChatClient::v5(node, user, &format!("{user}-client")).await);
    }
    let group = clients[0].create_group("fifty", &names[1..]).await;
    let from = bus.0.log.lock().unwrap().len();

    let sent = clients[0]
        .say(&group.id, "m1", "hello, fifty members")
        .await;
    for client in &mut clients[1..] {
        assert_eq!(client.next_message().await, sent);
    }
    let cost = bus.0.cost(&group.id, from);
    eprintln!("one message to 50 members (3 online, one per node) on 3 nodes: {cost:?}");
    assert_eq!(cost.records, 3, "one record per node holding a recipient");
    assert_eq!(
        cost.reads_by_node,
        BTreeMap::from([(1, 1), (2, 1), (3, 1)]),
        "each read by its node alone"
    );
    // Per record: the key, the value's 9-byte header, that node's online
    // member's inbox topic with its 2-byte length, and the envelope.
    let (key, envelope) = (
        group.id.len(),
        parley_proto::encode_envelope(&sent.into()).len(),
    );
    let online: usize = names[..3]
        .iter()
        .map(|u| 2 + format!("u/{u}/i").len())
        .sum();
    assert_eq!(cost.bytes, 3 * (key + 9 + envelope) + online);
    assert_eq!(cost.bytes_read, cost.bytes, "every byte is read once");
    // Broadcast, as every node read the bus before: one record with all 50
    // inbox topics, read by all three nodes.
    let inboxes: usize = names.iter().map(|u| 2 + format!("u/{u}/i").len()).sum();
    let broadcast = key + 9 + inboxes + envelope;
    eprintln!(
        "broadcast: 1 record of {broadcast} bytes, 3 reads ({} bytes)",
        3 * broadcast
    );
    assert!(cost.bytes_read * 4 < 3 * broadcast);
}

/// What the bus carries per connection (the session directory's two
/// changes, each read by every node) and per message, 1:1 and to a
/// 100-member group, with members spread over three nodes.
#[tokio::test]
async fn what_connections_and_messages_cost_the_bus() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    let nodes = three_nodes(&url, &bus).await;
    let users: Vec<String> = (0..100).map(|i| format!("member{i:03}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    sign_up_users(&nodes[0], &names).await;
    let from = bus.0.log.lock().unwrap().len();
    let mut clients = Vec::new();
    for (i, user) in names.iter().enumerate() {
        clients.push(ChatClient::v5(&nodes[i % 3], user, &format!("{user}-client")).await);
    }
    for node in &nodes {
        let directory = node.node.directory().expect("a directory");
        common::within("every node to know every session", async {
            directory.wait_until(|d| d.totals().0 == 100).await
        })
        .await;
    }
    let directory_records = |bus: &SharedBus| {
        let log = bus.0.log.lock().unwrap();
        let reads = bus.0.reads.lock().unwrap();
        let mut records = 0;
        let mut read = 0;
        for (index, (audience, record)) in log.iter().enumerate().skip(from) {
            if record.topics == [parley::directory::events::DIRECTORY_TOPIC] {
                assert_eq!(
                    *audience,
                    Audience::Everyone,
                    "directory changes are broadcast"
                );
                records += 1;
                read += reads.get(&index).map_or(0, Vec::len);
            }
        }
        (records, read)
    };
    assert_eq!(
        directory_records(&bus),
        (100, 300),
        "one change per connection, read by each of the three nodes"
    );

    let direct_conv = direct(names[0], names[1]);
    let before = bus.0.log.lock().unwrap().len();
    let sent = clients[0].say(&direct_conv, "d1", "hello").await;
    assert_eq!(clients[1].next_message().await, sent);
    let one_to_one = bus.0.cost(&direct_conv, before);
    eprintln!("one 1:1 message, members on 2 of 3 nodes: {one_to_one:?}");
    assert_eq!((one_to_one.records, one_to_one.reads), (2, 2));
    assert_eq!(
        one_to_one.reads_by_node,
        BTreeMap::from([(1, 1), (2, 1)]),
        "node 3, with neither member, reads nothing of it"
    );

    let group = clients[0].create_group("hundred", &names[1..]).await;
    let before = bus.0.log.lock().unwrap().len();
    let sent = clients[0].say(&group.id, "g1", "hello, hundred").await;
    for client in &mut clients[1..] {
        assert_eq!(client.next_message().await, sent);
    }
    let to_group = bus.0.cost(&group.id, before);
    eprintln!("one message to 100 members on 3 nodes: {to_group:?}");
    assert_eq!((to_group.records, to_group.reads), (3, 3));
    assert_eq!(
        to_group.reads_by_node,
        BTreeMap::from([(1, 1), (2, 1), (3, 1)])
    );

    drop(clients);
    for node in &nodes {
        let directory = node.node.directory().expect("a directory");
        common::within("every node to see every session end", async {
            directory.wait_until(|d| d.totals().0 == 0).await
        })
        .await;
    }
    assert_eq!(
        directory_records(&bus),
        (200, 600),
        "joined and left per connection, each read by every node"
    );
}

/// Records node `node` read from its own stream of the bus (`/metrics`).
async fn targeted_reads(node: &TestNode) -> u64 {
    common::metric(
        node,
        "parley_cluster_bus_records_read_total{stream=\"targeted\"} ",
    )
    .await
    .expect("the targeted read counter is exported") as u64
}

/// Records node `node` produced to single nodes' streams (`/metrics`).
async fn targeted_produced(node: &TestNode) -> u64 {
    common::metric(
        node,
        "parley_cluster_bus_records_produced_total{stream=\"targeted\"} ",
    )
    .await
    .expect("the targeted produce counter is exported") as u64
}

/// Waits until `node` has read `count` records from its own stream.
async fn until_targeted_reads(node: &TestNode, count: u64) {
    common::within("a node to read its records", async {
        while targeted_reads(node).await < count {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Waits until every node's directory holds `user` on `node_id` as a
/// detached session (no live one anywhere).
async fn until_detached(nodes: &[TestNode], user: &str, node_id: u16) {
    use parley::targeting::RecipientNodes;
    for node in nodes {
        let directory = node.node.directory().expect("a directory");
        common::within("every node to see the session detached", async {
            directory
                .wait_until(|d| {
                    let mut holding = Vec::new();
                    d.nodes_holding(user, &mut holding);
                    d.sessions_of(user).is_empty() && holding.contains(&node_id)
                })
                .await
        })
        .await;
    }
}

#[tokio::test]
async fn deliveries_go_only_to_the_nodes_of_their_recipients() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    let nodes = three_nodes(&url, &bus).await;
    let keys = targeted_delivery(&nodes).await;
    // The in-memory bus knows which node read which record.
    for (what, key, readers) in [
        ("1:1 between nodes 1 and 2", &keys.direct, vec![1, 2]),
        ("group on nodes 1 and 2", &keys.group, vec![1, 2]),
        (
            "1:1 with a detached session on node 3",
            &keys.to_detached,
            vec![1, 3],
        ),
    ] {
        let cost = bus.0.cost(key, 0);
        eprintln!("{what}: {cost:?}");
        assert_eq!(
            cost.reads_by_node.keys().copied().collect::<Vec<u16>>(),
            readers,
            "{what}: read by its recipients' nodes only"
        );
        assert_eq!(cost.reads, cost.records, "{what}: each record read once");
    }
}

#[tokio::test]
async fn deliveries_go_only_to_the_nodes_of_their_recipients_over_kafka() {
    let Some((url, kafka)) = database_and_kafka().await else {
        return;
    };
    targeted_delivery(&three_kafka_nodes(&url, &kafka).await).await;
}

/// The conversations [`targeted_delivery`] used.
struct TargetedKeys {
    direct: String,
    group: String,
    to_detached: String,
}

/// 1:1 and group chat between members on nodes 1 and 2 of three: node 3
/// reads none of it, and node 1 produces one record per message and node
/// holding a member; a message to a user whose persistent session is
/// disconnected on node 3 goes to node 3, which queues it in the session.
async fn targeted_delivery(nodes: &[TestNode]) -> TargetedKeys {
    use common::chat::{ClientOptions, Proto};
    sign_up_users(&nodes[0], &["alice", "bob", "dave", "carol"]).await;
    // Carol leaves a persistent session on node 3 and goes away.
    let carol = ChatClient::connect(
        &nodes[2],
        ClientOptions::new(Proto::V5, "carol", "carol-3").persistent(),
    )
    .await;
    carol.disconnect().await;
    until_detached(nodes, "carol", 3).await;

    let mut alice = ChatClient::v5(&nodes[0], "alice", "alice-1").await;
    let mut bob = ChatClient::v5(&nodes[1], "bob", "bob-2").await;
    let mut dave = ChatClient::v5(&nodes[1], "dave", "dave-2").await;
    for node in nodes {
        let directory = node.node.directory().expect("a directory");
        common::within("every node to know every live session", async {
            directory.wait_until(|d| d.totals().0 == 3).await
        })
        .await;
    }
    let node3_before = targeted_reads(&nodes[2]).await;
    let node1_produced = targeted_produced(&nodes[0]).await;

    // 1:1, Alice (node 1) to Bob (node 2): one record to each of their
    // nodes per message, both copies in seq order.
    let ab = direct("alice", "bob");
    for i in 1..=10u64 {
        let ack = alice.send_text(&ab, &format!("ab{i}"), "to bob").await;
        assert!(ack.is_success(), "ab{i}: {ack:?}");
    }
    let own = alice.next_messages(10).await;
    assert_eq!(
        own.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        bob.next_messages(10).await,
        own,
        "Bob gets every message, in order"
    );
    assert_eq!(
        targeted_produced(&nodes[0]).await - node1_produced,
        20,
        "node 1 produced one record per message for each of nodes 1 and 2"
    );

    // A group with members on nodes 1 and 2 only; members on both write.
    let group = alice.create_group("two nodes", &["bob", "dave"]).await;
    for client in [&mut alice, &mut bob, &mut dave] {
        assert_eq!(client.next_event().await.seq, 1, "{}", client.user());
    }
    let mut sent = Vec::new();
    for round in 0..3 {
        for (i, client) in [&mut alice, &mut bob].into_iter().enumerate() {
            let id = format!("g{round}-{i}");
            let ack = client.send_text(&group.id, &id, &id).await;
            assert!(ack.is_success(), "{id}: {ack:?}");
            sent.push(id);
        }
    }
    for client in [&mut alice, &mut bob, &mut dave] {
        let stream = client.next_messages(sent.len()).await;
        assert_eq!(
            stream
                .iter()
                .map(|m| m.client_message_id.clone())
                .collect::<Vec<_>>(),
            sent,
            "{} gets every message of the group, in order",
            client.user()
        );
    }

    // Carol's session on node 3 is disconnected but persistent: a message
    // to her goes to node 3 (its first record there since the 1:1 and the
    // group began, so node 3 read none of those) and waits in her session.
    let ac = direct("alice", "carol");
    let to_carol = alice.say(&ac, "ac1", "while you were away").await;
    until_targeted_reads(&nodes[2], node3_before + 1).await;
    assert_eq!(
        targeted_reads(&nodes[2]).await,
        node3_before + 1,
        "node 3 read the record for Carol and nothing of the 1:1 or the group"
    );
    let mut carol = ChatClient::connect(
        &nodes[2],
        ClientOptions::new(Proto::V5, "carol", "carol-3")
            .persistent()
            .without_subscriptions(),
    )
    .await;
    assert_eq!(
        carol.next_message().await,
        to_carol,
        "Carol's session on node 3 queued it while she was away"
    );
    TargetedKeys {
        direct: ab,
        group: group.id,
        to_detached: ac,
    }
}

/// A persistent session that expires on its node leaves the directory:
/// every node stops sending its user's deliveries there.
#[tokio::test]
async fn an_expired_persistent_session_leaves_the_directory() {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let Some(url) = fresh_database().await else {
        return;
    };
    let bus = SharedBus::default();
    let nodes = three_nodes(&url, &bus).await;
    sign_up_users(&nodes[0], &["erin"]).await;
    let addr = nodes[1].mqtt();
    let mut options = MqttOptions::new("erin-2", addr.ip().to_string(), addr.port());
    options.set_credentials("erin", password_of("erin"));
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(1));
    let (client, mut events) = AsyncClient::new(options, 10);
    common::within("erin's CONNACK", async {
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = events.poll().await.expect("connects") {
                return;
            }
        }
    })
    .await;
    client.disconnect().await.expect("queue DISCONNECT");
    common::within("erin's connection to close", async {
        while events.poll().await.is_ok() {}
    })
    .await;
    until_detached(&nodes, "erin", 2).await;
    // Its expiry (1 s) passes: node 2 removes the entry, every node hears it.
    for node in &nodes {
        use parley::targeting::RecipientNodes;
        let directory = node.node.directory().expect("a directory");
        common::within("every node to forget the expired session", async {
            directory
                .wait_until(|d| {
                    let mut holding = Vec::new();
                    d.nodes_holding("erin", &mut holding);
                    holding.is_empty()
                })
                .await
        })
        .await;
    }
}
