//! Rewrites packets built with MQTT 5 in mind so the 3.1.1 encoder can send
//! them: properties dropped, v5-only reason codes mapped to their 3.1.1
//! equivalents, and packets 3.1.1 lacks (a server DISCONNECT) skipped.
//!
//! rumqttd's 3.1.1 encoder panics on a packet with properties and on a
//! CONNACK code 3.1.1 does not have, so every packet goes through here.

use rumqttd::protocol::{
    ConnAck, ConnectReturnCode as C, Packet, PubAck, PubAckReason, PubComp, PubCompReason, PubRec,
    PubRecReason, PubRel, PubRelReason, QoS, SubscribeReasonCode as S,
};

/// Rewrites a packet so rumqttd's 3.1.1 encoder accepts it; `None` if 3.1.1 has no such packet.
pub(crate) fn to_v4(packet: Packet) -> Option<Packet> {
    Some(match packet {
        Packet::ConnAck(ack, _) => Packet::ConnAck(connack(ack), None),
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
        Packet::PubRel(a, _) => Packet::PubRel(
            PubRel {
                pkid: a.pkid,
                reason: PubRelReason::Success,
            },
            None,
        ),
        Packet::PubComp(a, _) => Packet::PubComp(
            PubComp {
                pkid: a.pkid,
                reason: PubCompReason::Success,
            },
            None,
        ),
        Packet::SubAck(mut a, _) => {
            for code in a.return_codes.iter_mut() {
                *code = suback_code(*code);
            }
            Packet::SubAck(a, None)
        }
        Packet::UnsubAck(a, _) => Packet::UnsubAck(a, None),
        Packet::PingReq(p) => Packet::PingReq(p),
        Packet::PingResp(p) => Packet::PingResp(p),
        Packet::Connect(c, _, will, _, login) => Packet::Connect(c, None, will, None, login),
        Packet::Subscribe(s, _) => Packet::Subscribe(s, None),
        Packet::Unsubscribe(u, _) => Packet::Unsubscribe(u, None),
        // 3.1.1 servers close the connection instead of sending DISCONNECT.
        Packet::Disconnect(..) => return None,
    })
}

/// Maps a CONNACK to the six 3.1.1 return codes; a refused CONNACK never
/// claims a session (MQTT-3.2.2-4).
fn connack(ack: ConnAck) -> ConnAck {
    let code = match ack.code {
        C::Success => C::Success,
        C::RefusedProtocolVersion | C::UnsupportedProtocolVersion => C::RefusedProtocolVersion,
        C::ClientIdentifierNotValid => C::ClientIdentifierNotValid,
        C::BadUserNamePassword => C::BadUserNamePassword,
        C::NotAuthorized | C::Banned | C::BadAuthenticationMethod => C::NotAuthorized,
        _ => C::ServiceUnavailable,
    };
    ConnAck {
        session_present: ack.session_present && code == C::Success,
        code,
    }
}

/// Maps a SUBACK reason code to 3.1.1's granted QoS or 0x80 failure.
fn suback_code(code: S) -> S {
    match code {
        S::Success(q) => S::Success(q),
        S::QoS0 => S::Success(QoS::AtMostOnce),
        S::QoS1 => S::Success(QoS::AtLeastOnce),
        S::QoS2 => S::Success(QoS::ExactlyOnce),
        _ => S::Failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connack_codes_map_to_v4() {
        let ack = |code| ConnAck {
            session_present: true,
            code,
        };
        assert_eq!(connack(ack(C::Banned)).code, C::NotAuthorized);
        assert_eq!(connack(ack(C::ServerBusy)).code, C::ServiceUnavailable);
        assert_eq!(
            connack(ack(C::UnsupportedProtocolVersion)).code,
            C::RefusedProtocolVersion
        );
        assert!(!connack(ack(C::Banned)).session_present);
        assert!(connack(ack(C::Success)).session_present);
    }

    #[test]
    fn disconnect_has_no_v4_form() {
        let d = Packet::Disconnect(
            rumqttd::protocol::Disconnect {
                reason_code: rumqttd::protocol::DisconnectReasonCode::ServerBusy,
            },
            None,
        );
        assert_eq!(to_v4(d), None);
    }
}
