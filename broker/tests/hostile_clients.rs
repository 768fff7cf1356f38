//! Hostile and broken MQTT clients on raw sockets against a real node. Each
//! case asserts the spec's answer and then that another, well-behaved user
//! still gets a publish round trip: one client must never stop MQTT for
//! everyone.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::rules::{Access, AclRuleConfig};
use common::raw::*;
use common::*;

const ALICE: &str = "alice";
const ALICE_PW: &str = "alice password";
const BOB: &str = "bob";
const BOB_PW: &str = "bob password";
const ADMIN_TOKEN: &str = "admin-token-admin-token-admin-token-0123";

fn with_rules(config: &mut parley::config::Config) {
    config.acl = ["devices/%u/#", "public/#"]
        .into_iter()
        .map(|filter| AclRuleConfig {
            access: Access::ReadWrite,
            filter: filter.into(),
            users: Vec::new(),
        })
        .collect();
}

/// A node with the test ACL, `tweak` applied, and alice and bob signed up.
async fn node_with(tweak: impl FnOnce(&mut parley::config::Config)) -> TestNode {
    let node = start_node(|c| {
        with_rules(c);
        tweak(c);
    })
    .await;
    sign_up(&node, ALICE, ALICE_PW).await;
    sign_up(&node, BOB, BOB_PW).await;
    node
}

static ROUND_TRIPS: AtomicUsize = AtomicUsize::new(0);

/// Bob, a well-behaved MQTT 5 client, subscribes and publishes one QoS 1
/// message to himself; asserts it comes back. Returns how long it took.
async fn bob_round_trip(node: &TestNode) -> Duration {
    let n = ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let (mut bob, _) = Raw::connected(node, &Connect::v5(&format!("bob-{n}"), BOB, BOB_PW)).await;
    let topic = format!("devices/bob/rt/{n}");
    bob.send(&subscribe(true, 1, &[(&topic, 1)], &Props::new()))
        .await;
    let suback = bob.expect(SUBACK).await;
    assert_eq!(suback.codes(true), vec![1], "bob's subscription granted");
    bob.send(&publish(
        true,
        &topic,
        1,
        2,
        false,
        false,
        &Props::new(),
        b"ping",
    ))
    .await;
    let mut got_ack = false;
    let mut got_pub = false;
    while !(got_ack && got_pub) {
        let frame = bob.recv().await.expect("bob's connection stays open");
        match frame.kind {
            PUBACK => {
                assert_eq!((frame.pkid(), frame.ack_reason()), (2, 0));
                got_ack = true;
            }
            PUBLISH => {
                let p = frame.publish(true);
                assert_eq!(
                    (p.topic.as_str(), &p.payload[..]),
                    (topic.as_str(), &b"ping"[..])
                );
                bob.send(&ack(PUBACK, p.pkid, None)).await;
                got_pub = true;
            }
            other => panic!("unexpected packet type {other} for bob"),
        }
    }
    bob.send(&disconnect5(0)).await;
    started.elapsed()
}

const DROPPED_QOS1: &str = "parley_mqtt_dropped_total{qos=\"1+\"} ";

#[tokio::test]
async fn shared_subscription_dropped_without_puback_keeps_mqtt_up() {
    let node = node_with(|_| {}).await;
    let mut c = Connect::v4("dev", ALICE, ALICE_PW);
    c.clean = false;
    let (mut sub, present, codes) = Raw::subscribed(&node, &c, "$share/g/devices/alice/#", 1).await;
    assert!(!present);
    assert_eq!(codes, vec![1]);

    let (mut publisher, _) = Raw::connected(&node, &Connect::v4("pub", ALICE, ALICE_PW)).await;
    publisher
        .send(&publish(
            false,
            "devices/alice/x",
            1,
            7,
            false,
            false,
            &Props::new(),
            b"m",
        ))
        .await;
    assert_eq!(publisher.expect(PUBACK).await.pkid(), 7);
    let delivered = sub.expect(PUBLISH).await.publish(false);
    assert_eq!((delivered.qos, &delivered.payload[..]), (1, &b"m"[..]));
    // Gone without PUBACK.
    drop(sub);

    bob_round_trip(&node).await;
    // The persistent session resumes and gets the unacknowledged message again.
    let (mut sub, present) = Raw::connected(&node, &c).await;
    assert!(present, "session present");
    let again = sub.expect(PUBLISH).await.publish(false);
    assert_eq!((again.payload.as_slice(), again.qos), (&b"m"[..], 1));
    assert!(again.dup, "a resent delivery carries DUP");
    sub.send(&ack(PUBACK, again.pkid, None)).await;
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn server_only_packets_from_a_client_are_protocol_errors() {
    let node = node_with(|_| {}).await;
    let hostile: [(&str, Vec<u8>); 5] = [
        ("CONNACK", packet(0x20, &[0, 0, 0])),
        ("SUBACK", packet(0x90, &[0, 1, 0, 0])),
        ("UNSUBACK", packet(0xB0, &[0, 1, 0, 0])),
        ("PINGRESP", packet(0xD0, &[])),
        ("AUTH", packet(0xF0, &[0x18, 0])),
    ];
    // The will of each broken connection shows its task ended cleanly.
    let (mut watcher, _, _) =
        Raw::subscribed(&node, &Connect::v5("watch", BOB, BOB_PW), "public/will", 1).await;
    for (name, bytes) in hostile {
        let mut c = Connect::v5(name, ALICE, ALICE_PW);
        c.will = Some(Will {
            topic: "public/will".into(),
            payload: name.as_bytes().to_vec(),
            qos: 1,
            retain: false,
            props: Props::new(),
        });
        let (mut raw, _) = Raw::connected(&node, &c).await;
        raw.send(&bytes).await;
        let frames = raw.until_closed().await;
        match frames.as_slice() {
            [] => {}
            [d] => assert_eq!(d.disconnect_reason(), 0x82, "{name}: protocol error"),
            more => panic!("{name}: expected at most one DISCONNECT, got {more:?}"),
        }
        let will = watcher.expect(PUBLISH).await.publish(true);
        assert_eq!(will.payload, name.as_bytes(), "{name}: will published");
        watcher.send(&ack(PUBACK, will.pkid, None)).await;
        bob_round_trip(&node).await;
    }
}

#[tokio::test]
async fn shared_group_names_do_not_collide_across_users() {
    let node = node_with(|_| {}).await;
    let filter = "$share/g/public/t";
    let mut subs = Vec::new();
    for (user, pw) in [(ALICE, ALICE_PW), (BOB, BOB_PW)] {
        let (s, _, codes) =
            Raw::subscribed(&node, &Connect::v5("member", user, pw), filter, 1).await;
        assert_eq!(codes, vec![1]);
        subs.push(s);
    }
    let (mut publisher, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    for i in 0..10u16 {
        let payload = format!("m{i}");
        publisher
            .send(&publish(
                true,
                "public/t",
                1,
                i + 1,
                false,
                false,
                &Props::new(),
                payload.as_bytes(),
            ))
            .await;
        assert_eq!(publisher.expect(PUBACK).await.pkid(), i + 1);
    }
    for s in &mut subs {
        let mut got = Vec::new();
        for _ in 0..10 {
            let p = s.expect(PUBLISH).await.publish(true);
            s.send(&ack(PUBACK, p.pkid, None)).await;
            got.push(String::from_utf8(p.payload).unwrap());
        }
        let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        assert_eq!(got, want, "each user's group gets every message");
    }
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn ten_thousand_filters_do_not_stall_another_user() {
    let node = node_with(|c| c.mqtt.max_subscriptions_per_client = 20_000).await;
    let (mut alice, _) = Raw::connected(&node, &Connect::v5("many", ALICE, ALICE_PW)).await;
    let filters: Vec<String> = (0..10_000)
        .map(|i| format!("devices/alice/f{i}/+"))
        .collect();
    for (n, chunk) in filters.chunks(500).enumerate() {
        let list: Vec<(&str, u8)> = chunk.iter().map(|f| (f.as_str(), 1)).collect();
        alice
            .send(&subscribe(true, n as u16 + 1, &list, &Props::new()))
            .await;
        let codes = alice.expect(SUBACK).await.codes(true);
        assert_eq!(codes, vec![1; chunk.len()], "filters granted");
    }
    // 3,000 publishes that match none of them, while bob does his round trip.
    let flood = tokio::spawn(async move {
        for i in 0..3_000u32 {
            let topic = format!("devices/alice/none/{i}");
            alice
                .send(&publish(
                    true,
                    &topic,
                    0,
                    0,
                    false,
                    false,
                    &Props::new(),
                    b"x",
                ))
                .await;
        }
        alice.send(&packet(0xC0, &[])).await;
        alice.expect(PINGRESP).await;
    });
    let took = bob_round_trip(&node).await;
    assert!(
        took < Duration::from_secs(2),
        "bob's round trip took {took:?}"
    );
    within("alice's flood", flood).await.unwrap();
    let took = bob_round_trip(&node).await;
    assert!(
        took < Duration::from_secs(2),
        "bob's round trip took {took:?}"
    );
}

#[tokio::test]
async fn pubrel_releases_only_its_own_packet_id() {
    let node = node_with(|_| {}).await;
    let (mut sub, _, codes) = Raw::subscribed(
        &node,
        &Connect::v5("sub", ALICE, ALICE_PW),
        "devices/alice/q2",
        2,
    )
    .await;
    assert_eq!(codes, vec![2]);

    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    for id in [20u16, 21] {
        let payload = format!("m{id}");
        p.send(&publish(
            true,
            "devices/alice/q2",
            2,
            id,
            false,
            false,
            &Props::new(),
            payload.as_bytes(),
        ))
        .await;
        let rec = p.expect(PUBREC).await;
        assert_eq!((rec.pkid(), rec.ack_reason()), (id, 0));
    }
    p.send(&ack(PUBREL, 21, None)).await;
    assert_eq!(p.expect(PUBCOMP).await.pkid(), 21);
    // 20 is still awaiting PUBREL: a resend with DUP must not deliver it twice.
    p.send(&publish(
        true,
        "devices/alice/q2",
        2,
        20,
        true,
        false,
        &Props::new(),
        b"m20",
    ))
    .await;
    let rec = p.expect(PUBREC).await;
    assert_eq!((rec.pkid(), rec.ack_reason()), (20, 0));
    p.send(&ack(PUBREL, 20, None)).await;
    assert_eq!(p.expect(PUBCOMP).await.pkid(), 20);
    // A sentinel after both: everything before it is what was delivered.
    p.send(&publish(
        true,
        "devices/alice/q2",
        1,
        30,
        false,
        false,
        &Props::new(),
        b"end",
    ))
    .await;
    assert_eq!(p.expect(PUBACK).await.pkid(), 30);

    let mut got = Vec::new();
    loop {
        let f = sub.recv().await.expect("subscriber stays connected");
        if f.kind == PUBREL {
            sub.send(&ack(PUBCOMP, f.pkid(), None)).await;
            continue;
        }
        let m = f.publish(true);
        match m.qos {
            2 => sub.send(&ack(PUBREC, m.pkid, None)).await,
            1 => sub.send(&ack(PUBACK, m.pkid, None)).await,
            _ => {}
        }
        let payload = String::from_utf8(m.payload).unwrap();
        if payload == "end" {
            break;
        }
        got.push(payload);
    }
    got.sort();
    assert_eq!(got, vec!["m20", "m21"], "each delivered exactly once");
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn v5_pubrel_with_a_reason_string_completes_the_flow() {
    let node = node_with(|_| {}).await;
    let (mut sub, _, _) = Raw::subscribed(
        &node,
        &Connect::v5("sub", ALICE, ALICE_PW),
        "devices/alice/q2",
        1,
    )
    .await;
    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    p.send(&publish(
        true,
        "devices/alice/q2",
        2,
        5,
        false,
        false,
        &Props::new(),
        b"hello",
    ))
    .await;
    assert_eq!(p.expect(PUBREC).await.pkid(), 5);
    let reason = Props::new().str(0x1F, "because");
    p.send(&ack(PUBREL, 5, Some((0, &reason)))).await;
    let comp = p.expect(PUBCOMP).await;
    assert_eq!((comp.pkid(), comp.ack_reason()), (5, 0));
    let m = sub.expect(PUBLISH).await.publish(true);
    assert_eq!(m.payload, b"hello");
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn acks_for_unknown_packet_ids_do_not_disconnect() {
    let node = node_with(|_| {}).await;
    let (mut c, _) = Raw::connected(&node, &Connect::v5("c", ALICE, ALICE_PW)).await;
    c.send(&ack(PUBREL, 999, None)).await;
    let comp = c.recv().await.expect("still connected");
    assert_eq!(
        (comp.kind, comp.pkid(), comp.ack_reason()),
        (PUBCOMP, 999, 0x92)
    );
    c.send(&ack(PUBACK, 998, None)).await;
    c.send(&ack(PUBCOMP, 996, None)).await;
    c.send(&ack(PUBREC, 997, None)).await;
    let rel = c.recv().await.expect("still connected");
    assert_eq!(
        (rel.kind, rel.pkid(), rel.ack_reason()),
        (PUBREL, 997, 0x92)
    );
    c.send(&packet(0xC0, &[])).await;
    let pong = c.recv().await.expect("still connected");
    assert_eq!(pong.kind, PINGRESP, "nothing else came first: {pong:?}");

    // 3.1.1: PUBCOMP for the unknown PUBREL, and the connection stays.
    let (mut c4, _) = Raw::connected(&node, &Connect::v4("c4", ALICE, ALICE_PW)).await;
    c4.send(&ack(PUBREL, 999, None)).await;
    c4.send(&ack(PUBACK, 998, None)).await;
    c4.send(&packet(0xC0, &[])).await;
    let mut kinds = Vec::new();
    while kinds.last() != Some(&PINGRESP) {
        kinds.push(c4.recv().await.expect("still connected").kind);
    }
    assert!(!kinds.contains(&DISCONNECT));
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn a_server_initiated_close_sends_exactly_one_disconnect() {
    let node = node_with(|_| {}).await;
    let (mut first, _) = Raw::connected(&node, &Connect::v5("dev", ALICE, ALICE_PW)).await;
    let (_second, _) = Raw::connected(&node, &Connect::v5("dev", ALICE, ALICE_PW)).await;
    let frames = first.until_closed().await;
    let reasons: Vec<u8> = frames
        .iter()
        .filter(|f| f.kind == DISCONNECT)
        .map(Frame::disconnect_reason)
        .collect();
    assert_eq!(
        reasons,
        vec![0x8E],
        "one DISCONNECT, session taken over: {frames:?}"
    );
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn disconnect_reason_0_suppresses_the_will_and_4_publishes_it() {
    let node = node_with(|_| {}).await;
    let (mut watcher, _, _) = Raw::subscribed(
        &node,
        &Connect::v5("watch", ALICE, ALICE_PW),
        "devices/alice/will",
        1,
    )
    .await;
    for (id, reason) in [("normal", 0u8), ("with-will", 4)] {
        let mut c = Connect::v5(id, ALICE, ALICE_PW);
        c.will = Some(Will {
            topic: "devices/alice/will".into(),
            payload: id.as_bytes().to_vec(),
            qos: 1,
            retain: false,
            props: Props::new(),
        });
        let (mut raw, _) = Raw::connected(&node, &c).await;
        // Only the reason code: no property length.
        raw.send(&disconnect5(reason)).await;
        assert!(raw.until_closed().await.is_empty());
    }
    let will = watcher.expect(PUBLISH).await.publish(true);
    assert_eq!(
        will.payload, b"with-will",
        "the 0x00 DISCONNECT's will was not published"
    );
    watcher.send(&ack(PUBACK, will.pkid, None)).await;
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn unsubscribe_gets_exactly_one_unsuback_with_a_code_per_filter() {
    let node = node_with(|_| {}).await;
    let (mut c, _) = Raw::connected(&node, &Connect::v5("c", ALICE, ALICE_PW)).await;
    c.send(&unsubscribe(true, 1, &["devices/alice/never"]))
        .await;
    let un = c.expect(UNSUBACK).await;
    assert_eq!((un.pkid(), un.codes(true)), (1, vec![0x11]));

    c.send(&subscribe(
        true,
        2,
        &[("devices/alice/a", 1)],
        &Props::new(),
    ))
    .await;
    c.expect(SUBACK).await;
    c.send(&unsubscribe(
        true,
        3,
        &["devices/alice/a", "devices/alice/b"],
    ))
    .await;
    let un = c.expect(UNSUBACK).await;
    assert_eq!((un.pkid(), un.codes(true)), (3, vec![0x00, 0x11]));
    c.send(&packet(0xC0, &[])).await;
    let next = c.recv().await.expect("still connected");
    assert_eq!(next.kind, PINGRESP, "no second UNSUBACK: {next:?}");

    // 3.1.1: one UNSUBACK too.
    let (mut c4, _) = Raw::connected(&node, &Connect::v4("c4", ALICE, ALICE_PW)).await;
    c4.send(&unsubscribe(
        false,
        9,
        &["devices/alice/x", "devices/alice/y"],
    ))
    .await;
    assert_eq!(c4.expect(UNSUBACK).await.pkid(), 9);
    c4.send(&packet(0xC0, &[])).await;
    assert_eq!(c4.recv().await.expect("connected").kind, PINGRESP);
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn malformed_connects_are_refused() {
    let node = node_with(|_| {}).await;
    let base = Connect::v5("bad", ALICE, ALICE_PW);
    let mut reserved = base.clone();
    reserved.extra_flags = 1;
    let mut receive_max_0 = base.clone();
    receive_max_0.props = Props::new().u16(0x21, 0);
    let mut packet_size_0 = base.clone();
    packet_size_0.props = Props::new().u32(0x27, 0);
    let mut duplicated = base.clone();
    duplicated.props = Props::new().u32(0x11, 10).u32(0x11, 20);
    let mut reserved_v4 = Connect::v4("bad4", ALICE, ALICE_PW);
    reserved_v4.extra_flags = 1;
    for (name, c) in [
        ("reserved flag", reserved),
        ("Receive Maximum 0", receive_max_0),
        ("Maximum Packet Size 0", packet_size_0),
        ("duplicated Session Expiry", duplicated),
        ("3.1.1 reserved flag", reserved_v4),
    ] {
        let mut raw = Raw::open(&node, c.v5).await;
        raw.send(&c.bytes()).await;
        let frames = raw.until_closed().await;
        for f in &frames {
            if f.kind == CONNACK {
                let (_, code, _) = f.connack(c.v5);
                assert_ne!(code, 0, "{name}: never accepted");
            }
        }
        assert!(frames.len() <= 1, "{name}: {frames:?}");
        bob_round_trip(&node).await;
    }
}

/// Whether alice's `client_id` is listed by the admin API.
async fn listed(node: &TestNode, client_id: &str) -> bool {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/admin/sessions", node.http()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin request")
        .json()
        .await
        .expect("json");
    body["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .any(|s| s["user"] == ALICE && s["client_id"] == client_id)
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected() {
    let node = node_with(|c| c.admin.token = Some(ADMIN_TOKEN.into())).await;
    let mut c = Connect::v5("stalled", ALICE, ALICE_PW);
    c.keep_alive = 2;
    let (mut stalled, _) = Raw::connected(&node, &c).await;
    stalled
        .send(&subscribe(
            true,
            1,
            &[("public/flood", 0), ("public/flood1", 1)],
            &Props::new(),
        ))
        .await;
    stalled.expect(SUBACK).await;
    assert!(listed(&node, "stalled").await);

    // Bob floods it; alice's socket is neither read nor written from now on.
    let stop = Arc::new(AtomicBool::new(false));
    let (mut flooder, _) = Raw::connected(&node, &Connect::v5("flood", BOB, BOB_PW)).await;
    let flooding = tokio::spawn({
        let stop = stop.clone();
        async move {
            let payload = vec![b'x'; 16 * 1024];
            let mut id = 0u16;
            while !stop.load(Ordering::Relaxed) {
                flooder
                    .send(&publish(
                        true,
                        "public/flood",
                        0,
                        0,
                        false,
                        false,
                        &Props::new(),
                        &payload,
                    ))
                    .await;
                id = id % 60_000 + 1;
                flooder
                    .send(&publish(
                        true,
                        "public/flood1",
                        1,
                        id,
                        false,
                        false,
                        &Props::new(),
                        b"q1",
                    ))
                    .await;
                // Take what the server answers so bob's own socket never stalls.
                let _ = flooder.recv_within(Duration::from_millis(1)).await;
            }
        }
    });
    let started = Instant::now();
    while listed(&node, "stalled").await {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still connected after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    within("the flood to stop", flooding).await.unwrap();
    drop(stalled);
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn an_admin_kick_closes_the_connection() {
    let node = node_with(|c| c.admin.token = Some(ADMIN_TOKEN.into())).await;
    let (mut v5c, _) = Raw::connected(&node, &Connect::v5("kick5", ALICE, ALICE_PW)).await;
    let (mut v4c, _) = Raw::connected(&node, &Connect::v4("kick4", ALICE, ALICE_PW)).await;
    for id in ["kick5", "kick4"] {
        let status = reqwest::Client::new()
            .delete(format!("{}/v1/admin/sessions/{ALICE}/{id}", node.http()))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("kick")
            .status();
        assert_eq!(status, 204);
    }
    let frames = v5c.until_closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].disconnect_reason(), 0x98, "administrative action");
    assert!(v4c.until_closed().await.is_empty());
    assert!(!listed(&node, "kick5").await && !listed(&node, "kick4").await);
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn client_ids_with_spaces_colons_and_unicode_are_accepted() {
    let node = node_with(|_| {}).await;
    for id in ["clean retained", "a:b", "ü-1"] {
        for c in [
            Connect::v5(id, ALICE, ALICE_PW),
            Connect::v4(id, ALICE, ALICE_PW),
        ] {
            let (mut raw, _, _) = Raw::subscribed(&node, &c, "devices/alice/id", 1).await;
            raw.send(&publish(
                c.v5,
                "devices/alice/id",
                1,
                2,
                false,
                false,
                &Props::new(),
                id.as_bytes(),
            ))
            .await;
            let m = raw.expect(PUBLISH).await.publish(c.v5);
            assert_eq!(m.payload, id.as_bytes());
        }
    }
    bob_round_trip(&node).await;
}

#[tokio::test]
async fn client_ids_over_the_limit_are_refused() {
    let node = node_with(|c| c.mqtt.max_client_id_bytes = 32).await;
    let long = "x".repeat(33);
    let (mut raw, ack) = Raw::connect(&node, &Connect::v5(&long, ALICE, ALICE_PW)).await;
    assert_eq!(ack.expect("CONNACK").connack(true).1, 0x85);
    assert!(raw.until_closed().await.is_empty());
    let (mut raw, ack) = Raw::connect(&node, &Connect::v4(&long, ALICE, ALICE_PW)).await;
    assert_eq!(ack.expect("CONNACK").connack(false).1, 0x02);
    assert!(raw.until_closed().await.is_empty());
    // 32 bytes, some of them multi-byte, is fine.
    let at_limit = format!("{}{}", "ü".repeat(10), "y".repeat(12));
    assert_eq!(at_limit.len(), 32);
    Raw::connected(&node, &Connect::v5(&at_limit, ALICE, ALICE_PW)).await;
    bob_round_trip(&node).await;
}

/// Publishes `count` QoS 1 messages `{tag}-{i}` to `topic`, keeping up to
/// `window` unacknowledged; returns the payloads PUBACKed with success.
async fn publish_qos1(
    mut p: Raw,
    topic: &str,
    tag: &str,
    count: usize,
    window: usize,
) -> BTreeSet<String> {
    let mut acked = BTreeSet::new();
    let mut in_flight = std::collections::HashMap::new();
    let mut next = 0usize;
    let mut id = 0u16;
    while next < count || !in_flight.is_empty() {
        while in_flight.len() < window && next < count {
            id = id % 60_000 + 1;
            let payload = format!("{tag}-{next}");
            p.send(&publish(
                p.v5,
                topic,
                1,
                id,
                false,
                false,
                &Props::new(),
                payload.as_bytes(),
            ))
            .await;
            in_flight.insert(id, payload);
            next += 1;
        }
        let f = tokio::time::timeout(Duration::from_secs(60), p.recv())
            .await
            .expect("PUBACK within 60 s")
            .expect("publisher stays connected");
        if f.kind == PUBACK {
            let payload = in_flight
                .remove(&f.pkid())
                .expect("PUBACK of a message in flight");
            if f.ack_reason() < 0x80 {
                acked.insert(payload);
            }
        }
    }
    acked
}

/// A persistent subscriber that does not read while `published` QoS 1
/// messages are PUBACKed gets every one on reconnect, or the difference is
/// counted as dropped.
async fn persistent_subscriber_case(max_queued: usize, published: usize) -> (usize, usize) {
    let node = node_with(|c| {
        c.mqtt.max_queued_messages = max_queued;
        c.mqtt.max_publisher_pause_ms = 300;
    })
    .await;
    let mut c = Connect::v5("sleepy", ALICE, ALICE_PW).persistent(3600);
    let (sub, _, _) = Raw::subscribed(&node, &c, "devices/alice/q/#", 1).await;
    // From here the subscriber reads nothing until it reconnects.
    let (p, _) = Raw::connected(&node, &Connect::v5("pub", ALICE, ALICE_PW)).await;
    let acked = publish_qos1(p, "devices/alice/q/x", "m", published, 20).await;
    assert_eq!(
        acked.len(),
        published,
        "every publish was PUBACKed with success"
    );
    drop(sub);

    c.clean = false;
    // Nothing is published from here on: the drops are final.
    let dropped = metric(&node, DROPPED_QOS1).await.unwrap_or(0.0) as usize;
    let (mut sub, present) = Raw::connected(&node, &c).await;
    assert!(present);
    let mut got = BTreeSet::new();
    while got.len() + dropped < published {
        let m = sub.expect(PUBLISH).await.publish(true);
        sub.send(&ack(PUBACK, m.pkid, None)).await;
        let payload = String::from_utf8(m.payload).unwrap();
        assert!(acked.contains(&payload), "{payload} was published");
        assert!(got.insert(payload), "delivered once");
    }
    // A sentinel: nothing more (no duplicate, nothing uncounted) was queued.
    let (mut p, _) = Raw::connected(&node, &Connect::v5("pub2", ALICE, ALICE_PW)).await;
    p.send(&publish(
        true,
        "devices/alice/q/x",
        1,
        1,
        false,
        false,
        &Props::new(),
        b"end",
    ))
    .await;
    p.expect(PUBACK).await;
    let m = sub.expect(PUBLISH).await.publish(true);
    assert_eq!(m.payload, b"end", "nothing beyond the count arrived");
    assert_eq!(
        metric(&node, DROPPED_QOS1).await.unwrap_or(0.0) as usize,
        dropped
    );
    assert_eq!(
        got.len() + dropped,
        published,
        "received {} + dropped {dropped}",
        got.len()
    );
    bob_round_trip(&node).await;
    (got.len(), dropped)
}

#[tokio::test]
async fn a_persistent_subscriber_gets_every_acked_message_on_reconnect() {
    let (got, dropped) = persistent_subscriber_case(5_000, 2_000).await;
    assert_eq!((got, dropped), (2_000, 0));
}

#[tokio::test]
async fn queue_bound_drops_are_counted() {
    let (got, dropped) = persistent_subscriber_case(200, 2_000).await;
    assert!(dropped > 0, "a 200-message bound forced drops");
    assert!(got >= 200, "the queue kept its bound's worth: {got}");
}

#[tokio::test]
async fn fan_in_to_a_slow_subscriber_loses_nothing_uncounted() {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 5_000;
    let node = node_with(|_| {}).await;
    let (mut sub, _, _) =
        Raw::subscribed(&node, &Connect::v4("slow", BOB, BOB_PW), "public/load/#", 1).await;

    let mut publishers = Vec::new();
    for n in 0..PUBLISHERS {
        let (p, _) = Raw::connected(&node, &Connect::v4(&format!("p{n}"), ALICE, ALICE_PW)).await;
        publishers.push(tokio::spawn(async move {
            publish_qos1(p, &format!("public/load/{n}"), &format!("p{n}"), EACH, 32).await
        }));
    }
    // Read slowly: a pause after every 100 messages.
    let mut got = BTreeSet::new();
    let reading = async {
        let mut n = 0usize;
        while !publishers.iter().all(|p| p.is_finished()) {
            let f = match sub.recv_within(Duration::from_millis(200)).await {
                Ok(Some(f)) if f.kind == PUBLISH => f,
                Ok(Some(_)) | Err(()) => continue,
                Ok(None) => panic!("subscriber disconnected"),
            };
            let m = f.publish(false);
            sub.send(&ack(PUBACK, m.pkid, None)).await;
            got.insert(String::from_utf8(m.payload).unwrap());
            n += 1;
            if n.is_multiple_of(100) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(240), reading)
        .await
        .expect("publishers finished");
    let mut acked = BTreeSet::new();
    for p in publishers {
        acked.extend(p.await.unwrap());
    }
    // Drain what is left until everything acked is received or counted as dropped.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let dropped = metric(&node, DROPPED_QOS1).await.unwrap_or(0.0) as usize;
        let received = acked.iter().filter(|m| got.contains(*m)).count();
        if received + dropped >= acked.len() {
            assert_eq!(
                received + dropped,
                acked.len(),
                "received {received} + dropped {dropped}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "received {received} + dropped {dropped} of {}",
            acked.len()
        );
        match sub.recv_within(Duration::from_millis(500)).await {
            Ok(Some(f)) if f.kind == PUBLISH => {
                let m = f.publish(false);
                sub.send(&ack(PUBACK, m.pkid, None)).await;
                got.insert(String::from_utf8(m.payload).unwrap());
            }
            Ok(Some(_)) | Err(()) => {}
            Ok(None) => panic!("subscriber disconnected"),
        }
    }
    assert!(
        got.iter().all(|m| acked.contains(m)),
        "nothing unacked or invented arrived"
    );
    bob_round_trip(&node).await;
}
