//! A lean MQTT client (3.1.1 and 5) for load generation: one connection,
//! owned by the task that drives it, with no background task and no channel
//! between the caller and the socket, so the load generator spends its CPU
//! on the load and not on its own plumbing.
//!
//! The caller queues work ([`LeanConnection::publish`],
//! [`LeanConnection::subscribe`]) and calls [`LeanConnection::flush`], which
//! hands everything queued since the last flush to the socket in one write.
//! It waits with [`LeanConnection::ready`] (cancel-safe, so it sits in a
//! `select!` next to the caller's own timers), which reads what the socket
//! holds into one growing buffer (or writes what the socket had no room for
//! before), and then calls [`LeanConnection::poll`], which decodes every
//! complete packet, queues the PUBACKs for QoS 1 deliveries and the
//! keep-alive PINGREQ, moves waiting publishes into the freed window, and
//! flushes: one read and one write per wake-up. The read goes through
//! Tokio's `AsyncRead`, which on Linux takes a read that did not fill the
//! buffer as proof the socket is drained, so no second read has to fail
//! with `EAGAIN` first.
//!
//! QoS 1 publishes carry a caller tag `T` (for instance the send time) that
//! comes back with their acknowledgement: [`LeanEvent::Acked`], or
//! [`LeanEvent::Rejected`] for an MQTT 5 PUBACK with a failure reason code
//! (0x80 and up: quota exceeded, not authorized, ...). At most the in-flight
//! window of publishes (the smaller of the caller's and the server's
//! Receive Maximum) await a PUBACK; the packet id is the window slot, so
//! matching an acknowledgement is an index. Packets are encoded and decoded
//! with rumqttc's `mqttbytes` codecs ([`frame`] for the control packets).
//!
//! Not supported: QoS 2 (publishing or receiving), retained publishes,
//! topic aliases, sessions that outlive the connection.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use rumqttc::mqttbytes::v4 as p4;
use rumqttc::v5::mqttbytes::v5 as p5;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::dial::DialError;
use super::endpoint::Endpoint;
use super::frame::{self, FrameError};
use super::{MqttVersion, Qos, MAX_INCOMING_PACKET};

/// Spare room made in the read buffer before every read.
const READ_RESERVE: usize = 16 * 1024;
/// Largest publish window; packet ids above it are for SUBSCRIBE.
const MAX_WINDOW: u16 = 64_000;
/// First packet id of SUBSCRIBE packets (they cycle up to `u16::MAX`).
const FIRST_SUBSCRIBE_PKID: u16 = MAX_WINDOW + 1;

/// Where to connect, as whom, and how many publishes may be in flight.
#[derive(Debug, Clone)]
pub struct LeanSpec<'a> {
    /// Broker, source address and session.
    pub endpoint: Endpoint<'a>,
    /// Most QoS 1 publishes awaiting PUBACK (at least 1; an MQTT 5 server's
    /// Receive Maximum lowers it).
    pub inflight: u16,
}

/// What [`LeanConnection::poll`] found, in the order the packets arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeanEvent<T> {
    /// A SUBACK; `refused` names the first failure code, if any.
    SubAck {
        /// The SUBSCRIBE's packet id.
        pkid: u16,
        /// Why a filter was refused, if one was.
        refused: Option<String>,
    },
    /// A QoS 1 publish was acknowledged with success (MQTT 5: also "no
    /// matching subscribers").
    Acked(T),
    /// An MQTT 5 PUBACK refused a publish with a failure reason code.
    Rejected {
        /// The publish's tag.
        tag: T,
        /// The reason code, e.g. `PUBACK QuotaExceeded`.
        reason: String,
    },
    /// A QoS 0 or 1 publish arrived (a QoS 1 one's PUBACK is already queued).
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Bytes,
    },
}

/// The connection failed; it is of no further use.
#[derive(Debug, thiserror::Error)]
pub enum LeanError {
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
    /// The client does not do this (QoS 2).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}

/// A QoS 1 publish waiting for room in the window.
struct Waiting<T> {
    topic: String,
    payload: Bytes,
    tag: T,
}

/// One open MQTT connection; `T` is the tag carried by each QoS 1 publish.
pub struct LeanConnection<T> {
    stream: TcpStream,
    version: MqttVersion,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Publishes queued while the window was full, oldest first.
    waiting: VecDeque<Waiting<T>>,
    /// Tags of the publishes awaiting PUBACK; packet id `i + 1` is slot `i`.
    in_flight: Vec<Option<T>>,
    /// Free packet ids of the window, in the order they were freed.
    free_pkids: VecDeque<u16>,
    next_subscribe_pkid: u16,
    keepalive: Option<Duration>,
    ping_due: Pin<Box<Sleep>>,
    awaiting_pingresp: bool,
}

/// What the broker sent, reduced to what the client acts on.
#[derive(Debug)]
enum Incoming {
    /// Accepted with the server's Receive Maximum (MQTT 5), or refused.
    ConnAck(Result<Option<u16>, String>),
    SubAck {
        pkid: u16,
        refused: Option<String>,
    },
    PubAck {
        pkid: u16,
        refused: Option<String>,
    },
    Publish {
        qos: u8,
        pkid: u16,
        topic: String,
        payload: Bytes,
    },
    PingResp,
    Disconnect(String),
    Other(String),
}

impl<T> LeanConnection<T> {
    /// Opens the TCP connection, sends CONNECT and waits for CONNACK.
    pub async fn connect(spec: &LeanSpec<'_>) -> Result<LeanConnection<T>, LeanError> {
        let endpoint = &spec.endpoint;
        let mut stream = endpoint.dial().await?;
        let mut write_buf = BytesMut::with_capacity(4096);
        endpoint.encode_connect(&mut write_buf)?;
        stream.write_all(&write_buf).await?;
        write_buf.clear();
        let mut read_buf = BytesMut::with_capacity(READ_RESERVE);
        let receive_max = loop {
            if let Some(packet) = decode(endpoint.version, &mut read_buf)? {
                match packet {
                    Incoming::ConnAck(Ok(receive_max)) => break receive_max,
                    Incoming::ConnAck(Err(code)) => return Err(LeanError::Refused(code)),
                    Incoming::Disconnect(reason) => {
                        return Err(LeanError::ServerDisconnect(reason))
                    }
                    other => {
                        return Err(LeanError::Protocol(format!(
                            "expected CONNACK, got {other:?}"
                        )))
                    }
                }
            }
            read_buf.reserve(READ_RESERVE);
            if stream.read_buf(&mut read_buf).await? == 0 {
                return Err(LeanError::Closed);
            }
        };
        let window = spec
            .inflight
            .clamp(1, MAX_WINDOW)
            .min(receive_max.unwrap_or(u16::MAX).max(1));
        let keepalive = (!endpoint.keepalive.is_zero()).then_some(endpoint.keepalive);
        // Without keep-alive the timer is never polled.
        let first_ping = Instant::now() + endpoint.keepalive;
        Ok(LeanConnection {
            stream,
            version: endpoint.version,
            read_buf,
            write_buf,
            waiting: VecDeque::new(),
            in_flight: (0..window).map(|_| None).collect(),
            free_pkids: (1..=window).collect(),
            next_subscribe_pkid: FIRST_SUBSCRIBE_PKID,
            keepalive,
            ping_due: Box::pin(tokio::time::sleep_until(first_ping)),
            awaiting_pingresp: false,
        })
    }

    /// Publishes at most in flight at once.
    pub fn window(&self) -> usize {
        self.in_flight.len()
    }

    /// Publishes awaiting PUBACK.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len() - self.free_pkids.len()
    }

    /// Publishes queued behind a full window.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Queues a SUBSCRIBE of one filter; returns its packet id, which the
    /// [`LeanEvent::SubAck`] will carry. Goes out with the next flush.
    pub fn subscribe(&mut self, filter: &str, qos: Qos) -> Result<u16, LeanError> {
        let pkid = self.next_subscribe_pkid;
        self.next_subscribe_pkid = pkid.checked_add(1).unwrap_or(FIRST_SUBSCRIBE_PKID);
        frame::subscribe(&mut self.write_buf, self.version, pkid, filter, qos)?;
        Ok(pkid)
    }

    /// Queues a publish. QoS 1: it goes out with the next flush if the window
    /// has room, else once a PUBACK frees a slot; `tag` comes back with its
    /// acknowledgement. QoS 0: goes out with the next flush, `tag` is dropped.
    pub fn publish(
        &mut self,
        topic: &str,
        qos: Qos,
        payload: Bytes,
        tag: T,
    ) -> Result<(), LeanError> {
        match qos {
            Qos::AtMostOnce => self.encode_publish(topic.to_owned(), qos, 0, payload),
            Qos::AtLeastOnce => {
                if self.waiting.is_empty() {
                    if let Some(pkid) = self.free_pkids.pop_front() {
                        self.in_flight[usize::from(pkid) - 1] = Some(tag);
                        return self.encode_publish(topic.to_owned(), qos, pkid, payload);
                    }
                }
                self.waiting.push_back(Waiting {
                    topic: topic.to_owned(),
                    payload,
                    tag,
                });
                Ok(())
            }
            Qos::ExactlyOnce => Err(LeanError::Unsupported("publishing at QoS 2")),
        }
    }

    /// Waits until there is something to do and does the socket's part:
    /// reads what arrived, or writes what is queued once the socket has
    /// room, or notes that a keep-alive ping is due. Cancel-safe; call
    /// [`LeanConnection::poll`] after it returns.
    pub async fn ready(&mut self) -> Result<(), LeanError> {
        let want_write = !self.write_buf.is_empty();
        let pinging = self.keepalive.is_some();
        self.read_buf.reserve(READ_RESERVE);
        let (mut reader, mut writer) = self.stream.split();
        tokio::select! {
            biased;
            read = reader.read_buf(&mut self.read_buf) => {
                if read? == 0 {
                    return Err(LeanError::Closed);
                }
            }
            written = writer.write(&self.write_buf), if want_write => match written? {
                0 => return Err(LeanError::Closed),
                n => self.write_buf.advance(n),
            },
            _ = self.ping_due.as_mut(), if pinging => {}
        }
        Ok(())
    }

    /// Handles what [`LeanConnection::ready`] read: appends an event per
    /// packet that calls for one, queues PUBACKs and the keep-alive ping,
    /// fills the window from the waiting publishes and flushes.
    pub fn poll(&mut self, events: &mut Vec<LeanEvent<T>>) -> Result<(), LeanError> {
        while let Some(packet) = decode(self.version, &mut self.read_buf)? {
            self.handle(packet, events)?;
        }
        self.keep_alive()?;
        self.fill_window()?;
        self.flush()
    }

    /// Waits until at least one new event is appended to `events` (a
    /// convenience for callers with nothing else to wait for); events
    /// already in `events` do not count.
    pub async fn next(&mut self, events: &mut Vec<LeanEvent<T>>) -> Result<(), LeanError> {
        self.flush()?;
        let before = events.len();
        while events.len() == before {
            self.ready().await?;
            self.poll(events)?;
        }
        Ok(())
    }

    /// Hands what is queued to the socket, as much as it takes without
    /// waiting; the rest goes when [`LeanConnection::ready`] sees room.
    pub fn flush(&mut self) -> Result<(), LeanError> {
        while !self.write_buf.is_empty() {
            match self.stream.try_write(&self.write_buf) {
                Ok(0) => return Err(LeanError::Closed),
                Ok(n) => self.write_buf.advance(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Writes what is still queued, sends DISCONNECT and closes the socket.
    /// Publishes awaiting PUBACK or room in the window are abandoned.
    pub async fn disconnect(mut self) -> Result<(), LeanError> {
        frame::disconnect(&mut self.write_buf, self.version)?;
        self.stream.write_all(&self.write_buf).await?;
        self.stream.shutdown().await?;
        Ok(())
    }

    fn handle(
        &mut self,
        packet: Incoming,
        events: &mut Vec<LeanEvent<T>>,
    ) -> Result<(), LeanError> {
        match packet {
            Incoming::PubAck { pkid, refused } => {
                let tag = usize::from(pkid)
                    .checked_sub(1)
                    .and_then(|slot| self.in_flight.get_mut(slot))
                    .and_then(Option::take)
                    .ok_or_else(|| {
                        LeanError::Protocol(format!("PUBACK for packet id {pkid}, not in flight"))
                    })?;
                self.free_pkids.push_back(pkid);
                events.push(match refused {
                    None => LeanEvent::Acked(tag),
                    Some(reason) => LeanEvent::Rejected { tag, reason },
                });
            }
            Incoming::Publish {
                qos,
                pkid,
                topic,
                payload,
            } => {
                match qos {
                    0 => {}
                    1 => self.encode_puback(pkid)?,
                    _ => return Err(LeanError::Unsupported("receiving at QoS 2")),
                }
                events.push(LeanEvent::Message { topic, payload });
            }
            Incoming::SubAck { pkid, refused } => events.push(LeanEvent::SubAck { pkid, refused }),
            Incoming::PingResp => self.awaiting_pingresp = false,
            Incoming::Disconnect(reason) => return Err(LeanError::ServerDisconnect(reason)),
            Incoming::ConnAck(_) => {
                return Err(LeanError::Protocol("CONNACK on an open connection".into()))
            }
            Incoming::Other(packet) => {
                return Err(LeanError::Protocol(format!("unexpected {packet}")))
            }
        }
        Ok(())
    }

    /// Queues a PINGREQ when one is due; fails if the last one went
    /// unanswered for a whole interval.
    fn keep_alive(&mut self) -> Result<(), LeanError> {
        let Some(period) = self.keepalive else {
            return Ok(());
        };
        let now = Instant::now();
        if now < self.ping_due.deadline() {
            return Ok(());
        }
        if self.awaiting_pingresp {
            return Err(LeanError::PingTimeout);
        }
        frame::pingreq(&mut self.write_buf, self.version)?;
        self.awaiting_pingresp = true;
        self.ping_due.as_mut().reset(now + period);
        Ok(())
    }

    /// Moves waiting publishes into free window slots.
    fn fill_window(&mut self) -> Result<(), LeanError> {
        while !self.waiting.is_empty() {
            let Some(pkid) = self.free_pkids.pop_front() else {
                break;
            };
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            self.in_flight[usize::from(pkid) - 1] = Some(next.tag);
            self.encode_publish(next.topic, Qos::AtLeastOnce, pkid, next.payload)?;
        }
        Ok(())
    }

    fn encode_publish(
        &mut self,
        topic: String,
        qos: Qos,
        pkid: u16,
        payload: Bytes,
    ) -> Result<(), LeanError> {
        let failed = |e: &dyn std::fmt::Debug| FrameError {
            packet: "PUBLISH",
            reason: format!("{e:?}"),
        };
        match self.version {
            MqttVersion::V4 => {
                let publish = p4::Publish {
                    dup: false,
                    qos: qos.v4(),
                    retain: false,
                    topic,
                    pkid,
                    payload,
                };
                publish.write(&mut self.write_buf).map_err(|e| failed(&e))?;
            }
            MqttVersion::V5 => {
                let publish = p5::Publish {
                    dup: false,
                    qos: qos.v5(),
                    retain: false,
                    topic: Bytes::from(topic.into_bytes()),
                    pkid,
                    payload,
                    properties: None,
                };
                publish.write(&mut self.write_buf).map_err(|e| failed(&e))?;
            }
        }
        Ok(())
    }

    fn encode_puback(&mut self, pkid: u16) -> Result<(), LeanError> {
        let failed = |e: &dyn std::fmt::Debug| FrameError {
            packet: "PUBACK",
            reason: format!("{e:?}"),
        };
        match self.version {
            MqttVersion::V4 => p4::PubAck::new(pkid)
                .write(&mut self.write_buf)
                .map_err(|e| failed(&e))?,
            MqttVersion::V5 => p5::PubAck::new(pkid, None)
                .write(&mut self.write_buf)
                .map_err(|e| failed(&e))?,
        };
        Ok(())
    }
}

fn codec_error(e: impl std::fmt::Debug) -> LeanError {
    LeanError::Protocol(format!("{e:?}"))
}

/// Decodes one packet from the front of `buf`, or `None` if it is not all
/// there yet.
fn decode(version: MqttVersion, buf: &mut BytesMut) -> Result<Option<Incoming>, LeanError> {
    if buf.is_empty() {
        return Ok(None);
    }
    match version {
        MqttVersion::V4 => match p4::Packet::read(buf, MAX_INCOMING_PACKET) {
            Ok(packet) => Ok(Some(from_v4(packet))),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(codec_error(e)),
        },
        MqttVersion::V5 => match p5::Packet::read(buf, u32::try_from(MAX_INCOMING_PACKET).ok()) {
            Ok(packet) => Ok(Some(from_v5(packet))),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(codec_error(e)),
        },
    }
}

fn from_v4(packet: p4::Packet) -> Incoming {
    match packet {
        p4::Packet::ConnAck(ack) => Incoming::ConnAck(match ack.code {
            p4::ConnectReturnCode::Success => Ok(None),
            other => Err(format!("{other:?}")),
        }),
        p4::Packet::SubAck(ack) => Incoming::SubAck {
            pkid: ack.pkid,
            refused: ack
                .return_codes
                .iter()
                .find(|c| matches!(c, p4::SubscribeReasonCode::Failure))
                .map(|_| "SUBACK failure (0x80)".to_string()),
        },
        p4::Packet::PubAck(ack) => Incoming::PubAck {
            pkid: ack.pkid,
            refused: None,
        },
        p4::Packet::Publish(publish) => Incoming::Publish {
            qos: publish.qos as u8,
            pkid: publish.pkid,
            topic: publish.topic,
            payload: publish.payload,
        },
        p4::Packet::PingResp => Incoming::PingResp,
        other => Incoming::Other(format!("{other:?}")),
    }
}

fn from_v5(packet: p5::Packet) -> Incoming {
    match packet {
        p5::Packet::ConnAck(ack) => Incoming::ConnAck(match ack.code {
            p5::ConnectReturnCode::Success => Ok(ack.properties.and_then(|p| p.receive_max)),
            other => Err(format!("{other:?}")),
        }),
        p5::Packet::SubAck(ack) => Incoming::SubAck {
            pkid: ack.pkid,
            refused: ack
                .return_codes
                .iter()
                .find(|c| !matches!(c, p5::SubscribeReasonCode::Success(_)))
                .map(|c| format!("SUBACK {c:?}")),
        },
        p5::Packet::PubAck(ack) => Incoming::PubAck {
            pkid: ack.pkid,
            refused: match ack.reason {
                p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers => None,
                reason => Some(format!("PUBACK {reason:?}")),
            },
        },
        p5::Packet::Publish(publish) => match String::from_utf8(publish.topic.to_vec()) {
            Ok(topic) => Incoming::Publish {
                qos: publish.qos as u8,
                pkid: publish.pkid,
                topic,
                payload: publish.payload,
            },
            Err(_) => Incoming::Other("PUBLISH with a topic that is not UTF-8".into()),
        },
        p5::Packet::PingResp(_) => Incoming::PingResp,
        p5::Packet::Disconnect(d) => Incoming::Disconnect(format!("{:?}", d.reason_code)),
        other => Incoming::Other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::net::TcpListener;

    use super::*;

    /// The broker side of a test: a real socket speaking raw packets.
    struct RawBroker {
        stream: TcpStream,
        buf: BytesMut,
    }

    impl RawBroker {
        /// Accepts the client's connection, checks its CONNECT and answers
        /// with `connack` as given.
        async fn accept(listener: &TcpListener, version: MqttVersion, connack: &[u8]) -> RawBroker {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut broker = RawBroker {
                stream,
                buf: BytesMut::new(),
            };
            let client_id = match version {
                MqttVersion::V4 => match broker.read_v4().await {
                    p4::Packet::Connect(connect) => connect.client_id,
                    other => panic!("expected CONNECT, got {other:?}"),
                },
                MqttVersion::V5 => match broker.read_v5().await {
                    p5::Packet::Connect(connect, None, None) => connect.client_id,
                    other => panic!("expected CONNECT, got {other:?}"),
                },
            };
            assert_eq!(client_id, "c1");
            broker.stream.write_all(connack).await.expect("CONNACK");
            broker
        }

        /// Reads one MQTT 5 packet the client sent.
        async fn read_v5(&mut self) -> p5::Packet {
            loop {
                match p5::Packet::read(&mut self.buf, None) {
                    Ok(packet) => return packet,
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("client sent garbage: {e:?}"),
                }
                self.fill().await;
            }
        }

        /// Reads one MQTT 3.1.1 packet the client sent.
        async fn read_v4(&mut self) -> p4::Packet {
            loop {
                match p4::Packet::read(&mut self.buf, usize::MAX) {
                    Ok(packet) => return packet,
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("client sent garbage: {e:?}"),
                }
                self.fill().await;
            }
        }

        async fn fill(&mut self) {
            let n = self.stream.read_buf(&mut self.buf).await.expect("read");
            assert!(n > 0, "client closed the connection");
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.expect("write");
        }
    }

    fn spec(target: SocketAddr, version: MqttVersion, keepalive: u64) -> LeanSpec<'static> {
        LeanSpec {
            endpoint: Endpoint {
                target,
                source: None,
                version,
                client_id: "c1",
                login: None,
                keepalive: Duration::from_secs(keepalive),
            },
            inflight: 10,
        }
    }

    /// Polls until `n` events have arrived.
    async fn events<T>(conn: &mut LeanConnection<T>, n: usize) -> Vec<LeanEvent<T>> {
        let mut events = Vec::new();
        while events.len() < n {
            conn.next(&mut events).await.expect("events");
        }
        events
    }

    #[tokio::test]
    async fn window_follows_receive_maximum_and_pubacks_match_by_packet_id() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        // CONNACK accepted, properties: Receive Maximum 2.
        let connack = [0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00, 0x02];
        let client = spec(target, MqttVersion::V5, 0);
        let (conn, mut broker) = tokio::join!(
            LeanConnection::<u32>::connect(&client),
            RawBroker::accept(&listener, MqttVersion::V5, &connack)
        );
        let mut conn = conn.expect("connected");
        assert_eq!(conn.window(), 2);

        for tag in [10, 11, 12] {
            conn.publish("t/x", Qos::AtLeastOnce, Bytes::from_static(b"m"), tag)
                .unwrap();
        }
        assert_eq!((conn.in_flight(), conn.waiting()), (2, 1));
        conn.flush().unwrap();
        for pkid in [1, 2] {
            match broker.read_v5().await {
                p5::Packet::Publish(p) => {
                    assert_eq!(
                        (p.pkid, &p.topic[..], &p.payload[..]),
                        (pkid, &b"t/x"[..], &b"m"[..])
                    );
                    assert_eq!(p.qos, rumqttc::v5::mqttbytes::QoS::AtLeastOnce);
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }

        // In one segment: packet 2 refused (0x97 quota exceeded), packet 1
        // acknowledged, and the first half of a QoS 1 delivery.
        broker
            .send(&[
                0x40, 0x03, 0x00, 0x02, 0x97, 0x40, 0x02, 0x00, 0x01, 0x32, 0x0A, 0x00, 0x03, b'a',
                b'/', b'b',
            ])
            .await;
        match &events(&mut conn, 2).await[..] {
            [LeanEvent::Rejected { tag: 11, reason }, LeanEvent::Acked(10)] => {
                assert!(reason.contains("QuotaExceeded"), "{reason}")
            }
            other => panic!("unexpected {other:?}"),
        }
        // The freed window took the waiting publish, on the first id freed.
        match broker.read_v5().await {
            p5::Packet::Publish(p) => assert_eq!(p.pkid, 2),
            other => panic!("expected PUBLISH, got {other:?}"),
        }

        // The rest of the delivery (packet id 9, payload "hi"), then the
        // acknowledgement of the third publish.
        broker
            .send(&[0x00, 0x09, 0x00, b'h', b'i', 0x40, 0x02, 0x00, 0x02])
            .await;
        match &events(&mut conn, 2).await[..] {
            [LeanEvent::Message { topic, payload }, LeanEvent::Acked(12)] => {
                assert_eq!((topic.as_str(), &payload[..]), ("a/b", &b"hi"[..]))
            }
            other => panic!("unexpected {other:?}"),
        }
        match broker.read_v5().await {
            p5::Packet::PubAck(ack) => assert_eq!(ack.pkid, 9),
            other => panic!("expected the delivery's PUBACK, got {other:?}"),
        }
        assert_eq!((conn.in_flight(), conn.waiting()), (0, 0));

        // A PUBACK for nothing in flight ends the connection.
        broker.send(&[0x40, 0x02, 0x00, 0x01]).await;
        let mut events = Vec::new();
        let err = conn.next(&mut events).await.unwrap_err();
        assert!(matches!(err, LeanError::Protocol(_)), "{err}");
    }

    #[tokio::test]
    async fn pings_at_the_keepalive_interval_and_says_why_a_connect_failed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let client = spec(target, MqttVersion::V4, 1);
        let (conn, mut broker) = tokio::join!(
            LeanConnection::<u32>::connect(&client),
            RawBroker::accept(&listener, MqttVersion::V4, &[0x20, 0x02, 0x00, 0x00])
        );
        let mut conn = conn.expect("connected");
        assert_eq!(conn.window(), 10);
        let (events, ()) = tokio::join!(events(&mut conn, 1), async {
            assert_eq!(broker.read_v4().await, p4::Packet::PingReq);
            // PINGRESP, then a QoS 0 delivery that ends the client's wait.
            broker
                .send(&[0xD0, 0x00, 0x30, 0x05, 0x00, 0x01, b'p', b'o', b'k'])
                .await;
        });
        assert_eq!(
            events,
            vec![LeanEvent::Message {
                topic: "p".into(),
                payload: Bytes::from_static(b"ok"),
            }]
        );
        assert!(!conn.awaiting_pingresp);
        conn.disconnect().await.expect("disconnect");
        assert_eq!(broker.read_v4().await, p4::Packet::Disconnect);

        // MQTT 3.1.1 CONNACK refusing with code 5: not authorized.
        let client = spec(target, MqttVersion::V4, 0);
        let (refused, _broker) = tokio::join!(
            LeanConnection::<u32>::connect(&client),
            RawBroker::accept(&listener, MqttVersion::V4, &[0x20, 0x02, 0x00, 0x05])
        );
        match refused {
            Err(LeanError::Refused(reason)) => {
                assert!(reason.contains("NotAuthorized"), "{reason}")
            }
            Err(other) => panic!("unexpected {other}"),
            Ok(_) => panic!("connected despite the refusal"),
        }
    }

    #[test]
    fn decodes_every_whole_packet_and_keeps_the_rest() {
        // SUBACK (granted QoS 1), SUBACK (refused), half of a PINGRESP.
        let mut buf = BytesMut::from(
            &[
                0x90, 0x03, 0xFA, 0x01, 0x01, 0x90, 0x03, 0xFA, 0x02, 0x80, 0xD0,
            ][..],
        );
        assert!(matches!(
            decode(MqttVersion::V4, &mut buf),
            Ok(Some(Incoming::SubAck {
                pkid: FIRST_SUBSCRIBE_PKID,
                refused: None
            }))
        ));
        assert!(matches!(
            decode(MqttVersion::V4, &mut buf),
            Ok(Some(Incoming::SubAck {
                refused: Some(_),
                ..
            }))
        ));
        assert!(matches!(decode(MqttVersion::V4, &mut buf), Ok(None)));
        assert_eq!(&buf[..], &[0xD0]);
        buf.extend_from_slice(&[0x00]);
        assert!(matches!(
            decode(MqttVersion::V4, &mut buf),
            Ok(Some(Incoming::PingResp))
        ));
        // A packet type no server sends.
        let mut buf = BytesMut::from(&[0xF0, 0x00][..]);
        assert!(decode(MqttVersion::V4, &mut buf).is_err());
    }
}
