//! MQTT 3.1.1/5 framing for one connection, on top of `rumqttd::protocol`.
//!
//! [`detect_version`] tells 3.1.1 from 5 on the first CONNECT; a [`Codec`]
//! then decodes the client's packets and encodes the server's.
//!
//! Decoding is strict: every frame is checked by Parley before rumqttd's
//! decoder sees it (`frame` for the fixed header, `validate` and
//! `properties` for the body), because rumqttd panics on some packet
//! types a client can send, accepts packets the spec forbids and fails on
//! a valid reason-only DISCONNECT (decoded by `disconnect`).
//!
//! Encoding goes through rumqttd except where it is wrong or cannot do the
//! job: v5 DISCONNECT (`disconnect`), 3.1.1 downgrades (`downgrade`,
//! `encode`) and outgoing PUBLISH with a broker-chosen QoS and packet id
//! (`publish`, [`Codec::encode_publish`]).
//!
//! - `wire`: variable byte integers, bounds-checked reader, writers.
//! - `error`: [`DecodeError`] and its reason codes.
//! - `handshake`: [`detect_version`].
//! - `frame`: fixed-header checks.
//! - `properties`: MQTT 5 property rules.
//! - `validate`: packet body checks.
//! - `disconnect`: v5 DISCONNECT decoding and encoding.
//! - `publish`: [`PublishMeta`], [`OutgoingPublish`] and its encoder.
//! - `downgrade`: 3.1.1 rewrites of outgoing packets.
//! - `encode`: per-version encoding of rumqttd packets.

mod disconnect;
mod downgrade;
mod encode;
mod error;
mod frame;
mod handshake;
mod properties;
mod publish;
mod validate;
mod wire;

use bytes::BytesMut;
use rumqttd::protocol::{self, v4::V4, v5::V5, Packet, Protocol};

pub use error::DecodeError;
pub use handshake::{detect_version, HandshakeError};
pub use publish::{peek_publish, OutgoingPublish, PublishMeta};

/// The MQTT protocol version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5 (protocol level 5).
    V5,
}

/// A decoded packet with the PUBLISH fields rumqttd hides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The packet as rumqttd's codec decoded it.
    pub packet: Packet,
    /// For PUBLISH: QoS, packet id and DUP flag.
    pub publish: Option<PublishMeta>,
}

/// The codec of one connection, chosen at CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    version: Version,
    max_packet_size: usize,
}

impl Codec {
    /// A codec for `version` refusing packets whose remaining length
    /// exceeds `max_packet_size` bytes.
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
    ///
    /// The fixed header is checked as soon as it arrives (packet type a
    /// client may send, flags, size limit), the body once the frame is
    /// complete; only then is the frame removed from `buf` and handed to
    /// rumqttd. Any error means the connection must be closed (for MQTT 5
    /// after a DISCONNECT with [`DecodeError::reason_code`]); what is left
    /// in `buf` is then meaningless.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Incoming>, DecodeError> {
        let Some(header) = frame::read_header(self.version, buf, self.max_packet_size)? else {
            return Ok(None);
        };
        let frame_len = header.frame_len();
        if buf.len() < frame_len {
            return Ok(None);
        }
        let body = &buf[header.header_len..frame_len];
        let publish = validate::body(self.version, &header, body)?;
        let own = match (self.version, header.kind()) {
            (Version::V5, frame::DISCONNECT) => disconnect::decode_reason_only(body),
            _ => None,
        };
        let mut frame = buf.split_to(frame_len);
        let packet = match own {
            Some(packet) => packet,
            None => self.read(&mut frame)?,
        };
        Ok(Some(Incoming { packet, publish }))
    }

    /// Decodes one complete, validated frame with rumqttd.
    fn read(&self, frame: &mut BytesMut) -> Result<Packet, DecodeError> {
        let result = match self.version {
            Version::V4 => V4.read_mut(frame, self.max_packet_size),
            Version::V5 => V5.read_mut(frame, self.max_packet_size),
        };
        // The frame is complete, so even `InsufficientBytes` is a bad packet.
        result.map_err(|e| DecodeError::Malformed(format!("rumqttd: {e}")))
    }

    /// Encodes `packet` for this connection's version into `buf`.
    ///
    /// MQTT 3.1.1 has no properties and fewer reason codes: properties are
    /// dropped and v5-only codes mapped to their 3.1.1 equivalent, so a
    /// packet built for either version is always safe to send. A
    /// DISCONNECT is not sent to a 3.1.1 client (nothing is written).
    pub fn encode(&self, packet: Packet, buf: &mut BytesMut) -> Result<(), protocol::Error> {
        encode::encode(self.version, packet, buf)
    }

    /// The full length on the wire of `p` as [`Codec::encode_publish`] writes it.
    ///
    /// Compare it with the client's Maximum Packet Size before sending.
    pub fn publish_len(&self, p: &OutgoingPublish<'_>) -> usize {
        publish::publish_len(self.version, p)
    }

    /// Appends `p` as a PUBLISH packet to `buf` ([`Codec::publish_len`] bytes).
    ///
    /// MQTT 3.1.1 ignores the properties; MQTT 5 writes all of them. The
    /// DUP flag is only written for QoS 1/2. The caller keeps the packet
    /// encodable: QoS at most 2, a non-zero packet id for QoS 1/2, strings
    /// under 64 KiB and the packet under 256 MiB.
    pub fn encode_publish(&self, p: &OutgoingPublish<'_>, buf: &mut BytesMut) {
        publish::encode_publish(self.version, p, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttd::protocol::{ConnAck, SubscribeReasonCode};

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

    #[test]
    fn decode_consumes_exactly_one_frame() {
        let codec = Codec::new(Version::V5, 1024);
        let mut buf = BytesMut::from(&[0xE0u8, 1, 0x04, 0xC0, 0][..]);
        let first = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            first.packet,
            Packet::Disconnect(
                rumqttd::protocol::Disconnect {
                    reason_code: rumqttd::protocol::DisconnectReasonCode::DisconnectWithWillMessage
                },
                None
            )
        );
        assert_eq!(&buf[..], &[0xC0, 0]);
        let second = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(second.packet, Packet::PingReq(rumqttd::protocol::PingReq));
        assert!(buf.is_empty());
        assert_eq!(codec.decode(&mut buf), Ok(None));
    }
}
