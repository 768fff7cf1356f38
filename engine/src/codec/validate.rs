//! Strict walk over the body of a client's packet before rumqttd decodes it.
//!
//! Each packet's variable header and payload is read field by field with a
//! bounds-checked [`Reader`]: strings must be UTF-8 without U+0000, packet
//! identifiers non-zero, reason codes defined, CONNECT flags consistent,
//! subscription options free of reserved bits, MQTT 5 property sections
//! well-formed ([`properties::walk`]), and the body must end exactly where
//! its remaining length says. A body that passes is one rumqttd decodes
//! correctly, so its own leniency (and its panics) never matter.

use super::error::{malformed, protocol};
use super::frame::{self, FixedHeader};
use super::properties::{self, Context, TOPIC_ALIAS};
use super::wire::Reader;
use super::{disconnect, DecodeError, PublishMeta, Version};

/// Checks the body of a complete frame whose fixed header passed
/// [`frame::read_header`]; returns the PUBLISH fields rumqttd hides.
pub(crate) fn body(
    version: Version,
    header: &FixedHeader,
    body: &[u8],
) -> Result<Option<PublishMeta>, DecodeError> {
    let mut r = Reader::new(body);
    let kind = header.kind();
    let meta = match kind {
        frame::CONNECT => {
            connect(version, &mut r)?;
            None
        }
        frame::PUBLISH => Some(publish(version, header.flags(), &mut r)?),
        frame::PUBACK | frame::PUBREC | frame::PUBREL | frame::PUBCOMP => {
            ack(version, kind, &mut r)?;
            None
        }
        frame::SUBSCRIBE => {
            subscribe(version, &mut r)?;
            None
        }
        frame::UNSUBSCRIBE => {
            unsubscribe(version, &mut r)?;
            None
        }
        frame::PINGREQ => None,
        frame::DISCONNECT => {
            if version == Version::V5 {
                disconnect_v5(&mut r)?;
            }
            None
        }
        // Refused by the fixed-header check already.
        other => return protocol(format!("unexpected {}", frame::name(other))),
    };
    if !r.is_empty() {
        return malformed(format!(
            "{} has {} bytes after its last field",
            frame::name(kind),
            r.remaining()
        ));
    }
    Ok(meta)
}

/// Reads a packet identifier, which must not be 0.
fn packet_id(r: &mut Reader<'_>, kind: u8) -> Result<u16, DecodeError> {
    let id = r.u16("packet identifier")?;
    if id == 0 {
        return malformed(format!("{} has packet identifier 0", frame::name(kind)));
    }
    Ok(id)
}

/// CONNECT: protocol name and level, flags, keep alive, properties,
/// client id, will, user name and password.
fn connect(version: Version, r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let name = r.utf8("protocol name")?;
    let level = r.u8("protocol level")?;
    let expected = match version {
        Version::V4 => 4,
        Version::V5 => 5,
    };
    if name != "MQTT" || level != expected {
        return protocol(format!(
            "CONNECT for protocol {name:?} level {level} on an MQTT level {expected} connection"
        ));
    }
    let flags = r.u8("connect flags")?;
    if flags & 0x01 != 0 {
        return malformed("CONNECT reserved flag is set");
    }
    let will = flags & 0x04 != 0;
    if !will && flags & 0x38 != 0 {
        return malformed("will QoS or will retain set without the will flag");
    }
    if (flags >> 3) & 0b11 == 3 {
        return malformed("will QoS 3");
    }
    let username = flags & 0x80 != 0;
    let password = flags & 0x40 != 0;
    if version == Version::V4 && password && !username {
        return malformed("password flag set without the user name flag");
    }
    r.u16("keep alive")?;
    if version == Version::V5 {
        properties::walk(r, Context::Connect)?;
    }
    r.utf8("client identifier")?;
    if will {
        if version == Version::V5 {
            properties::walk(r, Context::Will)?;
        }
        r.utf8("will topic")?;
        r.binary("will payload")?;
    }
    if username {
        r.utf8("user name")?;
    }
    if password {
        // The spec makes the password binary data, but rumqttd's `Login`
        // holds a `String`: a password that is not UTF-8 cannot be passed on.
        let bytes = r.binary("password")?;
        if std::str::from_utf8(bytes).is_err() {
            return malformed("password is not UTF-8, which Parley cannot accept");
        }
    }
    Ok(())
}

/// PUBLISH: topic, packet id for QoS 1/2, properties, payload.
fn publish(version: Version, flags: u8, r: &mut Reader<'_>) -> Result<PublishMeta, DecodeError> {
    let qos = (flags >> 1) & 0b11;
    let dup = flags & 0b1000 != 0;
    let topic = r.utf8("topic name")?;
    let pkid = if qos > 0 {
        packet_id(r, frame::PUBLISH)?
    } else {
        0
    };
    let aliased = match version {
        Version::V5 => properties::walk(r, Context::Publish)?.contains(TOPIC_ALIAS),
        Version::V4 => false,
    };
    if topic.is_empty() && !aliased {
        return protocol("PUBLISH with an empty topic name and no topic alias");
    }
    r.take(r.remaining(), "payload")?;
    Ok(PublishMeta { qos, pkid, dup })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP: packet id, and for MQTT 5 an optional
/// reason code followed by optional properties.
fn ack(version: Version, kind: u8, r: &mut Reader<'_>) -> Result<(), DecodeError> {
    packet_id(r, kind)?;
    if version == Version::V4 || r.is_empty() {
        return Ok(());
    }
    let code = r.u8("reason code")?;
    let defined: &[u8] = match kind {
        frame::PUBACK | frame::PUBREC => &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
        _ => &[0x00, 0x92],
    };
    if !defined.contains(&code) {
        return malformed(format!(
            "{} reason code {code:#04x} is not defined",
            frame::name(kind)
        ));
    }
    if !r.is_empty() {
        properties::walk(r, Context::Ack)?;
    }
    Ok(())
}

/// SUBSCRIBE: packet id, properties, then one or more filter and options pairs.
fn subscribe(version: Version, r: &mut Reader<'_>) -> Result<(), DecodeError> {
    packet_id(r, frame::SUBSCRIBE)?;
    if version == Version::V5 {
        properties::walk(r, Context::Subscribe)?;
    }
    if r.is_empty() {
        return protocol("SUBSCRIBE without topic filters");
    }
    while !r.is_empty() {
        r.utf8("topic filter")?;
        let options = r.u8("subscription options")?;
        if options & 0b11 == 3 {
            return malformed("subscription with QoS 3");
        }
        let reserved = match version {
            Version::V4 => 0b1111_1100,
            Version::V5 => 0b1100_0000,
        };
        if options & reserved != 0 {
            return malformed("subscription options have reserved bits set");
        }
        if (options >> 4) & 0b11 == 3 {
            return malformed("subscription with retain handling 3");
        }
    }
    Ok(())
}

/// UNSUBSCRIBE: packet id, properties, then one or more filters.
fn unsubscribe(version: Version, r: &mut Reader<'_>) -> Result<(), DecodeError> {
    packet_id(r, frame::UNSUBSCRIBE)?;
    if version == Version::V5 {
        properties::walk(r, Context::Unsubscribe)?;
    }
    if r.is_empty() {
        return protocol("UNSUBSCRIBE without topic filters");
    }
    while !r.is_empty() {
        r.utf8("topic filter")?;
    }
    Ok(())
}

/// MQTT 5 DISCONNECT: optional reason code, then optional properties.
fn disconnect_v5(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    if r.is_empty() {
        return Ok(());
    }
    let code = r.u8("reason code")?;
    if disconnect::reason(code).is_none() {
        return malformed(format!("DISCONNECT reason code {code:#04x} is not defined"));
    }
    if !r.is_empty() {
        properties::walk(r, Context::Disconnect)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(version: Version, frame: &[u8]) -> Result<Option<PublishMeta>, DecodeError> {
        let header = frame::read_header(version, frame, usize::MAX)
            .expect("header")
            .expect("complete header");
        assert_eq!(header.frame_len(), frame.len(), "test frame length");
        body(version, &header, &frame[header.header_len..])
    }

    fn is_malformed<T: std::fmt::Debug>(r: Result<T, DecodeError>) -> bool {
        matches!(r, Err(DecodeError::Malformed(_)))
    }

    fn is_protocol<T: std::fmt::Debug>(r: Result<T, DecodeError>) -> bool {
        matches!(r, Err(DecodeError::Protocol(_)))
    }

    /// A CONNECT with the given level, flags and tail after keep alive.
    fn connect_frame(level: u8, flags: u8, tail: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags, 0, 60];
        body.extend_from_slice(tail);
        let mut v = vec![0x10, body.len() as u8];
        v.extend(body);
        v
    }

    #[test]
    fn connect_flags_are_checked() {
        let v4 = |flags, tail: &[u8]| check(Version::V4, &connect_frame(4, flags, tail));
        assert!(v4(0x02, &[0, 1, b'c']).is_ok());
        assert!(is_malformed(v4(0x03, &[0, 1, b'c'])));
        assert!(is_malformed(v4(0x08, &[0, 1, b'c'])));
        assert!(is_malformed(v4(0x20, &[0, 1, b'c'])));
        assert!(is_malformed(v4(0x1C, &[0, 1, b'c', 0, 1, b't', 0, 0])));
        assert!(v4(0x14, &[0, 1, b'c', 0, 1, b't', 0, 0]).is_ok());
        assert!(is_malformed(v4(0x40, &[0, 1, b'c', 0, 1, b'p'])));
        assert!(v4(0xC0, &[0, 1, b'c', 0, 1, b'u', 0, 1, b'p']).is_ok());
        assert!(is_malformed(v4(
            0xC0,
            &[0, 1, b'c', 0, 1, b'u', 0, 1, 0xff]
        )));
        assert!(is_malformed(v4(0x02, &[0, 1, b'c', 9])), "trailing byte");
        let v5 = |flags, tail: &[u8]| check(Version::V5, &connect_frame(5, flags, tail));
        assert!(
            v5(0x42, &[0, 0, 1, b'c', 0, 1, b'p']).is_ok(),
            "v5 allows a bare password"
        );
        assert!(is_protocol(check(
            Version::V5,
            &connect_frame(4, 2, &[0, 0, 1, b'c'])
        )));
    }

    #[test]
    fn v5_connect_and_will_properties_are_walked() {
        let v5 = |tail: &[u8]| check(Version::V5, &connect_frame(5, 0x06, tail));
        let will = [0, 0, 1, b't', 0, 0];
        let with = |props: &[u8]| {
            let mut t = props.to_vec();
            t.extend_from_slice(&[0, 1, b'c']);
            t.extend_from_slice(&will);
            t
        };
        assert!(v5(&with(&[3, 0x21, 0, 10])).is_ok());
        assert!(is_protocol(v5(&with(&[3, 0x21, 0, 0]))));
        assert!(is_protocol(v5(&with(&[5, 0x27, 0, 0, 0, 0]))));
        assert!(is_protocol(v5(&with(&[6, 0x21, 0, 1, 0x21, 0, 2]))));
        assert!(is_malformed(v5(&with(&[2, 0x00, 0]))));
        // Will properties: will delay is fine there, receive maximum is not.
        let mut t = vec![0, 0, 1, b'c', 5, 0x18, 0, 0, 0, 1];
        t.extend_from_slice(&[0, 1, b't', 0, 0]);
        assert!(v5(&t).is_ok());
        let mut t = vec![0, 0, 1, b'c', 3, 0x21, 0, 1];
        t.extend_from_slice(&[0, 1, b't', 0, 0]);
        assert!(is_protocol(v5(&t)));
    }

    #[test]
    fn publish_fields_are_checked() {
        assert_eq!(
            check(Version::V4, &[0x3B, 6, 0, 1, b'a', 0, 9, b'x']).unwrap(),
            Some(PublishMeta {
                qos: 1,
                pkid: 9,
                dup: true
            })
        );
        assert!(is_malformed(check(
            Version::V4,
            &[0x32, 5, 0, 1, b'a', 0, 0]
        )));
        assert!(is_protocol(check(Version::V4, &[0x30, 3, 0, 0, b'x'])));
        assert!(is_protocol(check(Version::V5, &[0x30, 3, 0, 0, 0])));
        assert!(check(Version::V5, &[0x30, 6, 0, 0, 3, 0x23, 0, 1]).is_ok());
        assert!(is_protocol(check(
            Version::V5,
            &[0x30, 6, 0, 0, 3, 0x23, 0, 0]
        )));
        assert!(is_protocol(check(
            Version::V5,
            &[0x30, 6, 0, 1, b'a', 2, 0x0B, 1]
        )));
        assert!(is_malformed(check(Version::V5, &[0x30, 4, 0, 1, 0xff, 0])));
        assert!(is_malformed(check(Version::V5, &[0x30, 4, 0, 1, b'a', 1])));
    }

    #[test]
    fn acks_are_checked() {
        for byte1 in [0x40, 0x50, 0x62, 0x70] {
            assert!(check(Version::V4, &[byte1, 2, 0, 1]).is_ok());
            assert!(is_malformed(check(Version::V4, &[byte1, 3, 0, 1, 0])));
            assert!(is_malformed(check(Version::V4, &[byte1, 2, 0, 0])));
            assert!(check(Version::V5, &[byte1, 3, 0, 1, 0]).is_ok());
            assert!(check(Version::V5, &[byte1, 4, 0, 1, 0, 0]).is_ok());
            assert!(check(Version::V5, &[byte1, 8, 0, 1, 0, 4, 0x1F, 0, 1, b'r']).is_ok());
            assert!(is_protocol(check(
                Version::V5,
                &[byte1, 7, 0, 1, 0, 3, 0x23, 0, 1]
            )));
            assert!(is_malformed(check(Version::V5, &[byte1, 3, 0, 1, 0x01])));
        }
        assert!(check(Version::V5, &[0x62, 3, 0, 1, 0x92]).is_ok());
        assert!(is_malformed(check(Version::V5, &[0x62, 3, 0, 1, 0x10])));
    }

    #[test]
    fn subscriptions_are_checked() {
        assert!(check(Version::V4, &[0x82, 6, 0, 1, 0, 1, b'a', 2]).is_ok());
        assert!(is_malformed(check(
            Version::V4,
            &[0x82, 6, 0, 1, 0, 1, b'a', 4]
        )));
        assert!(is_malformed(check(
            Version::V4,
            &[0x82, 6, 0, 1, 0, 1, b'a', 3]
        )));
        assert!(is_protocol(check(Version::V4, &[0x82, 2, 0, 1])));
        assert!(check(Version::V5, &[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x2E]).is_ok());
        assert!(is_malformed(check(
            Version::V5,
            &[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x40]
        )));
        assert!(is_malformed(check(
            Version::V5,
            &[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x30]
        )));
        assert!(is_malformed(check(
            Version::V5,
            &[0x82, 6, 0, 1, 0, 0, 1, b'a']
        )));
        assert!(is_protocol(check(Version::V5, &[0x82, 3, 0, 1, 0])));
        assert!(is_protocol(check(
            Version::V5,
            &[0x82, 9, 0, 1, 2, 0x0B, 0, 0, 1, b'a', 0]
        )));
        assert!(check(Version::V5, &[0x82, 9, 0, 1, 2, 0x0B, 7, 0, 1, b'a', 0]).is_ok());
        assert!(is_protocol(check(Version::V4, &[0xA2, 2, 0, 1])));
        assert!(is_protocol(check(Version::V5, &[0xA2, 3, 0, 1, 0])));
        assert!(check(Version::V5, &[0xA2, 6, 0, 1, 0, 0, 1, b'a']).is_ok());
        assert!(is_protocol(check(
            Version::V5,
            &[0xA2, 8, 0, 1, 2, 0x0B, 1, 0, 1, b'a']
        )));
    }

    #[test]
    fn ping_and_disconnect_are_checked() {
        assert!(check(Version::V5, &[0xC0, 0]).is_ok());
        assert!(is_malformed(check(Version::V5, &[0xC0, 1, 0])));
        assert!(is_malformed(check(Version::V4, &[0xE0, 1, 0])));
        assert!(check(Version::V5, &[0xE0, 1, 0x04]).is_ok());
        assert!(is_malformed(check(Version::V5, &[0xE0, 1, 0x05])));
        assert!(check(Version::V5, &[0xE0, 7, 0, 5, 0x11, 0, 0, 0, 1]).is_ok());
        assert!(is_protocol(check(
            Version::V5,
            &[0xE0, 5, 0, 3, 0x21, 0, 1]
        )));
    }
}
