//! Short `chat` runs against a real Parley node started in this process
//! (through its library API) on ephemeral loopback ports with its own data
//! directory: 1:1 pairs and a small group on the lean client (MQTT 3.1.1
//! and 5), and pairs on the rumqttc client, a couple of seconds each. Every
//! message sent must be acknowledged, stored (Parley's
//! `parley_chat_messages_stored_total`) and delivered to every member. The
//! assertions are about counting, not timing.

use std::net::SocketAddr;
use std::time::Duration;

use parley::config::{Config, Listen};
use parley::server::Node;
use parley_bench::credentials::{self, Credentials, SignupUrl};
use parley_bench::mqtt::MqttVersion;
use parley_bench::report::ChatReport;
use parley_bench::scenario::chat::layout::Layout;
use parley_bench::scenario::chat::{self, ChatClient, ChatConfig};
use parley_bench::scenario::Target;
use tempfile::TempDir;

const PASSWORD: &str = "smoke-password";

/// A node with chat rate limits out of the way, and its data directory.
async fn start_parley() -> (Node, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let any = Listen::on(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.mqtt.tcp = any;
    config.mqtt.ws = Listen::off();
    config.http.listen = any;
    config.auth.jwt_secret = Some("bench-smoke-secret-bench-smoke-secret-0".into());
    config.chat.messages_per_sec = 100_000.0;
    config.chat.message_burst = 100_000;
    config.accounts.signups_per_hour_per_address = 0.0;
    config.listeners.mqtt_max_connections_per_address = 0;
    let node = Node::start(config).await.expect("parley starts");
    (node, dir)
}

/// Chat messages the node has stored so far, from its `/metrics`.
async fn stored(node: &Node) -> u64 {
    let http = node.addrs.http.expect("http listener");
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|line| line.strip_prefix("parley_chat_messages_stored_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// One run: which users, which client, which protocol version.
struct Run<'a> {
    layout: Layout,
    senders: usize,
    prefix: &'a str,
    client: ChatClient,
    version: MqttVersion,
}

async fn run_chat(node: &Node, run: Run<'_>) -> ChatReport {
    let Run {
        layout,
        senders,
        prefix,
        client,
        version,
    } = run;
    let mqtt = node.addrs.mqtt_tcp.expect("tcp listener");
    let http = node.addrs.http.expect("http listener");
    let credentials = Credentials::PerClient {
        prefix: prefix.into(),
        password: PASSWORD.into(),
    };
    let url = SignupUrl::parse(&format!("http://{http}")).unwrap();
    let logins = credentials.logins(layout.users());
    let first = credentials::sign_up_or_log_in(&url, &logins)
        .await
        .expect("sign-up");
    assert_eq!(first.created, layout.users());
    // Signing up again reuses the accounts after checking their password.
    let again = credentials::sign_up_or_log_in(&url, &logins)
        .await
        .expect("second sign-up");
    assert_eq!((again.created, again.existing), (0, layout.users()));

    let cfg = ChatConfig {
        target: Target {
            host: mqtt.ip().to_string(),
            port: mqtt.port(),
            version,
            keepalive: Duration::from_secs(30),
            client_id_prefix: "smoke".into(),
            credentials,
        },
        layout,
        senders,
        rate: 20.0,
        duration: Duration::from_millis(1500),
        text_size: 64,
        inflight: 20,
        drain_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(20),
        progress: false,
        node_ports: Vec::new(),
        bus: None,
        client,
    };
    let report = chat::run(&cfg).await.expect("chat run");
    assert_eq!(report.client, client);
    report
}

fn assert_complete(report: &ChatReport) {
    assert!(report.sent > 0, "{report:#?}");
    assert_eq!(report.acked, report.sent, "{report:#?}");
    assert_eq!(report.refused, 0, "{report:#?}");
    assert_eq!(
        report.expected,
        report.sent * report.conversation_size as u64,
        "{report:#?}"
    );
    assert_eq!(report.received, report.expected, "{report:#?}");
    assert_eq!((report.lost, report.duplicates), (0, 0), "{report:#?}");
    assert_eq!(report.errors.total, 0, "{:?}", report.errors);
    assert_eq!(report.ack_latency_us.count, report.sent);
    assert_eq!(report.delivery_latency_us.count, report.received);
    assert!(report.peer_delivery_latency_us.count > 0);
    assert!(report.ack_latency_us.max >= report.ack_latency_us.p50);
    assert!(report.delivery_latency_us.p50 > 0);
    assert!(report.acked_rate > 0.0 && report.received_rate > 0.0);
}

/// Runs 1:1 pairs, each member sending, and checks that every message was
/// stored once.
async fn pairs_stored(node: &Node, prefix: &str, client: ChatClient, version: MqttVersion) {
    let before = stored(node).await;
    let pairs = run_chat(
        node,
        Run {
            layout: Layout::Pairs { pairs: 3 },
            senders: 2,
            prefix,
            client,
            version,
        },
    )
    .await;
    assert_eq!((pairs.users, pairs.senders, pairs.conversations), (6, 6, 3));
    assert_complete(&pairs);
    // Everyone sends, so every delivery to a peer is half of all deliveries.
    assert_eq!(pairs.peer_delivery_latency_us.count * 2, pairs.received);
    assert_eq!(stored(node).await - before, pairs.sent, "{pairs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_pairs_and_groups_against_parley() {
    let (node, _dir) = start_parley().await;

    pairs_stored(&node, "smoke-pair-", ChatClient::Lean, MqttVersion::V4).await;

    let groups = run_chat(
        &node,
        Run {
            layout: Layout::Groups { size: 3, count: 2 },
            senders: 1,
            prefix: "smoke-group-",
            client: ChatClient::Lean,
            version: MqttVersion::V4,
        },
    )
    .await;
    assert_eq!((groups.users, groups.senders), (6, 2));
    assert_complete(&groups);
    assert_eq!(
        groups.peer_delivery_latency_us.count * 3,
        groups.received * 2
    );
    assert!(groups.table().contains("send->puback"));

    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_on_mqtt5_and_on_the_rumqttc_client() {
    let (node, _dir) = start_parley().await;
    pairs_stored(&node, "smoke-v5-", ChatClient::Lean, MqttVersion::V5).await;
    pairs_stored(
        &node,
        "smoke-rumqttc-",
        ChatClient::Rumqttc,
        MqttVersion::V4,
    )
    .await;
    node.shutdown().await.expect("shutdown");
}
