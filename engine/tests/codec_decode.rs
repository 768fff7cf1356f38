//! Decoding of client packets through `parley_engine::codec::Codec`: what
//! rumqttd gets wrong on its own (panics, lenient CONNECT, reason-only
//! DISCONNECT) and that valid packets still decode to the expected values.

use bytes::{Bytes, BytesMut};
use parley_engine::codec::{Codec, DecodeError, Incoming, PublishMeta, Version};
use rumqttd::protocol::{
    Connect, ConnectProperties, Disconnect, DisconnectProperties, DisconnectReasonCode, Filter,
    LastWill, LastWillProperties, Login, Packet, PubAck, PubAckProperties, PubAckReason, PubComp,
    PubCompProperties, PubCompReason, PubRec, PubRecProperties, PubRecReason, PubRel,
    PubRelProperties, PubRelReason, QoS, RetainForwardRule, Subscribe, SubscribeProperties,
    Unsubscribe,
};

/// A frame: `byte1`, the remaining length of `body`, then `body`.
fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![byte1];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        v.push(b);
        if len == 0 {
            break;
        }
    }
    v.extend_from_slice(body);
    v
}

/// A two-byte-length-prefixed string.
fn s(text: &str) -> Vec<u8> {
    let mut v = (text.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(text.as_bytes());
    v
}

/// A property section: variable-byte length, then `props`.
fn props(props: &[u8]) -> Vec<u8> {
    assert!(props.len() < 128);
    let mut v = vec![props.len() as u8];
    v.extend_from_slice(props);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Decodes one frame that must be consumed whole.
fn decode(version: Version, bytes: &[u8]) -> Result<Incoming, DecodeError> {
    let codec = Codec::new(version, 1 << 20);
    let mut buf = BytesMut::from(bytes);
    let incoming = codec.decode(&mut buf)?.expect("complete frame");
    assert!(buf.is_empty(), "frame not consumed whole: {:x?}", &buf[..]);
    Ok(incoming)
}

fn packet(version: Version, bytes: &[u8]) -> Packet {
    match decode(version, bytes) {
        Ok(incoming) => incoming.packet,
        Err(e) => panic!("{bytes:x?} refused: {e}"),
    }
}

fn protocol_error(version: Version, bytes: &[u8]) -> bool {
    matches!(decode(version, bytes), Err(DecodeError::Protocol(_)))
}

fn malformed(version: Version, bytes: &[u8]) -> bool {
    matches!(decode(version, bytes), Err(DecodeError::Malformed(_)))
}

/// The body of a CONNECT after the protocol level: flags, keep alive 30,
/// and `rest` (properties for v5, client id, ...).
fn connect(level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let body = cat(&[&s("MQTT"), &[level, flags, 0, 30], rest]);
    frame(0x10, &body)
}

#[test]
fn server_only_packet_types_are_refused_without_panicking() {
    for kind in [2u8, 9, 11, 13] {
        let bytes = [kind << 4, 3, 0, 1, 0];
        assert!(protocol_error(Version::V5, &bytes), "type {kind}");
        assert!(malformed(Version::V4, &bytes), "type {kind}");
    }
    // AUTH: Parley has no enhanced authentication.
    assert!(protocol_error(Version::V5, &[0xF0, 2, 0x18, 0]));
    assert!(malformed(Version::V4, &[0xF0, 0]));
    assert!(malformed(Version::V5, &[0x00, 0]));
}

#[test]
fn errors_carry_their_disconnect_reason() {
    let codec = Codec::new(Version::V5, 16);
    let err = codec
        .decode(&mut BytesMut::from(&[0x30u8, 0x80, 0x01][..]))
        .unwrap_err();
    assert_eq!(err, DecodeError::TooLarge(128));
    assert_eq!(err.reason_code(), DisconnectReasonCode::PacketTooLarge);
    let err = decode(Version::V5, &[0x20, 3, 0, 0, 0]).unwrap_err();
    assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
    let err = decode(Version::V5, &[0xC0, 1, 0]).unwrap_err();
    assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
}

#[test]
fn oversize_is_refused_from_the_header_alone() {
    let codec = Codec::new(Version::V4, 1000);
    let mut buf = BytesMut::from(&[0x30u8, 0xFF, 0xFF, 0x03][..]);
    assert_eq!(codec.decode(&mut buf), Err(DecodeError::TooLarge(65_535)));
    let mut buf = BytesMut::from(&[0x30u8, 0xE8, 0x07][..]);
    assert_eq!(codec.decode(&mut buf), Ok(None), "1000 bytes is allowed");
}

#[test]
fn incomplete_frames_wait_and_leave_the_buffer_alone() {
    let full = connect(5, 0x02, &cat(&[&props(&[0x21, 0, 10]), &s("client")]));
    let codec = Codec::new(Version::V5, 1024);
    for cut in 0..full.len() {
        let mut buf = BytesMut::from(&full[..cut]);
        assert_eq!(codec.decode(&mut buf), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut);
    }
    assert!(codec.decode(&mut BytesMut::from(&full[..])).is_ok());
}

#[test]
fn v4_connect_decodes_with_will_and_login() {
    let rest = cat(&[&s("c1"), &s("will/t"), &s("bye"), &s("user"), &s("pass")]);
    // user, password, will retain, will QoS 1, will, clean session
    let bytes = connect(4, 0b1110_1110, &rest);
    assert_eq!(
        packet(Version::V4, &bytes),
        Packet::Connect(
            Connect {
                keep_alive: 30,
                client_id: "c1".into(),
                clean_session: true
            },
            None,
            Some(LastWill {
                topic: Bytes::from_static(b"will/t"),
                message: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true
            }),
            None,
            Some(Login {
                username: "user".into(),
                password: "pass".into()
            })
        )
    );
}

#[test]
fn v5_connect_decodes_with_properties() {
    let connect_props = props(&cat(&[
        &[0x11, 0, 0, 0, 60],            // session expiry
        &[0x21, 0, 20],                  // receive maximum
        &[0x27, 0, 0, 0x10, 0],          // maximum packet size
        &[0x22, 0, 5],                   // topic alias maximum
        &[0x26, 0, 1, b'a', 0, 1, b'1'], // user property
        &[0x26, 0, 1, b'a', 0, 1, b'2'], // repeated user property
    ]));
    let will_props = props(&[0x18, 0, 0, 0, 9, 0x01, 1]);
    let rest = cat(&[
        &connect_props,
        &s("c1"),
        &will_props,
        &s("w"),
        &s("m"),
        &s("u"),
    ]);
    let bytes = connect(5, 0b1000_0100, &rest);
    assert_eq!(
        packet(Version::V5, &bytes),
        Packet::Connect(
            Connect {
                keep_alive: 30,
                client_id: "c1".into(),
                clean_session: false
            },
            Some(ConnectProperties {
                session_expiry_interval: Some(60),
                receive_maximum: Some(20),
                max_packet_size: Some(4096),
                topic_alias_max: Some(5),
                request_response_info: None,
                request_problem_info: None,
                user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
                authentication_method: None,
                authentication_data: None
            }),
            Some(LastWill {
                topic: Bytes::from_static(b"w"),
                message: Bytes::from_static(b"m"),
                qos: QoS::AtMostOnce,
                retain: false
            }),
            Some(LastWillProperties {
                delay_interval: Some(9),
                payload_format_indicator: Some(1),
                message_expiry_interval: None,
                content_type: None,
                response_topic: None,
                correlation_data: None,
                user_properties: vec![]
            }),
            Some(Login {
                username: "u".into(),
                password: String::new()
            })
        )
    );
}

#[test]
fn connect_rules_rumqttd_skips_are_enforced() {
    let client = s("c");
    for version in [Version::V4, Version::V5] {
        let (level, empty): (u8, &[u8]) = match version {
            Version::V4 => (4, &[]),
            Version::V5 => (5, &[0]),
        };
        let ok = connect(level, 0x02, &cat(&[empty, &client]));
        assert!(decode(version, &ok).is_ok());
        // Reserved flag bit 0.
        assert!(malformed(
            version,
            &connect(level, 0x03, &cat(&[empty, &client]))
        ));
        // Will QoS / retain without the will flag.
        assert!(malformed(
            version,
            &connect(level, 0x12, &cat(&[empty, &client]))
        ));
        assert!(malformed(
            version,
            &connect(level, 0x22, &cat(&[empty, &client]))
        ));
        // Will QoS 3.
        let will = cat(&[empty, &client, empty, &s("t"), &s("m")]);
        assert!(malformed(version, &connect(level, 0x1E, &will)));
        assert!(decode(version, &connect(level, 0x0E, &will)).is_ok());
        // Trailing garbage after the last field.
        assert!(malformed(
            version,
            &connect(level, 0x02, &cat(&[empty, &client, &[0]]))
        ));
    }
    // 3.1.1: password without user name.
    assert!(malformed(
        Version::V4,
        &connect(4, 0x42, &cat(&[&client, &s("p")]))
    ));
    // The protocol level must match the connection's.
    assert!(protocol_error(
        Version::V4,
        &connect(5, 0x02, &cat(&[&[0], &client[..]]))
    ));
}

#[test]
fn v5_connect_property_rules_are_enforced() {
    let with = |p: &[u8]| connect(5, 0x02, &cat(&[&props(p), &s("c")]));
    assert!(
        protocol_error(Version::V5, &with(&[0x21, 0, 0])),
        "receive maximum 0"
    );
    assert!(
        protocol_error(Version::V5, &with(&[0x27, 0, 0, 0, 0])),
        "max packet size 0"
    );
    assert!(protocol_error(
        Version::V5,
        &with(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1])
    ));
    assert!(protocol_error(
        Version::V5,
        &with(&[0x22, 0, 1, 0x22, 0, 1])
    ));
    assert!(
        protocol_error(Version::V5, &with(&[0x23, 0, 1])),
        "topic alias in CONNECT"
    );
    assert!(
        protocol_error(Version::V5, &with(&[0x19, 2])),
        "request response info 2"
    );
    assert!(
        protocol_error(Version::V5, &with(&[0x16, 0, 0])),
        "auth data without method"
    );
    assert!(
        malformed(Version::V5, &with(&[0x05, 0])),
        "unknown property"
    );
    assert!(malformed(Version::V5, &with(&[0x21, 0])), "truncated value");
    // A duplicate inside the will properties.
    let will = cat(&[
        &props(&[]),
        &s("c"),
        &props(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1]),
        &s("t"),
        &s("m"),
    ]);
    assert!(protocol_error(Version::V5, &connect(5, 0x06, &will)));
}

#[test]
fn publish_reports_qos_packet_id_and_dup() {
    let body = cat(&[&s("a/b"), &[0x12, 0x34], b"hi"]);
    let incoming = decode(Version::V4, &frame(0x3D, &body)).unwrap();
    assert_eq!(
        incoming.publish,
        Some(PublishMeta {
            qos: 2,
            pkid: 0x1234,
            dup: true
        })
    );
    let Packet::Publish(publish, None) = incoming.packet else {
        panic!("not a publish: {:?}", incoming.packet);
    };
    assert!(publish.retain);
    assert_eq!(&publish.topic[..], b"a/b");
    assert_eq!(&publish.payload[..], b"hi");

    let body = cat(&[&s(""), &props(&[0x23, 0, 3, 0x02, 0, 0, 0, 9]), b"x"]);
    let incoming = decode(Version::V5, &frame(0x30, &body)).unwrap();
    assert_eq!(
        incoming.publish,
        Some(PublishMeta {
            qos: 0,
            pkid: 0,
            dup: false
        })
    );
    let Packet::Publish(publish, Some(properties)) = incoming.packet else {
        panic!("no properties: {:?}", incoming.packet);
    };
    assert_eq!(properties.topic_alias, Some(3));
    assert_eq!(properties.message_expiry_interval, Some(9));
    assert_eq!(&publish.payload[..], b"x");
}

#[test]
fn publish_rules_are_enforced() {
    let body = cat(&[&s("t"), &[0, 1]]);
    assert!(malformed(Version::V4, &frame(0x36, &body)), "QoS 3");
    assert!(
        malformed(Version::V4, &frame(0x38, &s("t"))),
        "DUP on QoS 0"
    );
    assert!(
        malformed(Version::V4, &frame(0x32, &cat(&[&s("t"), &[0, 0]]))),
        "pkid 0"
    );
    assert!(
        malformed(Version::V4, &frame(0x30, &[0, 2, 0xC3, 0x28])),
        "bad UTF-8"
    );
    let v5 = |p: &[u8]| frame(0x30, &cat(&[&s("t"), &props(p)]));
    assert!(decode(Version::V5, &v5(&[0x26, 0, 0, 0, 0, 0x26, 0, 0, 0, 0])).is_ok());
    assert!(
        protocol_error(Version::V5, &v5(&[0x0B, 1])),
        "subscription identifier"
    );
    assert!(
        protocol_error(Version::V5, &v5(&[0x23, 0, 0])),
        "topic alias 0"
    );
    assert!(
        protocol_error(Version::V5, &v5(&[0x23, 0, 1, 0x23, 0, 2])),
        "two aliases"
    );
    assert!(
        protocol_error(Version::V5, &v5(&[0x11, 0, 0, 0, 1])),
        "session expiry"
    );
    assert!(
        protocol_error(Version::V5, &v5(&[0x01, 2])),
        "payload format 2"
    );
    assert!(protocol_error(
        Version::V5,
        &frame(0x30, &cat(&[&s(""), &props(&[])]))
    ));
}

#[test]
fn v5_acks_with_properties_decode() {
    let p = props(&cat(&[
        &[0x1F],
        &s("why")[..],
        &[0x26],
        &s("k")[..],
        &s("v")[..],
    ]));
    let reason_string = Some("why".to_string());
    let user_properties = vec![("k".to_string(), "v".to_string())];
    let body = |code: u8| cat(&[&[0, 7, code], &p[..]]);
    assert_eq!(
        packet(Version::V5, &frame(0x40, &body(0x10))),
        Packet::PubAck(
            PubAck {
                pkid: 7,
                reason: PubAckReason::NoMatchingSubscribers
            },
            Some(PubAckProperties {
                reason_string: reason_string.clone(),
                user_properties: user_properties.clone()
            })
        )
    );
    assert_eq!(
        packet(Version::V5, &frame(0x50, &body(0x97))),
        Packet::PubRec(
            PubRec {
                pkid: 7,
                reason: PubRecReason::QuotaExceeded
            },
            Some(PubRecProperties {
                reason_string: reason_string.clone(),
                user_properties: user_properties.clone()
            })
        )
    );
    assert_eq!(
        packet(Version::V5, &frame(0x62, &body(0x92))),
        Packet::PubRel(
            PubRel {
                pkid: 7,
                reason: PubRelReason::PacketIdentifierNotFound
            },
            Some(PubRelProperties {
                reason_string: reason_string.clone(),
                user_properties: user_properties.clone()
            })
        )
    );
    assert_eq!(
        packet(Version::V5, &frame(0x70, &body(0x00))),
        Packet::PubComp(
            PubComp {
                pkid: 7,
                reason: PubCompReason::Success
            },
            Some(PubCompProperties {
                reason_string,
                user_properties
            })
        )
    );
}

#[test]
fn short_acks_decode() {
    let expected = Packet::PubAck(
        PubAck {
            pkid: 7,
            reason: PubAckReason::Success,
        },
        None,
    );
    assert_eq!(packet(Version::V4, &[0x40, 2, 0, 7]), expected);
    assert_eq!(packet(Version::V5, &[0x40, 2, 0, 7]), expected);
    assert_eq!(packet(Version::V5, &[0x40, 3, 0, 7, 0]), expected);
    assert_eq!(packet(Version::V5, &[0x40, 4, 0, 7, 0, 0]), expected);
    assert_eq!(
        packet(Version::V5, &[0x62, 3, 0, 7, 0x92]),
        Packet::PubRel(
            PubRel {
                pkid: 7,
                reason: PubRelReason::PacketIdentifierNotFound
            },
            None
        )
    );
    assert!(
        malformed(Version::V5, &[0x70, 3, 0, 7, 0x10]),
        "undefined PUBCOMP code"
    );
    assert!(
        malformed(Version::V4, &[0x50, 3, 0, 7, 0]),
        "3.1.1 has no reason code"
    );
    assert!(protocol_error(
        Version::V5,
        &[0x40, 7, 0, 7, 0, 3, 0x11, 0, 0]
    ));
}

#[test]
fn v5_disconnect_forms_decode() {
    let disconnect =
        |reason_code, properties| Packet::Disconnect(Disconnect { reason_code }, properties);
    assert_eq!(
        packet(Version::V5, &[0xE0, 0]),
        disconnect(DisconnectReasonCode::NormalDisconnection, None)
    );
    // Reason code only (remaining length 1): rumqttd fails on this one.
    assert_eq!(
        packet(Version::V5, &[0xE0, 1, 0x04]),
        disconnect(DisconnectReasonCode::DisconnectWithWillMessage, None)
    );
    assert_eq!(
        packet(Version::V5, &[0xE0, 2, 0x04, 0]),
        disconnect(DisconnectReasonCode::DisconnectWithWillMessage, None)
    );
    let body = cat(&[
        &[0x00],
        &props(&cat(&[&[0x11, 0, 0, 0, 0], &[0x1F][..], &s("bye")]))[..],
    ]);
    assert_eq!(
        packet(Version::V5, &frame(0xE0, &body)),
        disconnect(
            DisconnectReasonCode::NormalDisconnection,
            Some(DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some("bye".into()),
                user_properties: vec![],
                server_reference: None
            })
        )
    );
    assert!(malformed(Version::V5, &[0xE0, 1, 0x01]), "undefined reason");
    assert!(
        malformed(Version::V4, &[0xE0, 1, 0x00]),
        "3.1.1 DISCONNECT is empty"
    );
    assert!(malformed(Version::V5, &[0xE1, 0]), "flags");
}

#[test]
fn reason_only_disconnect_does_not_swallow_the_next_packet() {
    let codec = Codec::new(Version::V5, 1024);
    let mut buf = BytesMut::from(&[0xE0u8, 1, 0x00, 0xC0, 0][..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(Incoming {
            packet: Packet::Disconnect(..),
            ..
        }))
    ));
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(Incoming {
            packet: Packet::PingReq(_),
            ..
        }))
    ));
}

#[test]
fn subscribe_decodes_and_its_rules_are_enforced() {
    let body = cat(&[
        &[0, 5],
        &props(&[0x0B, 0x80, 0x01, 0x26, 0, 1, b'k', 0, 1, b'v']),
        &s("a/+"),
        &[0b0010_1110], // retain handling 2, RAP, no local, QoS 2
    ]);
    assert_eq!(
        packet(Version::V5, &frame(0x82, &body)),
        Packet::Subscribe(
            Subscribe {
                pkid: 5,
                filters: vec![Filter {
                    path: "a/+".into(),
                    qos: QoS::ExactlyOnce,
                    nolocal: true,
                    preserve_retain: true,
                    retain_forward_rule: RetainForwardRule::Never
                }]
            },
            Some(SubscribeProperties {
                id: Some(128),
                user_properties: vec![("k".into(), "v".into())]
            })
        )
    );
    let v5 = |p: &[u8], tail: &[u8]| frame(0x82, &cat(&[&[0, 5], &props(p), tail]));
    let filter = |options: u8| cat(&[&s("t"), &[options]]);
    assert!(protocol_error(Version::V5, &v5(&[], &[])), "no filters");
    assert!(
        malformed(Version::V5, &v5(&[], &filter(0x40))),
        "reserved bit"
    );
    assert!(
        malformed(Version::V5, &v5(&[], &filter(0x30))),
        "retain handling 3"
    );
    assert!(malformed(Version::V5, &v5(&[], &filter(0x03))), "QoS 3");
    assert!(malformed(Version::V5, &v5(&[], &s("t"))), "missing options");
    assert!(
        protocol_error(Version::V5, &v5(&[0x0B, 0], &filter(0))),
        "id 0"
    );
    assert!(
        protocol_error(Version::V5, &v5(&[0x0B, 1, 0x0B, 2], &filter(0))),
        "two ids"
    );
    assert!(
        protocol_error(Version::V5, &v5(&[0x1F, 0, 0], &filter(0))),
        "reason string"
    );
    assert!(
        protocol_error(Version::V4, &frame(0x82, &[0, 5])),
        "no filters"
    );
    assert!(malformed(
        Version::V4,
        &frame(0x82, &cat(&[&[0, 5], &filter(0x04)]))
    ));
    assert!(
        malformed(Version::V4, &frame(0x82, &cat(&[&[0, 0], &filter(0)]))),
        "pkid 0"
    );
}

#[test]
fn unsubscribe_decodes_and_needs_a_filter() {
    let body = cat(&[&[0, 6], &s("a"), &s("b/#")]);
    assert_eq!(
        packet(Version::V4, &frame(0xA2, &body)),
        Packet::Unsubscribe(
            Unsubscribe {
                pkid: 6,
                filters: vec!["a".into(), "b/#".into()]
            },
            None
        )
    );
    assert!(protocol_error(Version::V4, &frame(0xA2, &[0, 6])));
    assert!(protocol_error(Version::V5, &frame(0xA2, &[0, 6, 0])));
    assert!(malformed(Version::V4, &frame(0xA0, &body)), "flags");
    assert!(
        malformed(Version::V4, &frame(0xA2, &[0, 6, 0, 3, b'a'])),
        "truncated filter"
    );
}

#[test]
fn pingreq_must_be_empty() {
    assert_eq!(
        packet(Version::V4, &[0xC0, 0]),
        Packet::PingReq(rumqttd::protocol::PingReq)
    );
    assert!(malformed(Version::V4, &[0xC0, 1, 0]));
    assert!(malformed(Version::V5, &[0xC1, 0]));
}
