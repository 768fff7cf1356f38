//! The session state machine, without sockets: QoS flows, the in-flight
//! window, resends, queue bounds, expiry, packet size and topic aliases.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use parley_engine::message::QoS;
use parley_engine::session::{
    ConnectionParams, Delivery, Enqueued, PubRecOutcome, Session, SessionLimits, Violation,
};
use rumqttc::v5::mqttbytes::v5::Packet as V5Packet;
use rumqttc::v5::mqttbytes::QoS as WireQoS;
use support::*;

fn delivery(topic: &str, payload: &str, qos: QoS) -> Delivery {
    Delivery {
        message: std::sync::Arc::new(message(topic, payload, qos)),
        qos,
        retain: false,
        subscription_ids: Vec::new(),
    }
}

fn drain(session: &mut Session) -> BytesMut {
    let mut out = BytesMut::new();
    while session.wants_transmit() {
        session.poll_transmit(now(), &mut out, |_| {});
    }
    out
}

#[test]
fn inflight_window_follows_the_clients_receive_maximum() {
    let mut s = Session::new(SessionLimits::default());
    s.attach(v5(2), &mut BytesMut::new());
    for i in 0..5 {
        assert_eq!(
            s.enqueue(delivery("a", &i.to_string(), QoS::AtLeastOnce), now()),
            Enqueued::Queued
        );
    }
    let sent = publishes_v5(&decode_v5(&drain(&mut s)));
    assert_eq!(sent.len(), 2, "only Receive Maximum deliveries in flight");
    assert_eq!(s.inflight(), 2);
    assert!(s.on_puback(sent[0].pkid));
    assert!(!s.on_puback(sent[0].pkid), "a second PUBACK is ignored");
    let next = publishes_v5(&decode_v5(&drain(&mut s)));
    assert_eq!(next.len(), 1);
    assert_eq!(&next[0].payload[..], b"2", "in order");
}

#[test]
fn qos0_is_not_held_by_the_window() {
    let mut s = Session::new(SessionLimits::default());
    s.attach(v5(1), &mut BytesMut::new());
    s.enqueue(delivery("a", "q1", QoS::AtLeastOnce), now());
    s.enqueue(delivery("a", "q1b", QoS::AtLeastOnce), now());
    let first = publishes_v5(&decode_v5(&drain(&mut s)));
    assert_eq!(first.len(), 1);
    // The window is full, a QoS 1 waits in front: the queue keeps order, so
    // QoS 0 behind it waits too, and goes as soon as the window opens.
    s.enqueue(delivery("a", "q0", QoS::AtMostOnce), now());
    assert!(!s.wants_transmit());
    s.on_puback(first[0].pkid);
    let rest = publishes_v5(&decode_v5(&drain(&mut s)));
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[1].qos, WireQoS::AtMostOnce);
}

#[test]
fn resumed_session_resends_in_flight_with_dup_then_pubrel() {
    let mut s = Session::new(SessionLimits::default());
    s.attach(v5(10), &mut BytesMut::new());
    s.enqueue(delivery("a", "one", QoS::AtLeastOnce), now());
    s.enqueue(delivery("a", "two", QoS::ExactlyOnce), now());
    let sent = publishes_v5(&decode_v5(&drain(&mut s)));
    assert_eq!(sent.len(), 2);
    let qos2 = sent[1].pkid;
    assert_eq!(s.on_pubrec(qos2, false), PubRecOutcome::Released);
    s.detach();
    assert!(!s.wants_transmit());
    let mut resend = BytesMut::new();
    s.attach(v5(10), &mut resend);
    let packets = decode_v5(&resend);
    assert_eq!(packets.len(), 2);
    match &packets[0] {
        V5Packet::Publish(p) => {
            assert!(p.dup, "a resent PUBLISH has DUP set");
            assert_eq!(p.pkid, sent[0].pkid, "with its original packet id");
            assert_eq!(&p.payload[..], b"one");
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    assert!(
        matches!(&packets[1], V5Packet::PubRel(r) if r.pkid == qos2),
        "a QoS 2 past PUBREC is resumed with PUBREL"
    );
    assert!(s.on_pubcomp(qos2));
    assert!(s.on_puback(sent[0].pkid));
    assert_eq!(s.inflight(), 0);
}

#[test]
fn full_queue_drops_qos0_first_and_counts_qos1_loss() {
    let limits = SessionLimits {
        max_queued_messages: 3,
        ..SessionLimits::default()
    };
    let mut s = Session::new(limits);
    assert_eq!(
        s.enqueue(delivery("a", "0a", QoS::AtMostOnce), now()),
        Enqueued::Queued
    );
    assert_eq!(
        s.enqueue(delivery("a", "1a", QoS::AtLeastOnce), now()),
        Enqueued::Queued
    );
    assert_eq!(
        s.enqueue(delivery("a", "1b", QoS::AtLeastOnce), now()),
        Enqueued::Queued
    );
    // Full: a new QoS 1 message pushes the queued QoS 0 one out.
    assert_eq!(
        s.enqueue(delivery("a", "1c", QoS::AtLeastOnce), now()),
        Enqueued::Queued
    );
    assert_eq!(s.stats().dropped_qos0, 1);
    // Full of QoS 1: a new QoS 0 message is dropped, then a QoS 1 one is lost.
    assert_eq!(
        s.enqueue(delivery("a", "0b", QoS::AtMostOnce), now()),
        Enqueued::DroppedQos0
    );
    assert_eq!(
        s.enqueue(delivery("a", "1d", QoS::AtLeastOnce), now()),
        Enqueued::DroppedQos12
    );
    assert_eq!(s.stats().dropped_qos12, 1);
    assert_eq!(s.queued(), 3);
}

#[test]
fn byte_bound_applies_too() {
    let limits = SessionLimits {
        max_queued_bytes: 300,
        ..SessionLimits::default()
    };
    let mut s = Session::new(limits);
    let big = "x".repeat(150);
    assert_eq!(
        s.enqueue(delivery("a", &big, QoS::AtLeastOnce), now()),
        Enqueued::Queued
    );
    assert_eq!(
        s.enqueue(delivery("a", &big, QoS::AtLeastOnce), now()),
        Enqueued::DroppedQos12
    );
}

#[test]
fn expired_messages_are_dropped_and_remaining_expiry_forwarded() {
    let mut s = Session::new(SessionLimits::default());
    let t0 = now();
    let mut short = message("a", "short", QoS::AtLeastOnce);
    short.expires_at = Some(t0 + Duration::from_secs(1));
    let mut long = message("a", "long", QoS::AtLeastOnce);
    long.expires_at = Some(t0 + Duration::from_secs(100));
    for m in [short, long] {
        let d = Delivery {
            message: std::sync::Arc::new(m),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
        };
        assert_eq!(s.enqueue(d, t0), Enqueued::Queued);
    }
    s.attach(v5(10), &mut BytesMut::new());
    let mut out = BytesMut::new();
    s.poll_transmit(t0 + Duration::from_secs(30), &mut out, |_| {});
    let sent = publishes_v5(&decode_v5(&out));
    assert_eq!(sent.len(), 1, "the expired one is dropped");
    assert_eq!(&sent[0].payload[..], b"long");
    let expiry = sent[0]
        .properties
        .as_ref()
        .and_then(|p| p.message_expiry_interval);
    assert_eq!(expiry, Some(70), "the remaining interval is forwarded");
    assert_eq!(s.stats().expired, 1);
}

#[test]
fn messages_over_the_clients_maximum_packet_size_are_discarded() {
    let mut s = Session::new(SessionLimits::default());
    let params = ConnectionParams {
        max_packet_size: 64,
        ..v5(10)
    };
    s.attach(params, &mut BytesMut::new());
    s.enqueue(delivery("a", &"x".repeat(100), QoS::AtLeastOnce), now());
    s.enqueue(delivery("a", "small", QoS::AtLeastOnce), now());
    let out = drain(&mut s);
    assert!(out.len() <= 64);
    let sent = publishes_v5(&decode_v5(&out));
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0].payload[..], b"small");
    assert_eq!(s.stats().dropped_too_large, 1);
    assert_eq!(s.inflight(), 1, "the discarded one took no packet id");
}

#[test]
fn outbound_topic_aliases_replace_repeated_topics() {
    let mut s = Session::new(SessionLimits::default());
    let params = ConnectionParams {
        topic_alias_maximum: 1,
        ..v5(10)
    };
    s.attach(params, &mut BytesMut::new());
    for topic in ["sensors/1", "sensors/1", "sensors/2", "sensors/1"] {
        s.enqueue(delivery(topic, "v", QoS::AtMostOnce), now());
    }
    let sent = publishes_v5(&decode_v5(&drain(&mut s)));
    let seen: Vec<(String, Option<u16>)> = sent
        .iter()
        .map(|p| {
            (
                String::from_utf8(p.topic.to_vec()).unwrap(),
                p.properties.as_ref().and_then(|p| p.topic_alias),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("sensors/1".to_owned(), Some(1)),
            (String::new(), Some(1)),
            ("sensors/2".to_owned(), Some(1)),
            ("sensors/1".to_owned(), Some(1)),
        ],
        "alias 1 is set, used, then rebound"
    );
}

#[test]
fn v4_clients_get_no_properties() {
    let mut s = Session::new(SessionLimits::default());
    s.attach(v4(), &mut BytesMut::new());
    let mut m = message("a/b", "hi", QoS::AtLeastOnce);
    m.properties.user_properties = vec![("k".into(), "v".into())];
    s.enqueue(
        Delivery {
            message: std::sync::Arc::new(m),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![7],
        },
        now(),
    );
    let packets = decode_v4(&drain(&mut s));
    assert!(
        matches!(&packets[0], rumqttc::mqttbytes::v4::Packet::Publish(p) if p.pkid > 0 && &p.payload[..] == b"hi")
    );
}

#[test]
fn inbound_topic_aliases() {
    let limits = SessionLimits {
        topic_alias_maximum: 4,
        ..SessionLimits::default()
    };
    let mut s = Session::new(limits);
    s.attach(v5(10), &mut BytesMut::new());
    let named = bytes::Bytes::from_static(b"room/1");
    let empty = bytes::Bytes::new();
    assert_eq!(
        s.resolve_topic(&empty, Some(2)),
        Err(Violation::UnknownAlias)
    );
    assert_eq!(&*s.resolve_topic(&named, Some(2)).unwrap(), "room/1");
    assert_eq!(&*s.resolve_topic(&empty, Some(2)).unwrap(), "room/1");
    assert_eq!(
        s.resolve_topic(&named, Some(5)),
        Err(Violation::TopicAliasInvalid)
    );
    assert_eq!(
        s.resolve_topic(&named, Some(0)),
        Err(Violation::TopicAliasInvalid)
    );
    assert_eq!(s.resolve_topic(&empty, None), Err(Violation::UnknownAlias));
    // Aliases belong to the connection.
    s.detach();
    s.attach(v5(10), &mut BytesMut::new());
    assert_eq!(
        s.resolve_topic(&empty, Some(2)),
        Err(Violation::UnknownAlias)
    );
}

#[test]
fn incoming_qos2_is_exactly_once_and_bounded() {
    let limits = SessionLimits {
        receive_maximum: 2,
        ..SessionLimits::default()
    };
    let mut s = Session::new(limits);
    assert!(!s.is_qos2_pending(20));
    s.begin_qos2(20).unwrap();
    s.begin_qos2(21).unwrap();
    assert!(s.is_qos2_pending(20), "a resend of 20 is recognised");
    assert_eq!(s.begin_qos2(22), Err(Violation::ReceiveMaximumExceeded));
    assert!(s.on_pubrel(21), "PUBREL 21 releases 21 only");
    assert!(s.is_qos2_pending(20));
    assert!(!s.on_pubrel(21), "a second PUBREL 21 is unknown");
    assert!(s.on_pubrel(20));
    assert_eq!(s.qos2_pending(), 0);
}

#[test]
fn pubrec_for_an_unknown_packet_id_is_reported() {
    let mut s = Session::new(SessionLimits::default());
    s.attach(v5(10), &mut BytesMut::new());
    assert_eq!(s.on_pubrec(9, false), PubRecOutcome::Unknown);
    s.enqueue(delivery("a", "x", QoS::ExactlyOnce), now());
    let sent = publishes_v5(&decode_v5(&drain(&mut s)));
    assert_eq!(s.on_pubrec(sent[0].pkid, true), PubRecOutcome::Refused);
    assert_eq!(s.inflight(), 0, "a refused QoS 2 delivery ends its flow");
}

#[test]
fn subscription_ids_and_user_properties_are_forwarded() {
    let mut s = Session::new(SessionLimits::default());
    s.attach(v5(10), &mut BytesMut::new());
    let mut m = message("a", "x", QoS::AtMostOnce);
    m.properties.user_properties = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
    m.properties.content_type = Some("text/plain".into());
    m.properties.correlation_data = Some(bytes::Bytes::from_static(b"c1"));
    m.properties.response_topic = Some("reply/here".into());
    m.properties.payload_format_indicator = Some(1);
    s.enqueue(
        Delivery {
            message: std::sync::Arc::new(m),
            qos: QoS::AtMostOnce,
            retain: true,
            subscription_ids: vec![3, 9],
        },
        now(),
    );
    let sent = publishes_v5(&decode_v5(&drain(&mut s)));
    let p = sent[0].properties.clone().unwrap();
    assert!(sent[0].retain);
    assert_eq!(p.subscription_identifiers, vec![3, 9]);
    assert_eq!(
        p.user_properties,
        vec![("a".into(), "1".into()), ("a".into(), "2".into())]
    );
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"c1"[..]));
    assert_eq!(p.payload_format_indicator, Some(1));
}

#[test]
fn packet_ids_skip_those_still_in_flight() {
    let mut s = Session::new(SessionLimits {
        max_inflight: 3,
        ..SessionLimits::default()
    });
    s.attach(v5(3), &mut BytesMut::new());
    let mut seen = std::collections::HashSet::new();
    for round in 0..70_000u32 {
        s.enqueue(delivery("a", "x", QoS::AtLeastOnce), now());
        let sent = publishes_v5(&decode_v5(&drain(&mut s)));
        for p in &sent {
            assert_ne!(p.pkid, 0);
            if round % 2 == 0 {
                assert!(s.on_puback(p.pkid));
            } else {
                seen.insert(p.pkid);
            }
        }
        if seen.len() >= 2 {
            for pkid in seen.drain() {
                s.on_puback(pkid);
            }
        }
    }
}
