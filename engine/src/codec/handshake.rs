//! Protocol detection: reads just enough of a connection's first packet to
//! know whether the client speaks MQTT 3.1.1 or 5, before any codec exists.

use super::wire::{read_varint, VarInt};
use super::Version;

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
/// Only the fixed header, protocol name and level are read; the codec
/// validates the rest of the CONNECT.
pub fn detect_version(buf: &[u8]) -> Result<Option<Version>, HandshakeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    if byte1 >> 4 != 1 {
        return Err(HandshakeError::NotConnect(byte1 >> 4));
    }
    let len_len = match read_varint(&buf[1..]) {
        VarInt::Complete(_, len_len) => len_len,
        VarInt::Incomplete => return Ok(None),
        VarInt::Invalid => return Err(HandshakeError::Malformed),
    };
    let start = 1 + len_len;
    let Some(name_len) = buf.get(start..start + 2) else {
        return Ok(None);
    };
    let name_len = usize::from(u16::from_be_bytes([name_len[0], name_len[1]]));
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
}
