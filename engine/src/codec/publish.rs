//! PUBLISH fields rumqttd keeps private, and Parley's own PUBLISH encoder.
//!
//! rumqttd's `Publish` keeps QoS, packet id and DUP `pub(crate)`: decoded
//! PUBLISHes expose them through [`PublishMeta`], and outgoing deliveries
//! (which need a QoS and packet id of the broker's choosing) are encoded
//! from an [`OutgoingPublish`] instead of a rumqttd packet.

use bytes::{BufMut, BytesMut};
use rumqttd::protocol::PublishProperties;

use super::properties::{
    CONTENT_TYPE, CORRELATION_DATA, MESSAGE_EXPIRY_INTERVAL, PAYLOAD_FORMAT_INDICATOR,
    RESPONSE_TOPIC, SUBSCRIPTION_IDENTIFIER, TOPIC_ALIAS, USER_PROPERTY,
};
use super::wire::{put_binary, put_varint, read_varint, varint_len, VarInt};
use super::Version;

/// QoS, packet id and DUP flag of a PUBLISH, which rumqttd's `Publish` keeps private.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishMeta {
    /// Requested QoS (0, 1 or 2).
    pub qos: u8,
    /// Packet identifier (0 for QoS 0).
    pub pkid: u16,
    /// DUP flag: the client may have sent this packet before.
    pub dup: bool,
}

/// Reads [`PublishMeta`] from the raw frame at the head of `buf`, if it is a PUBLISH.
///
/// `None` if the frame is not a PUBLISH or is too short to hold the
/// packet id. The frame is not validated; [`Codec::decode`](super::Codec::decode)
/// reports the same fields for packets it accepted.
pub fn peek_publish(buf: &[u8]) -> Option<PublishMeta> {
    let byte1 = *buf.first()?;
    if byte1 >> 4 != 3 {
        return None;
    }
    let qos = (byte1 >> 1) & 0b11;
    let dup = byte1 & 0b1000 != 0;
    if qos == 0 {
        return Some(PublishMeta { qos, pkid: 0, dup });
    }
    let VarInt::Complete(_, len_len) = read_varint(&buf[1..]) else {
        return None;
    };
    let topic_at = 1 + len_len;
    let topic_len = usize::from(u16::from_be_bytes([
        *buf.get(topic_at)?,
        *buf.get(topic_at + 1)?,
    ]));
    let pkid_at = topic_at + 2 + topic_len;
    let pkid = u16::from_be_bytes([*buf.get(pkid_at)?, *buf.get(pkid_at + 1)?]);
    Some(PublishMeta { qos, pkid, dup })
}

/// A PUBLISH the broker sends to a client, borrowed from the routed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingPublish<'a> {
    /// Topic name; `""` when a topic alias (in `properties`) replaces it.
    pub topic: &'a str,
    /// Application payload.
    pub payload: &'a [u8],
    /// Delivery QoS (0, 1 or 2).
    pub qos: u8,
    /// Packet identifier; must be non-zero for QoS 1 and 2, ignored for QoS 0.
    pub pkid: u16,
    /// DUP flag, for a redelivery of a QoS 1/2 message.
    pub dup: bool,
    /// RETAIN flag.
    pub retain: bool,
    /// MQTT 5 properties; ignored on 3.1.1 connections.
    pub properties: Option<&'a PublishProperties>,
}

/// Full length on the wire of `p` encoded for `version`.
pub(crate) fn publish_len(version: Version, p: &OutgoingPublish<'_>) -> usize {
    let remaining = remaining_len(version, p);
    1 + varint_len(remaining) + remaining
}

/// Appends `p` encoded for `version` to `buf`.
///
/// The caller keeps the packet encodable: QoS at most 2, a non-zero packet
/// id for QoS 1/2, strings and binary fields under 64 KiB and the whole
/// packet within the client's maximum packet size (at most 256 MiB).
/// Debug builds assert the first three.
pub(crate) fn encode_publish(version: Version, p: &OutgoingPublish<'_>, buf: &mut BytesMut) {
    debug_assert!(p.qos <= 2, "QoS {} does not exist", p.qos);
    debug_assert!(p.qos == 0 || p.pkid != 0, "QoS {} needs a packet id", p.qos);
    let props = match version {
        Version::V5 => Some(p.properties.map_or(0, properties_len)),
        Version::V4 => None,
    };
    let remaining = remaining_len(version, p);
    buf.reserve(1 + varint_len(remaining) + remaining);
    let dup = if p.qos > 0 && p.dup { 0b1000 } else { 0 };
    buf.put_u8(0x30 | dup | ((p.qos & 0b11) << 1) | u8::from(p.retain));
    put_varint(buf, remaining);
    put_binary(buf, p.topic.as_bytes());
    if p.qos > 0 {
        buf.put_u16(p.pkid);
    }
    if let Some(len) = props {
        put_varint(buf, len);
        if let Some(properties) = p.properties {
            put_properties(properties, buf);
        }
    }
    buf.extend_from_slice(p.payload);
}

/// Remaining length (after the fixed header) of `p` encoded for `version`.
fn remaining_len(version: Version, p: &OutgoingPublish<'_>) -> usize {
    let pkid = if p.qos > 0 { 2 } else { 0 };
    let props = match version {
        Version::V5 => {
            let len = p.properties.map_or(0, properties_len);
            varint_len(len) + len
        }
        Version::V4 => 0,
    };
    2 + p.topic.len() + pkid + props + p.payload.len()
}

/// Length of the encoded properties, without their length prefix.
fn properties_len(p: &PublishProperties) -> usize {
    p.payload_format_indicator.map_or(0, |_| 1 + 1)
        + p.message_expiry_interval.map_or(0, |_| 1 + 4)
        + p.topic_alias.map_or(0, |_| 1 + 2)
        + p.response_topic.as_ref().map_or(0, |s| 3 + s.len())
        + p.correlation_data.as_ref().map_or(0, |d| 3 + d.len())
        + p.user_properties
            .iter()
            .map(|(k, v)| 5 + k.len() + v.len())
            .sum::<usize>()
        + p.subscription_identifiers
            .iter()
            .map(|&id| 1 + varint_len(id))
            .sum::<usize>()
        + p.content_type.as_ref().map_or(0, |s| 3 + s.len())
}

/// Writes every property of `p`, in the order rumqttd writes them.
///
/// The bytes are correct MQTT 5, but rumqttd's and rumqttc's (0.25)
/// readers count each subscription identifier one byte too long, so with
/// three or more identifiers they can stop early and read the remaining
/// properties as payload. No property order avoids it.
fn put_properties(p: &PublishProperties, buf: &mut BytesMut) {
    if let Some(indicator) = p.payload_format_indicator {
        buf.put_u8(PAYLOAD_FORMAT_INDICATOR);
        buf.put_u8(indicator);
    }
    if let Some(interval) = p.message_expiry_interval {
        buf.put_u8(MESSAGE_EXPIRY_INTERVAL);
        buf.put_u32(interval);
    }
    if let Some(alias) = p.topic_alias {
        buf.put_u8(TOPIC_ALIAS);
        buf.put_u16(alias);
    }
    if let Some(topic) = &p.response_topic {
        buf.put_u8(RESPONSE_TOPIC);
        put_binary(buf, topic.as_bytes());
    }
    if let Some(data) = &p.correlation_data {
        buf.put_u8(CORRELATION_DATA);
        put_binary(buf, data);
    }
    for (key, value) in &p.user_properties {
        buf.put_u8(USER_PROPERTY);
        put_binary(buf, key.as_bytes());
        put_binary(buf, value.as_bytes());
    }
    for &id in &p.subscription_identifiers {
        buf.put_u8(SUBSCRIPTION_IDENTIFIER);
        put_varint(buf, id);
    }
    if let Some(content_type) = &p.content_type {
        buf.put_u8(CONTENT_TYPE);
        put_binary(buf, content_type.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_publish_qos_packet_id_and_dup() {
        // QoS 1 publish, topic "a/b", pkid 0x1234, payload "x"
        let frame = [0x32, 8, 0, 3, b'a', b'/', b'b', 0x12, 0x34, b'x'];
        assert_eq!(
            peek_publish(&frame),
            Some(PublishMeta {
                qos: 1,
                pkid: 0x1234,
                dup: false
            })
        );
        let qos0 = [0x30, 6, 0, 3, b'a', b'/', b'b', b'x'];
        assert_eq!(
            peek_publish(&qos0),
            Some(PublishMeta {
                qos: 0,
                pkid: 0,
                dup: false
            })
        );
        let dup = [0x3C, 7, 0, 1, b'a', 0, 7, b'x', b'y'];
        assert_eq!(
            peek_publish(&dup),
            Some(PublishMeta {
                qos: 2,
                pkid: 7,
                dup: true
            })
        );
        assert_eq!(peek_publish(&[0xC0, 0]), None, "PINGREQ is not a publish");
        assert_eq!(peek_publish(&[0x32, 8, 0, 3, b'a']), None, "truncated");
    }

    #[test]
    fn dup_is_dropped_for_qos0() {
        let p = OutgoingPublish {
            topic: "t",
            payload: b"",
            qos: 0,
            pkid: 5,
            dup: true,
            retain: true,
            properties: None,
        };
        let mut buf = BytesMut::new();
        encode_publish(Version::V4, &p, &mut buf);
        assert_eq!(&buf[..], &[0x31, 3, 0, 1, b't']);
    }
}
