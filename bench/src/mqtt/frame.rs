//! Encoding the control packets the bench's own socket clients ([`idle`]
//! and [`lean`]) send, for MQTT 3.1.1 and 5, with rumqttc's `mqttbytes`
//! codecs: CONNECT, SUBSCRIBE, PINGREQ and DISCONNECT. Each appends one
//! packet to a buffer, so a caller can coalesce several into one write.
//!
//! [`idle`]: super::idle
//! [`lean`]: super::lean

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4 as p4;
use rumqttc::v5::mqttbytes::v5 as p5;

use super::{MqttVersion, Qos};
use crate::credentials::Login;

/// A packet the codec refused to encode (a field out of range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {packet}: {reason}")]
pub struct FrameError {
    /// Which packet.
    pub packet: &'static str,
    /// The codec's complaint.
    pub reason: String,
}

fn failed(packet: &'static str) -> impl FnOnce(&dyn std::fmt::Debug) -> FrameError {
    move |e| FrameError {
        packet,
        reason: format!("{e:?}"),
    }
}

/// Appends a clean-session CONNECT with `keepalive` (whole seconds, capped
/// at the field's maximum) and an optional login.
pub fn connect(
    buf: &mut BytesMut,
    version: MqttVersion,
    client_id: &str,
    login: Option<&Login>,
    keepalive: Duration,
) -> Result<(), FrameError> {
    let keep_alive = u16::try_from(keepalive.as_secs()).unwrap_or(u16::MAX);
    let fail = failed("CONNECT");
    match version {
        MqttVersion::V4 => {
            let mut connect = p4::Connect::new(client_id);
            connect.keep_alive = keep_alive;
            connect.clean_session = true;
            if let Some(login) = login {
                connect.set_login(&login.username, &login.password);
            }
            p4::Packet::Connect(connect)
                .write(buf, usize::MAX)
                .map_err(|e| fail(&e))?;
        }
        MqttVersion::V5 => {
            let connect = p5::Connect {
                keep_alive,
                client_id: client_id.to_string(),
                clean_start: true,
                properties: None,
            };
            let login = login.map(|l| p5::Login::new(&l.username, &l.password));
            p5::Packet::Connect(connect, None, login)
                .write(buf, None)
                .map_err(|e| fail(&e))?;
        }
    }
    Ok(())
}

/// Appends a SUBSCRIBE of one filter at `qos` with packet id `pkid`.
pub fn subscribe(
    buf: &mut BytesMut,
    version: MqttVersion,
    pkid: u16,
    filter: &str,
    qos: Qos,
) -> Result<(), FrameError> {
    let fail = failed("SUBSCRIBE");
    match version {
        MqttVersion::V4 => {
            let mut subscribe = p4::Subscribe::new(filter, qos.v4());
            subscribe.pkid = pkid;
            p4::Packet::Subscribe(subscribe)
                .write(buf, usize::MAX)
                .map_err(|e| fail(&e))?;
        }
        MqttVersion::V5 => {
            let mut subscribe = p5::Subscribe::new(p5::Filter::new(filter, qos.v5()), None);
            subscribe.pkid = pkid;
            p5::Packet::Subscribe(subscribe)
                .write(buf, None)
                .map_err(|e| fail(&e))?;
        }
    }
    Ok(())
}

/// Appends a PINGREQ.
pub fn pingreq(buf: &mut BytesMut, version: MqttVersion) -> Result<(), FrameError> {
    let fail = failed("PINGREQ");
    match version {
        MqttVersion::V4 => p4::Packet::PingReq
            .write(buf, usize::MAX)
            .map_err(|e| fail(&e))?,
        MqttVersion::V5 => p5::Packet::PingReq(p5::PingReq)
            .write(buf, None)
            .map_err(|e| fail(&e))?,
    };
    Ok(())
}

/// Appends a DISCONNECT (normal disconnection).
pub fn disconnect(buf: &mut BytesMut, version: MqttVersion) -> Result<(), FrameError> {
    let fail = failed("DISCONNECT");
    match version {
        MqttVersion::V4 => p4::Packet::Disconnect
            .write(buf, usize::MAX)
            .map_err(|e| fail(&e))?,
        MqttVersion::V5 => p5::Packet::Disconnect(p5::Disconnect::new(
            p5::DisconnectReasonCode::NormalDisconnection,
        ))
        .write(buf, None)
        .map_err(|e| fail(&e))?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_packets_back_to_back() {
        let mut buf = BytesMut::new();
        pingreq(&mut buf, MqttVersion::V4).unwrap();
        disconnect(&mut buf, MqttVersion::V4).unwrap();
        assert_eq!(&buf[..], &[0xC0, 0x00, 0xE0, 0x00]);

        let mut buf = BytesMut::new();
        subscribe(&mut buf, MqttVersion::V5, 7, "a/b", Qos::AtLeastOnce).unwrap();
        match p5::Packet::read(&mut buf, None).unwrap() {
            p5::Packet::Subscribe(s) => {
                assert_eq!(s.pkid, 7);
                assert_eq!(s.filters[0].path, "a/b");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn connect_carries_login_and_keepalive() {
        let login = Login {
            username: "u1".into(),
            password: "pw".into(),
        };
        let mut buf = BytesMut::new();
        connect(
            &mut buf,
            MqttVersion::V5,
            "c1",
            Some(&login),
            Duration::from_secs(70_000),
        )
        .unwrap();
        match p5::Packet::read(&mut buf, None).unwrap() {
            p5::Packet::Connect(c, None, Some(l)) => {
                assert_eq!((c.client_id.as_str(), c.keep_alive), ("c1", u16::MAX));
                assert!(c.clean_start);
                assert_eq!(l.username, "u1");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
