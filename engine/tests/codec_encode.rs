//! Byte-level checks of every packet type a server sends, as
//! `parley_engine::codec::Codec::encode` writes it for MQTT 3.1.1 and 5.

use bytes::{Bytes, BytesMut};
use parley_engine::codec::{Codec, Version};
use rumqttd::protocol::{
    ConnAck, ConnAckProperties, ConnectReturnCode, Disconnect, DisconnectProperties,
    DisconnectReasonCode, Packet, PingResp, PubAck, PubAckProperties, PubAckReason, PubComp,
    PubCompProperties, PubCompReason, PubRec, PubRecProperties, PubRecReason, PubRel,
    PubRelProperties, PubRelReason, Publish, PublishProperties, QoS, SubAck, SubAckProperties,
    SubscribeReasonCode, UnsubAck, UnsubAckProperties, UnsubAckReason,
};

fn encode(version: Version, packet: Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    Codec::new(version, 1024)
        .encode(packet, &mut buf)
        .expect("encodable");
    buf.to_vec()
}

fn v4(packet: Packet) -> Vec<u8> {
    encode(Version::V4, packet)
}

fn v5(packet: Packet) -> Vec<u8> {
    encode(Version::V5, packet)
}

fn connack(session_present: bool, code: ConnectReturnCode) -> ConnAck {
    ConnAck {
        session_present,
        code,
    }
}

fn full_connack_properties() -> ConnAckProperties {
    ConnAckProperties {
        session_expiry_interval: Some(10),
        receive_max: Some(5),
        max_qos: Some(1),
        retain_available: Some(1),
        max_packet_size: Some(1000),
        assigned_client_identifier: Some("id".into()),
        topic_alias_max: Some(3),
        reason_string: Some("r".into()),
        user_properties: vec![("k".into(), "v".into())],
        wildcard_subscription_available: Some(1),
        subscription_identifiers_available: Some(0),
        shared_subscription_available: Some(1),
        server_keep_alive: Some(30),
        response_information: Some("ri".into()),
        server_reference: Some("sr".into()),
        authentication_method: Some("am".into()),
        authentication_data: Some(Bytes::from_static(b"ad")),
    }
}

#[test]
fn connack_v4() {
    assert_eq!(
        v4(Packet::ConnAck(
            connack(true, ConnectReturnCode::Success),
            None
        )),
        [0x20, 2, 1, 0]
    );
    // Properties are dropped, v5 codes mapped, a refusal never claims a session.
    assert_eq!(
        v4(Packet::ConnAck(
            connack(true, ConnectReturnCode::BadAuthenticationMethod),
            Some(full_connack_properties())
        )),
        [0x20, 2, 0, 5]
    );
    assert_eq!(
        v4(Packet::ConnAck(
            connack(false, ConnectReturnCode::UnsupportedProtocolVersion),
            None
        )),
        [0x20, 2, 0, 1]
    );
    assert_eq!(
        v4(Packet::ConnAck(
            connack(false, ConnectReturnCode::QuotaExceeded),
            None
        )),
        [0x20, 2, 0, 3]
    );
}

#[test]
fn connack_v5() {
    assert_eq!(
        v5(Packet::ConnAck(
            connack(true, ConnectReturnCode::Success),
            None
        )),
        [0x20, 3, 1, 0, 0]
    );
    assert_eq!(
        v5(Packet::ConnAck(
            connack(true, ConnectReturnCode::Banned),
            Some(ConnAckProperties {
                reason_string: Some("no".into()),
                ..ConnAckProperties::default()
            })
        )),
        [0x20, 8, 0, 0x8A, 5, 0x1F, 0, 2, b'n', b'o']
    );
    // 3.1.1-only codes, on which rumqttd's v5 encoder panics.
    assert_eq!(
        v5(Packet::ConnAck(
            connack(false, ConnectReturnCode::RefusedProtocolVersion),
            None
        )),
        [0x20, 3, 0, 0x84, 0]
    );
    assert_eq!(
        v5(Packet::ConnAck(
            connack(false, ConnectReturnCode::ServiceUnavailable),
            None
        )),
        [0x20, 3, 0, 0x88, 0]
    );
    let expected: Vec<u8> = [
        &[0x20, 68, 0, 0, 65][..],
        &[0x11, 0, 0, 0, 10],
        &[0x21, 0, 5],
        &[0x24, 1],
        &[0x25, 1],
        &[0x27, 0, 0, 0x03, 0xE8],
        &[0x12, 0, 2, b'i', b'd'],
        &[0x22, 0, 3],
        &[0x1F, 0, 1, b'r'],
        &[0x26, 0, 1, b'k', 0, 1, b'v'],
        &[0x28, 1],
        &[0x29, 0],
        &[0x2A, 1],
        &[0x13, 0, 30],
        &[0x1A, 0, 2, b'r', b'i'],
        &[0x1C, 0, 2, b's', b'r'],
        &[0x15, 0, 2, b'a', b'm'],
        &[0x16, 0, 2, b'a', b'd'],
    ]
    .concat();
    assert_eq!(
        v5(Packet::ConnAck(
            connack(false, ConnectReturnCode::Success),
            Some(full_connack_properties())
        )),
        expected
    );
}

#[test]
fn publish_through_rumqttd_packets() {
    let properties = PublishProperties {
        message_expiry_interval: Some(5),
        ..PublishProperties::default()
    };
    let packet = || Packet::Publish(Publish::new("a", "hi", true), Some(properties.clone()));
    assert_eq!(v4(packet()), [0x31, 5, 0, 1, b'a', b'h', b'i']);
    assert_eq!(
        v5(packet()),
        [0x31, 11, 0, 1, b'a', 5, 0x02, 0, 0, 0, 5, b'h', b'i']
    );
}

#[test]
fn acks_v4_carry_only_the_packet_id() {
    let reason = Some("why".to_string());
    assert_eq!(
        v4(Packet::PubAck(
            PubAck {
                pkid: 7,
                reason: PubAckReason::NotAuthorized
            },
            Some(PubAckProperties {
                reason_string: reason.clone(),
                user_properties: vec![]
            })
        )),
        [0x40, 2, 0, 7]
    );
    assert_eq!(
        v4(Packet::PubRec(
            PubRec {
                pkid: 7,
                reason: PubRecReason::QuotaExceeded
            },
            None
        )),
        [0x50, 2, 0, 7]
    );
    assert_eq!(
        v4(Packet::PubRel(
            PubRel {
                pkid: 7,
                reason: PubRelReason::PacketIdentifierNotFound
            },
            Some(PubRelProperties {
                reason_string: reason,
                user_properties: vec![]
            })
        )),
        [0x62, 2, 0, 7]
    );
    assert_eq!(
        v4(Packet::PubComp(
            PubComp {
                pkid: 7,
                reason: PubCompReason::PacketIdentifierNotFound
            },
            None
        )),
        [0x70, 2, 0, 7]
    );
}

#[test]
fn puback_v5() {
    let ack = |reason| PubAck { pkid: 7, reason };
    assert_eq!(
        v5(Packet::PubAck(ack(PubAckReason::Success), None)),
        [0x40, 2, 0, 7]
    );
    assert_eq!(
        v5(Packet::PubAck(
            ack(PubAckReason::NoMatchingSubscribers),
            None
        )),
        [0x40, 4, 0, 7, 0x10, 0]
    );
    assert_eq!(
        v5(Packet::PubAck(
            ack(PubAckReason::Success),
            Some(PubAckProperties {
                reason_string: Some("x".into()),
                user_properties: vec![("k".into(), "v".into())]
            })
        )),
        [0x40, 15, 0, 7, 0, 11, 0x1F, 0, 1, b'x', 0x26, 0, 1, b'k', 0, 1, b'v']
    );
}

#[test]
fn pubrec_pubrel_pubcomp_v5() {
    assert_eq!(
        v5(Packet::PubRec(
            PubRec {
                pkid: 7,
                reason: PubRecReason::Success
            },
            None
        )),
        [0x50, 2, 0, 7]
    );
    assert_eq!(
        v5(Packet::PubRec(
            PubRec {
                pkid: 7,
                reason: PubRecReason::PayloadFormatInvalid
            },
            Some(PubRecProperties {
                reason_string: Some("x".into()),
                user_properties: vec![]
            })
        )),
        [0x50, 8, 0, 7, 0x99, 4, 0x1F, 0, 1, b'x']
    );
    assert_eq!(
        v5(Packet::PubRel(
            PubRel {
                pkid: 7,
                reason: PubRelReason::Success
            },
            None
        )),
        [0x62, 2, 0, 7]
    );
    assert_eq!(
        v5(Packet::PubRel(
            PubRel {
                pkid: 7,
                reason: PubRelReason::PacketIdentifierNotFound
            },
            None
        )),
        [0x62, 4, 0, 7, 0x92, 0]
    );
    assert_eq!(
        v5(Packet::PubComp(
            PubComp {
                pkid: 7,
                reason: PubCompReason::PacketIdentifierNotFound
            },
            Some(PubCompProperties {
                reason_string: None,
                user_properties: vec![("k".into(), "".into())]
            })
        )),
        [0x70, 10, 0, 7, 0x92, 6, 0x26, 0, 1, b'k', 0, 0]
    );
    assert_eq!(
        v5(Packet::PubComp(
            PubComp {
                pkid: 7,
                reason: PubCompReason::Success
            },
            None
        )),
        [0x70, 2, 0, 7]
    );
}

fn suback_codes() -> Vec<SubscribeReasonCode> {
    vec![
        SubscribeReasonCode::Success(QoS::AtLeastOnce),
        SubscribeReasonCode::QoS2,
        SubscribeReasonCode::NotAuthorized,
        SubscribeReasonCode::Failure,
        SubscribeReasonCode::QoS0,
    ]
}

#[test]
fn suback_v4_and_v5() {
    let suback = || SubAck {
        pkid: 9,
        return_codes: suback_codes(),
    };
    assert_eq!(
        v4(Packet::SubAck(suback(), None)),
        [0x90, 7, 0, 9, 1, 2, 0x80, 0x80, 0]
    );
    assert_eq!(
        v5(Packet::SubAck(suback(), None)),
        [0x90, 8, 0, 9, 0, 1, 2, 0x87, 0x80, 0]
    );
    assert_eq!(
        v5(Packet::SubAck(
            suback(),
            Some(SubAckProperties {
                reason_string: Some("x".into()),
                user_properties: vec![]
            })
        )),
        [0x90, 12, 0, 9, 4, 0x1F, 0, 1, b'x', 1, 2, 0x87, 0x80, 0]
    );
}

#[test]
fn unsuback_v4_and_v5() {
    let unsuback = || UnsubAck {
        pkid: 9,
        reasons: vec![
            UnsubAckReason::Success,
            UnsubAckReason::NoSubscriptionExisted,
            UnsubAckReason::NotAuthorized,
        ],
    };
    assert_eq!(v4(Packet::UnsubAck(unsuback(), None)), [0xB0, 2, 0, 9]);
    assert_eq!(
        v5(Packet::UnsubAck(unsuback(), None)),
        [0xB0, 6, 0, 9, 0, 0x00, 0x11, 0x87]
    );
    assert_eq!(
        v5(Packet::UnsubAck(
            unsuback(),
            Some(UnsubAckProperties {
                reason_string: Some("x".into()),
                user_properties: vec![]
            })
        )),
        [0xB0, 10, 0, 9, 4, 0x1F, 0, 1, b'x', 0x00, 0x11, 0x87]
    );
}

#[test]
fn pingresp_v4_and_v5() {
    assert_eq!(v4(Packet::PingResp(PingResp)), [0xD0, 0]);
    assert_eq!(v5(Packet::PingResp(PingResp)), [0xD0, 0]);
}

#[test]
fn disconnect_v4_is_not_sent() {
    let packet = Packet::Disconnect(
        Disconnect {
            reason_code: DisconnectReasonCode::ServerShuttingDown,
        },
        None,
    );
    assert!(v4(packet).is_empty());
}

#[test]
fn disconnect_v5() {
    let disconnect = |reason_code| Disconnect { reason_code };
    assert_eq!(
        v5(Packet::Disconnect(
            disconnect(DisconnectReasonCode::NormalDisconnection),
            None
        )),
        [0xE0, 2, 0, 0]
    );
    assert_eq!(
        v5(Packet::Disconnect(
            disconnect(DisconnectReasonCode::KeepAliveTimeout),
            None
        )),
        [0xE0, 2, 0x8D, 0]
    );
    assert_eq!(
        v5(Packet::Disconnect(
            disconnect(DisconnectReasonCode::UseAnotherServer),
            Some(DisconnectProperties {
                session_expiry_interval: None,
                reason_string: Some("x".into()),
                user_properties: vec![],
                server_reference: Some("h:1".into())
            })
        )),
        [0xE0, 12, 0x9C, 10, 0x1F, 0, 1, b'x', 0x1C, 0, 3, b'h', b':', b'1']
    );
}
