//! Why a client's bytes could not be decoded, and the MQTT 5 reason code
//! the server closes the connection with.

use rumqttd::protocol::DisconnectReasonCode;

/// Why a client's bytes could not be decoded.
///
/// Every variant ends the connection: for MQTT 5 with a DISCONNECT carrying
/// [`DecodeError::reason_code`], for 3.1.1 by closing the socket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The packet's remaining length (carried) exceeds the maximum packet size.
    #[error("packet of {0} bytes exceeds the maximum packet size")]
    TooLarge(usize),
    /// The bytes cannot be parsed as the packet they claim to be.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// The packet parses but breaks a rule of the protocol (MQTT 5 "Protocol Error").
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl DecodeError {
    /// The MQTT 5 DISCONNECT reason code for this error: 0x95 Packet too
    /// large, 0x81 Malformed Packet or 0x82 Protocol Error.
    pub fn reason_code(&self) -> DisconnectReasonCode {
        match self {
            DecodeError::TooLarge(_) => DisconnectReasonCode::PacketTooLarge,
            DecodeError::Malformed(_) => DisconnectReasonCode::MalformedPacket,
            DecodeError::Protocol(_) => DisconnectReasonCode::ProtocolError,
        }
    }
}

/// Shorthand for a [`DecodeError::Malformed`] result.
pub(crate) fn malformed<T>(why: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::Malformed(why.into()))
}

/// Shorthand for a [`DecodeError::Protocol`] result.
pub(crate) fn protocol<T>(why: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::Protocol(why.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_match_the_spec() {
        assert_eq!(
            DecodeError::TooLarge(1).reason_code(),
            DisconnectReasonCode::PacketTooLarge
        );
        assert_eq!(
            DecodeError::Malformed(String::new()).reason_code(),
            DisconnectReasonCode::MalformedPacket
        );
        assert_eq!(
            DecodeError::Protocol(String::new()).reason_code(),
            DisconnectReasonCode::ProtocolError
        );
    }
}
