//! Parley's own PUBLISH encoder (`Codec::encode_publish`): hand-checked
//! bytes for QoS 1/2 with a packet id, round trips through rumqttd's MQTT 5
//! reader and Parley's decoder, and `publish_len` matching what is written.

use bytes::{Bytes, BytesMut};
use parley_engine::codec::{Codec, OutgoingPublish, PublishMeta, Version};
use proptest::prelude::*;
use rumqttd::protocol::{v4::V4, v5::V5, Packet, Protocol, PublishProperties};

fn encode(version: Version, p: &OutgoingPublish<'_>) -> Vec<u8> {
    let codec = Codec::new(version, usize::MAX);
    let mut buf = BytesMut::new();
    codec.encode_publish(p, &mut buf);
    assert_eq!(buf.len(), codec.publish_len(p), "publish_len");
    buf.to_vec()
}

fn outgoing<'a>(topic: &'a str, payload: &'a [u8], qos: u8, pkid: u16) -> OutgoingPublish<'a> {
    OutgoingPublish {
        topic,
        payload,
        qos,
        pkid,
        dup: false,
        retain: false,
        properties: None,
    }
}

fn all_properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(0x0102_0304),
        topic_alias: Some(7),
        response_topic: Some("re".into()),
        correlation_data: Some(Bytes::from_static(&[0xAB])),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        subscription_identifiers: vec![1, 128, 268_435_455],
        content_type: Some("ct".into()),
    }
}

#[test]
fn v4_qos1_and_qos2_with_packet_id() {
    let p = OutgoingPublish {
        dup: true,
        retain: true,
        properties: Some(&all_properties()),
        ..outgoing("a/b", b"xy", 1, 0x1234)
    };
    // Properties are ignored on 3.1.1.
    assert_eq!(
        encode(Version::V4, &p),
        [0x3B, 9, 0, 3, b'a', b'/', b'b', 0x12, 0x34, b'x', b'y']
    );
    assert_eq!(
        encode(Version::V4, &outgoing("t", b"", 2, 1)),
        [0x34, 5, 0, 1, b't', 0, 1]
    );
    assert_eq!(
        encode(Version::V4, &outgoing("t", b"p", 0, 99)),
        [0x30, 4, 0, 1, b't', b'p'],
        "no packet id at QoS 0"
    );
}

#[test]
fn v5_qos2_with_every_property() {
    let props = all_properties();
    let p = OutgoingPublish {
        dup: true,
        properties: Some(&props),
        ..outgoing("t", b"pl", 2, 0xBEEF)
    };
    let expected: Vec<u8> = [
        &[0x3C, 56][..],                 // PUBLISH QoS 2 DUP, remaining length
        &[0, 1, b't'],                   // topic
        &[0xBE, 0xEF],                   // packet id
        &[48],                           // property length
        &[0x01, 1],                      // payload format indicator
        &[0x02, 1, 2, 3, 4],             // message expiry interval
        &[0x23, 0, 7],                   // topic alias
        &[0x08, 0, 2, b'r', b'e'],       // response topic
        &[0x09, 0, 1, 0xAB],             // correlation data
        &[0x26, 0, 1, b'k', 0, 1, b'v'], // user properties, in order
        &[0x26, 0, 1, b'k', 0, 1, b'w'],
        &[0x0B, 1], // subscription identifiers
        &[0x0B, 0x80, 0x01],
        &[0x0B, 0xFF, 0xFF, 0xFF, 0x7F],
        &[0x03, 0, 2, b'c', b't'], // content type
        b"pl",
    ]
    .concat();
    assert_eq!(encode(Version::V5, &p), expected);
}

#[test]
fn v5_qos1_without_properties_and_with_alias_only() {
    assert_eq!(
        encode(Version::V5, &outgoing("t", b"x", 1, 2)),
        [0x32, 7, 0, 1, b't', 0, 2, 0, b'x']
    );
    let props = PublishProperties {
        topic_alias: Some(3),
        ..PublishProperties::default()
    };
    let p = OutgoingPublish {
        properties: Some(&props),
        ..outgoing("", b"", 1, 2)
    };
    assert_eq!(
        encode(Version::V5, &p),
        [0x32, 8, 0, 0, 0, 2, 3, 0x23, 0, 3]
    );
}

#[test]
fn long_payload_uses_a_multi_byte_length() {
    let payload = vec![7u8; 200];
    let bytes = encode(Version::V4, &outgoing("t", &payload, 0, 0));
    // 2 + 1 + 200 = 203 = 0xCB 0x01
    assert_eq!(&bytes[..5], &[0x30, 0xCB, 0x01, 0, 1]);
    assert_eq!(bytes.len(), 3 + 203);
}

#[test]
fn v5_qos0_round_trips_through_rumqttd() {
    let props = all_properties();
    let p = OutgoingPublish {
        retain: true,
        properties: Some(&props),
        ..outgoing("a/b", b"payload", 0, 0)
    };
    let mut buf = BytesMut::from(&encode(Version::V5, &p)[..]);
    let Packet::Publish(publish, Some(read)) = V5.read_mut(&mut buf, usize::MAX).unwrap() else {
        panic!("not a publish with properties");
    };
    assert!(buf.is_empty());
    assert_eq!(read, props);
    assert!(publish.retain);
    assert_eq!(&publish.topic[..], b"a/b");
    assert_eq!(&publish.payload[..], b"payload");
}

#[test]
fn qos1_round_trips_through_parley_decoder() {
    for version in [Version::V4, Version::V5] {
        let props = PublishProperties {
            response_topic: Some("r".into()),
            ..PublishProperties::default()
        };
        let p = OutgoingPublish {
            dup: true,
            properties: Some(&props),
            ..outgoing("x", b"1", 1, 77)
        };
        let codec = Codec::new(version, 1024);
        let mut buf = BytesMut::from(&encode(version, &p)[..]);
        let incoming = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            incoming.publish,
            Some(PublishMeta {
                qos: 1,
                pkid: 77,
                dup: true
            })
        );
        let Packet::Publish(_, read) = incoming.packet else {
            panic!("not a publish");
        };
        let expected = match version {
            Version::V4 => None,
            Version::V5 => Some(props),
        };
        assert_eq!(read, expected);
    }
}

#[test]
fn rumqttd_miscounts_subscription_identifiers() {
    // Correct bytes (checked above), but rumqttd's reader counts each
    // identifier one byte too long and stops before the third.
    let props = PublishProperties {
        subscription_identifiers: vec![1, 2, 3],
        ..PublishProperties::default()
    };
    let p = OutgoingPublish {
        properties: Some(&props),
        ..outgoing("t", b"", 0, 0)
    };
    let bytes = encode(Version::V5, &p);
    assert_eq!(bytes, [0x30, 10, 0, 1, b't', 6, 0x0B, 1, 0x0B, 2, 0x0B, 3]);
    let mut buf = BytesMut::from(&bytes[..]);
    let Ok(Packet::Publish(publish, Some(read))) = V5.read_mut(&mut buf, usize::MAX) else {
        panic!("rumqttd could not read it at all");
    };
    assert_eq!(read.subscription_identifiers, [1, 2]);
    assert_eq!(&publish.payload[..], [0x0B, 3]);
}

/// Any `PublishProperties` rumqttd can represent and Parley can encode,
/// with up to `max_ids` subscription identifiers.
fn properties(max_ids: usize) -> impl Strategy<Value = PublishProperties> {
    (
        proptest::option::of(0u8..=1),
        proptest::option::of(any::<u32>()),
        proptest::option::of(1u16..),
        proptest::option::of("[a-z/]{0,20}"),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        proptest::collection::vec(("\\PC{0,8}", "\\PC{0,8}"), 0..4),
        proptest::collection::vec(1usize..=268_435_455, 0..=max_ids),
        proptest::option::of("[a-z/]{0,10}"),
    )
        .prop_map(
            |(pfi, expiry, alias, response, corr, user, ids, ct)| PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: expiry,
                topic_alias: alias,
                response_topic: response,
                correlation_data: corr.map(Bytes::from),
                user_properties: user,
                subscription_identifiers: ids,
                content_type: ct,
            },
        )
}

proptest! {
    #[test]
    fn publish_len_is_the_bytes_written(
        topic in "\\PC{0,40}",
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        qos in 0u8..=2,
        pkid in 1u16..,
        dup: bool,
        retain: bool,
        props in proptest::option::of(properties(4)),
    ) {
        for version in [Version::V4, Version::V5] {
            let p = OutgoingPublish {
                topic: &topic,
                payload: &payload,
                qos,
                pkid,
                dup,
                retain,
                properties: props.as_ref(),
            };
            let codec = Codec::new(version, usize::MAX);
            let mut buf = BytesMut::from(&b"prefix"[..]);
            codec.encode_publish(&p, &mut buf);
            prop_assert_eq!(buf.len() - 6, codec.publish_len(&p));
        }
    }

    #[test]
    fn encodings_read_back_with_rumqttd(
        topic in "[a-z/]{1,20}",
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        qos in 0u8..=2,
        pkid in 1u16..,
        retain: bool,
        // rumqttd misreads three or more (see `rumqttd_miscounts_subscription_identifiers`).
        props in properties(2),
    ) {
        let p = OutgoingPublish {
            topic: &topic,
            payload: &payload,
            qos,
            pkid,
            dup: false,
            retain,
            properties: Some(&props),
        };
        for version in [Version::V4, Version::V5] {
            let mut buf = BytesMut::from(&encode(version, &p)[..]);
            let packet = match version {
                Version::V4 => V4.read_mut(&mut buf, usize::MAX),
                Version::V5 => V5.read_mut(&mut buf, usize::MAX),
            };
            prop_assert!(buf.is_empty());
            let Ok(Packet::Publish(publish, read)) = packet else {
                return Err(TestCaseError::fail(format!("{packet:?}")));
            };
            prop_assert_eq!(&publish.topic[..], topic.as_bytes());
            prop_assert_eq!(&publish.payload[..], &payload[..]);
            prop_assert_eq!(publish.retain, retain);
            let expected = match version {
                Version::V4 => None,
                Version::V5 if props == PublishProperties::default() => None,
                Version::V5 => Some(props.clone()),
            };
            prop_assert_eq!(read, expected);
        }
    }
}
