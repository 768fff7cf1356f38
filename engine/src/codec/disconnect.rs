//! MQTT 5 DISCONNECT, which Parley reads and writes in part itself.
//!
//! rumqttd 0.20 gets two cases wrong: a DISCONNECT carrying only a reason
//! code (remaining length 1, which the spec allows) fails to decode with
//! `InsufficientBytes` after the frame has already been consumed, and its
//! encoder of a reason code without properties counts the reason code but
//! not the property length it appends, leaving a stray byte. Parley decodes
//! the reason-only form and encodes every v5 DISCONNECT itself.

use bytes::{BufMut, BytesMut};
use rumqttd::protocol::{Disconnect, DisconnectProperties, DisconnectReasonCode as R, Packet};

use super::properties::{REASON_STRING, SERVER_REFERENCE, SESSION_EXPIRY_INTERVAL, USER_PROPERTY};
use super::wire::{put_binary, put_varint, varint_len};

/// All DISCONNECT reason codes and their wire values (MQTT 5 §3.14.2.1).
const CODES: [(R, u8); 29] = [
    (R::NormalDisconnection, 0x00),
    (R::DisconnectWithWillMessage, 0x04),
    (R::UnspecifiedError, 0x80),
    (R::MalformedPacket, 0x81),
    (R::ProtocolError, 0x82),
    (R::ImplementationSpecificError, 0x83),
    (R::NotAuthorized, 0x87),
    (R::ServerBusy, 0x89),
    (R::ServerShuttingDown, 0x8B),
    (R::KeepAliveTimeout, 0x8D),
    (R::SessionTakenOver, 0x8E),
    (R::TopicFilterInvalid, 0x8F),
    (R::TopicNameInvalid, 0x90),
    (R::ReceiveMaximumExceeded, 0x93),
    (R::TopicAliasInvalid, 0x94),
    (R::PacketTooLarge, 0x95),
    (R::MessageRateTooHigh, 0x96),
    (R::QuotaExceeded, 0x97),
    (R::AdministrativeAction, 0x98),
    (R::PayloadFormatInvalid, 0x99),
    (R::RetainNotSupported, 0x9A),
    (R::QoSNotSupported, 0x9B),
    (R::UseAnotherServer, 0x9C),
    (R::ServerMoved, 0x9D),
    (R::SharedSubscriptionNotSupported, 0x9E),
    (R::ConnectionRateExceeded, 0x9F),
    (R::MaximumConnectTime, 0xA0),
    (R::SubscriptionIdentifiersNotSupported, 0xA1),
    (R::WildcardSubscriptionsNotSupported, 0xA2),
];

/// The reason code with wire value `code`, if the spec defines one.
pub(crate) fn reason(code: u8) -> Option<R> {
    CODES.iter().find(|(_, c)| *c == code).map(|(r, _)| *r)
}

/// The wire value of `reason`.
pub(crate) fn code(reason: R) -> u8 {
    CODES
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(0x80, |(_, c)| *c)
}

/// Decodes a validated v5 DISCONNECT body holding only a reason code, the
/// one form rumqttd cannot read; `None` for any other body.
pub(crate) fn decode_reason_only(body: &[u8]) -> Option<Packet> {
    match body {
        [code] => Some(Packet::Disconnect(
            Disconnect {
                reason_code: reason(*code)?,
            },
            None,
        )),
        _ => None,
    }
}

/// Writes an MQTT 5 DISCONNECT.
///
/// The reason code and property length are always written, even for a
/// normal disconnection without properties: the spec allows omitting them,
/// but some clients need the property length.
pub(crate) fn encode_v5(
    disconnect: &Disconnect,
    properties: Option<&DisconnectProperties>,
    buf: &mut BytesMut,
) {
    let props_len = properties.map_or(0, properties_len);
    let remaining = 1 + varint_len(props_len) + props_len;
    buf.reserve(1 + varint_len(remaining) + remaining);
    buf.put_u8(0xE0);
    put_varint(buf, remaining);
    buf.put_u8(code(disconnect.reason_code));
    put_varint(buf, props_len);
    let Some(p) = properties else {
        return;
    };
    if let Some(interval) = p.session_expiry_interval {
        buf.put_u8(SESSION_EXPIRY_INTERVAL);
        buf.put_u32(interval);
    }
    if let Some(reason) = &p.reason_string {
        buf.put_u8(REASON_STRING);
        put_binary(buf, reason.as_bytes());
    }
    for (key, value) in &p.user_properties {
        buf.put_u8(USER_PROPERTY);
        put_binary(buf, key.as_bytes());
        put_binary(buf, value.as_bytes());
    }
    if let Some(reference) = &p.server_reference {
        buf.put_u8(SERVER_REFERENCE);
        put_binary(buf, reference.as_bytes());
    }
}

/// Length of the encoded DISCONNECT properties, without their length prefix.
fn properties_len(p: &DisconnectProperties) -> usize {
    p.session_expiry_interval.map_or(0, |_| 1 + 4)
        + p.reason_string.as_ref().map_or(0, |s| 3 + s.len())
        + p.user_properties
            .iter()
            .map(|(k, v)| 5 + k.len() + v.len())
            .sum::<usize>()
        + p.server_reference.as_ref().map_or(0, |s| 3 + s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_table_round_trips() {
        for (reason_code, wire) in CODES {
            assert_eq!(reason(wire), Some(reason_code));
            assert_eq!(code(reason_code), wire);
        }
        assert_eq!(reason(0x01), None);
    }

    #[test]
    fn reason_only_body_decodes() {
        assert_eq!(
            decode_reason_only(&[0x04]),
            Some(Packet::Disconnect(
                Disconnect {
                    reason_code: R::DisconnectWithWillMessage
                },
                None
            ))
        );
        assert_eq!(decode_reason_only(&[0x04, 0]), None);
        assert_eq!(decode_reason_only(&[]), None);
    }

    #[test]
    fn encodes_reason_code_and_properties() {
        let mut buf = BytesMut::new();
        let d = Disconnect {
            reason_code: R::ServerMoved,
        };
        encode_v5(&d, None, &mut buf);
        assert_eq!(&buf[..], &[0xE0, 2, 0x9D, 0]);

        let mut buf = BytesMut::new();
        let props = DisconnectProperties {
            session_expiry_interval: Some(1),
            reason_string: Some("r".into()),
            user_properties: vec![("k".into(), "v".into())],
            server_reference: Some("s".into()),
        };
        encode_v5(&d, Some(&props), &mut buf);
        assert_eq!(
            &buf[..],
            &[
                0xE0, 22, 0x9D, 20, // header, reason, property length
                0x11, 0, 0, 0, 1, // session expiry
                0x1F, 0, 1, b'r', // reason string
                0x26, 0, 1, b'k', 0, 1, b'v', // user property
                0x1C, 0, 1, b's', // server reference
            ]
        );
    }
}
