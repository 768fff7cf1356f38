//! The fixed header of a packet from a client: is the type one a client may
//! send, are its flags the ones the spec fixes, does the remaining length
//! parse and stay within the maximum packet size.
//!
//! Checked on the first bytes of a frame, before waiting for its body, so a
//! bad or oversized packet is refused without buffering it.

use super::error::{malformed, protocol};
use super::wire::{read_varint, VarInt};
use super::{DecodeError, Version};

/// CONNECT packet type.
pub(crate) const CONNECT: u8 = 1;
/// CONNACK packet type (server to client only).
pub(crate) const CONNACK: u8 = 2;
/// PUBLISH packet type.
pub(crate) const PUBLISH: u8 = 3;
/// PUBACK packet type.
pub(crate) const PUBACK: u8 = 4;
/// PUBREC packet type.
pub(crate) const PUBREC: u8 = 5;
/// PUBREL packet type.
pub(crate) const PUBREL: u8 = 6;
/// PUBCOMP packet type.
pub(crate) const PUBCOMP: u8 = 7;
/// SUBSCRIBE packet type.
pub(crate) const SUBSCRIBE: u8 = 8;
/// SUBACK packet type (server to client only).
pub(crate) const SUBACK: u8 = 9;
/// UNSUBSCRIBE packet type.
pub(crate) const UNSUBSCRIBE: u8 = 10;
/// UNSUBACK packet type (server to client only).
pub(crate) const UNSUBACK: u8 = 11;
/// PINGREQ packet type.
pub(crate) const PINGREQ: u8 = 12;
/// PINGRESP packet type (server to client only).
pub(crate) const PINGRESP: u8 = 13;
/// DISCONNECT packet type.
pub(crate) const DISCONNECT: u8 = 14;
/// AUTH packet type (MQTT 5 only; reserved in 3.1.1).
pub(crate) const AUTH: u8 = 15;

/// The packet's name for error messages.
pub(crate) fn name(kind: u8) -> &'static str {
    match kind {
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        AUTH => "AUTH",
        _ => "reserved packet type",
    }
}

/// A parsed and checked fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    /// The first byte: packet type and flags.
    pub(crate) byte1: u8,
    /// Bytes taken by the fixed header (2 to 5).
    pub(crate) header_len: usize,
    /// Bytes of variable header and payload after it.
    pub(crate) remaining_len: usize,
}

impl FixedHeader {
    /// The packet type (high nibble of the first byte).
    pub(crate) fn kind(&self) -> u8 {
        self.byte1 >> 4
    }

    /// The flags (low nibble of the first byte).
    pub(crate) fn flags(&self) -> u8 {
        self.byte1 & 0x0f
    }

    /// Length of the whole frame on the wire.
    pub(crate) fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Reads and checks the fixed header at the front of `buf`.
///
/// `Ok(None)` means the header itself is still incomplete; the body may be
/// too even when a header is returned.
pub(crate) fn read_header(
    version: Version,
    buf: &[u8],
    max_packet_size: usize,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    check_type_and_flags(version, byte1)?;
    let (remaining_len, len_len) = match read_varint(&buf[1..]) {
        VarInt::Complete(value, len) => (value, len),
        VarInt::Incomplete => return Ok(None),
        VarInt::Invalid => {
            return malformed("remaining length is not a valid variable byte integer")
        }
    };
    if remaining_len > max_packet_size {
        return Err(DecodeError::TooLarge(remaining_len));
    }
    Ok(Some(FixedHeader {
        byte1,
        header_len: 1 + len_len,
        remaining_len,
    }))
}

/// Refuses packet types a client may not send and flags the spec does not allow.
fn check_type_and_flags(version: Version, byte1: u8) -> Result<(), DecodeError> {
    let kind = byte1 >> 4;
    let flags = byte1 & 0x0f;
    match kind {
        CONNECT | PUBACK | PUBREC | PUBCOMP | PINGREQ | DISCONNECT => expect_flags(kind, flags, 0),
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => expect_flags(kind, flags, 0b0010),
        PUBLISH => check_publish_flags(flags),
        AUTH if version == Version::V5 => {
            protocol("AUTH: enhanced authentication is not supported")
        }
        CONNACK | SUBACK | UNSUBACK | PINGRESP if version == Version::V5 => {
            protocol(format!("{} is sent by servers, not clients", name(kind)))
        }
        CONNACK | SUBACK | UNSUBACK | PINGRESP => {
            malformed(format!("{} is sent by servers, not clients", name(kind)))
        }
        _ => malformed(format!("reserved packet type {kind}")),
    }
}

/// Fails unless the fixed-header flags of `kind` are exactly `expected`.
fn expect_flags(kind: u8, flags: u8, expected: u8) -> Result<(), DecodeError> {
    if flags == expected {
        Ok(())
    } else {
        malformed(format!(
            "{} fixed header flags are {flags:#06b}, must be {expected:#06b}",
            name(kind)
        ))
    }
}

/// PUBLISH flags: QoS 3 is malformed, and so is DUP on a QoS 0 message.
fn check_publish_flags(flags: u8) -> Result<(), DecodeError> {
    let qos = (flags >> 1) & 0b11;
    if qos == 3 {
        return malformed("PUBLISH with QoS 3");
    }
    if qos == 0 && flags & 0b1000 != 0 {
        return malformed("PUBLISH with QoS 0 has the DUP flag set");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: Version, bytes: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
        read_header(version, bytes, 1000)
    }

    #[test]
    fn server_only_types_are_refused() {
        for kind in [CONNACK, SUBACK, UNSUBACK, PINGRESP] {
            let byte1 = kind << 4;
            assert!(matches!(
                header(Version::V5, &[byte1, 0]),
                Err(DecodeError::Protocol(_))
            ));
            assert!(matches!(
                header(Version::V4, &[byte1, 0]),
                Err(DecodeError::Malformed(_))
            ));
        }
        assert!(matches!(
            header(Version::V5, &[0xF0, 0]),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            header(Version::V4, &[0xF0, 0]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            header(Version::V5, &[0x00]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn flags_are_checked_on_the_first_byte() {
        for byte1 in [0x60, 0x80, 0xA0, 0x11, 0x41, 0xC1, 0xE2] {
            assert!(
                matches!(
                    header(Version::V5, &[byte1]),
                    Err(DecodeError::Malformed(_))
                ),
                "{byte1:#04x}"
            );
        }
        for byte1 in [0x62, 0x82, 0xA2, 0x10, 0x40, 0xC0, 0xE0, 0x30, 0x3B, 0x35] {
            assert_eq!(header(Version::V5, &[byte1]), Ok(None), "{byte1:#04x}");
        }
        assert!(matches!(
            header(Version::V4, &[0x36, 0]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            header(Version::V4, &[0x38, 0]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn length_is_parsed_and_limited() {
        assert_eq!(
            header(Version::V4, &[0x30, 0x80, 0x01]),
            Ok(Some(FixedHeader {
                byte1: 0x30,
                header_len: 3,
                remaining_len: 128
            }))
        );
        assert_eq!(header(Version::V4, &[0x30, 0x80]), Ok(None));
        assert_eq!(
            header(Version::V4, &[0x30, 0xE9, 0x07]),
            Err(DecodeError::TooLarge(1001))
        );
        assert!(matches!(
            header(Version::V4, &[0x30, 0x80, 0x00]),
            Err(DecodeError::Malformed(_))
        ));
    }
}
