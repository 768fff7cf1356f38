//! A minimal MQTT session for connection load: bind the socket to a chosen
//! source address, CONNECT, wait for CONNACK, then hold the connection with
//! keep-alive pings until told to stop. Packets are encoded ([`frame`]) and
//! decoded with rumqttc's `mqttbytes` codec; only CONNECT, PINGREQ, DISCONNECT and (with
//! [`IdleSpec::subscribe`]) one SUBSCRIBE are sent.
//!
//! An idle session keeps only the socket and a small buffer, so a bench
//! process can hold very many of them.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4 as p4;
use rumqttc::v5::mqttbytes::v5 as p5;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::dial::DialError;
use super::endpoint::Endpoint;
use super::frame::{self, FrameError};
use super::{MqttVersion, Qos, MAX_INCOMING_PACKET};

/// Where to connect, as whom, and what to subscribe to.
#[derive(Debug, Clone)]
pub struct IdleSpec<'a> {
    /// Broker, source address and session; pings go out at its keep-alive.
    pub endpoint: Endpoint<'a>,
    /// After CONNACK, subscribe to this topic at QoS 1 and wait for SUBACK.
    pub subscribe: Option<&'a str>,
}

/// Topic an idle session subscribes to: `bench/idle/{client_id}`.
pub fn subscription_topic(client_id: &str) -> String {
    format!("bench/idle/{client_id}")
}

/// How long the two steps of opening a session took.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeTimes {
    /// Opening the socket: bind to the source address and TCP connect (SYN
    /// to established).
    pub tcp: Duration,
    /// CONNECT written to CONNACK read.
    pub connack: Duration,
    /// SUBSCRIBE written to SUBACK read, if the session subscribed.
    pub suback: Option<Duration>,
}

/// Opening or holding a session failed.
#[derive(Debug, thiserror::Error)]
pub enum IdleError {
    /// The TCP connection could not be opened.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// Reading or writing the socket failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The broker closed the connection.
    #[error("connection closed by broker")]
    Closed,
    /// CONNACK refused the connection.
    #[error("CONNACK refused: {0}")]
    Refused(String),
    /// SUBACK refused the subscription.
    #[error("SUBACK refused: {0}")]
    SubscribeRefused(String),
    /// The broker sent a DISCONNECT (MQTT 5) with this reason.
    #[error("DISCONNECT from broker: {0}")]
    ServerDisconnect(String),
    /// The broker sent something that isn't valid here.
    #[error("protocol: {0}")]
    Protocol(String),
    /// No PINGRESP arrived within a keep-alive interval.
    #[error("no PINGRESP within the keep-alive interval")]
    PingTimeout,
    /// A packet could not be encoded.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// An open, idle MQTT connection.
pub struct IdleSession {
    stream: TcpStream,
    version: MqttVersion,
    keepalive: Duration,
    buf: BytesMut,
}

/// What the broker sent, reduced to what an idle session cares about.
#[derive(Debug)]
enum Incoming {
    ConnAck(Result<(), String>),
    SubAck(Result<(), String>),
    PingResp,
    Disconnect(String),
    Other(String),
}

/// Binds, connects and performs the MQTT handshake.
pub async fn open(spec: &IdleSpec<'_>) -> Result<(IdleSession, HandshakeTimes), IdleError> {
    let tcp_started = Instant::now();
    let stream = spec.endpoint.dial().await?;
    let tcp = tcp_started.elapsed();

    let mut session = IdleSession {
        stream,
        version: spec.endpoint.version,
        keepalive: spec.endpoint.keepalive,
        buf: BytesMut::with_capacity(64),
    };
    let connect = encode_connect(spec)?;
    let connect_started = Instant::now();
    session.stream.write_all(&connect).await?;
    match session.read_packet().await? {
        Incoming::ConnAck(Ok(())) => {}
        Incoming::ConnAck(Err(code)) => return Err(IdleError::Refused(code)),
        Incoming::Disconnect(reason) => return Err(IdleError::ServerDisconnect(reason)),
        Incoming::PingResp | Incoming::SubAck(_) => {
            return Err(IdleError::Protocol(
                "expected CONNACK, got PINGRESP or SUBACK".into(),
            ))
        }
        Incoming::Other(packet) => {
            return Err(IdleError::Protocol(format!(
                "expected CONNACK, got {packet}"
            )))
        }
    }
    let connack = connect_started.elapsed();
    let suback = match spec.subscribe {
        Some(topic) => Some(session.subscribe(topic).await?),
        None => None,
    };
    Ok((
        session,
        HandshakeTimes {
            tcp,
            connack,
            suback,
        },
    ))
}

/// Packet id of the one SUBSCRIBE an idle session sends.
const SUBSCRIBE_PKID: u16 = 1;

impl IdleSession {
    /// Subscribes to `topic` at QoS 1 and waits for the SUBACK; returns how
    /// long that took. A refused subscription is an error.
    async fn subscribe(&mut self, topic: &str) -> Result<Duration, IdleError> {
        let subscribe = encode_subscribe(self.version, topic)?;
        let started = Instant::now();
        self.stream.write_all(&subscribe).await?;
        match self.read_packet().await? {
            Incoming::SubAck(Ok(())) => Ok(started.elapsed()),
            Incoming::SubAck(Err(code)) => Err(IdleError::SubscribeRefused(code)),
            Incoming::Disconnect(reason) => Err(IdleError::ServerDisconnect(reason)),
            other => Err(IdleError::Protocol(format!(
                "expected SUBACK, got {other:?}"
            ))),
        }
    }

    /// Holds the connection, pinging every keep-alive interval, until `stop`
    /// is cancelled (returns `Ok`) or the connection fails (returns why).
    pub async fn hold(&mut self, stop: &CancellationToken) -> Result<(), IdleError> {
        let period = if self.keepalive.is_zero() {
            None
        } else {
            Some(self.keepalive)
        };
        let mut next_ping = period.map(|p| tokio::time::Instant::now() + p);
        let mut awaiting_pong = false;
        loop {
            let ping_due = async {
                match next_ping {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                packet = self.read_packet() => match packet? {
                    Incoming::PingResp => awaiting_pong = false,
                    Incoming::Disconnect(reason) => return Err(IdleError::ServerDisconnect(reason)),
                    Incoming::ConnAck(_) => return Err(IdleError::Protocol("second CONNACK on an idle connection".into())),
                    Incoming::SubAck(_) => return Err(IdleError::Protocol("unexpected SUBACK on an idle connection".into())),
                    Incoming::Other(packet) => return Err(IdleError::Protocol(format!("unexpected {packet} on an idle connection"))),
                },
                _ = ping_due => {
                    if awaiting_pong {
                        return Err(IdleError::PingTimeout);
                    }
                    self.stream.write_all(&encode_pingreq(self.version)?).await?;
                    awaiting_pong = true;
                    next_ping = period.map(|p| tokio::time::Instant::now() + p);
                }
            }
        }
    }

    /// Sends DISCONNECT and closes the socket.
    pub async fn close(mut self) -> Result<(), IdleError> {
        let disconnect = encode_disconnect(self.version)?;
        self.stream.write_all(&disconnect).await?;
        self.stream.shutdown().await?;
        Ok(())
    }

    /// Reads one whole packet. Cancel-safe: partial data stays in the buffer.
    async fn read_packet(&mut self) -> Result<Incoming, IdleError> {
        loop {
            if let Some(packet) = decode(self.version, &mut self.buf)? {
                return Ok(packet);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(IdleError::Closed);
            }
        }
    }
}

fn codec_error(e: impl std::fmt::Debug) -> IdleError {
    IdleError::Protocol(format!("{e:?}"))
}

fn encode_connect(spec: &IdleSpec<'_>) -> Result<BytesMut, IdleError> {
    let mut buf = BytesMut::new();
    spec.endpoint.encode_connect(&mut buf)?;
    Ok(buf)
}

fn encode_subscribe(version: MqttVersion, topic: &str) -> Result<BytesMut, IdleError> {
    let mut buf = BytesMut::new();
    frame::subscribe(&mut buf, version, SUBSCRIBE_PKID, topic, Qos::AtLeastOnce)?;
    Ok(buf)
}

fn encode_pingreq(version: MqttVersion) -> Result<BytesMut, IdleError> {
    let mut buf = BytesMut::with_capacity(2);
    frame::pingreq(&mut buf, version)?;
    Ok(buf)
}

fn encode_disconnect(version: MqttVersion) -> Result<BytesMut, IdleError> {
    let mut buf = BytesMut::with_capacity(4);
    frame::disconnect(&mut buf, version)?;
    Ok(buf)
}

/// Decodes one packet from `buf`, or `None` if more bytes are needed.
fn decode(version: MqttVersion, buf: &mut BytesMut) -> Result<Option<Incoming>, IdleError> {
    if buf.is_empty() {
        return Ok(None);
    }
    match version {
        MqttVersion::V4 => match p4::Packet::read(buf, MAX_INCOMING_PACKET) {
            Ok(packet) => Ok(Some(match packet {
                p4::Packet::ConnAck(ack) => ConnAckCode::v4(ack.code),
                p4::Packet::SubAck(ack) => suback(
                    ack.return_codes
                        .iter()
                        .find(|c| matches!(c, p4::SubscribeReasonCode::Failure))
                        .map(|c| format!("{c:?}")),
                ),
                p4::Packet::PingResp => Incoming::PingResp,
                other => Incoming::Other(format!("{other:?}")),
            })),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(codec_error(e)),
        },
        MqttVersion::V5 => match p5::Packet::read(buf, u32::try_from(MAX_INCOMING_PACKET).ok()) {
            Ok(packet) => Ok(Some(match packet {
                p5::Packet::ConnAck(ack) => ConnAckCode::v5(ack.code),
                p5::Packet::SubAck(ack) => suback(
                    ack.return_codes
                        .iter()
                        .find(|c| !matches!(c, p5::SubscribeReasonCode::Success(_)))
                        .map(|c| format!("{c:?}")),
                ),
                p5::Packet::PingResp(_) => Incoming::PingResp,
                p5::Packet::Disconnect(d) => Incoming::Disconnect(format!("{:?}", d.reason_code)),
                other => Incoming::Other(format!("{other:?}")),
            })),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(codec_error(e)),
        },
    }
}

/// A SUBACK, refused if any return code was a failure.
fn suback(refused: Option<String>) -> Incoming {
    Incoming::SubAck(refused.map_or(Ok(()), Err))
}

/// Maps CONNACK return codes to accepted / refused-with-reason.
struct ConnAckCode;

impl ConnAckCode {
    fn v4(code: p4::ConnectReturnCode) -> Incoming {
        match code {
            p4::ConnectReturnCode::Success => Incoming::ConnAck(Ok(())),
            other => Incoming::ConnAck(Err(format!("{other:?}"))),
        }
    }

    fn v5(code: p5::ConnectReturnCode) -> Incoming {
        match code {
            p5::ConnectReturnCode::Success => Incoming::ConnAck(Ok(())),
            other => Incoming::ConnAck(Err(format!("{other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Login;

    #[test]
    fn decodes_split_and_whole_packets() {
        // CONNACK (accepted) followed by half of a PINGRESP.
        let mut buf = BytesMut::from(&[0x20, 0x02, 0x00, 0x00, 0xD0][..]);
        assert!(matches!(
            decode(MqttVersion::V4, &mut buf),
            Ok(Some(Incoming::ConnAck(Ok(()))))
        ));
        assert!(matches!(decode(MqttVersion::V4, &mut buf), Ok(None)));
        buf.extend_from_slice(&[0x00]);
        assert!(matches!(
            decode(MqttVersion::V4, &mut buf),
            Ok(Some(Incoming::PingResp))
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn refused_connack_carries_the_reason() {
        // MQTT 3.1.1 CONNACK with return code 4: bad user name or password.
        let mut buf = BytesMut::from(&[0x20, 0x02, 0x00, 0x04][..]);
        match decode(MqttVersion::V4, &mut buf) {
            Ok(Some(Incoming::ConnAck(Err(reason)))) => {
                assert!(reason.contains("BadUserNamePassword"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn encodes_connect_with_login_and_keepalive() {
        let login = Login {
            username: "u1".into(),
            password: "pw".into(),
        };
        let spec = IdleSpec {
            endpoint: Endpoint {
                target: "127.0.0.1:1883".parse().unwrap(),
                source: None,
                version: MqttVersion::V4,
                client_id: "c1",
                login: Some(&login),
                keepalive: Duration::from_secs(30),
            },
            subscribe: None,
        };
        let mut bytes = encode_connect(&spec).unwrap();
        match p4::Packet::read(&mut bytes, 1024).unwrap() {
            p4::Packet::Connect(c) => {
                assert_eq!(c.client_id, "c1");
                assert_eq!(c.keep_alive, 30);
                assert_eq!(c.login.map(|l| l.username), Some("u1".into()));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(&encode_pingreq(MqttVersion::V5).unwrap()[..], &[0xC0, 0x00]);
    }

    #[test]
    fn subscribes_at_qos1_and_reads_subacks() {
        let topic = subscription_topic("c1");
        assert_eq!(topic, "bench/idle/c1");
        let mut bytes = encode_subscribe(MqttVersion::V4, &topic).unwrap();
        match p4::Packet::read(&mut bytes, 1024).unwrap() {
            p4::Packet::Subscribe(s) => {
                assert_eq!(s.pkid, SUBSCRIBE_PKID);
                assert_eq!(s.filters[0].path, "bench/idle/c1");
                assert_eq!(s.filters[0].qos, rumqttc::mqttbytes::QoS::AtLeastOnce);
            }
            other => panic!("unexpected {other:?}"),
        }
        // SUBACK granting QoS 1, then one refusing (0x80).
        let mut buf =
            BytesMut::from(&[0x90, 0x03, 0x00, 0x01, 0x01, 0x90, 0x03, 0x00, 0x01, 0x80][..]);
        assert!(matches!(
            decode(MqttVersion::V4, &mut buf),
            Ok(Some(Incoming::SubAck(Ok(()))))
        ));
        assert!(matches!(
            decode(MqttVersion::V4, &mut buf),
            Ok(Some(Incoming::SubAck(Err(_))))
        ));
        // MQTT 5 SUBACK with no properties, reason 0x87 (not authorized).
        let mut buf = BytesMut::from(&[0x90, 0x04, 0x00, 0x01, 0x00, 0x87][..]);
        match decode(MqttVersion::V5, &mut buf) {
            Ok(Some(Incoming::SubAck(Err(reason)))) => assert!(reason.contains("NotAuthorized")),
            other => panic!("unexpected {other:?}"),
        }
    }
}
