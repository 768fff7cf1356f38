//! Operating a node: `/metrics` in Prometheus text that moves with real
//! traffic, the admin API (list, kick, disable, enable, stats) and the rate
//! limits outside the chat pipeline (connects per address, publishes per
//! user, bytes per connection), each answered with its MQTT 5 reason code.

mod common;

use std::collections::HashMap;

use chat_core::rules::{Access, AclRuleConfig};
use common::chat::*;
use common::*;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, DisconnectReasonCode, Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use serde_json::Value;

/// Lets every user read and write `devices/{their name}/#`.
fn devices_rule() -> AclRuleConfig {
    AclRuleConfig {
        access: Access::ReadWrite,
        filter: "devices/%u/#".into(),
        users: Vec::new(),
    }
}

const ADMIN_TOKEN: &str = "admin-token-admin-token-admin-token-0123";

/// One scrape, parsed strictly: every line is a `# HELP`/`# TYPE`/`# UNIT`
/// comment, the final `# EOF`, or a `name{labels} value` sample whose value
/// is a number. Returns the samples by their full series name.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut lines = text.lines().peekable();
    let mut saw_eof = false;
    while let Some(line) = lines.next() {
        if line == "# EOF" {
            assert!(lines.peek().is_none(), "# EOF must be the last line");
            saw_eof = true;
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let keyword = comment.split(' ').next().unwrap_or("");
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&keyword),
                "unknown comment line {line:?}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample without a value: {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unterminated labels in {line:?}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value is not a number in {line:?}"));
        samples.insert(series.to_owned(), value);
    }
    assert!(saw_eof, "OpenMetrics text ends with # EOF");
    samples
}

async fn scrape(node: &TestNode) -> HashMap<String, f64> {
    let response = reqwest::get(format!("{}/metrics", node.http()))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    parse_exposition(&response.text().await.expect("body"))
}

fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no series {series}; have {:?}", samples.keys()))
}

#[tokio::test]
async fn metrics_parse_and_move_with_traffic() {
    let node = start_node(|_| {}).await;
    let before = scrape(&node).await;
    assert_eq!(sample(&before, "parley_chat_messages_stored_total"), 0.0);
    assert_eq!(
        sample(&before, r#"parley_connects_total{transport="tcp"}"#),
        0.0
    );

    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v5(&node, "alice", "phone").await;
    let mut bob = ChatClient::v4(&node, "bob", "laptop").await;
    let conv = direct("alice", "bob");
    alice.say(&conv, "m1", "hello").await;
    let delivered = bob.next_message().await;
    assert_eq!(text_of(&delivered), Some("hello"));

    // A refused login is counted by reason.
    let (_c, mut el) = rumqttc::v5::AsyncClient::new(
        v5::options(&node, "intruder", "alice", "wrong password"),
        10,
    );
    assert_eq!(
        v5::connack(&mut el).await.expect("CONNACK"),
        ConnectReturnCode::BadUserNamePassword
    );

    let after = scrape(&node).await;
    assert_eq!(sample(&after, "parley_chat_messages_stored_total"), 1.0);
    assert_eq!(
        sample(&after, r#"parley_connects_total{transport="tcp"}"#),
        2.0
    );
    assert_eq!(
        sample(&after, r#"parley_connections{transport="tcp"}"#),
        2.0
    );
    assert_eq!(sample(&after, "parley_users_online"), 2.0);
    assert_eq!(
        sample(&after, r#"parley_messages_in_total{kind="chat_send"}"#),
        1.0
    );
    assert!(
        sample(&after, r#"parley_messages_out_total{kind="chat_message"}"#) >= 2.0,
        "delivered to bob and echoed to alice"
    );
    assert_eq!(
        sample(
            &after,
            r#"parley_auth_failures_total{reason="bad_credentials",via="mqtt"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "parley_chat_send_duration_seconds_count"),
        1.0
    );
    assert_eq!(
        sample(&after, "parley_history_append_duration_seconds_count"),
        1.0
    );
    // The embedded store's history writer made the message durable through
    // its log: at least one batch, with the bytes it logged.
    let batches = sample(&after, "parley_history_log_batches_total");
    assert!(batches >= 1.0, "{batches}");
    assert!(sample(&after, "parley_history_log_requests_total") >= batches);
    assert!(sample(&after, "parley_history_log_bytes_total") > 0.0);
    // Checkpoints run on a timer: the series only has to be there.
    sample(&after, "parley_history_checkpoints_total");
}

fn admin_client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn admin(
    node: &TestNode,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = admin_client().request(method, format!("{}{path}", node.http()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
    };
    (status, json)
}

#[tokio::test]
async fn admin_api_is_absent_without_a_token() {
    let node = start_node(|_| {}).await;
    let (status, body) = admin(&node, reqwest::Method::GET, "/v1/admin/stats", Some("x")).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn admin_lists_kicks_disables_and_enables() {
    let node = start_node(|c| c.admin.token = Some(ADMIN_TOKEN.into())).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let (_alice, mut alice_el) =
        v5::connect(v5::options(&node, "phone", "alice", &password_of("alice"))).await;
    let (_bob, mut bob_el) =
        v5::connect(v5::options(&node, "tablet", "bob", &password_of("bob"))).await;

    let get = reqwest::Method::GET;
    let (status, body) = admin(&node, get.clone(), "/v1/admin/sessions", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("admin_token_required"))
    );
    let (status, _) = admin(&node, get.clone(), "/v1/admin/sessions", Some("wrong")).await;
    assert_eq!(status, 401);

    let (status, body) = admin(&node, get.clone(), "/v1/admin/sessions", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<(&str, &str, &str)> = body["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| {
            (
                s["user"].as_str().unwrap(),
                s["client_id"].as_str().unwrap(),
                s["protocol"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [("alice", "phone", "5"), ("bob", "tablet", "5")]);

    let (status, body) = admin(&node, get.clone(), "/v1/admin/stats", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(body["connections"], 2);
    assert_eq!(body["users_online"], 2);

    // Kick: the client is told why (0x98) and the session is gone.
    let delete = reqwest::Method::DELETE;
    let (status, _) = admin(
        &node,
        delete.clone(),
        "/v1/admin/sessions/alice/phone",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        v5::disconnect_reason(&mut alice_el).await,
        Some(DisconnectReasonCode::AdministrativeAction)
    );
    let (status, body) = admin(
        &node,
        delete,
        "/v1/admin/sessions/alice/phone",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no_such_session"))
    );

    // Disable: live sessions end, new ones and log-ins are refused.
    let post = reqwest::Method::POST;
    let (status, body) = admin(
        &node,
        post.clone(),
        "/v1/admin/users/bob/disable",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions_ended"], 1);
    assert_eq!(
        v5::disconnect_reason(&mut bob_el).await,
        Some(DisconnectReasonCode::AdministrativeAction)
    );
    let (_c, mut el) =
        AsyncClient::new(v5::options(&node, "tablet", "bob", &password_of("bob")), 10);
    assert_eq!(
        v5::connack(&mut el).await.expect("CONNACK"),
        ConnectReturnCode::NotAuthorized
    );
    let (status, _) = admin(
        &node,
        post.clone(),
        "/v1/admin/users/nobody/disable",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 404);

    let (status, _) = admin(&node, post, "/v1/admin/users/bob/enable", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    v5::connect(v5::options(&node, "tablet", "bob", &password_of("bob"))).await;
}

#[tokio::test]
async fn connects_over_the_per_address_rate_get_0x9f() {
    let node = start_node(|c| {
        c.limits.connects_per_sec_per_ip = 0.001;
        c.limits.connect_burst_per_ip = 1;
    })
    .await;
    sign_up_users(&node, &["alice"]).await;
    let (_first, _el) =
        v5::connect(v5::options(&node, "one", "alice", &password_of("alice"))).await;
    let (_c, mut el) = AsyncClient::new(
        v5::options(&node, "two", "alice", &password_of("alice")),
        10,
    );
    assert_eq!(
        v5::connack(&mut el).await.expect("CONNACK"),
        ConnectReturnCode::ConnectionRateExceeded
    );
    let (_c, mut el) = rumqttc::AsyncClient::new(
        v4::options(&node, "three", "alice", &password_of("alice")),
        10,
    );
    assert_eq!(
        v4::connack(&mut el).await.expect("CONNACK"),
        rumqttc::ConnectReturnCode::ServiceUnavailable
    );
    let metrics = scrape(&node).await;
    assert_eq!(
        sample(
            &metrics,
            r#"parley_rate_limited_total{limit="connects_per_ip"}"#
        ),
        2.0
    );
}

#[tokio::test]
async fn publishes_over_the_per_user_rate_get_0x97() {
    let node = start_node(|c| {
        c.acl = vec![devices_rule()];
        c.limits.publishes_per_sec_per_user = 0.001;
        c.limits.publish_burst_per_user = 1;
    })
    .await;
    sign_up_users(&node, &["alice"]).await;
    let (client, mut el) =
        v5::connect(v5::options(&node, "sensor", "alice", &password_of("alice"))).await;
    for _ in 0..2 {
        client
            .publish("devices/alice/temp", QoS::AtLeastOnce, false, "21.5")
            .await
            .expect("queue publish");
    }
    // The refusal is answered at once while the accepted publish is acked
    // by the router, so the two may arrive in either order: match by packet id.
    let mut reasons = Vec::new();
    for _ in 0..2 {
        reasons.push(
            v5::next_matching(&mut el, "PUBACK", |p| match p {
                Packet::PubAck(ack) => Some((ack.pkid, ack.reason)),
                _ => None,
            })
            .await,
        );
    }
    reasons.sort_by_key(|(pkid, _)| *pkid);
    assert_eq!(
        reasons,
        [(1, PubAckReason::Success), (2, PubAckReason::QuotaExceeded)]
    );
}

#[tokio::test]
async fn a_connection_over_its_byte_rate_is_closed_with_0x96() {
    let node = start_node(|c| {
        c.acl = vec![devices_rule()];
        c.limits.bytes_per_sec_per_connection = 1;
        c.limits.bytes_burst = 2_000;
    })
    .await;
    sign_up_users(&node, &["alice"]).await;
    let (client, mut el) =
        v5::connect(v5::options(&node, "sensor", "alice", &password_of("alice"))).await;
    client
        .publish(
            "devices/alice/blob",
            QoS::AtMostOnce,
            false,
            vec![7u8; 3_000],
        )
        .await
        .expect("queue publish");
    assert_eq!(
        v5::disconnect_reason(&mut el).await,
        Some(DisconnectReasonCode::MessageRateTooHigh)
    );
}

/// Every metric the Grafana dashboard in `deploy/` queries is one the node
/// exports, so the dashboard cannot silently show nothing.
#[tokio::test]
async fn the_dashboard_queries_only_exported_metrics() {
    let node = start_node(|_| {}).await;
    let exported = scrape(&node).await;
    let family_of = |series: &str| series.split('{').next().unwrap_or(series).to_owned();
    let families: std::collections::HashSet<String> =
        exported.keys().map(|s| family_of(s)).collect();

    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/parley-dashboard.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("parley_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                queried.push(name);
            }
        }
    }
    assert!(
        queried.len() >= 10,
        "the dashboard queries metrics: {queried:?}"
    );
    for name in queried {
        assert!(
            families.contains(&name),
            "the dashboard queries {name}, which /metrics does not export"
        );
    }
}
