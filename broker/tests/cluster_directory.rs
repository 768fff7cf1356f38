//! The session directory of a cluster, with real nodes on a real PostgreSQL
//! and the Kafka-protocol test broker (tansu): takeover of a session across
//! nodes (and two connects racing on two nodes), presence of a user on two
//! nodes, push skipping a user online elsewhere, a rate budget shared by two
//! nodes, and the entries of a node killed with -9 expiring with its lease.
//!
//! Needs `PARLEY_TEST_POSTGRES` and `PARLEY_TEST_KAFKA` (`. .ci/postgres.sh`
//! and `. .ci/kafka.sh`); without them the tests print why and pass,
//! except under `CI`, where they fail.

mod common;

use std::sync::Arc;

use common::chat::{direct, password_of, sign_up_users, Ack, ChatClient};
use common::shared_postgres::{fresh_database, rand_u32};
use common::{metric, test_config, within, TestNode};
use parley::config::{BusKind, Config, StorageBackend};
use parley::directory::ClusterDirectory;
use parley::server::Node;
use parley_proto::v1::PresenceState;
use persistence::postgres::{PostgresConfig, PostgresStore};
use persistence::SessionDirectory;
use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;

/// The variable naming the Kafka-protocol test broker (`host:port`).
const KAFKA_VAR: &str = "PARLEY_TEST_KAFKA";

/// A fresh database and the Kafka broker's address, or `None` to skip.
async fn database_and_kafka() -> Option<(String, String)> {
    let kafka = match std::env::var(KAFKA_VAR) {
        Ok(kafka) if !kafka.trim().is_empty() => kafka,
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!("{KAFKA_VAR} is not set, but CI is: the cluster tests must run in CI");
            }
            eprintln!("skipping a cluster directory test: {KAFKA_VAR} is not set");
            return None;
        }
    };
    Some((fresh_database().await?, kafka))
}

/// One cluster's shared settings.
struct Cluster {
    url: String,
    kafka: String,
    topic: String,
}

impl Cluster {
    async fn new() -> Option<Cluster> {
        let (url, kafka) = database_and_kafka().await?;
        let topic = format!(
            "parley-directory-test-{}-{:08x}",
            std::process::id(),
            rand_u32()
        );
        Some(Cluster { url, kafka, topic })
    }

    fn config(&self, dir: &std::path::Path, node_id: u16) -> Config {
        let mut config = test_config(dir);
        config.node_id = node_id;
        config.storage.backend = StorageBackend::Postgres;
        config.storage.postgres.url = self.url.clone();
        config.storage.postgres.max_connections = 4;
        config.chat.messages_per_sec = 10_000.0;
        config.chat.message_burst = 10_000;
        config.cluster.bus = BusKind::Kafka;
        config.cluster.kafka.bootstrap_servers = self.kafka.clone();
        config.cluster.kafka.topic = self.topic.clone();
        config.cluster.kafka.partitions = 3;
        config.cluster.node_lease_ttl_ms = 1_000;
        config.cluster.presence_offline_delay_ms = 200;
        config
    }

    /// Node `node_id` in this process, after `tweak`.
    async fn node(&self, node_id: u16, tweak: impl FnOnce(&mut Config)) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = self.config(dir.path(), node_id);
        tweak(&mut config);
        let node = Node::start(config).await.expect("node starts");
        TestNode { node, dir }
    }
}

fn directory(node: &TestNode) -> Arc<ClusterDirectory> {
    node.node
        .directory()
        .expect("a node with a bus has a directory")
}

/// Waits until `node`'s directory lists `user`'s sessions on exactly `nodes`
/// (one node id per session, in client id order).
async fn await_sessions(node: &TestNode, user: &str, nodes: &[u16]) {
    let directory = directory(node);
    within(&format!("{user}'s sessions on nodes {nodes:?}"), async {
        directory
            .wait_until(|d| {
                d.sessions_of(user)
                    .iter()
                    .map(|e| e.node_id)
                    .collect::<Vec<_>>()
                    == nodes
            })
            .await
    })
    .await;
}

#[tokio::test]
async fn a_session_taken_over_on_another_node_ends_there_with_0x8e() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let one = cluster.node(1, |_| {}).await;
    let two = cluster.node(2, |_| {}).await;
    sign_up_users(&one, &["alice", "bob"]).await;

    // MQTT 5: the old connection is told 0x8E (session taken over).
    let alice =
        |node: &TestNode| common::v5::options(node, "phone", "alice", &password_of("alice"));
    let (_old, mut old_events) = common::v5::connect(alice(&one)).await;
    await_sessions(&two, "alice", &[1]).await;
    let (_new, _new_events) = common::v5::connect(alice(&two)).await;
    assert_eq!(
        common::v5::disconnect_reason(&mut old_events).await,
        Some(DisconnectReasonCode::SessionTakenOver)
    );
    await_sessions(&one, "alice", &[2]).await;
    await_sessions(&two, "alice", &[2]).await;

    // MQTT 3.1.1: the old connection is closed.
    let bob = |node: &TestNode| common::v4::options(node, "laptop", "bob", &password_of("bob"));
    let (_old, mut old_events) = common::v4::connect(bob(&two)).await;
    await_sessions(&one, "bob", &[2]).await;
    let (_new, _new_events) = common::v4::connect(bob(&one)).await;
    let ended = within("the old 3.1.1 connection to close", async {
        loop {
            if let Err(e) = old_events.poll().await {
                return e;
            }
        }
    })
    .await;
    eprintln!("the old 3.1.1 connection ended: {ended:?}");
    await_sessions(&two, "bob", &[1]).await;
    assert_eq!(
        metric(&two, "parley_cluster_sessions_taken_over_total").await,
        Some(1.0),
        "node 2 ended one connection for a takeover"
    );
}

#[tokio::test]
async fn of_two_connects_racing_on_two_nodes_exactly_one_survives() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let one = cluster.node(1, |_| {}).await;
    let two = cluster.node(2, |_| {}).await;
    sign_up_users(&one, &["alice", "bob"]).await;
    let store = PostgresStore::connect(PostgresConfig::from_url(&cluster.url).unwrap())
        .await
        .expect("the cluster's database");
    for round in 0..5 {
        let client_id = format!("racer-{round}");
        let options =
            |node: &TestNode| common::v5::options(node, &client_id, "alice", &password_of("alice"));
        let ((c1, mut e1), (c2, mut e2)) = tokio::join!(
            common::v5::connect(options(&one)),
            common::v5::connect(options(&two))
        );
        // Exactly one is taken over; the other is the directory's entry.
        let (loser, survivor) = tokio::select! {
            reason = common::v5::disconnect_reason(&mut e1) => {
                assert_eq!(reason, Some(DisconnectReasonCode::SessionTakenOver));
                (1, 2)
            }
            reason = common::v5::disconnect_reason(&mut e2) => {
                assert_eq!(reason, Some(DisconnectReasonCode::SessionTakenOver));
                (2, 1)
            }
        };
        // The store names the survivor, and both caches come to agree.
        let stored: Vec<_> = SessionDirectory::live(&store)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.client_id == client_id)
            .map(|e| e.node_id)
            .collect();
        assert_eq!(stored, [survivor], "round {round}: loser {loser}");
        await_sessions(&one, "alice", &[survivor]).await;
        await_sessions(&two, "alice", &[survivor]).await;
        // The survivor still works: a round trip on its connection.
        let (client, events) = if survivor == 1 {
            (&c1, &mut e1)
        } else {
            (&c2, &mut e2)
        };
        client
            .subscribe("u/alice/i", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
            .await
            .unwrap();
        common::v5::next_matching(events, "SUBACK of the survivor", |p| {
            matches!(p, rumqttc::v5::mqttbytes::v5::Packet::SubAck(_)).then_some(())
        })
        .await;
        // Both connections close; the directory empties.
        drop((c1, e1, c2, e2));
        await_sessions(&one, "alice", &[]).await;
    }
}

#[tokio::test]
async fn presence_stays_online_while_a_session_lives_on_any_node() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let one = cluster.node(1, |_| {}).await;
    let two = cluster.node(2, |_| {}).await;
    sign_up_users(&one, &["alice", "bob"]).await;
    let mut phone = ChatClient::v5(&one, "alice", "phone").await;
    phone.say(&direct("alice", "bob"), "a-1", "hi").await;
    let mut bob = ChatClient::v5(&two, "bob", "b").await;
    assert_eq!(bob.subscribe("p/alice", 1).await, Some(1));
    let current = bob.next_presence().await;
    assert_eq!(current.presence.state(), PresenceState::Online);

    // A second session on node 2, then the one on node 1 goes.
    let laptop = ChatClient::v5(&two, "alice", "laptop").await;
    await_sessions(&one, "alice", &[2, 1]).await;
    drop(phone);
    await_sessions(&two, "alice", &[2]).await;
    await_sessions(&one, "alice", &[2]).await;
    let before_last = parley::chat::now_ms();
    drop(laptop);
    // The only presence Bob gets after the first is OFFLINE, after the last
    // session ended: nothing when the node-1 session went.
    let offline = bob.next_presence().await;
    assert_eq!(
        offline.presence.state(),
        PresenceState::Offline,
        "{offline:?}"
    );
    assert!(
        offline.presence.last_seen_ms >= before_last,
        "published after the last session ended, not the first: {offline:?}"
    );
    await_sessions(&one, "alice", &[]).await;

    // Back on node 1: ONLINE again, once.
    let _phone = ChatClient::v5(&one, "alice", "phone").await;
    let online = bob.next_presence().await;
    assert_eq!(online.presence.state(), PresenceState::Online);
}

#[tokio::test]
async fn a_reconnect_within_the_offline_delay_shows_nothing() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    // Long enough that a reconnect on loopback always comes back within it.
    let delay = |c: &mut Config| c.cluster.presence_offline_delay_ms = 3_000;
    let one = cluster.node(1, delay).await;
    let two = cluster.node(2, delay).await;
    sign_up_users(&one, &["alice", "bob"]).await;
    let mut phone = ChatClient::v5(&one, "alice", "phone").await;
    phone.say(&direct("alice", "bob"), "a-1", "hi").await;
    let mut bob = ChatClient::v5(&two, "bob", "b").await;
    assert_eq!(bob.subscribe("p/alice", 1).await, Some(1));
    assert_eq!(
        bob.next_presence().await.presence.state(),
        PresenceState::Online
    );
    // The radio drops and the phone comes back on the other node.
    drop(phone);
    await_sessions(&two, "alice", &[]).await;
    let phone = ChatClient::v5(&two, "alice", "phone").await;
    await_sessions(&one, "alice", &[2]).await;
    let before_last = parley::chat::now_ms();
    drop(phone);
    let next = bob.next_presence().await;
    assert_eq!(next.presence.state(), PresenceState::Offline, "{next:?}");
    assert!(
        next.presence.last_seen_ms >= before_last,
        "the flap showed nothing; this OFFLINE is the final one: {next:?}"
    );
}

/// A webhook receiver for push notifications.
mod webhook {
    use std::net::SocketAddr;

    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::Router;
    use parley::config::Config;
    use parley::push::NotifierKind;
    use serde_json::{json, Value};
    use tokio::sync::mpsc;

    use crate::common::{within, TestNode};

    async fn receive(State(seen): State<mpsc::UnboundedSender<Value>>, body: String) -> StatusCode {
        match serde_json::from_str(&body).map(|v| seen.send(v)) {
            Ok(Ok(())) => StatusCode::NO_CONTENT,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A receiver on a loopback port: its URL and the JSON bodies it receives.
    pub async fn receiver() -> (String, mpsc::UnboundedReceiver<Value>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let app = Router::new().route("/hook", post(receive)).with_state(tx);
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, rx)
    }

    /// Webhook push to `url`, one notification at a time (so in queue order).
    pub fn push_to(url: String) -> impl FnOnce(&mut Config) {
        move |config: &mut Config| {
            config.push.notifier = NotifierKind::Webhook;
            config.push.webhook.url = Some(url);
            config.push.webhook.secret = Some("push-test-webhook-secret-0123456789abcdef".into());
            config.push.max_in_flight = 1;
        }
    }

    /// Registers a webhook device `device` for the holder of `token`.
    pub async fn register_device(node: &TestNode, token: &str, device: &str) {
        let status = reqwest::Client::new()
            .put(format!("{}/v1/push/devices/{device}", node.http()))
            .bearer_auth(token)
            .json(&json!({"kind": "webhook", "target": device}))
            .send()
            .await
            .expect("register a device")
            .status();
        assert_eq!(status, 201, "device {device} registered");
    }

    /// The next notification's body.
    pub async fn next(hooks: &mut mpsc::UnboundedReceiver<Value>) -> Value {
        within("a push notification", hooks.recv())
            .await
            .expect("the receiver is running")
    }
}

#[tokio::test]
async fn push_skips_a_member_online_on_another_node() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let (url, mut hooks) = webhook::receiver().await;
    let one = cluster.node(1, webhook::push_to(url)).await;
    let two = cluster.node(2, |_| {}).await;
    sign_up_users(&one, &["alice", "bob", "carol"]).await;
    for user in ["bob", "carol"] {
        let token = common::log_in(&one, user, &password_of(user)).await;
        webhook::register_device(&one, &token, &format!("{user}-phone")).await;
    }
    let mut alice = ChatClient::v5(&one, "alice", "a").await;
    let group = alice.create_group("trio", &["bob", "carol"]).await;
    // Bob is online on node 2 only; Carol nowhere.
    let bob = ChatClient::v5(&two, "bob", "b").await;
    await_sessions(&one, "bob", &[2]).await;
    let to_group = alice.say(&group.id, "g-1", "hello both").await;
    // Bob leaves; a direct message to him is pushed. Everything pushed
    // before it (in queue order) is for Carol only.
    drop(bob);
    await_sessions(&one, "bob", &[]).await;
    let to_bob = alice.say(&direct("alice", "bob"), "d-1", "now you").await;
    let mut pushed = Vec::new();
    loop {
        let hook = webhook::next(&mut hooks).await;
        let (user, seq) = (
            hook["user"].as_str().unwrap_or_default().to_owned(),
            hook["seq"].as_u64(),
        );
        pushed.push((user.clone(), seq));
        if user == "bob" {
            break;
        }
    }
    assert_eq!(
        pushed,
        vec![
            ("carol".to_owned(), Some(to_group.seq)),
            ("bob".to_owned(), Some(to_bob.seq))
        ],
        "bob was not pushed while online on node 2"
    );
}

#[tokio::test]
async fn a_users_message_budget_is_shared_by_their_nodes() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let budget = |c: &mut Config| {
        c.chat.messages_per_sec = 0.001;
        c.chat.message_burst = 4;
    };
    let one = cluster.node(1, budget).await;
    let two = cluster.node(2, budget).await;
    sign_up_users(&one, &["alice", "bob"]).await;
    let mut on_one = ChatClient::v5(&one, "alice", "phone").await;
    let mut on_two = ChatClient::v5(&two, "alice", "laptop").await;
    await_sessions(&one, "alice", &[2, 1]).await;
    await_sessions(&two, "alice", &[2, 1]).await;
    let conv = direct("alice", "bob");
    let mut accepted = 0;
    for (i, client) in [&mut on_one, &mut on_two].into_iter().enumerate() {
        for n in 0..4 {
            let ack = client.send_text(&conv, &format!("m{i}-{n}"), "quick").await;
            if ack.is_success() {
                accepted += 1;
            } else {
                assert!(matches!(ack, Ack::V5(_)), "{ack:?}");
            }
        }
    }
    assert_eq!(
        accepted, 4,
        "a burst of 4 shared by two nodes (each node alone would allow 4)"
    );
    let refused = metric(&one, "parley_chat_rate_limited_total{kind=\"message\"}").await;
    assert_eq!(refused, Some(2.0), "node 1 refused the two over its share");
}

/// Starts the `parley` binary as node `node_id` of `cluster` (node lease of
/// one second) and waits until it is up; returns the process and its MQTT port.
async fn spawn_node(
    cluster: &Cluster,
    dir: &std::path::Path,
    node_id: u16,
) -> (tokio::process::Child, u16) {
    use common::process::free_port;
    let (mqtt, http) = (free_port(), free_port());
    let config = dir.join("parley.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = {node_id}\ndata_dir = {:?}\n\
             [storage]\nbackend = \"postgres\"\n[storage.postgres]\nurl = {:?}\nmax_connections = 4\n\
             [cluster]\nbus = \"kafka\"\nnode_lease_ttl_ms = 1000\npresence_offline_delay_ms = 200\n\
             [cluster.kafka]\nbootstrap_servers = {:?}\ntopic = {:?}\npartitions = 3\n\
             [mqtt]\ntcp = \"127.0.0.1:{mqtt}\"\nws = \"off\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [auth]\njwt_secret = \"test-secret-test-secret-test-secret-0123\"\n\
             [chat]\nmessage_requests = false\n",
            dir.join("data"),
            cluster.url,
            cluster.kafka,
            cluster.topic,
        ),
    )
    .unwrap();
    let child = common::process::spawn_parley_config(&config).await;
    (child, mqtt)
}

#[tokio::test]
async fn a_node_killed_with_9_loses_its_sessions_when_its_lease_runs_out() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let one = cluster.node(1, |_| {}).await;
    sign_up_users(&one, &["alice", "bob"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, port) = spawn_node(&cluster, dir.path(), 2).await;

    // Alice is on the process (node 2) and on node 1; Bob watches her.
    let mut options = rumqttc::v5::MqttOptions::new("phone", "127.0.0.1", port);
    options.set_credentials("alice", password_of("alice"));
    let (_doomed, mut doomed_events) = common::v5::connect(options).await;
    let mut laptop = ChatClient::v5(&one, "alice", "laptop").await;
    laptop.say(&direct("alice", "bob"), "a-1", "hi").await;
    await_sessions(&one, "alice", &[1, 2]).await;
    let mut bob = ChatClient::v5(&one, "bob", "b").await;
    assert_eq!(bob.subscribe("p/alice", 1).await, Some(1));
    assert_eq!(
        bob.next_presence().await.presence.state(),
        PresenceState::Online
    );

    // kill -9: nothing is released; the entry goes when node 2's lease runs out.
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("the process ends");
    tokio::spawn(async move { while doomed_events.poll().await.is_ok() {} });
    await_sessions(&one, "alice", &[1]).await;
    assert!(
        metric(&one, "parley_cluster_sessions_expired_total").await >= Some(1.0),
        "node 1 removed the dead node's entry"
    );
    // Alice is still online through her laptop; when it goes, she is offline.
    let before_last = parley::chat::now_ms();
    drop(laptop);
    let offline = within("OFFLINE after the last session", async {
        loop {
            let update = bob.next_presence().await;
            if update.presence.state() != PresenceState::Online {
                return update;
            }
        }
    })
    .await;
    assert_eq!(
        offline.presence.state(),
        PresenceState::Offline,
        "{offline:?}"
    );
    assert!(offline.presence.last_seen_ms >= before_last, "{offline:?}");
}

#[tokio::test]
async fn a_node_shutting_down_removes_its_sessions_without_waiting_for_its_lease() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    // A lease long enough that only the shutdown can explain the removal.
    let long_lease = |c: &mut Config| c.cluster.node_lease_ttl_ms = 60_000;
    let one = cluster.node(1, long_lease).await;
    let two = cluster.node(2, long_lease).await;
    sign_up_users(&one, &["alice", "bob"]).await;
    let _phone = ChatClient::v5(&two, "alice", "phone").await;
    let _laptop = ChatClient::v4(&two, "alice", "laptop").await;
    await_sessions(&one, "alice", &[2, 2]).await;
    two.node.shutdown().await.expect("node 2 shuts down");
    await_sessions(&one, "alice", &[]).await;
    assert_eq!(
        metric(&one, "parley_cluster_sessions_expired_total").await,
        Some(0.0),
        "removed by node 2 itself, not expired"
    );
}

#[tokio::test]
async fn quick_reconnects_on_one_node_leave_no_session_behind() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let one = cluster.node(1, |_| {}).await;
    let two = cluster.node(2, |_| {}).await;
    sign_up_users(&one, &["alice", "bob"]).await;
    let store = PostgresStore::connect(PostgresConfig::from_url(&cluster.url).unwrap())
        .await
        .expect("the cluster's database");
    for round in 0..5 {
        let options = common::v5::options(&one, "phone", "alice", &password_of("alice"));
        // The second CONNECT follows the first's CONNACK at once, while the
        // first connection's claim may still be under way.
        let (_first, mut first_events) = common::v5::connect(options.clone()).await;
        let (second, second_events) = common::v5::connect(options).await;
        assert_eq!(
            common::v5::disconnect_reason(&mut first_events).await,
            Some(DisconnectReasonCode::SessionTakenOver),
            "round {round}"
        );
        await_sessions(&two, "alice", &[1]).await;
        drop((second, second_events));
        await_sessions(&two, "alice", &[]).await;
        await_sessions(&one, "alice", &[]).await;
        let left: Vec<_> = SessionDirectory::live(&store)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.user == "alice")
            .collect();
        assert_eq!(left, Vec::new(), "round {round}: nothing left in the store");
    }
}
