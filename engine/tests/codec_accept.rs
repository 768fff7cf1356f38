//! Parley's validation must not refuse valid packets: random valid client
//! packets, written by rumqttd's own encoders, must be accepted by
//! `parley_engine::codec::Codec::decode` and decode to exactly what
//! rumqttd's reader makes of them (and back to the packet itself).

use bytes::{Bytes, BytesMut};
use parley_engine::codec::{Codec, Version};
use proptest::prelude::*;
use rumqttd::protocol::{
    v4::V4, v5::V5, Connect, ConnectProperties, Disconnect, DisconnectProperties,
    DisconnectReasonCode, Filter, LastWill, LastWillProperties, Login, Packet, Protocol, PubAck,
    PubAckProperties, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, PubRel,
    PubRelReason, Publish, PublishProperties, QoS, RetainForwardRule, Subscribe,
    SubscribeProperties, Unsubscribe, UnsubscribeProperties,
};

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// A UTF-8 string MQTT accepts (no U+0000).
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        any::<char>().prop_filter("no null", |c| *c != '\0'),
        0..=max,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn user_properties() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((text(6), text(6)), 0..3)
}

fn binary() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(1u16..),
        proptest::option::of(1u32..),
        proptest::option::of(any::<u16>()),
        proptest::option::of(0u8..=1),
        proptest::option::of(0u8..=1),
        user_properties(),
        proptest::option::of((text(8), proptest::option::of(binary()))),
    )
        .prop_map(
            |(expiry, rmax, size, alias, rri, rpi, user, auth)| ConnectProperties {
                session_expiry_interval: expiry,
                receive_maximum: rmax,
                max_packet_size: size,
                topic_alias_max: alias,
                request_response_info: rri,
                request_problem_info: rpi,
                user_properties: user,
                authentication_method: auth.as_ref().map(|(m, _)| m.clone()),
                authentication_data: auth.and_then(|(_, d)| d),
            },
        )
}

fn will_properties() -> impl Strategy<Value = LastWillProperties> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(0u8..=1),
        proptest::option::of(any::<u32>()),
        proptest::option::of(text(8)),
        proptest::option::of(text(8)),
        proptest::option::of(binary()),
        user_properties(),
    )
        .prop_map(
            |(delay, pfi, expiry, content, response, corr, user)| LastWillProperties {
                delay_interval: delay,
                payload_format_indicator: pfi,
                message_expiry_interval: expiry,
                content_type: content,
                response_topic: response,
                correlation_data: corr,
                user_properties: user,
            },
        )
}

fn will() -> impl Strategy<Value = LastWill> {
    (text(10), binary(), qos(), any::<bool>()).prop_map(|(topic, message, qos, retain)| LastWill {
        topic: Bytes::from(topic),
        message,
        qos,
        retain,
    })
}

/// A CONNECT; 3.1.1 has no properties and needs a user name with a password.
fn connect(version: Version) -> impl Strategy<Value = Packet> {
    (
        any::<u16>(),
        text(12),
        any::<bool>(),
        proptest::option::of(connect_properties()),
        proptest::option::of((will(), proptest::option::of(will_properties()))),
        proptest::option::of((text(8), text(8))),
    )
        .prop_map(
            move |(keep_alive, client_id, clean_session, props, will, login)| {
                let v5 = version == Version::V5;
                let (will, will_props) = match will {
                    Some((w, p)) => (Some(w), p.filter(|_| v5)),
                    None => (None, None),
                };
                let login = login.map(|(username, password)| Login {
                    password: if v5 || !username.is_empty() {
                        password
                    } else {
                        String::new()
                    },
                    username,
                });
                Packet::Connect(
                    Connect {
                        keep_alive,
                        client_id,
                        clean_session,
                    },
                    props.filter(|_| v5),
                    will,
                    will_props,
                    login,
                )
            },
        )
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        proptest::option::of(0u8..=1),
        proptest::option::of(any::<u32>()),
        proptest::option::of(1u16..),
        proptest::option::of(text(8)),
        proptest::option::of(binary()),
        user_properties(),
        proptest::option::of(text(8)),
    )
        .prop_map(
            |(pfi, expiry, alias, response, corr, user, content)| PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: expiry,
                topic_alias: alias,
                response_topic: response,
                correlation_data: corr,
                user_properties: user,
                subscription_identifiers: vec![],
                content_type: content,
            },
        )
}

/// A QoS 0 PUBLISH (the only kind rumqttd's public API can build).
fn publish(version: Version) -> impl Strategy<Value = Packet> {
    (
        text(12).prop_filter("topic", |t| !t.is_empty()),
        binary(),
        any::<bool>(),
        proptest::option::of(publish_properties()),
    )
        .prop_map(move |(topic, payload, retain, props)| {
            Packet::Publish(
                Publish::new(Bytes::from(topic), payload, retain),
                props.filter(|_| version == Version::V5),
            )
        })
}

fn filter(version: Version) -> impl Strategy<Value = Filter> {
    (
        text(10),
        qos(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(RetainForwardRule::OnEverySubscribe),
            Just(RetainForwardRule::OnNewSubscribe),
            Just(RetainForwardRule::Never)
        ],
    )
        .prop_map(move |(path, qos, nolocal, rap, rule)| {
            let v5 = version == Version::V5;
            Filter {
                path,
                qos,
                nolocal: nolocal && v5,
                preserve_retain: rap && v5,
                retain_forward_rule: if v5 {
                    rule
                } else {
                    RetainForwardRule::OnEverySubscribe
                },
            }
        })
}

fn subscribe(version: Version) -> impl Strategy<Value = Packet> {
    (
        1u16..,
        proptest::collection::vec(filter(version), 1..4),
        proptest::option::of((
            proptest::option::of(1usize..=268_435_455),
            user_properties(),
        )),
    )
        .prop_map(move |(pkid, filters, props)| {
            let props = props
                .filter(|_| version == Version::V5)
                .map(|(id, user_properties)| SubscribeProperties {
                    id,
                    user_properties,
                });
            Packet::Subscribe(Subscribe { pkid, filters }, props)
        })
}

fn unsubscribe(version: Version) -> impl Strategy<Value = Packet> {
    (
        1u16..,
        proptest::collection::vec(text(10), 1..4),
        proptest::option::of(user_properties()),
    )
        .prop_map(move |(pkid, filters, props)| {
            let props = props
                .filter(|_| version == Version::V5)
                .map(|user_properties| UnsubscribeProperties { user_properties });
            Packet::Unsubscribe(Unsubscribe { pkid, filters }, props)
        })
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP; reason codes and properties for v5 only.
fn ack(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        1u16..,
        0usize..4,
        0usize..9,
        proptest::option::of((proptest::option::of(text(8)), user_properties())),
    )
        .prop_map(move |(pkid, kind, code, props)| {
            let props = props
                .filter(|_| v5)
                .map(|(reason_string, user_properties)| PubAckProperties {
                    reason_string,
                    user_properties,
                });
            let code = if v5 { code } else { 0 };
            let reasons = [
                PubAckReason::Success,
                PubAckReason::NoMatchingSubscribers,
                PubAckReason::UnspecifiedError,
                PubAckReason::ImplementationSpecificError,
                PubAckReason::NotAuthorized,
                PubAckReason::TopicNameInvalid,
                PubAckReason::PacketIdentifierInUse,
                PubAckReason::QuotaExceeded,
                PubAckReason::PayloadFormatInvalid,
            ];
            let rec_reasons = [
                PubRecReason::Success,
                PubRecReason::NoMatchingSubscribers,
                PubRecReason::UnspecifiedError,
                PubRecReason::ImplementationSpecificError,
                PubRecReason::NotAuthorized,
                PubRecReason::TopicNameInvalid,
                PubRecReason::PacketIdentifierInUse,
                PubRecReason::QuotaExceeded,
                PubRecReason::PayloadFormatInvalid,
            ];
            let found = code % 2 == 1;
            match kind {
                0 => Packet::PubAck(
                    PubAck {
                        pkid,
                        reason: reasons[code],
                    },
                    props,
                ),
                1 => Packet::PubRec(
                    PubRec {
                        pkid,
                        reason: rec_reasons[code],
                    },
                    props.map(|p| rumqttd::protocol::PubRecProperties {
                        reason_string: p.reason_string,
                        user_properties: p.user_properties,
                    }),
                ),
                2 => Packet::PubRel(
                    PubRel {
                        pkid,
                        reason: if found {
                            PubRelReason::PacketIdentifierNotFound
                        } else {
                            PubRelReason::Success
                        },
                    },
                    props.map(|p| rumqttd::protocol::PubRelProperties {
                        reason_string: p.reason_string,
                        user_properties: p.user_properties,
                    }),
                ),
                _ => Packet::PubComp(
                    PubComp {
                        pkid,
                        reason: if found {
                            PubCompReason::PacketIdentifierNotFound
                        } else {
                            PubCompReason::Success
                        },
                    },
                    props.map(|p| rumqttd::protocol::PubCompProperties {
                        reason_string: p.reason_string,
                        user_properties: p.user_properties,
                    }),
                ),
            }
        })
}

fn client_packet(version: Version) -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect(version),
        publish(version),
        subscribe(version),
        unsubscribe(version),
        ack(version),
        Just(Packet::PingReq(rumqttd::protocol::PingReq)),
    ]
}

/// Writes `packet` with rumqttd, then checks Parley decodes the bytes to
/// what rumqttd reads.
fn check(version: Version, packet: Packet) -> Result<(), TestCaseError> {
    let mut bytes = BytesMut::new();
    match version {
        Version::V4 => V4.write(packet, &mut bytes),
        Version::V5 => V5.write(packet, &mut bytes),
    }
    .expect("rumqttd writes it");
    let mut theirs = bytes.clone();
    let expected = match version {
        Version::V4 => V4.read_mut(&mut theirs, usize::MAX),
        Version::V5 => V5.read_mut(&mut theirs, usize::MAX),
    }
    .expect("rumqttd reads it");
    let codec = Codec::new(version, 1 << 20);
    let mut ours = bytes.clone();
    match codec.decode(&mut ours) {
        Ok(Some(incoming)) => {
            prop_assert!(ours.is_empty());
            prop_assert_eq!(incoming.packet, expected);
        }
        other => {
            return Err(TestCaseError::fail(format!(
                "{:x?} decoded as {other:?}",
                &bytes[..]
            )))
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn valid_v4_packets_are_accepted(packet in client_packet(Version::V4)) {
        check(Version::V4, packet)?;
    }

    #[test]
    fn valid_v5_packets_are_accepted(packet in client_packet(Version::V5)) {
        check(Version::V5, packet)?;
    }

    #[test]
    fn v5_disconnects_round_trip(
        code in prop_oneof![
            Just(DisconnectReasonCode::NormalDisconnection),
            Just(DisconnectReasonCode::DisconnectWithWillMessage),
            Just(DisconnectReasonCode::UnspecifiedError),
            Just(DisconnectReasonCode::ProtocolError),
            Just(DisconnectReasonCode::MessageRateTooHigh),
        ],
        props in proptest::option::of((
            proptest::option::of(any::<u32>()),
            proptest::option::of(text(8)),
            user_properties(),
        )),
    ) {
        // rumqttd's own v5 DISCONNECT encoder is broken; Parley's is used here.
        let props = props.map(|(expiry, reason, user)| DisconnectProperties {
            session_expiry_interval: expiry,
            reason_string: reason,
            user_properties: user,
            server_reference: None,
        });
        let empty = props.as_ref().is_none_or(|p| {
            p.session_expiry_interval.is_none()
                && p.reason_string.is_none()
                && p.user_properties.is_empty()
        });
        let packet = Packet::Disconnect(Disconnect { reason_code: code }, props);
        let codec = Codec::new(Version::V5, 1 << 20);
        let mut buf = BytesMut::new();
        codec.encode(packet.clone(), &mut buf).unwrap();
        let decoded = codec.decode(&mut buf).unwrap().unwrap().packet;
        prop_assert!(buf.is_empty());
        let expected = match packet {
            Packet::Disconnect(d, _) if empty => Packet::Disconnect(d, None),
            packet => packet,
        };
        prop_assert_eq!(decoded, expected);
    }
}
