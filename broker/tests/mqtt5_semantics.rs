//! MQTT 5 semantics of Parley's engine against a real node, with rumqttc v5
//! and, where rumqttc cannot express or show it, raw packets. Each test ends
//! with another user's publish round trip: the broker is still serving.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chat_core::rules::{Access, AclRuleConfig};
use common::raw::*;
use common::*;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS as Q;

const ALICE: &str = "alice";
const ALICE_PW: &str = "alice password";
const BOB: &str = "bob";
const BOB_PW: &str = "bob password";

async fn node_with(tweak: impl FnOnce(&mut parley::config::Config)) -> TestNode {
    let node = start_node(|c| {
        c.acl = ["devices/%u/#", "public/#"]
            .into_iter()
            .map(|filter| AclRuleConfig {
                access: Access::ReadWrite,
                filter: filter.into(),
                users: Vec::new(),
            })
            .collect();
        tweak(c);
    })
    .await;
    sign_up(&node, ALICE, ALICE_PW).await;
    sign_up(&node, BOB, BOB_PW).await;
    node
}

async fn node() -> TestNode {
    node_with(|_| {}).await
}

static ROUND_TRIPS: AtomicUsize = AtomicUsize::new(0);

/// Bob publishes one QoS 1 message to himself and gets it back.
async fn bob_round_trip(node: &TestNode) {
    let n = ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
    let (client, mut el) = v5::connect(v5::options(node, &format!("bob-{n}"), BOB, BOB_PW)).await;
    let topic = format!("devices/bob/rt/{n}");
    client.subscribe(&topic, Q::AtLeastOnce).await.unwrap();
    v5::next_matching(&mut el, "SUBACK", |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await;
    client
        .publish(&topic, Q::AtLeastOnce, false, "ping")
        .await
        .unwrap();
    let p = v5::next_publish(&mut el).await;
    assert_eq!(&p.payload[..], b"ping");
}

/// A raw MQTT 5 connection of alice's, subscribed to `filters` (options byte each).
async fn raw_sub(node: &TestNode, id: &str, filters: &[(&str, u8)], props: Props) -> Raw {
    let (mut raw, _) = Raw::connected(node, &Connect::v5(id, ALICE, ALICE_PW)).await;
    raw.send(&subscribe(true, 1, filters, &props)).await;
    let granted = raw.expect(SUBACK).await.codes(true);
    assert!(granted.iter().all(|c| *c < 0x80), "granted: {granted:?}");
    raw
}

/// Publishes at QoS 1 (raw MQTT 5) and waits for the PUBACK.
async fn raw_publish(p: &mut Raw, topic: &str, retain: bool, props: &Props, payload: &[u8]) {
    static IDS: AtomicUsize = AtomicUsize::new(1);
    let id = (IDS.fetch_add(1, Ordering::Relaxed) % 60_000 + 1) as u16;
    p.send(&publish(true, topic, 1, id, false, retain, props, payload))
        .await;
    let ack = p.expect(PUBACK).await;
    assert_eq!((ack.pkid(), ack.ack_reason() < 0x80), (id, true));
}

/// The next PUBLISH on a raw MQTT 5 connection, acknowledged.
async fn next(raw: &mut Raw) -> Pub {
    let p = raw.expect(PUBLISH).await.publish(true);
    match p.qos {
        1 => raw.send(&ack(PUBACK, p.pkid, None)).await,
        2 => raw.send(&ack(PUBREC, p.pkid, None)).await,
        _ => {}
    }
    p
}

#[tokio::test]
async fn delivered_qos_is_the_minimum_of_published_and_granted() {
    let node = node().await;
    let (sub, mut sub_el) = v5::connect(v5::options(&node, "sub", ALICE, ALICE_PW)).await;
    for (n, qos) in [(0, Q::AtMostOnce), (1, Q::AtLeastOnce), (2, Q::ExactlyOnce)] {
        sub.subscribe(format!("devices/alice/q/{n}"), qos)
            .await
            .unwrap();
        v5::next_matching(&mut sub_el, "SUBACK", |p| {
            matches!(p, Packet::SubAck(_)).then_some(())
        })
        .await;
    }
    let (publisher, mut pub_el) = v5::connect(v5::options(&node, "pub", ALICE, ALICE_PW)).await;
    tokio::spawn(async move { while pub_el.poll().await.is_ok() {} });
    let qos = [Q::AtMostOnce, Q::AtLeastOnce, Q::ExactlyOnce];
    for granted in 0..3 {
        for published in 0..3 {
            publisher
                .publish(
                    format!("devices/alice/q/{granted}"),
                    qos[published],
                    false,
                    format!("{granted}{published}"),
                )
                .await
                .unwrap();
            let p = v5::next_publish(&mut sub_el).await;
            assert_eq!(p.payload, format!("{granted}{published}").as_bytes());
            assert_eq!(
                p.qos,
                qos[granted.min(published)],
                "granted {granted}, published {published}"
            );
        }
    }
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn no_local_skips_the_subscribers_own_publishes() {
    let node = node().await;
    let (me, mut me_el) = v5::connect(v5::options(&node, "me", ALICE, ALICE_PW)).await;
    let mut filter = Filter::new("devices/alice/nl", Q::AtLeastOnce);
    filter.nolocal = true;
    me.subscribe_many(vec![filter]).await.unwrap();
    v5::next_matching(&mut me_el, "SUBACK", |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await;
    me.publish("devices/alice/nl", Q::AtLeastOnce, false, "mine")
        .await
        .unwrap();
    v5::next_matching(&mut me_el, "PUBACK", |p| {
        matches!(p, Packet::PubAck(_)).then_some(())
    })
    .await;
    let (other, mut other_el) = v5::connect(v5::options(&node, "other", ALICE, ALICE_PW)).await;
    tokio::spawn(async move { while other_el.poll().await.is_ok() {} });
    other
        .publish("devices/alice/nl", Q::AtLeastOnce, false, "theirs")
        .await
        .unwrap();
    let p = v5::next_publish(&mut me_el).await;
    assert_eq!(
        &p.payload[..],
        b"theirs",
        "its own publish was not delivered first"
    );
    bob_round_trip(&node).await;
}

/// Subscription options byte: QoS, No Local, Retain As Published, Retain Handling.
fn opts(qos: u8, rap: bool, rh: u8) -> u8 {
    qos | (u8::from(rap) << 3) | (rh << 4)
}

#[tokio::test]
async fn retain_as_published_and_retain_handling() {
    let node = node().await;
    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    raw_publish(&mut p, "devices/alice/r", true, &Props::new(), b"retained").await;

    // Retain Handling 0: sent at every subscribe, with RETAIN set.
    let mut rh0 = raw_sub(
        &node,
        "rh0",
        &[("devices/alice/r", opts(1, false, 0))],
        Props::new(),
    )
    .await;
    let m = next(&mut rh0).await;
    assert_eq!((&m.payload[..], m.retain), (&b"retained"[..], true));
    rh0.send(&subscribe(
        true,
        2,
        &[("devices/alice/r", opts(1, false, 0))],
        &Props::new(),
    ))
    .await;
    let m = next(&mut rh0).await;
    assert_eq!(
        (&m.payload[..], m.retain),
        (&b"retained"[..], true),
        "again on re-subscribe"
    );

    // Retain Handling 1: only when the subscription is new.
    let mut rh1 = raw_sub(
        &node,
        "rh1",
        &[("devices/alice/r", opts(1, false, 1))],
        Props::new(),
    )
    .await;
    let m = next(&mut rh1).await;
    assert_eq!(&m.payload[..], b"retained");
    rh1.send(&subscribe(
        true,
        2,
        &[("devices/alice/r", opts(1, false, 1))],
        &Props::new(),
    ))
    .await;
    rh1.expect(SUBACK).await;

    // Retain Handling 2: never; Retain As Published 0 and 1 on live messages.
    let mut rh2 = raw_sub(
        &node,
        "rh2",
        &[("devices/alice/r", opts(1, true, 2))],
        Props::new(),
    )
    .await;
    raw_publish(&mut p, "devices/alice/r", true, &Props::new(), b"live").await;
    let m = next(&mut rh2).await;
    assert_eq!(
        (&m.payload[..], m.retain),
        (&b"live"[..], true),
        "RH 2 got no retained; RAP 1 keeps RETAIN"
    );
    let m = next(&mut rh1).await;
    assert_eq!(
        (&m.payload[..], m.retain),
        (&b"live"[..], false),
        "RH 1 re-subscribe sent nothing; RAP 0 clears RETAIN"
    );
    let m = next(&mut rh0).await;
    assert_eq!((&m.payload[..], m.retain), (&b"live"[..], false));
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn deliveries_carry_every_matching_subscription_identifier() {
    let node = node().await;
    let mut sub = raw_sub(
        &node,
        "sub",
        &[("devices/alice/s/#", 1)],
        Props::new().varint(0x0B, 7),
    )
    .await;
    sub.send(&subscribe(
        true,
        2,
        &[("devices/alice/s/+", 1)],
        &Props::new().varint(0x0B, 300),
    ))
    .await;
    sub.expect(SUBACK).await;
    sub.send(&subscribe(
        true,
        3,
        &[("devices/alice/other", 1)],
        &Props::new(),
    ))
    .await;
    sub.expect(SUBACK).await;
    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    raw_publish(&mut p, "devices/alice/s/x", false, &Props::new(), b"both").await;
    raw_publish(&mut p, "devices/alice/s/x/y", false, &Props::new(), b"one").await;
    raw_publish(&mut p, "devices/alice/other", false, &Props::new(), b"none").await;
    let m = next(&mut sub).await;
    let mut ids = m.props.ints(0x0B);
    ids.sort();
    assert_eq!(
        (&m.payload[..], ids),
        (&b"both"[..], vec![7, 300]),
        "one delivery, both ids"
    );
    let m = next(&mut sub).await;
    assert_eq!((&m.payload[..], m.props.ints(0x0B)), (&b"one"[..], vec![7]));
    let m = next(&mut sub).await;
    assert_eq!((&m.payload[..], m.props.ints(0x0B)), (&b"none"[..], vec![]));
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn the_clients_maximum_packet_size_is_honoured() {
    let node = node().await;
    let mut c = Connect::v5("small", ALICE, ALICE_PW);
    c.props = Props::new().u32(0x27, 200);
    let (mut sub, _, _) = Raw::subscribed(&node, &c, "devices/alice/mps", 1).await;
    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    raw_publish(
        &mut p,
        "devices/alice/mps",
        false,
        &Props::new(),
        &[b'x'; 500],
    )
    .await;
    raw_publish(&mut p, "devices/alice/mps", false, &Props::new(), b"small").await;
    let f = sub.expect(PUBLISH).await;
    assert!(f.body.len() + 2 <= 200);
    let m = f.publish(true);
    assert_eq!(
        &m.payload[..],
        b"small",
        "the oversize message was not sent"
    );
    sub.send(&ack(PUBACK, m.pkid, None)).await;
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn expired_messages_are_dropped_and_the_remaining_interval_forwarded() {
    let node = node().await;
    let c = Connect::v5("later", ALICE, ALICE_PW).persistent(600);
    let (mut sub, _, _) = Raw::subscribed(&node, &c, "devices/alice/exp", 1).await;
    sub.send(&disconnect5(0)).await;
    assert!(sub.until_closed().await.is_empty());

    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    raw_publish(
        &mut p,
        "devices/alice/exp",
        false,
        &Props::new().u32(0x02, 1),
        b"short",
    )
    .await;
    raw_publish(
        &mut p,
        "devices/alice/exp",
        false,
        &Props::new().u32(0x02, 100),
        b"long",
    )
    .await;
    // Let the short one's interval pass while the session is offline.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (mut sub, present) = Raw::connected(&node, &c).await;
    assert!(present);
    let m = next(&mut sub).await;
    assert_eq!(
        &m.payload[..],
        b"long",
        "the expired message was not delivered"
    );
    let left = m.props.int(0x02).expect("Message Expiry forwarded");
    assert!(
        (90..100).contains(&left),
        "remaining interval, not the original: {left}"
    );
    raw_publish(&mut p, "devices/alice/exp", false, &Props::new(), b"end").await;
    assert_eq!(&next(&mut sub).await.payload[..], b"end");
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn a_session_is_gone_after_its_expiry() {
    let node = node().await;
    let c = Connect::v5("brief", ALICE, ALICE_PW).persistent(2);
    let (mut s, present) = Raw::connected(&node, &c).await;
    assert!(!present);
    s.send(&disconnect5(0)).await;
    s.until_closed().await;
    // Within the expiry: still there.
    let (mut s, present) = Raw::connected(&node, &c).await;
    assert!(present, "session present within its expiry");
    s.send(&disconnect5(0)).await;
    s.until_closed().await;
    // The engine's tick ends it once its 2 s have passed.
    within("the session to expire", async {
        while metric(&node, "parley_mqtt_sessions_expired_total ").await != Some(1.0) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let (_s, present) = Raw::connected(&node, &c).await;
    assert!(!present, "session present 0 after its expiry");
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn clean_start_with_session_expiry_keeps_the_session() {
    let node = node().await;
    let mut c = Connect::v5("keeper", ALICE, ALICE_PW);
    c.clean = true;
    c.props = Props::new().u32(0x11, 99_999);
    let (mut s, _, _) = Raw::subscribed(&node, &c, "devices/alice/keep", 1).await;
    s.send(&disconnect5(0)).await;
    assert!(s.until_closed().await.is_empty());
    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    for i in 0..3 {
        raw_publish(
            &mut p,
            "devices/alice/keep",
            false,
            &Props::new(),
            format!("q{i}").as_bytes(),
        )
        .await;
    }
    c.clean = false;
    let (mut s, present) = Raw::connected(&node, &c).await;
    assert!(present, "the session outlived the connection");
    for i in 0..3 {
        let m = next(&mut s).await;
        assert_eq!((m.payload, m.qos), (format!("q{i}").into_bytes(), 1));
    }
    bob_round_trip(&node).await;
}

fn will_connect(id: &str, delay: u32, session_expiry: u32, payload: &str) -> Connect {
    let mut c = Connect::v5(id, ALICE, ALICE_PW).persistent(session_expiry);
    c.will = Some(Will {
        topic: "devices/alice/will".into(),
        payload: payload.as_bytes().to_vec(),
        qos: 1,
        retain: false,
        props: Props::new()
            .u32(0x18, delay)
            .pair("reason", "gone")
            .str(0x03, "text/plain"),
    });
    c
}

#[tokio::test]
async fn will_with_user_properties_is_published_after_its_delay() {
    let node = node().await;
    let mut watcher = raw_sub(&node, "watch", &[("devices/alice/will", 1)], Props::new()).await;
    let (dying, _) = Raw::connected(&node, &will_connect("dying", 2, 60, "bye")).await;
    drop(dying);
    let dropped_at = Instant::now();
    let m = next(&mut watcher).await;
    assert!(
        dropped_at.elapsed() >= Duration::from_millis(1_500),
        "not before the delay: {:?}",
        dropped_at.elapsed()
    );
    assert_eq!(&m.payload[..], b"bye");
    assert_eq!(
        m.props.pairs(),
        vec![("reason".to_owned(), "gone".to_owned())]
    );
    assert_eq!(m.props.bytes(0x03), Some(b"text/plain".to_vec()));
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn a_delayed_will_is_cancelled_when_the_client_resumes_in_time() {
    let node = node().await;
    let mut watcher = raw_sub(&node, "watch", &[("devices/alice/will", 1)], Props::new()).await;
    let c = will_connect("flaky", 2, 60, "cancelled");
    let (first, _) = Raw::connected(&node, &c).await;
    drop(first);
    let (resumed, present) = Raw::connected(&node, &c).await;
    assert!(present);
    // Past the delay: nothing was published before this sentinel.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    raw_publish(
        &mut p,
        "devices/alice/will",
        false,
        &Props::new(),
        b"sentinel",
    )
    .await;
    assert_eq!(&next(&mut watcher).await.payload[..], b"sentinel");
    drop(resumed);
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn topic_aliases_from_the_client_are_resolved() {
    let node = node().await;
    let mut sub = raw_sub(&node, "sub", &[("devices/alice/ta", 1)], Props::new()).await;
    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    raw_publish(
        &mut p,
        "devices/alice/ta",
        false,
        &Props::new().u16(0x23, 1),
        b"set",
    )
    .await;
    raw_publish(&mut p, "", false, &Props::new().u16(0x23, 1), b"used").await;
    for payload in ["set", "used"] {
        let m = next(&mut sub).await;
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            ("devices/alice/ta", payload.as_bytes())
        );
    }
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn topic_aliases_to_the_client_are_used_when_announced() {
    let node = node().await;
    let mut c = Connect::v5("sub", ALICE, ALICE_PW);
    c.props = Props::new().u16(0x22, 5);
    let (mut sub, _, _) = Raw::subscribed(&node, &c, "devices/alice/alias", 1).await;
    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    raw_publish(&mut p, "devices/alice/alias", false, &Props::new(), b"1").await;
    raw_publish(&mut p, "devices/alice/alias", false, &Props::new(), b"2").await;
    let first = next(&mut sub).await;
    let alias = first.props.int(0x23).expect("an alias is set");
    assert!((1..=5).contains(&alias));
    assert_eq!(first.topic, "devices/alice/alias");
    let second = next(&mut sub).await;
    assert_eq!(second.props.int(0x23), Some(alias));
    assert_eq!(
        (second.topic.as_str(), &second.payload[..]),
        ("", &b"2"[..]),
        "the repeat uses the alias alone"
    );
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn request_response_forwards_response_topic_and_correlation_data_at_qos_2() {
    let node = node().await;
    let (responder, mut r_el) = v5::connect(v5::options(&node, "responder", ALICE, ALICE_PW)).await;
    responder
        .subscribe("devices/alice/req", Q::ExactlyOnce)
        .await
        .unwrap();
    v5::next_matching(&mut r_el, "SUBACK", |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await;
    let (requester, mut q_el) = v5::connect(v5::options(&node, "requester", ALICE, ALICE_PW)).await;
    requester
        .subscribe("devices/alice/resp", Q::ExactlyOnce)
        .await
        .unwrap();
    v5::next_matching(&mut q_el, "SUBACK", |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await;

    let props = PublishProperties {
        response_topic: Some("devices/alice/resp".into()),
        correlation_data: Some(Bytes::from_static(b"corr-1")),
        user_properties: vec![("k".into(), "v".into())],
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    requester
        .publish_with_properties(
            "devices/alice/req",
            Q::ExactlyOnce,
            false,
            "question",
            props,
        )
        .await
        .unwrap();
    // The requester's QoS 2 flow completes (PUBREC, then PUBCOMP).
    v5::next_matching(&mut q_el, "PUBCOMP of the request", |p| {
        matches!(p, Packet::PubComp(_)).then_some(())
    })
    .await;

    let request = v5::next_publish(&mut r_el).await;
    assert_eq!(request.qos, Q::ExactlyOnce);
    let rp = request.properties.clone().expect("properties forwarded");
    assert_eq!(rp.response_topic.as_deref(), Some("devices/alice/resp"));
    assert_eq!(rp.correlation_data.as_deref(), Some(&b"corr-1"[..]));
    assert_eq!(rp.user_properties, vec![("k".to_owned(), "v".to_owned())]);
    assert_eq!(rp.content_type.as_deref(), Some("application/json"));
    let reply = PublishProperties {
        correlation_data: rp.correlation_data.clone(),
        ..Default::default()
    };
    responder
        .publish_with_properties(
            rp.response_topic.unwrap(),
            Q::ExactlyOnce,
            false,
            "answer",
            reply,
        )
        .await
        .unwrap();
    v5::next_matching(&mut r_el, "PUBCOMP of the response", |p| {
        matches!(p, Packet::PubComp(_)).then_some(())
    })
    .await;
    let response = v5::next_publish(&mut q_el).await;
    assert_eq!(
        (&response.payload[..], response.qos),
        (&b"answer"[..], Q::ExactlyOnce)
    );
    assert_eq!(
        response
            .properties
            .and_then(|p| p.correlation_data)
            .as_deref(),
        Some(&b"corr-1"[..])
    );
    // The server answers the requester's PUBREC with PUBREL: its outgoing
    // QoS 2 flow completes too.
    v5::next_matching(&mut q_el, "PUBREL from the server", |p| {
        matches!(p, Packet::PubRel(_)).then_some(())
    })
    .await;
    responder
        .publish("devices/alice/resp", Q::ExactlyOnce, false, "again")
        .await
        .unwrap();
    tokio::spawn(async move { while r_el.poll().await.is_ok() {} });
    assert_eq!(&v5::next_publish(&mut q_el).await.payload[..], b"again");
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn shared_subscriptions_split_messages_between_members() {
    let node = node().await;
    let mut members = Vec::new();
    for id in ["m1", "m2"] {
        let (c, mut el) = v5::connect(v5::options(&node, id, ALICE, ALICE_PW)).await;
        c.subscribe("$share/g/devices/alice/sh", Q::AtLeastOnce)
            .await
            .unwrap();
        v5::next_matching(&mut el, "SUBACK", |p| {
            matches!(p, Packet::SubAck(_)).then_some(())
        })
        .await;
        members.push((c, el));
    }
    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    for i in 0..10 {
        raw_publish(
            &mut p,
            "devices/alice/sh",
            false,
            &Props::new(),
            format!("s{i}").as_bytes(),
        )
        .await;
    }
    let mut counts = Vec::new();
    let mut all = BTreeSet::new();
    let (deliveries, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (n, (c, mut el)) in members.into_iter().enumerate() {
        let deliveries = deliveries.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = c;
            loop {
                let p = v5::next_publish(&mut el).await;
                let payload = String::from_utf8(p.payload.to_vec()).unwrap();
                if deliveries.send((n, payload)).is_err() {
                    break;
                }
            }
        }));
    }
    let got = within("all 10 shared messages", async {
        let mut got = Vec::new();
        while got.len() < 10 {
            got.push(delivered.recv().await.expect("a member task ended"));
        }
        got
    })
    .await;
    for t in &tasks {
        t.abort();
    }
    for n in 0..2 {
        counts.push(got.iter().filter(|(m, _)| *m == n).count());
    }
    for (_, payload) in &got {
        assert!(all.insert(payload.clone()), "{payload} delivered twice");
    }
    assert_eq!(all.len(), 10);
    assert!(
        counts.iter().all(|c| *c > 0),
        "both members got a share: {counts:?}"
    );
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn connack_announces_the_servers_receive_maximum_and_limits() {
    let node = node_with(|c| {
        c.mqtt.receive_maximum = 12;
        c.mqtt.topic_alias_maximum = 7;
    })
    .await;
    let (_raw, ack) = Raw::connect(&node, &Connect::v5("c", ALICE, ALICE_PW)).await;
    let (_, code, props) = ack.expect("CONNACK").connack(true);
    assert_eq!(code, 0);
    assert_eq!(props.int(0x21), Some(12), "Receive Maximum");
    assert_eq!(props.int(0x22), Some(7), "Topic Alias Maximum");
    assert_eq!(props.int(0x2A), Some(1), "shared subscriptions available");
    bob_round_trip(&node).await;
}
