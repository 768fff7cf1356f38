//! The CONNECT exchange: protocol detection, authentication, client-id and
//! will checks, and attaching the connection to its engine session.

use std::time::Duration;

use bytes::BytesMut;
use chat_core::acl::{authorize_publish, Principal, PublishDecision};
use chat_core::ids::router_client_id;
use chat_core::topics::validate_topic_name;
use parley_engine::codec::{detect_version, Codec, HandshakeError, Version};
use parley_engine::message::{ForwardedProperties, Message, QoS};
use parley_engine::router::{Attachment, ConnectRequest, Detach, Will};
use parley_engine::session::ConnectionParams;
use rumqttd::protocol::{ConnAck, ConnAckProperties, ConnectReturnCode, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

use super::sessions::{SessionHandle, SessionInfo, TransportKind};
use super::MqttContext;
use crate::auth::AuthError;
use crate::metrics::{AuthFailure, AuthVia, HandshakeFailure, Limit};

/// A connection that passed CONNECT.
pub struct Session {
    /// Who is connected.
    pub principal: Principal,
    /// The codec of the negotiated version.
    pub codec: Codec,
    /// The connection's hold on its engine session.
    pub attachment: Attachment,
    /// The session expiry granted, in seconds.
    pub session_expiry: u32,
    /// Keep-alive in seconds (0 = none).
    pub keep_alive: u16,
    /// Bytes already read past the CONNECT packet.
    pub leftover: BytesMut,
    /// In-flight deliveries of a resumed session, encoded for resending.
    pub resend: BytesMut,
    /// The connection's entry in the node's session registry; dropping it
    /// reports the connection closed.
    pub registration: SessionHandle,
    /// A copy of the will, in a cluster, to keep in the store while the
    /// connection lives (see [`crate::cluster_mqtt`]); boxed, as most
    /// connections have none.
    pub guarded_will: Option<Box<Will>>,
}

/// Why a connection did not get past CONNECT.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// No (complete) CONNECT arrived in time.
    #[error("no CONNECT within the connect timeout")]
    Timeout,
    /// The peer closed or the socket failed.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// Not MQTT, or an unsupported version.
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    /// The CONNECT packet could not be decoded.
    #[error("malformed CONNECT: {0}")]
    Malformed(String),
    /// Refused with this CONNACK return code.
    #[error("refused with CONNACK {code:?}: {why}")]
    Code {
        /// The code sent to the client.
        code: ConnectReturnCode,
        /// What to log.
        why: String,
    },
}

/// Reads CONNECT from `stream` (a connection from `peer` on `transport`),
/// applies the per-address connect rate, authenticates, registers the
/// connection, attaches the engine session and sends CONNACK. Every refusal
/// is counted in the node's metrics.
pub async fn handshake<S>(
    stream: &mut S,
    peer: std::net::SocketAddr,
    transport: TransportKind,
    ctx: &MqttContext,
) -> Result<Session, Refused>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let result = connect(stream, peer, transport, ctx).await;
    match &result {
        Ok(_) => {}
        Err(Refused::Code { code, .. }) => ctx.metrics.refused(*code),
        Err(Refused::Timeout) => ctx.metrics.handshake_failed(HandshakeFailure::Timeout),
        Err(Refused::Io(_)) => ctx.metrics.handshake_failed(HandshakeFailure::Network),
        Err(Refused::Handshake(_) | Refused::Malformed(_)) => {
            ctx.metrics.handshake_failed(HandshakeFailure::Malformed)
        }
    }
    result
}

async fn connect<S>(
    stream: &mut S,
    peer: std::net::SocketAddr,
    transport: TransportKind,
    ctx: &MqttContext,
) -> Result<Session, Refused>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let timeout = Duration::from_millis(ctx.config.connect_timeout_ms);
    let mut buf = BytesMut::with_capacity(512);
    let (codec, packet) =
        match tokio::time::timeout(timeout, read_connect(stream, &mut buf, ctx)).await {
            Err(_) => return Err(Refused::Timeout),
            Ok(Err(Refused::Handshake(HandshakeError::UnsupportedLevel(level)))) => {
                // 3.1 and older: answer in the 3.1.1 format, "unacceptable protocol version".
                stream.write_all(&[0x20, 2, 0, 1]).await.ok();
                return Err(HandshakeError::UnsupportedLevel(level).into());
            }
            Ok(r) => r?,
        };
    let Packet::Connect(connect, props, will, will_props, login) = packet else {
        return Err(HandshakeError::NotConnect(0).into());
    };
    let v5 = codec.version() == Version::V5;
    let refuse = |code: ConnectReturnCode, why: String| Refused::Code { code, why };

    let result: Result<Session, Refused> = async {
        if !ctx.limits.allow_connect(peer.ip()) {
            ctx.metrics.limited(Limit::ConnectsPerIp);
            // 3.1.1 clients get 0x03 (server unavailable) through the codec's downgrade.
            return Err(refuse(ConnectReturnCode::ConnectionRateExceeded, format!("too many connections from {}", peer.ip())));
        }
        let auth_failed = |reason| ctx.metrics.auth_failed(reason, AuthVia::Mqtt);
        let Some(login) = login else {
            auth_failed(AuthFailure::NoCredentials);
            return Err(refuse(bad_credentials(v5), "no username".into()));
        };
        let user = match ctx.auth.authenticate_mqtt(&login.username, &login.password, peer.ip()).await {
            Ok(user) => user,
            Err(AuthError::BadCredentials) => {
                auth_failed(AuthFailure::BadCredentials);
                return Err(refuse(bad_credentials(v5), format!("bad credentials for {:?}", login.username)))
            }
            Err(AuthError::Disabled) => {
                auth_failed(AuthFailure::Disabled);
                return Err(refuse(ConnectReturnCode::NotAuthorized, format!("user {:?} is disabled", login.username)))
            }
            Err(AuthError::Unavailable(e)) => {
                auth_failed(AuthFailure::Unavailable);
                return Err(refuse(ConnectReturnCode::ServerUnavailable, format!("account store unavailable: {e}")))
            }
        };

        let session_expiry = if v5 {
            props.as_ref().and_then(|p| p.session_expiry_interval).unwrap_or(0)
        } else if connect.clean_session {
            0
        } else {
            u32::MAX
        };
        let persistent = session_expiry > 0;
        let mut assigned = None;
        let client_id = if connect.client_id.is_empty() {
            if !v5 && !connect.clean_session {
                return Err(refuse(ConnectReturnCode::ClientIdentifierNotValid, "empty client id with a persistent session".into()));
            }
            let id = random_client_id();
            assigned = Some(id.clone());
            id
        } else {
            if connect.client_id.len() > ctx.config.max_client_id_bytes {
                ctx.metrics.limited(Limit::ClientIdLength);
                return Err(refuse(ConnectReturnCode::ClientIdentifierNotValid, format!("client id of {} bytes is over the {}-byte limit", connect.client_id.len(), ctx.config.max_client_id_bytes)));
            }
            if connect.client_id.contains('\0') {
                return Err(refuse(ConnectReturnCode::ClientIdentifierNotValid, "client id contains U+0000".into()));
            }
            connect.client_id.clone()
        };
        let principal = Principal { user, client_id };

        let will = match will {
            None => None,
            Some(w) => {
                let topic_bytes = w.topic.clone();
                let topic = std::str::from_utf8(&topic_bytes)
                    .map_err(|_| refuse(ConnectReturnCode::TopicNameInvalid, "will topic is not UTF-8".into()))?;
                validate_topic_name(topic)
                    .map_err(|e| refuse(ConnectReturnCode::TopicNameInvalid, format!("will topic {topic:?}: {e}")))?;
                match authorize_publish(&principal, topic, &ctx.acl) {
                    PublishDecision::Plain => {}
                    _ => {
                        return Err(refuse(ConnectReturnCode::NotAuthorized, format!("will topic {topic:?} not allowed")))
                    }
                }
                let message = will_message(topic, w, will_props.as_ref());
                if message.size() > ctx.config.max_will_bytes {
                    ctx.metrics.limited(Limit::WillSize);
                    return Err(refuse(ConnectReturnCode::QuotaExceeded, format!("will of {} bytes is over the {}-byte limit", message.size(), ctx.config.max_will_bytes)));
                }
                let delay_secs = will_props.as_ref().and_then(|p| p.delay_interval).unwrap_or(0);
                Some(Will { message, delay_secs })
            }
        };

        let keep_alive = match ctx.config.max_keep_alive_secs {
            0 => connect.keep_alive,
            cap if connect.keep_alive == 0 || connect.keep_alive > cap => cap,
            _ => connect.keep_alive,
        };

        let key = router_client_id(&principal.user, &principal.client_id);
        let params = ConnectionParams {
            codec,
            receive_maximum: props.as_ref().and_then(|p| p.receive_maximum).unwrap_or(u16::MAX),
            max_packet_size: props.as_ref().and_then(|p| p.max_packet_size).unwrap_or(u32::MAX),
            topic_alias_maximum: props.as_ref().and_then(|p| p.topic_alias_max).unwrap_or(0),
        };
        // In a cluster, the session comes to this node first (from the node
        // holding it, or the store if that node is dead).
        if let Some(moves) = &ctx.moves {
            moves.acquire(&key).await.map_err(|e| {
                refuse(ConnectReturnCode::ServerUnavailable, format!("session {key:?} could not move here: {e}"))
            })?;
        }
        // Registered (and reported opened to the session listeners) before the
        // engine may take an older connection of the same session over, so
        // that connection's end never shows the user gone.
        let registration = ctx.sessions.register(
            &ctx.shutdown,
            SessionInfo {
                user: principal.user.as_str().to_owned(),
                client_id: principal.client_id.clone(),
                transport,
                peer,
                version: codec.version(),
                connected_at_ms: now_ms(),
            },
        );
        let guarded_will = match (&ctx.cluster_mqtt, &will) {
            (Some(_), Some(will)) => Some(Box::new(will.clone())),
            _ => None,
        };
        let mut resend = BytesMut::new();
        let connected = ctx.router.connect(
            ConnectRequest {
                key,
                namespace: principal.user.as_str().to_owned(),
                clean_start: connect.clean_session,
                session_expiry_secs: session_expiry,
                params,
                will,
            },
            std::time::Instant::now(),
            &mut resend,
        );

        let mut ack_props = ConnAckProperties::default();
        if v5 {
            ack_props.assigned_client_identifier = assigned;
            ack_props.max_packet_size = Some(ctx.config.max_packet_size as u32);
            ack_props.receive_max = Some(ctx.config.receive_maximum);
            ack_props.topic_alias_max = Some(ctx.config.topic_alias_maximum);
            ack_props.retain_available = Some(1);
            ack_props.wildcard_subscription_available = Some(1);
            ack_props.subscription_identifiers_available = Some(1);
            ack_props.shared_subscription_available = Some(1);
            if connected.session_expiry_secs != session_expiry {
                ack_props.session_expiry_interval = Some(connected.session_expiry_secs);
            }
            if keep_alive != connect.keep_alive {
                ack_props.server_keep_alive = Some(keep_alive);
            }
        }
        let connack = Packet::ConnAck(
            ConnAck {
                session_present: connected.session_present && !connect.clean_session,
                code: ConnectReturnCode::Success,
            },
            v5.then_some(ack_props),
        );
        if let Err(e) = write_packet(stream, &codec, connack).await {
            // The client is gone before its session began.
            let detach = Detach { publish_will: false, session_expiry_secs: None };
            ctx.router.detach(&connected.attachment, detach, std::time::Instant::now());
            // Reports the connection closed.
            drop(registration);
            return Err(e.into());
        }
        info!(user = %principal.user, client_id = %principal.client_id, version = ?codec.version(), persistent, "connected");
        Ok(Session {
            principal,
            codec,
            attachment: connected.attachment,
            session_expiry: connected.session_expiry_secs,
            keep_alive,
            leftover: std::mem::take(&mut buf),
            resend,
            registration,
            guarded_will,
        })
    }
    .await;

    if let Err(Refused::Code { code, why }) = &result {
        warn!(client_id = %connect.client_id, reason = %why, code = ?code, "connection refused");
        let ack = Packet::ConnAck(
            ConnAck {
                session_present: false,
                code: *code,
            },
            v5.then(|| ConnAckProperties {
                reason_string: Some(why.clone()),
                ..ConnAckProperties::default()
            }),
        );
        write_packet(stream, &codec, ack).await.ok();
    }
    result
}

/// 3.1.1 answers bad credentials with 0x05 (not authorized), MQTT 5 with 0x86.
fn bad_credentials(v5: bool) -> ConnectReturnCode {
    if v5 {
        ConnectReturnCode::BadUserNamePassword
    } else {
        ConnectReturnCode::NotAuthorized
    }
}

async fn read_connect<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    ctx: &MqttContext,
) -> Result<(Codec, Packet), Refused>
where
    S: AsyncRead + Unpin,
{
    let version = loop {
        if let Some(v) = detect_version(buf)? {
            break v;
        }
        read_more(stream, buf).await?;
    };
    let codec = Codec::new(version, ctx.config.max_packet_size);
    loop {
        match codec.decode(buf) {
            Ok(Some(incoming)) => return Ok((codec, incoming.packet)),
            Ok(None) => read_more(stream, buf).await?,
            Err(e) => return Err(Refused::Malformed(e.to_string())),
        }
    }
}

async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<(), Refused> {
    if stream.read_buf(buf).await? == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}

/// Encodes and writes one packet.
pub async fn write_packet<S: AsyncWrite + Unpin>(
    stream: &mut S,
    codec: &Codec,
    packet: Packet,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    codec
        .encode(packet, &mut out)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    stream.write_all(&out).await?;
    stream.flush().await
}

/// The engine message of a CONNECT's will.
fn will_message(
    topic: &str,
    will: rumqttd::protocol::LastWill,
    props: Option<&rumqttd::protocol::LastWillProperties>,
) -> Message {
    Message {
        topic: std::sync::Arc::from(topic),
        payload: will.message,
        qos: QoS::from_u8(will.qos as u8).unwrap_or(QoS::AtMostOnce),
        retain: will.retain,
        properties: props
            .map(|p| ForwardedProperties {
                payload_format_indicator: p.payload_format_indicator,
                content_type: p.content_type.clone(),
                response_topic: p.response_topic.clone(),
                correlation_data: p.correlation_data.clone(),
                user_properties: p.user_properties.clone(),
            })
            .unwrap_or_default(),
        // Message Expiry of a will counts from when it is published; the
        // engine stamps nothing, so an expiring will is kept as published.
        expires_at: None,
        origin: None,
    }
}

/// Wall-clock milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn random_client_id() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 12];
    // SystemRandom only fails if the OS has no entropy source at all.
    SystemRandom::new().fill(&mut bytes).ok();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("auto-{hex}")
}
