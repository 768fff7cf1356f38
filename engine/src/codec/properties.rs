//! MQTT 5 properties: the identifiers, which of them a client may put in
//! which packet, and a walk that checks a property section (types, lengths,
//! repetition, forbidden values) without decoding it.
//!
//! rumqttd reads properties without these checks: it accepts duplicates,
//! properties of the wrong packet and zero limits, and does not bound its
//! reads to the declared property length. Once a section passed
//! [`walk`], rumqttd's reader sees only well-formed input.

use super::error::{malformed, protocol};
use super::wire::Reader;
use super::DecodeError;

/// Payload Format Indicator (byte).
pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
/// Message Expiry Interval (four-byte integer).
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
/// Content Type (UTF-8 string).
pub(crate) const CONTENT_TYPE: u8 = 0x03;
/// Response Topic (UTF-8 string).
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
/// Correlation Data (binary data).
pub(crate) const CORRELATION_DATA: u8 = 0x09;
/// Subscription Identifier (variable byte integer).
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
/// Session Expiry Interval (four-byte integer).
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
/// Assigned Client Identifier (UTF-8 string).
const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
/// Server Keep Alive (two-byte integer).
const SERVER_KEEP_ALIVE: u8 = 0x13;
/// Authentication Method (UTF-8 string).
const AUTHENTICATION_METHOD: u8 = 0x15;
/// Authentication Data (binary data).
const AUTHENTICATION_DATA: u8 = 0x16;
/// Request Problem Information (byte, 0 or 1).
const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
/// Will Delay Interval (four-byte integer).
const WILL_DELAY_INTERVAL: u8 = 0x18;
/// Request Response Information (byte, 0 or 1).
const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
/// Response Information (UTF-8 string).
const RESPONSE_INFORMATION: u8 = 0x1A;
/// Server Reference (UTF-8 string).
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
/// Reason String (UTF-8 string).
pub(crate) const REASON_STRING: u8 = 0x1F;
/// Receive Maximum (two-byte integer, not 0).
const RECEIVE_MAXIMUM: u8 = 0x21;
/// Topic Alias Maximum (two-byte integer).
const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
/// Topic Alias (two-byte integer, not 0).
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
/// Maximum QoS (byte).
const MAXIMUM_QOS: u8 = 0x24;
/// Retain Available (byte).
const RETAIN_AVAILABLE: u8 = 0x25;
/// User Property (UTF-8 string pair), the only property that may repeat
/// in a client's packet.
pub(crate) const USER_PROPERTY: u8 = 0x26;
/// Maximum Packet Size (four-byte integer, not 0).
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
/// Wildcard Subscription Available (byte).
const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
/// Subscription Identifier Available (byte).
const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
/// Shared Subscription Available (byte).
const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// The property section being walked: which packet (or the will) it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// CONNECT's own properties.
    Connect,
    /// The will properties inside CONNECT.
    Will,
    /// A client's PUBLISH.
    Publish,
    /// PUBACK, PUBREC, PUBREL or PUBCOMP.
    Ack,
    /// SUBSCRIBE.
    Subscribe,
    /// UNSUBSCRIBE.
    Unsubscribe,
    /// A client's DISCONNECT.
    Disconnect,
}

impl Context {
    /// This context as a bit of [`Def::allowed`].
    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The section's name for error messages.
    fn name(self) -> &'static str {
        match self {
            Context::Connect => "CONNECT",
            Context::Will => "will properties",
            Context::Publish => "PUBLISH",
            Context::Ack => "acknowledgement",
            Context::Subscribe => "SUBSCRIBE",
            Context::Unsubscribe => "UNSUBSCRIBE",
            Context::Disconnect => "DISCONNECT",
        }
    }
}

/// A property value's wire type, with the value rules a client must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One byte, any value.
    Byte,
    /// One byte, 0 or 1.
    Flag,
    /// Two-byte integer.
    U16,
    /// Two-byte integer other than 0.
    NonZeroU16,
    /// Four-byte integer.
    U32,
    /// Four-byte integer other than 0.
    NonZeroU32,
    /// Variable byte integer other than 0.
    NonZeroVarInt,
    /// UTF-8 string.
    Utf8,
    /// Binary data.
    Binary,
    /// UTF-8 string pair.
    Pair,
}

/// One property: name, type and the client sections it may appear in.
#[derive(Debug, Clone, Copy)]
struct Def {
    name: &'static str,
    kind: Kind,
    /// Bit set of [`Context::bit`]; 0 for properties only servers send.
    allowed: u8,
}

/// Builds the bit set of [`Def::allowed`].
const fn contexts(list: &[Context]) -> u8 {
    let mut bits = 0;
    let mut i = 0;
    while i < list.len() {
        bits |= 1 << list[i] as u8;
        i += 1;
    }
    bits
}

/// Looks a property identifier up (MQTT 5 table 2-4); `None` if undefined.
fn lookup(id: u8) -> Option<Def> {
    use Context::*;
    let (name, kind, allowed) = match id {
        PAYLOAD_FORMAT_INDICATOR => (
            "Payload Format Indicator",
            Kind::Flag,
            contexts(&[Publish, Will]),
        ),
        MESSAGE_EXPIRY_INTERVAL => (
            "Message Expiry Interval",
            Kind::U32,
            contexts(&[Publish, Will]),
        ),
        CONTENT_TYPE => ("Content Type", Kind::Utf8, contexts(&[Publish, Will])),
        RESPONSE_TOPIC => ("Response Topic", Kind::Utf8, contexts(&[Publish, Will])),
        CORRELATION_DATA => ("Correlation Data", Kind::Binary, contexts(&[Publish, Will])),
        // Only servers put subscription identifiers in PUBLISH.
        SUBSCRIPTION_IDENTIFIER => (
            "Subscription Identifier",
            Kind::NonZeroVarInt,
            contexts(&[Subscribe]),
        ),
        SESSION_EXPIRY_INTERVAL => (
            "Session Expiry Interval",
            Kind::U32,
            contexts(&[Connect, Disconnect]),
        ),
        ASSIGNED_CLIENT_IDENTIFIER => ("Assigned Client Identifier", Kind::Utf8, 0),
        SERVER_KEEP_ALIVE => ("Server Keep Alive", Kind::U16, 0),
        AUTHENTICATION_METHOD => ("Authentication Method", Kind::Utf8, contexts(&[Connect])),
        AUTHENTICATION_DATA => ("Authentication Data", Kind::Binary, contexts(&[Connect])),
        REQUEST_PROBLEM_INFORMATION => (
            "Request Problem Information",
            Kind::Flag,
            contexts(&[Connect]),
        ),
        WILL_DELAY_INTERVAL => ("Will Delay Interval", Kind::U32, contexts(&[Will])),
        REQUEST_RESPONSE_INFORMATION => (
            "Request Response Information",
            Kind::Flag,
            contexts(&[Connect]),
        ),
        RESPONSE_INFORMATION => ("Response Information", Kind::Utf8, 0),
        SERVER_REFERENCE => ("Server Reference", Kind::Utf8, contexts(&[Disconnect])),
        REASON_STRING => ("Reason String", Kind::Utf8, contexts(&[Ack, Disconnect])),
        RECEIVE_MAXIMUM => ("Receive Maximum", Kind::NonZeroU16, contexts(&[Connect])),
        TOPIC_ALIAS_MAXIMUM => ("Topic Alias Maximum", Kind::U16, contexts(&[Connect])),
        TOPIC_ALIAS => ("Topic Alias", Kind::NonZeroU16, contexts(&[Publish])),
        MAXIMUM_QOS => ("Maximum QoS", Kind::Byte, 0),
        RETAIN_AVAILABLE => ("Retain Available", Kind::Byte, 0),
        USER_PROPERTY => (
            "User Property",
            Kind::Pair,
            contexts(&[
                Connect,
                Will,
                Publish,
                Ack,
                Subscribe,
                Unsubscribe,
                Disconnect,
            ]),
        ),
        MAXIMUM_PACKET_SIZE => (
            "Maximum Packet Size",
            Kind::NonZeroU32,
            contexts(&[Connect]),
        ),
        WILDCARD_SUBSCRIPTION_AVAILABLE => ("Wildcard Subscription Available", Kind::Byte, 0),
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => ("Subscription Identifier Available", Kind::Byte, 0),
        SHARED_SUBSCRIPTION_AVAILABLE => ("Shared Subscription Available", Kind::Byte, 0),
        _ => return None,
    };
    Some(Def {
        name,
        kind,
        allowed,
    })
}

/// The set of property identifiers a walked section contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen(u64);

impl Seen {
    /// Whether property `id` was present.
    pub(crate) fn contains(self, id: u8) -> bool {
        id < 64 && self.0 & (1 << id) != 0
    }

    /// Records property `id`.
    fn insert(&mut self, id: u8) {
        self.0 |= 1 << id;
    }
}

/// Checks the property section at the reader (length, then properties) and
/// moves past it.
///
/// Unknown identifiers and badly encoded values are malformed; a property
/// the section may not carry, a repeated property other than User
/// Property, a forbidden value (0 for Receive Maximum, Maximum Packet Size,
/// Topic Alias or Subscription Identifier; not 0/1 for a flag) or
/// Authentication Data without Authentication Method is a protocol error.
pub(crate) fn walk(r: &mut Reader<'_>, ctx: Context) -> Result<Seen, DecodeError> {
    let len = r.varint("property length")?;
    let mut p = Reader::new(r.take(len, "property section")?);
    let mut seen = Seen::default();
    while !p.is_empty() {
        let id = p.u8("property identifier")?;
        let Some(def) = lookup(id) else {
            return malformed(format!("unknown property identifier {id:#04x}"));
        };
        if def.allowed & ctx.bit() == 0 {
            return protocol(format!("{} is not allowed in {}", def.name, ctx.name()));
        }
        if id != USER_PROPERTY && seen.contains(id) {
            return protocol(format!("{} appears twice in {}", def.name, ctx.name()));
        }
        seen.insert(id);
        check_value(&mut p, &def)?;
    }
    if ctx == Context::Connect
        && seen.contains(AUTHENTICATION_DATA)
        && !seen.contains(AUTHENTICATION_METHOD)
    {
        return protocol("Authentication Data without Authentication Method");
    }
    Ok(seen)
}

/// Reads one property value of `def`'s type and enforces its value rule.
fn check_value(p: &mut Reader<'_>, def: &Def) -> Result<(), DecodeError> {
    let zero = match def.kind {
        Kind::Byte => {
            p.u8(def.name)?;
            false
        }
        Kind::Flag => {
            let value = p.u8(def.name)?;
            if value > 1 {
                return protocol(format!("{} is {value}, must be 0 or 1", def.name));
            }
            false
        }
        Kind::U16 => {
            p.u16(def.name)?;
            false
        }
        Kind::NonZeroU16 => p.u16(def.name)? == 0,
        Kind::U32 => {
            p.u32(def.name)?;
            false
        }
        Kind::NonZeroU32 => p.u32(def.name)? == 0,
        Kind::NonZeroVarInt => p.varint(def.name)? == 0,
        Kind::Utf8 => {
            p.utf8(def.name)?;
            false
        }
        Kind::Binary => {
            p.binary(def.name)?;
            false
        }
        Kind::Pair => {
            p.utf8(def.name)?;
            p.utf8(def.name)?;
            false
        }
    };
    if zero {
        return protocol(format!("{} is 0", def.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_bytes(bytes: &[u8], ctx: Context) -> Result<Seen, DecodeError> {
        let mut r = Reader::new(bytes);
        let seen = walk(&mut r, ctx)?;
        assert!(r.is_empty(), "walk must consume the section");
        Ok(seen)
    }

    #[test]
    fn accepts_repeated_user_properties() {
        let bytes = [11, 0x26, 0, 1, b'k', 0, 0, 0x26, 0, 0, 0, 0];
        let seen = walk_bytes(&bytes, Context::Ack);
        assert!(seen.is_ok(), "{seen:?}");
        assert!(seen.unwrap().contains(USER_PROPERTY));
    }

    #[test]
    fn refuses_unknown_misplaced_and_repeated_properties() {
        assert!(matches!(
            walk_bytes(&[2, 0x04, 0], Context::Publish),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            walk_bytes(&[3, 0x21, 0, 5], Context::Publish),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            walk_bytes(&[2, 0x0B, 1], Context::Publish),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            walk_bytes(&[10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2], Context::Connect),
            Err(DecodeError::Protocol(_))
        ));
    }

    #[test]
    fn refuses_forbidden_values() {
        for (bytes, ctx) in [
            (&[3u8, 0x21, 0, 0][..], Context::Connect),
            (&[5, 0x27, 0, 0, 0, 0][..], Context::Connect),
            (&[3, 0x23, 0, 0][..], Context::Publish),
            (&[2, 0x0B, 0][..], Context::Subscribe),
            (&[2, 0x17, 2][..], Context::Connect),
            (&[3, 0x16, 0, 0][..], Context::Connect),
        ] {
            assert!(
                matches!(walk_bytes(bytes, ctx), Err(DecodeError::Protocol(_))),
                "{bytes:x?}"
            );
        }
        assert!(walk_bytes(&[3, 0x23, 0, 1], Context::Publish).is_ok());
    }

    #[test]
    fn refuses_sections_that_do_not_add_up() {
        // Declared length cuts the string short.
        assert!(matches!(
            walk_bytes(&[3, 0x1F, 0, 2, b'a', b'b'], Context::Ack),
            Err(DecodeError::Malformed(_))
        ));
        // Declared length is longer than the packet.
        let mut r = Reader::new(&[9, 0x1F, 0, 0]);
        assert!(matches!(
            walk(&mut r, Context::Ack),
            Err(DecodeError::Malformed(_))
        ));
        // Non-minimal subscription identifier.
        assert!(matches!(
            walk_bytes(&[3, 0x0B, 0x81, 0x00], Context::Subscribe),
            Err(DecodeError::Malformed(_))
        ));
    }
}
