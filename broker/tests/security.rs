//! The defences against strangers and floods, probed as an attacker would
//! (see docs/security.md): password guessing over HTTP and MQTT, sign-up
//! floods and invites, slow clients on every listener, and who may read
//! `/metrics`. Attackers come from other loopback addresses (127.0.0.2, ...)
//! than the accounts' owners (127.0.0.1).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const OWNER: [u8; 4] = [127, 0, 0, 1];
const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const ADMIN_TOKEN: &str = "security-test-admin-token-0123456789";
const METRICS_TOKEN: &str = "security-test-metrics-token-0123456789";

/// An HTTP client whose connections come from `from`.
fn client_from(from: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(from))
        .build()
        .expect("client")
}

/// `POST /v1/tokens` from `from`: the status and its `Retry-After`, if any.
async fn log_in_from(
    node: &TestNode,
    from: [u8; 4],
    user: &str,
    password: &str,
) -> (StatusCode, Option<u64>) {
    let response = client_from(from)
        .post(format!("{}/v1/tokens", node.http()))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("log-in request");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (response.status(), retry_after)
}

/// `POST /v1/users` from `from` with an optional invite: status and body.
async fn sign_up_from(
    node: &TestNode,
    from: [u8; 4],
    user: &str,
    invite: Option<&str>,
) -> (StatusCode, Option<u64>, Value) {
    let mut body = json!({"username": user, "password": "a fine password"});
    if let Some(invite) = invite {
        body["invite"] = json!(invite);
    }
    let response = client_from(from)
        .post(format!("{}/v1/users", node.http()))
        .json(&body)
        .send()
        .await
        .expect("sign-up request");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// The value of `parley_security_refusals_total{refusal}` on `node`.
async fn refusals(node: &TestNode, refusal: &str) -> u64 {
    let text = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .get(format!("{}/metrics", node.http()))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let series = format!("parley_security_refusals_total{{refusal=\"{refusal}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in {text}"))
        .trim()
        .parse()
        .expect("a count")
}

/// An MQTT 3.1.1 CONNECT from `from` with `user` / `password`, written by
/// hand so that it can come from any loopback address; the CONNACK return
/// code, or `None` if the server closed without one.
async fn connect_v4_from(
    addr: SocketAddr,
    from: [u8; 4],
    user: &str,
    password: &str,
) -> Option<u8> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut tcp = socket.connect(addr).await.expect("connect");
    let mut body = Vec::new();
    let put = |body: &mut Vec<u8>, s: &[u8]| {
        body.extend_from_slice(&(s.len() as u16).to_be_bytes());
        body.extend_from_slice(s);
    };
    put(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(0b1100_0010); // username, password, clean session
    body.extend_from_slice(&30u16.to_be_bytes());
    put(&mut body, b"");
    put(&mut body, user.as_bytes());
    put(&mut body, password.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    tcp.write_all(&packet).await.unwrap();
    let mut connack = [0u8; 4];
    match within("CONNACK", tcp.read_exact(&mut connack)).await {
        Ok(_) => Some(connack[3]),
        Err(_) => None,
    }
}

/// Waits until the server closes `tcp` (EOF or reset) and returns whatever
/// it sent first; fails after [`EVENT_TIMEOUT`].
async fn closed_by_server(tcp: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    within("the server to close the connection", async {
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    received
}

fn throttled(c: &mut parley::config::Config) {
    c.login.free_failures_per_account = 3;
    c.login.free_failures_per_address = 100;
    c.login.backoff_base_ms = 30_000;
    c.login.account_backoff_max_ms = 60_000;
    c.login.mqtt_refusal_delay_max_ms = 200;
    c.metrics.token = Some(METRICS_TOKEN.into());
}

#[tokio::test]
async fn password_guessing_over_http_is_throttled_but_the_owner_gets_in() {
    let node = start_node(throttled).await;
    sign_up(&node, "alice", "alice's password").await;
    assert_eq!(
        log_in_from(&node, OWNER, "alice", "alice's password")
            .await
            .0,
        StatusCode::OK,
        "the owner logs in from home once"
    );

    for guess in ["guess one", "guess two", "guess three"] {
        assert_eq!(
            log_in_from(&node, ATTACKER, "alice", guess).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, retry_after) = log_in_from(&node, ATTACKER, "alice", "guess four").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after = retry_after.expect("429 carries Retry-After");
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(
        log_in_from(&node, ATTACKER, "alice", "alice's password")
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS,
        "while throttled even the right password is not checked"
    );
    assert_eq!(
        log_in_from(&node, [127, 0, 0, 3], "alice", "alice's password")
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS,
        "an address alice never used waits out the account's backoff"
    );
    assert_eq!(
        log_in_from(&node, OWNER, "alice", "alice's password")
            .await
            .0,
        StatusCode::OK,
        "alice still gets in from her own recent address"
    );
    assert_eq!(
        connect_v4_from(node.mqtt(), OWNER, "alice", "alice's password").await,
        Some(0),
        "over MQTT too"
    );
    assert!(refusals(&node, "login_throttled_http").await >= 3);
}

#[tokio::test]
async fn password_guessing_over_mqtt_is_refused_after_a_delay() {
    let node = start_node(throttled).await;
    sign_up(&node, "bob", "bob's password").await;
    sign_up(&node, "carol", "carol's password").await;
    assert_eq!(
        connect_v4_from(node.mqtt(), OWNER, "carol", "carol's password").await,
        Some(0)
    );

    for guess in ["guess one", "guess two", "guess three"] {
        // 3.1.1: not authorized (0x05), as for any bad credentials.
        assert_eq!(
            connect_v4_from(node.mqtt(), ATTACKER, "bob", guess).await,
            Some(5)
        );
    }
    assert_eq!(
        connect_v4_from(node.mqtt(), ATTACKER, "bob", "bob's password").await,
        Some(5),
        "throttled: the right password is refused unchecked"
    );
    assert_eq!(refusals(&node, "login_throttled_mqtt").await, 1);

    // MQTT 5 gets 0x86 (bad user name or password).
    let options = v5::options(&node, "bob-v5", "bob", "still guessing");
    let (_client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 10);
    assert_eq!(
        v5::connack(&mut eventloop).await.unwrap(),
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::BadUserNamePassword
    );

    // Guesses at carol over HTTP throttle her account on both paths, but
    // not from the address she connected from.
    for guess in ["one guess", "two guesses", "three guesses"] {
        log_in_from(&node, ATTACKER, "carol", guess).await;
    }
    assert_eq!(
        connect_v4_from(node.mqtt(), [127, 0, 0, 4], "carol", "carol's password").await,
        Some(5)
    );
    assert_eq!(
        connect_v4_from(node.mqtt(), OWNER, "carol", "carol's password").await,
        Some(0)
    );
}

#[tokio::test]
async fn one_address_guessing_many_accounts_is_throttled() {
    let node = start_node(|c| {
        throttled(c);
        c.login.free_failures_per_account = 100;
        c.login.free_failures_per_address = 4;
    })
    .await;
    sign_up(&node, "dave", "dave's password").await;
    for (i, user) in ["u1", "u2", "u3", "u4"].into_iter().enumerate() {
        assert_eq!(
            log_in_from(&node, ATTACKER, user, "guess").await.0,
            StatusCode::UNAUTHORIZED,
            "failure {i}"
        );
    }
    assert_eq!(
        log_in_from(&node, ATTACKER, "u5", "guess").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        log_in_from(&node, OWNER, "dave", "dave's password").await.0,
        StatusCode::OK,
        "other addresses are not affected"
    );
}

#[tokio::test]
async fn sign_up_is_rate_limited_per_address() {
    let node = start_node(|c| {
        c.accounts.signups_per_hour_per_address = 1.0;
        c.accounts.signup_burst_per_address = 3;
        c.metrics.token = Some(METRICS_TOKEN.into());
    })
    .await;
    for user in ["flood1", "flood2", "flood3"] {
        assert_eq!(
            sign_up_from(&node, ATTACKER, user, None).await.0,
            StatusCode::CREATED
        );
    }
    let (status, retry_after, body) = sign_up_from(&node, ATTACKER, "flood4", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"], "signup_rate_limited");
    assert!(retry_after.expect("Retry-After") >= 60);
    assert_eq!(
        sign_up_from(&node, OWNER, "neighbour", None).await.0,
        StatusCode::CREATED,
        "another address still signs up"
    );
    assert_eq!(refusals(&node, "signup_rate").await, 1);
}

#[tokio::test]
async fn invite_only_sign_up_takes_one_account_per_invite() {
    let node = start_node(|c| {
        c.accounts.signup = parley::config::SignUpMode::Invite;
        c.admin.token = Some(ADMIN_TOKEN.into());
        c.metrics.token = Some(METRICS_TOKEN.into());
    })
    .await;
    let (status, _, body) = sign_up_from(&node, OWNER, "uninvited", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("invite_required"))
    );

    let admin = reqwest::Client::new();
    let url = format!("{}/v1/admin/invites", node.http());
    assert_eq!(
        admin.post(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "invites need the admin token"
    );
    let invite: Value = admin
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = invite["invite"].as_str().expect("an invite token");
    assert!(invite["expires_at"].as_u64().unwrap() > 1_700_000_000);

    let (status, _, _) = sign_up_from(&node, OWNER, "Not Valid", Some(token)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a refused sign-up keeps the invite"
    );
    assert_eq!(
        sign_up_from(&node, OWNER, "invited", Some(token)).await.0,
        StatusCode::CREATED
    );
    let (status, _, body) = sign_up_from(&node, OWNER, "second", Some(token)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("invite_required"))
    );
    let forged = format!("{}0", &token[..token.len() - 1]);
    assert_eq!(
        sign_up_from(&node, OWNER, "forger", Some(&forged)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(refusals(&node, "signup_invite").await, 3);
    log_in(&node, "invited", "a fine password").await;
}

#[tokio::test]
async fn closed_sign_up_refuses_everyone() {
    let node = start_node(|c| c.accounts.signup = parley::config::SignUpMode::Closed).await;
    let (status, _, body) = sign_up_from(&node, OWNER, "hopeful", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("signup_closed"))
    );
}

#[tokio::test]
async fn password_checks_waiting_for_a_cpu_are_bounded() {
    let node = start_node(|c| c.login.max_queued_hashes = 1).await;
    sign_up(&node, "erin", "erin's password").await;
    let attempts = (0..24).map(|i| {
        let node = &node;
        async move {
            log_in_from(node, OWNER, "erin", &format!("wrong {i}"))
                .await
                .0
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let busy = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!(busy > 0, "{statuses:?}");
    assert!(checked > 0, "{statuses:?}");
    assert_eq!(busy + checked, statuses.len(), "{statuses:?}");
}

#[tokio::test]
async fn slow_http_clients_are_closed() {
    let node = start_node(|c| {
        c.listeners.http_header_timeout_ms = 300;
        c.listeners.http_request_timeout_ms = 300;
        c.listeners.http_max_connections_per_address = 3;
        c.metrics.token = Some(METRICS_TOKEN.into());
    })
    .await;
    let http: SocketAddr = node.node.addrs.http.unwrap();

    // Headers that never end.
    let mut slow = TcpStream::connect(http).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    closed_by_server(&mut slow).await;

    // A body that never arrives: 408.
    let mut slow = TcpStream::connect(http).await.unwrap();
    slow.write_all(
        b"POST /v1/tokens HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let answer = closed_by_server(&mut slow).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // An idle keep-alive connection.
    let mut idle = TcpStream::connect(http).await.unwrap();
    idle.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_by_server(&mut idle).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    assert!(refusals(&node, "http_header_timeout").await >= 2);
    assert_eq!(refusals(&node, "http_request_timeout").await, 1);
}

#[tokio::test]
async fn connections_per_address_are_capped() {
    let node = start_node(|c| {
        c.listeners.http_max_connections_per_address = 2;
        c.listeners.mqtt_max_connections_per_address = 2;
        c.metrics.token = Some(METRICS_TOKEN.into());
    })
    .await;
    let http = node.node.addrs.http.unwrap();
    let from = |ip: [u8; 4]| {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        socket
    };
    let _first = from(ATTACKER).connect(http).await.unwrap();
    let _second = from(ATTACKER).connect(http).await.unwrap();
    let mut third = from(ATTACKER).connect(http).await.unwrap();
    third
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    assert!(
        closed_by_server(&mut third).await.is_empty(),
        "closed unanswered"
    );
    let ok = client_from([127, 0, 0, 5])
        .get(format!("{}/livez", node.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK, "other addresses are served");

    let mqtt = node.mqtt();
    let _m1 = from(ATTACKER).connect(mqtt).await.unwrap();
    let _m2 = from(ATTACKER).connect(mqtt).await.unwrap();
    let mut m3 = from(ATTACKER).connect(mqtt).await.unwrap();
    assert!(closed_by_server(&mut m3).await.is_empty());
    assert_eq!(refusals(&node, "http_connections_per_address").await, 1);
    assert_eq!(refusals(&node, "mqtt_connections_per_address").await, 1);
}

#[tokio::test]
async fn websocket_upgrades_and_tls_handshakes_that_stall_are_closed() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let node = start_node(|c| {
        c.mqtt.tls = Some(parley::config::TlsConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            cert: cert_path.clone(),
            key: key_path.clone(),
        });
        c.listeners.ws_upgrade_timeout_ms = 300;
        c.listeners.tls_handshake_timeout_ms = 300;
        c.metrics.token = Some(METRICS_TOKEN.into());
    })
    .await;

    let mut ws = TcpStream::connect(node.node.addrs.mqtt_ws.unwrap())
        .await
        .unwrap();
    ws.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    closed_by_server(&mut ws).await;
    let mut silent_ws = TcpStream::connect(node.node.addrs.mqtt_ws.unwrap())
        .await
        .unwrap();
    closed_by_server(&mut silent_ws).await;

    let mut tls = TcpStream::connect(node.node.addrs.mqtt_tls.unwrap())
        .await
        .unwrap();
    tls.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // the start of a ClientHello
    closed_by_server(&mut tls).await;

    assert_eq!(refusals(&node, "ws_upgrade_timeout").await, 2);
    assert_eq!(refusals(&node, "tls_handshake_timeout").await, 1);
}

#[tokio::test]
async fn metrics_need_their_token() {
    let node = start_node(|c| c.metrics.token = Some(METRICS_TOKEN.into())).await;
    let url = format!("{}/metrics", node.http());
    let client = reqwest::Client::new();
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .get(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let scraped = client
        .get(&url)
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert_eq!(refusals(&node, "metrics_unauthorized").await, 2);
}

#[tokio::test]
async fn metrics_can_live_on_their_own_listener() {
    let node = start_node(|c| {
        c.metrics.listen = parley::config::Listen::on(([127, 0, 0, 1], 0).into());
    })
    .await;
    let api = reqwest::get(format!("{}/metrics", node.http()))
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND, "not on the public API");
    let metrics = node.node.addrs.metrics.expect("metrics listener");
    let scraped = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(scraped
        .text()
        .await
        .unwrap()
        .contains("parley_security_refusals_total"));
    let other = reqwest::get(format!("http://{metrics}/v1/users"))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND, "only /metrics there");
}

#[tokio::test]
async fn defaults_are_safe() {
    let config = parley::config::Config::default();
    assert_eq!(config.accounts.signup, parley::config::SignUpMode::Open);
    assert!(config.accounts.signups_per_hour_per_address > 0.0);
    assert!(config.login.free_failures_per_account > 0);
    assert!(config.login.free_failures_per_address > 0);
    assert!(config.listeners.http_header_timeout_ms <= 30_000);
    assert!(config.listeners.http_max_connections_per_address > 0);
    assert!(config.listeners.mqtt_max_connections_per_address > 0);
    assert!(config.listeners.ws_upgrade_timeout_ms <= 30_000);
    assert!(config.listeners.tls_handshake_timeout_ms <= 30_000);
    assert!(config.login.max_queued_hashes > 0);
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn mqtt_5_connects_waiting_for_a_cpu_are_refused_as_server_unavailable() {
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
    let node = start_node(|c| c.login.max_queued_hashes = 1).await;
    sign_up(&node, "fred", "fred's password").await;
    let attempts = (0..24).map(|i| {
        let options = v5::options(&node, &format!("fred-{i}"), "fred", &format!("wrong {i}"));
        async move {
            let (_client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 10);
            v5::connack(&mut eventloop).await
        }
    });
    let codes = futures::future::join_all(attempts).await;
    let busy = codes
        .iter()
        .filter(|c| matches!(c, Ok(ConnectReturnCode::ServerUnavailable)))
        .count();
    let checked = codes
        .iter()
        .filter(|c| matches!(c, Ok(ConnectReturnCode::BadUserNamePassword)))
        .count();
    assert!(busy > 0 && checked > 0, "{codes:?}");
    assert_eq!(
        busy + checked,
        codes.len(),
        "every refusal has a code: {codes:?}"
    );
}
