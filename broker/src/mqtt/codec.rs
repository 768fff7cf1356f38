//! MQTT framing for one connection: detects 3.1.1 vs 5 from the CONNECT
//! packet, decodes and encodes with rumqttd's codecs, and reads the few
//! PUBLISH header fields rumqttd keeps private (QoS, packet id).

use bytes::BytesMut;
use rumqttd::protocol::{
    self, v4::V4, v5::V5, ConnAck, Packet, Protocol, PubAck, PubAckReason, PubComp, PubCompReason,
    PubRec, PubRecReason, QoS, SubscribeReasonCode,
};

/// The MQTT protocol version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5 (protocol level 5).
    V5,
}

/// Why the first bytes of a connection are not a usable CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The first packet is not CONNECT.
    #[error("first packet is not CONNECT (type {0})")]
    NotConnect(u8),
    /// The protocol name is not `MQTT` (or `MQIsdp` for 3.1).
    #[error("unknown protocol name")]
    UnknownProtocol,
    /// A protocol level Parley does not speak (MQTT 3.1 is level 3).
    #[error("unsupported protocol level {0}")]
    UnsupportedLevel(u8),
    /// The CONNECT frame is truncated or its length field is malformed.
    #[error("malformed CONNECT frame")]
    Malformed,
}

/// Inspects the start of a connection's byte stream.
///
/// Returns `Ok(None)` while more bytes are needed, the protocol version once
/// the CONNECT header is complete, or why the connection must be refused.
pub fn detect_version(buf: &[u8]) -> Result<Option<Version>, HandshakeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    if byte1 >> 4 != 1 {
        return Err(HandshakeError::NotConnect(byte1 >> 4));
    }
    let Some((len_len, _)) = remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let start = 1 + len_len;
    let Some(name_len) = buf.get(start..start + 2) else {
        return Ok(None);
    };
    let name_len = u16::from_be_bytes([name_len[0], name_len[1]]) as usize;
    let name_end = start + 2 + name_len;
    let (Some(name), Some(&level)) = (buf.get(start + 2..name_end), buf.get(name_end)) else {
        return Ok(None);
    };
    match (name, level) {
        (b"MQTT", 4) => Ok(Some(Version::V4)),
        (b"MQTT", 5) => Ok(Some(Version::V5)),
        (b"MQTT", l) | (b"MQIsdp", l) => Err(HandshakeError::UnsupportedLevel(l)),
        _ => Err(HandshakeError::UnknownProtocol),
    }
}

/// Decodes an MQTT variable-byte integer: `(bytes used, value)`, `None` if incomplete.
fn remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, HandshakeError> {
    let mut value = 0usize;
    for (i, byte) in buf.iter().enumerate().take(4) {
        value |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((i + 1, value)));
        }
    }
    if buf.len() >= 4 {
        Err(HandshakeError::Malformed)
    } else {
        Ok(None)
    }
}

/// QoS, packet id and DUP flag of a PUBLISH, which rumqttd's `Publish` keeps private.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishMeta {
    /// Requested QoS (0, 1 or 2).
    pub qos: u8,
    /// Packet identifier (0 for QoS 0).
    pub pkid: u16,
}

/// Reads [`PublishMeta`] from the raw frame at the head of `buf`, if it is a PUBLISH.
pub fn peek_publish(buf: &[u8]) -> Option<PublishMeta> {
    let byte1 = *buf.first()?;
    if byte1 >> 4 != 3 {
        return None;
    }
    let qos = (byte1 >> 1) & 0b11;
    if qos == 0 {
        return Some(PublishMeta { qos, pkid: 0 });
    }
    let (len_len, _) = remaining_length(&buf[1..]).ok()??;
    let topic_at = 1 + len_len;
    let topic_len = u16::from_be_bytes([*buf.get(topic_at)?, *buf.get(topic_at + 1)?]) as usize;
    let pkid_at = topic_at + 2 + topic_len;
    let pkid = u16::from_be_bytes([*buf.get(pkid_at)?, *buf.get(pkid_at + 1)?]);
    Some(PublishMeta { qos, pkid })
}

/// A decoded packet with the PUBLISH fields rumqttd hides.
#[derive(Debug)]
pub struct Incoming {
    /// The packet as rumqttd's codec decoded it.
    pub packet: Packet,
    /// For PUBLISH: QoS and packet id.
    pub publish: Option<PublishMeta>,
}

/// Why a client's bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The packet exceeds the configured maximum packet size.
    #[error("packet of {0} bytes exceeds the maximum packet size")]
    TooLarge(usize),
    /// The bytes violate the MQTT specification.
    #[error("malformed packet: {0}")]
    Malformed(protocol::Error),
}

/// The codec of one connection, chosen at CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    version: Version,
    max_packet_size: usize,
}

impl Codec {
    /// A codec for `version` refusing packets larger than `max_packet_size` bytes.
    pub fn new(version: Version, max_packet_size: usize) -> Codec {
        Codec {
            version,
            max_packet_size,
        }
    }

    /// The protocol version of this connection.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Decodes the next complete packet from `buf`; `Ok(None)` if more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Incoming>, DecodeError> {
        let publish = peek_publish(buf);
        let result = match self.version {
            Version::V4 => V4.read_mut(buf, self.max_packet_size),
            Version::V5 => V5.read_mut(buf, self.max_packet_size),
        };
        match result {
            Ok(packet) => Ok(Some(Incoming { packet, publish })),
            Err(protocol::Error::InsufficientBytes(_)) => Ok(None),
            Err(protocol::Error::PayloadSizeLimitExceeded(n)) => Err(DecodeError::TooLarge(n)),
            Err(e) => Err(DecodeError::Malformed(e)),
        }
    }

    /// Encodes `packet` for this connection's version into `buf`.
    ///
    /// MQTT 3.1.1 has no properties and fewer reason codes: properties are
    /// dropped and v5-only codes mapped to their 3.1.1 equivalent, so a
    /// packet built for either version is always safe to send.
    pub fn encode(&self, packet: Packet, buf: &mut BytesMut) -> Result<(), protocol::Error> {
        match self.version {
            Version::V5 => match packet {
                Packet::Disconnect(disconnect, None) => {
                    encode_v5_disconnect(disconnect, buf);
                    Ok(())
                }
                packet => V5.write(packet, buf).map(drop),
            },
            Version::V4 => match downgrade_to_v4(packet) {
                Some(p) => V4.write(p, buf).map(drop),
                None => Ok(()),
            },
        }
    }
}

/// Writes an MQTT 5 DISCONNECT with a reason code and no properties.
///
/// rumqttd 0.20's encoder counts the reason code but not the empty property
/// length it appends, leaving a stray byte that clients read as a broken
/// packet. Parley writes the reason code and an empty property length with
/// the right remaining length (some clients need the property length even
/// though the spec allows omitting it), taking the code from rumqttd.
fn encode_v5_disconnect(disconnect: rumqttd::protocol::Disconnect, buf: &mut BytesMut) {
    let mut scratch = BytesMut::with_capacity(4);
    let code = match V5.write(Packet::Disconnect(disconnect, None), &mut scratch) {
        Ok(_) if scratch.len() >= 3 => scratch[2],
        _ => 0,
    };
    buf.extend_from_slice(&[0xE0, 0x02, code, 0x00]);
}

/// Rewrites a packet so rumqttd's 3.1.1 encoder accepts it; `None` if 3.1.1 has no such packet.
fn downgrade_to_v4(packet: Packet) -> Option<Packet> {
    use rumqttd::protocol::ConnectReturnCode as C;
    Some(match packet {
        Packet::ConnAck(ack, _) => {
            let code = match ack.code {
                C::Success => C::Success,
                C::RefusedProtocolVersion | C::UnsupportedProtocolVersion => {
                    C::RefusedProtocolVersion
                }
                C::ClientIdentifierNotValid => C::ClientIdentifierNotValid,
                C::BadUserNamePassword => C::BadUserNamePassword,
                C::NotAuthorized | C::Banned | C::BadAuthenticationMethod => C::NotAuthorized,
                _ => C::ServiceUnavailable,
            };
            Packet::ConnAck(
                ConnAck {
                    session_present: ack.session_present,
                    code,
                },
                None,
            )
        }
        Packet::Publish(p, _) => Packet::Publish(p, None),
        Packet::PubAck(a, _) => Packet::PubAck(
            PubAck {
                pkid: a.pkid,
                reason: PubAckReason::Success,
            },
            None,
        ),
        Packet::PubRec(a, _) => Packet::PubRec(
            PubRec {
                pkid: a.pkid,
                reason: PubRecReason::Success,
            },
            None,
        ),
        Packet::PubRel(a, _) => Packet::PubRel(a, None),
        Packet::PubComp(a, _) => Packet::PubComp(
            PubComp {
                pkid: a.pkid,
                reason: PubCompReason::Success,
            },
            None,
        ),
        Packet::SubAck(mut a, _) => {
            for code in a.return_codes.iter_mut() {
                *code = match *code {
                    SubscribeReasonCode::Success(q) => SubscribeReasonCode::Success(q),
                    SubscribeReasonCode::QoS0 => SubscribeReasonCode::Success(QoS::AtMostOnce),
                    SubscribeReasonCode::QoS1 => SubscribeReasonCode::Success(QoS::AtLeastOnce),
                    SubscribeReasonCode::QoS2 => SubscribeReasonCode::Success(QoS::ExactlyOnce),
                    _ => SubscribeReasonCode::Failure,
                };
            }
            Packet::SubAck(a, None)
        }
        Packet::UnsubAck(a, _) => Packet::UnsubAck(a, None),
        Packet::PingResp(p) => Packet::PingResp(p),
        // 3.1.1 servers close the connection instead of sending DISCONNECT.
        Packet::Disconnect(..) => return None,
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_bytes(name: &[u8], level: u8) -> Vec<u8> {
        let mut body = vec![0, name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(&[level, 0x02, 0, 60, 0, 1, b'c']);
        let mut v = vec![0x10, body.len() as u8];
        v.extend(body);
        v
    }

    #[test]
    fn detects_versions_and_refuses_others() {
        assert_eq!(
            detect_version(&connect_bytes(b"MQTT", 4)),
            Ok(Some(Version::V4))
        );
        assert_eq!(
            detect_version(&connect_bytes(b"MQTT", 5)),
            Ok(Some(Version::V5))
        );
        assert_eq!(
            detect_version(&connect_bytes(b"MQIsdp", 3)),
            Err(HandshakeError::UnsupportedLevel(3))
        );
        assert_eq!(
            detect_version(&connect_bytes(b"HTTP", 4)),
            Err(HandshakeError::UnknownProtocol)
        );
        assert_eq!(
            detect_version(b"GET / HTTP/1.1"),
            Err(HandshakeError::NotConnect(4))
        );
    }

    #[test]
    fn detection_waits_for_complete_header() {
        let full = connect_bytes(b"MQTT", 4);
        for cut in 0..9 {
            assert_eq!(detect_version(&full[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_remaining_length_is_refused() {
        assert_eq!(
            detect_version(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(HandshakeError::Malformed)
        );
    }

    #[test]
    fn peeks_publish_qos_and_packet_id() {
        // QoS 1 publish, topic "a/b", pkid 0x1234, payload "x"
        let frame = [0x32, 8, 0, 3, b'a', b'/', b'b', 0x12, 0x34, b'x'];
        assert_eq!(
            peek_publish(&frame),
            Some(PublishMeta {
                qos: 1,
                pkid: 0x1234
            })
        );
        let qos0 = [0x30, 6, 0, 3, b'a', b'/', b'b', b'x'];
        assert_eq!(peek_publish(&qos0), Some(PublishMeta { qos: 0, pkid: 0 }));
        assert_eq!(peek_publish(&[0xC0, 0]), None, "PINGREQ is not a publish");
        assert_eq!(peek_publish(&[0x32, 8, 0, 3, b'a']), None, "truncated");
    }

    #[test]
    fn v4_encoding_never_panics_on_v5_only_codes() {
        let codec = Codec::new(Version::V4, 1024);
        let mut buf = BytesMut::new();
        let ack = ConnAck {
            session_present: false,
            code: rumqttd::protocol::ConnectReturnCode::Banned,
        };
        codec.encode(Packet::ConnAck(ack, None), &mut buf).unwrap();
        assert_eq!(&buf[..], &[0x20, 2, 0, 5]);
        let mut buf = BytesMut::new();
        let suback = rumqttd::protocol::SubAck {
            pkid: 9,
            return_codes: vec![SubscribeReasonCode::NotAuthorized],
        };
        codec
            .encode(Packet::SubAck(suback, None), &mut buf)
            .unwrap();
        assert_eq!(&buf[..], &[0x90, 3, 0, 9, 0x80]);
    }

    #[test]
    fn v5_disconnect_is_well_formed() {
        let codec = Codec::new(Version::V5, 1024);
        let mut buf = BytesMut::new();
        let packet = Packet::Disconnect(
            rumqttd::protocol::Disconnect {
                reason_code: rumqttd::protocol::DisconnectReasonCode::SessionTakenOver,
            },
            None,
        );
        codec.encode(packet, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0xE0, 2, 0x8E, 0]);
    }

    #[test]
    fn decode_reports_oversize_and_garbage() {
        let codec = Codec::new(Version::V4, 4);
        let mut big = BytesMut::from(&[0x30u8, 10, 0, 1, b'a', 1, 2, 3, 4, 5, 6, 7][..]);
        assert!(matches!(
            codec.decode(&mut big),
            Err(DecodeError::TooLarge(10))
        ));
        let codec = Codec::new(Version::V4, 1024);
        let mut garbage = BytesMut::from(&[0xF0u8, 0][..]);
        assert!(matches!(
            codec.decode(&mut garbage),
            Err(DecodeError::Malformed(_))
        ));
        let mut partial = BytesMut::from(&[0x30u8, 10, 0][..]);
        assert!(matches!(codec.decode(&mut partial), Ok(None)));
    }
}
