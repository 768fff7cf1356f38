//! Topic ACL against a real node: chat-namespace confinement, wildcard
//! refusal, config rules with `%u`, exact SUBACK/PUBACK reason codes, and
//! proof that a denied publish reaches nobody.

mod common;

use chat_core::rules::{Access, AclRuleConfig};
use common::*;
use rumqttc::QoS;

fn rule(access: Access, filter: &str) -> AclRuleConfig {
    AclRuleConfig {
        access,
        filter: filter.into(),
        users: Vec::new(),
    }
}

fn with_rules(config: &mut parley::config::Config) {
    config.acl = vec![
        rule(Access::ReadWrite, "devices/%u/#"),
        rule(Access::ReadWrite, "public/#"),
    ];
}

#[tokio::test]
async fn v4_subscribe_denials_use_0x80_and_own_inbox_is_allowed() {
    use rumqttc::SubscribeReasonCode as R;
    let node = start_node(with_rules).await;
    sign_up(&node, "alice", "alice password").await;
    let (client, mut el) = v4::connect(v4::options(&node, "a", "alice", "alice password")).await;

    for (filter, expected) in [
        ("u/bob/i", R::Failure),
        ("u/#", R::Failure),
        ("#", R::Failure),
        ("+/alice/i", R::Failure),
        ("devices/bob/#", R::Failure),
        ("elsewhere/x", R::Failure),
        ("u/alice/i", R::Success(QoS::AtLeastOnce)),
        ("devices/alice/#", R::Success(QoS::AtLeastOnce)),
    ] {
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        assert_eq!(v4::suback(&mut el).await, vec![expected], "filter {filter}");
    }
}

#[tokio::test]
async fn v5_denials_use_0x87_and_mixed_subscribe_keeps_order() {
    use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PubAckReason, SubscribeReasonCode as R};
    use rumqttc::v5::mqttbytes::QoS as Q5;
    let node = start_node(with_rules).await;
    sign_up(&node, "alice", "alice password").await;
    let (client, mut el) = v5::connect(v5::options(&node, "a", "alice", "alice password")).await;

    client
        .subscribe_many(vec![
            Filter::new("u/bob/i", Q5::AtLeastOnce),
            Filter::new("u/alice/i", Q5::AtLeastOnce),
            Filter::new("#", Q5::AtLeastOnce),
        ])
        .await
        .unwrap();
    let codes = v5::next_matching(&mut el, "SUBACK", |p| match p {
        Packet::SubAck(a) => Some(a.return_codes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        codes,
        vec![
            R::NotAuthorized,
            R::Success(Q5::AtLeastOnce),
            R::NotAuthorized
        ]
    );

    // Server-only and foreign topics: PUBACK 0x87.
    for topic in ["p/bob", "u/bob/i", "a/alice", "devices/bob/t", "nowhere"] {
        client
            .publish(topic, Q5::AtLeastOnce, false, "x")
            .await
            .unwrap();
        let reason = v5::next_matching(&mut el, "PUBACK", |p| match p {
            Packet::PubAck(a) => Some(a.reason),
            _ => None,
        })
        .await;
        assert_eq!(reason, PubAckReason::NotAuthorized, "topic {topic}");
    }
    // Allowed topic: success.
    client
        .publish("devices/alice/t", Q5::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let reason = v5::next_matching(&mut el, "PUBACK", |p| match p {
        Packet::PubAck(a) => Some(a.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, PubAckReason::Success);
}

#[tokio::test]
async fn a_denied_publish_reaches_nobody() {
    let node = start_node(with_rules).await;
    sign_up(&node, "alice", "alice password").await;
    sign_up(&node, "bob", "bob password").await;
    let (bob, mut bob_el) = v4::connect(v4::options(&node, "b", "bob", "bob password")).await;
    bob.subscribe("devices/bob/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(v4::suback(&mut bob_el).await.len(), 1);
    bob.subscribe("public/#", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(v4::suback(&mut bob_el).await.len(), 1);

    let (alice, mut alice_el) =
        v4::connect(v4::options(&node, "a", "alice", "alice password")).await;
    tokio::spawn(async move { while alice_el.poll().await.is_ok() {} });
    // Denied (bob's device subtree), then a marker on an allowed topic. The
    // router keeps one client's publishes in order, so had the first one got
    // through, bob would see it before the marker.
    alice
        .publish("devices/bob/cmd", QoS::AtLeastOnce, false, "evil")
        .await
        .unwrap();
    alice
        .publish("public/marker", QoS::AtLeastOnce, false, "marker")
        .await
        .unwrap();
    let first = v4::next_publish(&mut bob_el).await;
    assert_eq!(&first.topic, "public/marker");
    assert_eq!(&first.payload[..], b"marker");
}

#[tokio::test]
async fn qos_0_1_2_round_trips_on_rule_topics() {
    let node = start_node(with_rules).await;
    sign_up(&node, "dev1", "device password").await;
    let (client, mut el) = v4::connect(v4::options(&node, "d", "dev1", "device password")).await;
    client
        .subscribe("devices/dev1/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    assert_eq!(
        v4::suback(&mut el).await,
        vec![rumqttc::SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let payload = format!("reading {i}");
        client
            .publish("devices/dev1/temp", qos, false, payload.clone())
            .await
            .unwrap();
        let p = v4::next_publish(&mut el).await;
        assert_eq!(&p.payload[..], payload.as_bytes());
        // Delivered at min(publish QoS, granted QoS): here the publish's own.
        assert_eq!(p.qos, qos, "published at {qos:?}");
    }
}

#[tokio::test]
async fn retained_message_reaches_late_subscriber() {
    let node = start_node(with_rules).await;
    sign_up(&node, "dev2", "device password").await;
    let (client, mut el) = v4::connect(v4::options(&node, "d1", "dev2", "device password")).await;
    client
        .publish("devices/dev2/state", QoS::AtLeastOnce, true, "on")
        .await
        .unwrap();
    v4::next_matching(&mut el, "PUBACK", |p| {
        matches!(p, rumqttc::Packet::PubAck(_)).then_some(())
    })
    .await;

    let (late, mut late_el) =
        v4::connect(v4::options(&node, "d2", "dev2", "device password")).await;
    late.subscribe("devices/dev2/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let p = v4::next_publish(&mut late_el).await;
    assert_eq!(&p.topic, "devices/dev2/state");
    assert_eq!(&p.payload[..], b"on");
    assert!(
        p.retain,
        "retained flag set for a retained message on subscribe"
    );
}

#[tokio::test]
async fn last_will_fires_on_abrupt_disconnect_only() {
    let node = start_node(with_rules).await;
    sign_up(&node, "watcher", "watcher password").await;
    sign_up(&node, "dev3", "device password").await;
    let (watcher, mut wel) =
        v4::connect(v4::options(&node, "w", "watcher", "watcher password")).await;
    watcher
        .subscribe("public/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    v4::suback(&mut wel).await;

    // A clean DISCONNECT: no will. Then an abrupt end: the will.
    let mut polite = v4::options(&node, "polite", "dev3", "device password");
    polite.set_last_will(rumqttc::LastWill::new(
        "public/will",
        "polite-gone",
        QoS::AtLeastOnce,
        false,
    ));
    let (polite_client, mut polite_el) = v4::connect(polite).await;
    polite_client.disconnect().await.unwrap();
    while polite_el.poll().await.is_ok() {}

    let mut abrupt = v4::options(&node, "abrupt", "dev3", "device password");
    abrupt.set_last_will(rumqttc::LastWill::new(
        "public/will",
        "abrupt-gone",
        QoS::AtLeastOnce,
        false,
    ));
    let (_abrupt_client, abrupt_el) = v4::connect(abrupt).await;
    drop(abrupt_el); // closes the socket without DISCONNECT

    let p = v4::next_publish(&mut wel).await;
    assert_eq!(
        &p.payload[..],
        b"abrupt-gone",
        "only the abrupt client's will is published"
    );
}

#[tokio::test]
async fn will_on_a_forbidden_topic_is_refused_at_connect() {
    let node = start_node(with_rules).await;
    sign_up(&node, "dev4", "device password").await;
    let mut o = v4::options(&node, "x", "dev4", "device password");
    o.set_last_will(rumqttc::LastWill::new(
        "p/dev4",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (_c, mut el) = rumqttc::AsyncClient::new(o, 10);
    assert_eq!(
        v4::connack(&mut el).await.unwrap(),
        rumqttc::ConnectReturnCode::NotAuthorized
    );
}

#[tokio::test]
async fn acl_rule_change_is_honoured_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let node = parley::server::Node::start(config.clone()).await.unwrap();
    let test_node = TestNode { node, dir };
    sign_up(&test_node, "eve", "eve's password").await;
    let (client, mut el) = v4::connect(v4::options(&test_node, "e", "eve", "eve's password")).await;
    client
        .subscribe("sensors/x", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(
        v4::suback(&mut el).await,
        vec![rumqttc::SubscribeReasonCode::Failure]
    );
    drop((client, el));
    let TestNode { node, dir } = test_node;
    node.shutdown().await.unwrap();

    let mut config = test_config(dir.path());
    config.acl = vec![rule(Access::Read, "sensors/#")];
    let node = parley::server::Node::start(config).await.unwrap();
    let test_node = TestNode { node, dir };
    let (client, mut el) = v4::connect(v4::options(&test_node, "e", "eve", "eve's password")).await;
    client
        .subscribe("sensors/x", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(
        v4::suback(&mut el).await,
        vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
}
