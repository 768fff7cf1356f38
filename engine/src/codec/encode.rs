//! Encoding of rumqttd packets for one protocol version, steering around
//! what rumqttd's encoders get wrong.
//!
//! - 3.1.1: every packet is first [downgraded](super::downgrade).
//! - 5: DISCONNECT is written by Parley ([`disconnect::encode_v5`]); a
//!   CONNACK carrying a 3.1.1-only return code (which rumqttd's v5 encoder
//!   hits `unreachable!()` on) is mapped to its v5 equivalent, and a refused
//!   CONNACK never claims a session (MQTT-3.2.2-6). Everything else is
//!   written by rumqttd, whose v5 encoders are correct for the packets a
//!   server sends (checked byte by byte in `tests/codec_encode.rs`).

use bytes::BytesMut;
use rumqttd::protocol::{self, v4::V4, v5::V5, ConnAck, ConnectReturnCode as C, Packet, Protocol};

use super::{disconnect, downgrade, Version};

/// Encodes `packet` for `version` into `buf`.
pub(crate) fn encode(
    version: Version,
    packet: Packet,
    buf: &mut BytesMut,
) -> Result<(), protocol::Error> {
    match version {
        Version::V5 => match packet {
            Packet::Disconnect(d, properties) => {
                disconnect::encode_v5(&d, properties.as_ref(), buf);
                Ok(())
            }
            Packet::ConnAck(ack, properties) => V5
                .write(Packet::ConnAck(v5_connack(ack), properties), buf)
                .map(drop),
            packet => V5.write(packet, buf).map(drop),
        },
        Version::V4 => match downgrade::to_v4(packet) {
            Some(packet) => V4.write(packet, buf).map(drop),
            None => Ok(()),
        },
    }
}

/// Maps the 3.1.1-only CONNACK codes to MQTT 5 ones; clears Session Present
/// on a refusal.
fn v5_connack(ack: ConnAck) -> ConnAck {
    let code = match ack.code {
        C::RefusedProtocolVersion => C::UnsupportedProtocolVersion,
        C::ServiceUnavailable => C::ServerUnavailable,
        code => code,
    };
    ConnAck {
        session_present: ack.session_present && code == C::Success,
        code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_only_connack_codes_do_not_panic_in_v5() {
        for (code, wire) in [
            (C::RefusedProtocolVersion, 0x84),
            (C::ServiceUnavailable, 0x88),
        ] {
            let mut buf = BytesMut::new();
            let ack = ConnAck {
                session_present: true,
                code,
            };
            encode(Version::V5, Packet::ConnAck(ack, None), &mut buf).unwrap();
            assert_eq!(&buf[..], &[0x20, 3, 0, wire, 0]);
        }
    }
}
