//! Short smoke runs of the scenarios (persistent sessions included) and the comparison runner against a real
//! Mosquitto that each test starts on a free loopback port (one test uses a
//! stub broker that refuses subscriptions). Without /usr/sbin/mosquitto the
//! tests fail when `CI` is set and skip otherwise.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parley_bench::compare::brokers::{self, BrokerKind, BrokerPaths, RunningBroker};
use parley_bench::compare::{self, CompareConfig, ScenarioName, ScenarioReport};
use parley_bench::credentials::Credentials;
use parley_bench::mqtt::{MqttVersion, Qos};
use parley_bench::scenario::conn::{self, ConnConfig};
use parley_bench::scenario::plan::Mode;
use parley_bench::scenario::pubsub::{self, PubsubConfig, PubsubError};
use parley_bench::scenario::sessions::{self, SessionLayout, SessionsConfig};
use parley_bench::scenario::Target;
use tempfile::TempDir;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// The Mosquitto binary, or `None` (after saying why) when the test should skip.
fn mosquitto_bin() -> Option<PathBuf> {
    let bin = PathBuf::from(MOSQUITTO);
    if bin.exists() {
        return Some(bin);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{MOSQUITTO} is missing; CI must install it (apt-get install -y mosquitto)");
    }
    eprintln!("skipping: {MOSQUITTO} is not installed (apt-get install -y mosquitto)");
    None
}

async fn mosquitto(extra_config: &str) -> Option<(RunningBroker, TempDir)> {
    let bin = mosquitto_bin()?;
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = brokers::start_mosquitto(&bin, false, dir.path(), extra_config)
        .await
        .expect("start mosquitto");
    Some((broker, dir))
}

fn target(port: u16, version: MqttVersion) -> Target {
    Target {
        host: "127.0.0.1".into(),
        port,
        version,
        keepalive: Duration::from_secs(30),
        client_id_prefix: "smoke".into(),
        credentials: Credentials::PerClient {
            prefix: "smoke-user-".into(),
            password: "pw".into(),
        },
    }
}

fn pubsub_config(
    port: u16,
    version: MqttVersion,
    mode: Mode,
    clients: usize,
    qos: Qos,
) -> PubsubConfig {
    PubsubConfig {
        target: target(port, version),
        mode,
        clients,
        qos,
        payload_size: 64,
        rate: 50.0,
        duration: Duration::from_millis(1500),
        topic_prefix: "bench".into(),
        inflight: 20,
        drain_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(10),
        progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conn_opens_holds_and_cycles_source_addresses() {
    let Some((broker, dir)) = mosquitto("log_type all\n").await else {
        return;
    };
    let cfg = ConnConfig {
        target: target(broker.mqtt_port, MqttVersion::V4),
        count: 20,
        rate: 200.0,
        hold: Duration::from_millis(500),
        source_addrs: Some("127.0.0.1-127.0.0.4".parse().unwrap()),
        connect_timeout: Duration::from_secs(10),
        subscribe: false,
        held: None,
        progress: false,
    };
    let report = conn::run(&cfg).await.expect("conn run");
    let log = broker.log.clone();
    broker.stop().await.expect("stop mosquitto");

    assert_eq!(report.connected, 20, "{report:#?}");
    assert_eq!(
        (report.failed, report.dropped, report.errors.total),
        (0, 0, 0),
        "{report:#?}"
    );
    assert_eq!(report.connack_us.count, 20);
    assert_eq!(report.tcp_connect_us.count, 20);
    assert!(report.connack_us.max >= report.connack_us.p50 && report.connack_us.p50 > 0);
    assert_eq!(report.source_addresses, 4);
    assert!(!report.subscribe && report.subscribed == 0 && report.suback_us.count == 0);
    // Mosquitto logs "New connection from 127.0.0.N:PORT ..." per connection.
    let sources: BTreeSet<String> = std::fs::read_to_string(&log)
        .expect("mosquitto log")
        .lines()
        .filter_map(|l| l.split("New connection from ").nth(1))
        .filter_map(|rest| rest.split(':').next().map(str::to_string))
        .collect();
    assert_eq!(
        sources,
        ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
            .map(String::from)
            .into(),
        "log in {}",
        dir.path().display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conn_mqtt5_against_mosquitto() {
    let Some((broker, _dir)) = mosquitto("").await else {
        return;
    };
    let mut cfg = ConnConfig {
        target: target(broker.mqtt_port, MqttVersion::V5),
        count: 10,
        rate: 100.0,
        // Longer than the keep-alive, so every connection pings at least once.
        hold: Duration::from_millis(1500),
        source_addrs: None,
        connect_timeout: Duration::from_secs(10),
        // MQTT 5 SUBSCRIBE/SUBACK before the hold, then pings.
        subscribe: true,
        held: None,
        progress: false,
    };
    cfg.target.keepalive = Duration::from_secs(1);
    let report = conn::run(&cfg).await.expect("conn run");
    broker.stop().await.expect("stop mosquitto");
    assert_eq!(report.connected, 10, "{report:#?}");
    assert_eq!((report.subscribed, report.suback_us.count), (10, 10));
    assert_eq!(report.dropped, 0);
    assert_eq!(report.source_addresses, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conn_subscribes_each_idle_connection_to_its_own_topic() {
    let Some((broker, dir)) = mosquitto("log_type all\n").await else {
        return;
    };
    let cfg = ConnConfig {
        target: target(broker.mqtt_port, MqttVersion::V4),
        count: 5,
        rate: 100.0,
        hold: Duration::from_millis(300),
        source_addrs: None,
        connect_timeout: Duration::from_secs(10),
        subscribe: true,
        held: None,
        progress: false,
    };
    let report = conn::run(&cfg).await.expect("conn run");
    let log = broker.log.clone();
    broker.stop().await.expect("stop mosquitto");
    assert_eq!((report.connected, report.failed), (5, 0), "{report:#?}");
    assert!(report.subscribe);
    assert_eq!((report.subscribed, report.suback_us.count), (5, 5));
    assert_eq!((report.dropped, report.errors.total), (0, 0), "{report:#?}");
    assert!(report.table().contains("subscribed (QoS 1)"));
    // Mosquitto logs each subscription as "\t{topic} (QoS 1)".
    let topics: BTreeSet<String> = std::fs::read_to_string(&log)
        .expect("mosquitto log")
        .lines()
        .filter_map(|l| l.split_once("\tbench/idle/"))
        .map(|(_, rest)| rest.to_string())
        .collect();
    assert_eq!(
        topics.len(),
        5,
        "log in {}: {topics:?}",
        dir.path().display()
    );
    assert!(
        topics
            .iter()
            .all(|t| t.contains("-conn") && t.ends_with(" (QoS 1)")),
        "{topics:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_subscription_fails_the_connection() {
    // Mosquitto 2.0 grants every SUBSCRIBE (its ACL applies on delivery), so
    // a stub broker answers each connection with CONNACK, then SUBACK 0x80.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stub = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                // CONNECT, then SUBSCRIBE (each arrives in one read on loopback).
                for reply in [
                    &[0x20, 0x02, 0x00, 0x00][..],
                    &[0x90, 0x03, 0x00, 0x01, 0x80],
                ] {
                    if matches!(socket.read(&mut buf).await, Ok(0) | Err(_)) {
                        return;
                    }
                    let _ = socket.write_all(reply).await;
                }
                let _ = socket.read(&mut buf).await;
            });
        }
    });
    let cfg = ConnConfig {
        target: target(port, MqttVersion::V4),
        count: 3,
        rate: 100.0,
        hold: Duration::from_millis(100),
        source_addrs: None,
        connect_timeout: Duration::from_secs(10),
        subscribe: true,
        held: None,
        progress: false,
    };
    let report = conn::run(&cfg).await.expect("conn run");
    stub.abort();
    assert_eq!(
        (report.connected, report.failed, report.subscribed),
        (0, 3, 0),
        "{report:#?}"
    );
    assert!(
        report
            .errors
            .by_kind
            .keys()
            .all(|k| k.contains("SUBACK refused")),
        "{:?}",
        report.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_queue_for_offline_sessions_and_drain_on_resume() {
    let Some((broker, _dir)) = mosquitto("").await else {
        return;
    };
    for (layout, messages, per_session) in [
        (SessionLayout::Shared, 20, 20u64),
        (SessionLayout::Own, 25, 5),
    ] {
        let cfg = SessionsConfig {
            target: target(broker.mqtt_port, MqttVersion::V4),
            sessions: 5,
            messages,
            payload_size: 16,
            layout,
            inflight: 10,
            concurrency: 2,
            resume_concurrency: 5,
            source_addrs: None,
            timeout: Duration::from_secs(10),
            broker_pid: Some(broker.pid),
            no_resume: false,
        };
        let report = sessions::run(&cfg).await.expect("sessions run");
        assert_eq!(report.set_up, 5, "{report:#?}");
        assert_eq!(report.deliveries_expected, 5 * per_session);
        assert_eq!(report.resumed, 5, "{report:#?}");
        assert_eq!(report.session_present, 5, "{report:#?}");
        assert_eq!(report.drained, report.deliveries_expected, "{report:#?}");
        assert!(report.errors.is_empty(), "{report:#?}");
        assert_eq!(report.resume_connack_us.count, 5);
        assert!(report.rss_idle_mib.is_some_and(|m| m > 0.0));
    }
    broker.stop().await.expect("stop mosquitto");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_qos1_delivers_everything() {
    let Some((broker, _dir)) = mosquitto("").await else {
        return;
    };
    let cfg = pubsub_config(
        broker.mqtt_port,
        MqttVersion::V4,
        Mode::FanIn,
        3,
        Qos::AtLeastOnce,
    );
    let report = pubsub::run(&cfg).await.expect("pubsub run");
    broker.stop().await.expect("stop mosquitto");

    assert_eq!((report.publishers, report.subscribers), (3, 1));
    assert!(report.sent > 0, "{report:#?}");
    assert_eq!(report.acked, Some(report.sent), "{report:#?}");
    assert_eq!(report.expected, report.sent);
    assert_eq!(report.received, report.expected, "{report:#?}");
    assert_eq!(
        (report.lost, report.duplicates, report.errors.total),
        (0, 0, 0),
        "{report:#?}"
    );
    assert_eq!(report.latency_us.count, report.received);
    assert!(report.latency_us.p50 > 0 && report.latency_us.max >= report.latency_us.p99);
    assert!(report.received_rate > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_qos2_over_mqtt5_delivers_everything() {
    let Some((broker, _dir)) = mosquitto("").await else {
        return;
    };
    let cfg = pubsub_config(
        broker.mqtt_port,
        MqttVersion::V5,
        Mode::Pairs,
        2,
        Qos::ExactlyOnce,
    );
    let report = pubsub::run(&cfg).await.expect("pubsub run");
    broker.stop().await.expect("stop mosquitto");

    assert_eq!((report.publishers, report.subscribers), (2, 2));
    assert!(report.sent > 0, "{report:#?}");
    assert_eq!(report.acked, Some(report.sent), "{report:#?}");
    assert_eq!(report.received, report.sent, "{report:#?}");
    assert_eq!(
        (report.lost, report.duplicates, report.errors.total),
        (0, 0, 0),
        "{report:#?}"
    );
    assert_eq!(report.latency_us.count, report.received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_qos0_reaches_every_subscriber() {
    let Some((broker, _dir)) = mosquitto("").await else {
        return;
    };
    let cfg = pubsub_config(
        broker.mqtt_port,
        MqttVersion::V4,
        Mode::FanOut,
        3,
        Qos::AtMostOnce,
    );
    let report = pubsub::run(&cfg).await.expect("pubsub run");
    broker.stop().await.expect("stop mosquitto");

    assert_eq!((report.publishers, report.subscribers), (1, 3));
    assert_eq!(report.acked, None);
    assert_eq!(report.expected, 3 * report.sent);
    assert!(
        report.received > 0 && report.received <= report.expected,
        "{report:#?}"
    );
    assert_eq!(report.received + report.lost, report.expected);
    assert_eq!(report.latency_us.count, report.received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_gives_clear_errors() {
    let port = brokers::free_port().expect("free port");
    let cfg = pubsub_config(port, MqttVersion::V4, Mode::Pairs, 1, Qos::AtLeastOnce);
    match pubsub::run(&cfg).await {
        Err(PubsubError::Setup { client, reason }) => {
            assert!(client.contains("sub"), "{client}");
            assert!(reason.contains("connection"), "{reason}");
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
    let report = conn::run(&ConnConfig {
        target: target(port, MqttVersion::V4),
        count: 3,
        rate: 100.0,
        hold: Duration::ZERO,
        source_addrs: None,
        connect_timeout: Duration::from_secs(5),
        subscribe: false,
        held: None,
        progress: false,
    })
    .await
    .expect("conn run");
    assert_eq!((report.connected, report.failed), (0, 3));
    assert_eq!(report.errors.total, 3);
    assert!(
        report
            .errors
            .by_kind
            .keys()
            .all(|k| k.starts_with("connect: tcp connect")),
        "{:?}",
        report.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_runs_mosquitto_and_skips_a_missing_parley() {
    let Some(bin) = mosquitto_bin() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let missing_parley = dir.path().join("no-such-parley");
    let cfg = CompareConfig {
        brokers: vec![BrokerKind::Mosquitto, BrokerKind::Parley],
        duration: Duration::from_secs(1),
        fan_in_publishers: 2,
        pairs: 2,
        rate: 50.0,
        payload_size: 64,
        idle_connections: 20,
        conn_rate: 200.0,
        idle_subscribe: true,
        chat_pairs: 2,
        chat_rate: 20.0,
        step_rates: Vec::new(),
        paths: BrokerPaths {
            mosquitto_bin: bin,
            rumqttd_bin: dir.path().join("no-rumqttd"),
            rumqttd_config: None,
            parley_bin: missing_parley.clone(),
            parley_config: None,
            install: false,
        },
        work_dir: Some(dir.path().join("work")),
        progress: false,
    };
    let report = compare::run(&cfg).await.expect("compare");
    let mosquitto = &report.brokers[0];
    assert_eq!(mosquitto.skipped, None);
    assert!(mosquitto
        .version
        .as_deref()
        .is_some_and(|v| v.contains("mosquitto")));
    let names: Vec<ScenarioName> = mosquitto.scenarios.iter().map(|s| s.scenario).collect();
    assert_eq!(
        names,
        [
            ScenarioName::FanIn,
            ScenarioName::Pairs,
            ScenarioName::IdleConnections
        ]
    );
    for s in &mosquitto.scenarios {
        assert_eq!(s.error, None);
        let usage = s.resources.as_ref().expect("resources sampled");
        assert!(usage.rss_peak_mib > 0.0 && usage.samples >= 2, "{usage:?}");
    }
    let idle = &mosquitto.scenarios[2];
    match &idle.report {
        Some(ScenarioReport::Conn(c)) => {
            assert_eq!(c.connected, 20);
            assert!(c.subscribe, "{c:#?}");
            assert_eq!(c.subscribed, 20, "{c:#?}");
        }
        other => panic!("expected a conn report, got {other:?}"),
    }
    let rss = idle.idle_rss.as_ref().expect("idle RSS read");
    assert_eq!(rss.connections, 20);
    assert!(rss.before_kib > 0 && rss.after_kib > 0, "{rss:?}");
    assert!(rss.per_connection_kib.is_some_and(|k| k >= 0.0), "{rss:?}");
    assert!(report.settings.idle_subscribe);
    assert_eq!(
        report.settings.idle_source_addresses, 1,
        "20 connections come from one address of the broker's own"
    );
    let subscribed = report
        .summary
        .iter()
        .find(|r| r.scenario == ScenarioName::IdleConnections && r.metric == "subscribed (QoS 1)")
        .expect("subscribed row");
    assert_eq!(subscribed.values[&BrokerKind::Mosquitto], Some(20.0));
    let per_conn = report
        .summary
        .iter()
        .find(|r| r.metric == "broker RSS per connection KiB")
        .expect("RSS per connection row");
    assert_eq!(
        per_conn.values[&BrokerKind::Mosquitto],
        rss.per_connection_kib
    );
    let parley = &report.brokers[1];
    let reason = parley.skipped.as_deref().expect("parley skipped");
    assert!(
        reason.contains(&missing_parley.display().to_string()),
        "{reason}"
    );
    let throughput = report
        .summary
        .iter()
        .find(|r| r.scenario == ScenarioName::FanIn && r.metric == "received throughput")
        .expect("throughput row");
    assert!(throughput.values[&BrokerKind::Mosquitto].is_some_and(|v| v > 0.0));
    assert_eq!(throughput.values[&BrokerKind::Parley], None);
    assert_eq!(throughput.ratios["parley/mosquitto"], None);
    assert!(Path::new(&dir.path().join("work/mosquitto/mosquitto.conf")).exists());
}
