//! A minimal MQTT 3.1.1 client for persistent-session load: CONNECT with
//! clean session 0 (CONNACK's session present flag is reported), one QoS 1
//! SUBSCRIBE, a pipelined QoS 1 publisher, a drain that PUBACKs every
//! delivery, and a DISCONNECT that waits for the broker to close the socket
//! (so the broker has finished with the session before the next step).
//! Sockets are bound to a chosen source address, as in [`super::idle`].
//! Packets are encoded and decoded with rumqttc's `mqttbytes` codec.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4 as p4;
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::dial::{dial, DialError};
use super::MAX_INCOMING_PACKET;
use crate::credentials::Login;

/// Where to connect, from where, and as whom.
#[derive(Debug, Clone)]
pub struct PersistentSpec<'a> {
    /// Broker address.
    pub target: SocketAddr,
    /// Source address to bind before connecting (`None`: let the kernel pick).
    pub source: Option<IpAddr>,
    /// MQTT client identifier.
    pub client_id: &'a str,
    /// Username and password, if any.
    pub login: Option<&'a Login>,
    /// Keep-alive sent in CONNECT.
    pub keepalive: Duration,
    /// Clean session flag: `false` for a persistent session.
    pub clean_session: bool,
}

/// A persistent-session client failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistentError {
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
    #[error("SUBACK refused")]
    SubscribeRefused,
    /// The broker sent something that isn't valid here.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Nothing arrived in time.
    #[error("timed out")]
    Timeout,
}

/// An open MQTT 3.1.1 connection.
pub struct PersistentClient {
    stream: TcpStream,
    buf: BytesMut,
}

/// What CONNECT returned.
#[derive(Debug, Clone, Copy)]
pub struct Connected {
    /// CONNACK's session present flag.
    pub session_present: bool,
    /// From the start of the TCP connect to CONNACK read.
    pub connack: Duration,
}

fn codec_error(e: impl std::fmt::Debug) -> PersistentError {
    PersistentError::Protocol(format!("{e:?}"))
}

/// Binds, connects and performs the MQTT handshake.
pub async fn connect(
    spec: &PersistentSpec<'_>,
) -> Result<(PersistentClient, Connected), PersistentError> {
    let started = Instant::now();
    let stream = dial(spec.target, spec.source).await?;
    let mut client = PersistentClient {
        stream,
        buf: BytesMut::with_capacity(256),
    };
    let mut connect = p4::Connect::new(spec.client_id);
    connect.keep_alive = u16::try_from(spec.keepalive.as_secs()).unwrap_or(u16::MAX);
    connect.clean_session = spec.clean_session;
    if let Some(login) = spec.login {
        connect.set_login(&login.username, &login.password);
    }
    client.send(p4::Packet::Connect(connect)).await?;
    match client.read_packet().await? {
        p4::Packet::ConnAck(ack) if ack.code == p4::ConnectReturnCode::Success => Ok((
            client,
            Connected {
                session_present: ack.session_present,
                connack: started.elapsed(),
            },
        )),
        p4::Packet::ConnAck(ack) => Err(PersistentError::Refused(format!("{:?}", ack.code))),
        other => Err(PersistentError::Protocol(format!(
            "expected CONNACK, got {other:?}"
        ))),
    }
}

impl PersistentClient {
    async fn send(&mut self, packet: p4::Packet) -> Result<(), PersistentError> {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).map_err(codec_error)?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Subscribes to `filter` at QoS 1 and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) -> Result<(), PersistentError> {
        let mut subscribe = p4::Subscribe::new(filter, QoS::AtLeastOnce);
        subscribe.pkid = 1;
        self.send(p4::Packet::Subscribe(subscribe)).await?;
        loop {
            match self.read_packet().await? {
                p4::Packet::SubAck(ack) => {
                    return match ack.return_codes.first() {
                        Some(p4::SubscribeReasonCode::Success(_)) => Ok(()),
                        _ => Err(PersistentError::SubscribeRefused),
                    };
                }
                // A resumed session may already be delivering: acknowledge it.
                p4::Packet::Publish(p) if p.qos != QoS::AtMostOnce => {
                    self.send(p4::Packet::PubAck(p4::PubAck::new(p.pkid)))
                        .await?
                }
                p4::Packet::Publish(_) => {}
                other => {
                    return Err(PersistentError::Protocol(format!(
                        "expected SUBACK, got {other:?}"
                    )))
                }
            }
        }
    }

    /// Publishes `count` QoS 1 messages, keeping at most `window` awaiting
    /// PUBACK, to `topic_of(i)`; returns once every one was acknowledged.
    pub async fn publish_qos1(
        &mut self,
        count: usize,
        window: usize,
        payload: Bytes,
        mut topic_of: impl FnMut(usize) -> String,
    ) -> Result<(), PersistentError> {
        let window = window.clamp(1, 60_000);
        let (mut sent, mut acked) = (0usize, 0usize);
        let mut out = BytesMut::new();
        while acked < count {
            while sent < count && sent - acked < window {
                let mut publish =
                    p4::Publish::new(topic_of(sent), QoS::AtLeastOnce, payload.clone());
                publish.pkid = (sent % 65_535) as u16 + 1;
                p4::Packet::Publish(publish)
                    .write(&mut out, usize::MAX)
                    .map_err(codec_error)?;
                sent += 1;
            }
            if !out.is_empty() {
                self.stream.write_all(&out).await?;
                out.clear();
            }
            match self.read_packet().await? {
                p4::Packet::PubAck(_) => acked += 1,
                other => {
                    return Err(PersistentError::Protocol(format!(
                        "expected PUBACK, got {other:?}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Reads deliveries and PUBACKs each until `expected` arrived, or none
    /// arrived for `idle` (then returns what it got). Returns the count.
    pub async fn drain(
        &mut self,
        expected: usize,
        idle: Duration,
    ) -> Result<usize, PersistentError> {
        let mut received = 0usize;
        let mut acks = BytesMut::new();
        while received < expected {
            let packet = match tokio::time::timeout(idle, self.read_packet()).await {
                Ok(packet) => packet?,
                Err(_) => break,
            };
            if let p4::Packet::Publish(p) = packet {
                received += 1;
                if p.qos != QoS::AtMostOnce {
                    p4::Packet::PubAck(p4::PubAck::new(p.pkid))
                        .write(&mut acks, usize::MAX)
                        .map_err(codec_error)?;
                }
                // Acknowledge in batches, and at once when nothing more is buffered.
                if acks.len() > 4096 || self.buf.is_empty() || received == expected {
                    self.stream.write_all(&acks).await?;
                    acks.clear();
                }
            }
        }
        if !acks.is_empty() {
            self.stream.write_all(&acks).await?;
        }
        Ok(received)
    }

    /// Sends DISCONNECT and waits (at most `wait`) for the broker to close
    /// the socket, acknowledging any delivery that still arrives.
    pub async fn disconnect(mut self, wait: Duration) -> Result<(), PersistentError> {
        self.send(p4::Packet::Disconnect).await?;
        let closed = async {
            loop {
                match self.read_packet().await {
                    Err(PersistentError::Closed) | Err(PersistentError::Io(_)) => return,
                    Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(wait, closed)
            .await
            .map_err(|_| PersistentError::Timeout)
    }

    /// Reads one whole packet. Cancel-safe: partial data stays in the buffer.
    async fn read_packet(&mut self) -> Result<p4::Packet, PersistentError> {
        loop {
            if !self.buf.is_empty() {
                match p4::Packet::read(&mut self.buf, MAX_INCOMING_PACKET) {
                    Ok(packet) => return Ok(packet),
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => return Err(codec_error(e)),
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(PersistentError::Closed);
            }
        }
    }
}
