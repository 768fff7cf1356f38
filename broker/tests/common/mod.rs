//! Shared harness for Parley's integration tests: starts a real node on
//! ephemeral loopback ports with its own data directory, signs users up over
//! HTTP, and builds rumqttc clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use parley::config::{Config, Listen};
use parley::server::Node;

pub mod chat;
pub mod http_server;
pub mod memory_bus;
#[path = "../../../persistence/tests/postgres_support/mod.rs"]
pub mod postgres_support;
#[allow(unused_imports)]
pub use postgres_support::cluster as postgres;
pub mod process;
pub mod raw;
pub mod shared_postgres;

/// How long any single expected event may take before a test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A node under test and the directory it stores into.
pub struct TestNode {
    /// The running node.
    pub node: Node,
    /// Its data directory (kept alive for the test's duration).
    pub dir: tempfile::TempDir,
}

impl TestNode {
    /// MQTT/TCP address.
    pub fn mqtt(&self) -> SocketAddr {
        self.node.addrs.mqtt_tcp.expect("tcp listener")
    }
    /// HTTP base URL.
    pub fn http(&self) -> String {
        format!("http://{}", self.node.addrs.http.expect("http listener"))
    }
}

/// A config listening on ephemeral loopback ports, storing into `dir`.
pub fn test_config(dir: &std::path::Path) -> Config {
    let any = Listen::on(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.mqtt.tcp = any;
    config.mqtt.ws = any;
    config.http.listen = any;
    config.auth.jwt_secret = Some("test-secret-test-secret-test-secret-0123".into());
    // Every test client comes from 127.0.0.1, and many tests sign users up
    // and try wrong passwords: the per-address sign-up rate and the log-in
    // backoff are off here; tests/security.rs turns them on.
    config.accounts.signups_per_hour_per_address = 0.0;
    config.login.free_failures_per_account = 0;
    config.login.free_failures_per_address = 0;
    // Many tests open a direct conversation from one side and expect the
    // other side's presence, typing and keys at once: message requests are
    // off here; tests/message_requests.rs turns them on.
    config.chat.message_requests = false;
    config
}

/// Starts a node with `tweak` applied to the test config.
pub async fn start_node(tweak: impl FnOnce(&mut Config)) -> TestNode {
    if let Ok(filter) = std::env::var("PARLEY_TEST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init()
            .ok();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let node = Node::start(config).await.expect("node starts");
    TestNode { node, dir }
}

/// Signs `username` up with `password` over the HTTP API, asserting 201.
pub async fn sign_up(node: &TestNode, username: &str, password: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/users", node.http()))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .expect("sign-up request");
    assert_eq!(
        response.status(),
        201,
        "sign-up of {username}: {:?}",
        response.text().await
    );
}

/// Logs in over HTTP and returns the access token.
pub async fn log_in(node: &TestNode, username: &str, password: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/tokens", node.http()))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .expect("log-in request");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Runs `fut`, failing the test if it takes longer than [`EVENT_TIMEOUT`].
/// The value of one sample of `node`'s `/metrics` (`sample` is the series
/// name with its labels and a trailing space); `None` if it is not exported.
pub async fn metric(node: &TestNode, sample: &str) -> Option<f64> {
    let body = reqwest::get(format!("{}/metrics", node.http()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
}

pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(EVENT_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// MQTT 3.1.1 clients (rumqttc).
pub mod v4 {
    use super::*;
    use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, Publish};

    /// Options for `client_id` logging in as `user` with `password`.
    pub fn options(node: &TestNode, client_id: &str, user: &str, password: &str) -> MqttOptions {
        let addr = node.mqtt();
        let mut o = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        o.set_credentials(user, password);
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    /// Polls until CONNACK; returns its code.
    pub async fn connack(
        eventloop: &mut EventLoop,
    ) -> Result<ConnectReturnCode, rumqttc::ConnectionError> {
        within("CONNACK", async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Ok(code),
                    Err(e) => return Err(e),
                }
            }
        })
        .await
    }

    /// Connects and asserts success.
    pub async fn connect(options: MqttOptions) -> (AsyncClient, EventLoop) {
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let code = connack(&mut eventloop).await.expect("connect");
        assert_eq!(code, ConnectReturnCode::Success);
        (client, eventloop)
    }

    /// Polls until a packet matching `pick` arrives and returns what it picked.
    pub async fn next_matching<T>(
        eventloop: &mut EventLoop,
        what: &str,
        mut pick: impl FnMut(&Packet) -> Option<T>,
    ) -> T {
        within(what, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(packet)) => {
                        if let Some(t) = pick(&packet) {
                            return t;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!("connection failed while waiting for {what}: {e:?}"),
                }
            }
        })
        .await
    }

    /// Waits for the next incoming PUBLISH.
    pub async fn next_publish(eventloop: &mut EventLoop) -> Publish {
        next_matching(eventloop, "PUBLISH", |p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for the SUBACK and returns its return codes.
    pub async fn suback(eventloop: &mut EventLoop) -> Vec<rumqttc::SubscribeReasonCode> {
        next_matching(eventloop, "SUBACK", |p| match p {
            Packet::SubAck(a) => Some(a.return_codes.clone()),
            _ => None,
        })
        .await
    }
}

/// MQTT 5 clients (rumqttc::v5).
pub mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, Publish};
    use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};

    /// Options for `client_id` logging in as `user` with `password`.
    pub fn options(node: &TestNode, client_id: &str, user: &str, password: &str) -> MqttOptions {
        let addr = node.mqtt();
        let mut o = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        o.set_credentials(user, password);
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    /// Polls until CONNACK; returns its code.
    pub async fn connack(eventloop: &mut EventLoop) -> Result<ConnectReturnCode, ConnectionError> {
        within("CONNACK", async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                    Ok(_) => {}
                    Err(ConnectionError::ConnectionRefused(code)) => return Ok(code),
                    Err(e) => return Err(e),
                }
            }
        })
        .await
    }

    /// Connects and asserts success.
    pub async fn connect(options: MqttOptions) -> (AsyncClient, EventLoop) {
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let code = connack(&mut eventloop).await.expect("connect");
        assert_eq!(code, ConnectReturnCode::Success);
        (client, eventloop)
    }

    /// Polls until a packet matching `pick` arrives and returns what it picked.
    pub async fn next_matching<T>(
        eventloop: &mut EventLoop,
        what: &str,
        mut pick: impl FnMut(&Packet) -> Option<T>,
    ) -> T {
        within(what, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(packet)) => {
                        if let Some(t) = pick(&packet) {
                            return t;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!("connection failed while waiting for {what}: {e:?}"),
                }
            }
        })
        .await
    }

    /// Waits for the next incoming PUBLISH.
    pub async fn next_publish(eventloop: &mut EventLoop) -> Publish {
        next_matching(eventloop, "PUBLISH", |p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// Polls until the server ends the connection; its DISCONNECT reason, if it sent one.
    pub async fn disconnect_reason(
        eventloop: &mut EventLoop,
    ) -> Option<rumqttc::v5::mqttbytes::v5::DisconnectReasonCode> {
        use rumqttc::v5::StateError;
        within("the server to disconnect", async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Disconnect(d))) => return Some(d.reason_code),
                    Ok(_) => {}
                    Err(ConnectionError::MqttState(StateError::ServerDisconnect {
                        reason_code,
                        ..
                    })) => return Some(reason_code),
                    Err(e) => {
                        eprintln!("connection ended without DISCONNECT: {e:?}");
                        return None;
                    }
                }
            }
        })
        .await
    }
}
