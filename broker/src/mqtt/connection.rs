//! One client connection after CONNECT: shuttles packets between the socket
//! and the router link, applying the inbound rules, keep-alive and the will.

use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet};
use rumqttd::Notification;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::chat_worker::{ChatDone, ChatWorker};
use super::codec::{DecodeError, Version};
use super::handshake::{handshake, Session};
use super::inbound::{Close, Effects, InboundState};
use super::sessions::{SessionHandle, SessionInfo, TransportKind};
use super::MqttContext;
use crate::metrics::{DisconnectReason, Limit, OutKind};

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client sent DISCONNECT.
    Client { publish_will: bool },
    /// The socket closed or failed without DISCONNECT.
    Network,
    /// Nothing arrived for 1.5 x keep-alive.
    KeepAlive,
    /// The client broke the protocol.
    Protocol(DisconnectReasonCode),
    /// The router dropped the link: another connection took the session over.
    TakenOver,
    /// Parley is shutting down.
    Shutdown,
    /// An administrator ended the session (kick, or the user was disabled).
    Kicked,
    /// The client sent more bytes per second than `limits` allow.
    RateLimited,
}

impl End {
    /// The `reason` label this end is counted under.
    fn metric(self) -> DisconnectReason {
        match self {
            End::Client { .. } => DisconnectReason::Client,
            End::Network => DisconnectReason::Network,
            End::KeepAlive => DisconnectReason::KeepAlive,
            End::Protocol(_) => DisconnectReason::ProtocolError,
            End::TakenOver => DisconnectReason::TakenOver,
            End::Shutdown => DisconnectReason::Shutdown,
            End::Kicked => DisconnectReason::Kicked,
            End::RateLimited => DisconnectReason::RateLimited,
        }
    }
}

/// Serves one connection from `peer`, accepted on `transport`, until it
/// ends. Never panics on client input.
pub async fn serve<S>(
    mut stream: S,
    peer: std::net::SocketAddr,
    transport: TransportKind,
    ctx: std::sync::Arc<MqttContext>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let session = match handshake(&mut stream, peer, &ctx).await {
        Ok(session) => session,
        Err(e) => {
            debug!(%peer, error = %e, "handshake ended");
            return;
        }
    };
    ctx.metrics.connected(transport);
    let registration = ctx.sessions.register(SessionInfo {
        user: session.principal.user.as_str().to_owned(),
        client_id: session.principal.client_id.clone(),
        transport,
        peer,
        version: session.codec.version(),
        connected_at_ms: now_ms(),
    });
    run(stream, session, registration, &ctx).await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn run<S>(mut stream: S, session: Session, registration: SessionHandle, ctx: &MqttContext)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Session {
        principal,
        codec,
        mut link,
        router_client_id,
        keep_alive,
        will,
        leftover,
    } = session;
    let user = principal.user.clone();
    let client_id = principal.client_id.clone();
    let mut inbound = InboundState::new(
        principal,
        codec.version(),
        ctx.metrics.clone(),
        ctx.limits.publishes(),
    );
    let mut byte_budget = ctx.limits.byte_budget();
    let mut chat = ChatWorker::start(ctx.chat.clone(), ctx.metrics.clone(), user.clone());
    let mut chat_done: Vec<ChatDone> = Vec::new();
    let mut rbuf = leftover;
    let mut wbuf = BytesMut::with_capacity(4096);
    let idle_limit = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let mut deadline = idle_limit.map(|d| Instant::now() + d);
    let shutdown = ctx.shutdown.clone();

    let end = 'conn: loop {
        let mut fx = Effects::default();
        // Acknowledge the chat publishes the worker has finished, in order.
        for done in chat_done.drain(..) {
            if !inbound.ack_chat(done.qos, done.pkid, done.ack, &mut fx) {
                warn!(%user, %client_id, "closing: a message could not be stored and 3.1.1 cannot say so");
                fx.close = Some(Close::ProtocolViolation(
                    DisconnectReasonCode::UnspecifiedError,
                ));
                break;
            }
        }
        // Decode and act on every complete packet already buffered.
        while fx.close.is_none() {
            match codec.decode(&mut rbuf) {
                Ok(Some(incoming)) => {
                    inbound
                        .on_packet(incoming, &ctx.acl, &ctx.chat, &mut fx)
                        .await;
                    if fx.close.is_some() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(DecodeError::TooLarge(n)) => {
                    warn!(%user, %client_id, size = n, "packet too large");
                    fx.close = Some(Close::ProtocolViolation(
                        DisconnectReasonCode::PacketTooLarge,
                    ));
                    break;
                }
                Err(DecodeError::Malformed(e)) => {
                    warn!(%user, %client_id, error = %e, "malformed packet");
                    fx.close = Some(Close::ProtocolViolation(
                        DisconnectReasonCode::MalformedPacket,
                    ));
                    break;
                }
            }
        }
        for pending in std::mem::take(&mut fx.chat) {
            if !chat.submit(pending).await {
                break 'conn End::Protocol(DisconnectReasonCode::ImplementationSpecificError);
            }
        }
        if !fx.to_router.is_empty() {
            let last = fx.to_router.pop();
            link.tx.buffer().extend(fx.to_router.drain(..));
            if let Some(last) = last {
                if link.tx.send(last).await.is_err() {
                    break 'conn End::TakenOver;
                }
            }
        }
        for packet in fx.to_client.drain(..) {
            if codec.encode(packet, &mut wbuf).is_err() {
                break 'conn End::Protocol(DisconnectReasonCode::ImplementationSpecificError);
            }
        }
        if !wbuf.is_empty() && write_all(&mut stream, &mut wbuf).await.is_err() {
            break 'conn End::Network;
        }
        match fx.close {
            Some(Close::ClientDisconnect { publish_will }) => {
                // Answer what the client published before its DISCONNECT.
                chat.settle(&mut chat_done).await;
                let mut fx = Effects::default();
                for done in chat_done.drain(..) {
                    inbound.ack_chat(done.qos, done.pkid, done.ack, &mut fx);
                }
                for packet in fx.to_client {
                    codec.encode(packet, &mut wbuf).ok();
                }
                write_all(&mut stream, &mut wbuf).await.ok();
                break 'conn End::Client { publish_will };
            }
            Some(Close::ProtocolViolation(code)) => break 'conn End::Protocol(code),
            None => {}
        }

        rbuf.reserve(4096);
        tokio::select! {
            _ = shutdown.cancelled() => break 'conn End::Shutdown,
            _ = registration.kicked() => break 'conn End::Kicked,
            _ = chat.finished(&mut chat_done) => {}
            _ = sleep_until(deadline) => break 'conn End::KeepAlive,
            read = stream.read_buf(&mut rbuf) => match read {
                Ok(0) | Err(_) => break 'conn End::Network,
                Ok(n) => {
                    if byte_budget.as_mut().is_some_and(|budget| !budget.spend(n)) {
                        ctx.metrics.limited(Limit::BytesPerConnection);
                        warn!(%user, %client_id, "closing: over the bytes-per-second limit");
                        break 'conn End::RateLimited;
                    }
                    deadline = idle_limit.map(|d| Instant::now() + d);
                }
            },
            notification = link.rx.next() => {
                let mut next = notification;
                loop {
                    match next {
                        Err(_) => break 'conn End::TakenOver,
                        Ok(None) => {}
                        Ok(Some(Notification::Unschedule)) => {
                            if link.rx.wake().await.is_err() {
                                break 'conn End::TakenOver;
                            }
                        }
                        Ok(Some(notification)) => {
                            let packet = match Option::<Packet>::from(notification) {
                                Some(Packet::SubAck(ack, props)) => Some(Packet::SubAck(inbound.on_router_suback(ack), props)),
                                other => other,
                            };
                            if let Some(packet) = packet {
                                if let Packet::Publish(publish, _) = &packet {
                                    ctx.metrics.message_out(OutKind::of(&publish.topic, &publish.payload));
                                }
                                let router_disconnect = matches!(packet, Packet::Disconnect(..));
                                if codec.encode(packet, &mut wbuf).is_err() {
                                    break 'conn End::Protocol(DisconnectReasonCode::ImplementationSpecificError);
                                }
                                if router_disconnect {
                                    write_all(&mut stream, &mut wbuf).await.ok();
                                    break 'conn End::Protocol(DisconnectReasonCode::UnspecifiedError);
                                }
                            }
                        }
                    }
                    // Drain what the router has ready so it goes out in one write.
                    match link.rx.next().now_or_never() {
                        Some(n) => next = n,
                        None => break,
                    }
                }
                if write_all(&mut stream, &mut wbuf).await.is_err() {
                    break 'conn End::Network;
                }
            }
        }
    };

    // Tell the client why, where MQTT 5 lets the server say so.
    let reason = match end {
        End::Shutdown => Some(DisconnectReasonCode::ServerShuttingDown),
        End::TakenOver => Some(DisconnectReasonCode::SessionTakenOver),
        End::KeepAlive => Some(DisconnectReasonCode::KeepAliveTimeout),
        End::Kicked => Some(DisconnectReasonCode::AdministrativeAction),
        End::RateLimited => Some(DisconnectReasonCode::MessageRateTooHigh),
        End::Protocol(code) => Some(code),
        End::Client { .. } | End::Network => None,
    };
    if let (Some(reason_code), Version::V5) = (reason, codec.version()) {
        let packet = Packet::Disconnect(Disconnect { reason_code }, None);
        if codec.encode(packet, &mut wbuf).is_ok() {
            write_all(&mut stream, &mut wbuf).await.ok();
        }
    }
    stream.shutdown().await.ok();

    // Close the router side; a link the router already dropped must not be
    // touched again (its connection id may belong to someone else now).
    if end != End::TakenOver {
        let bye = Packet::Disconnect(
            Disconnect {
                reason_code: DisconnectReasonCode::NormalDisconnection,
            },
            None,
        );
        link.tx.send(bye).await.ok();
    }

    let fire_will = match end {
        End::Client { publish_will } => publish_will,
        End::Shutdown => false,
        _ => true,
    };
    // Publishes already received are still handled (and stored) before the
    // connection's task ends, so a shutdown waits for them.
    chat.close().await;
    ctx.chat.presence.disconnected(&user);
    ctx.metrics.disconnected(end.metric());
    drop(registration);
    if let (true, Some(will)) = (fire_will, will) {
        ctx.wills
            .fire(router_client_id, will, ctx.publisher.clone());
    }
    info!(%user, %client_id, ended = ?end, denied_publishes = inbound.denied_publishes, "disconnected");
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> std::io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let result = async {
        stream.write_all(buf).await?;
        stream.flush().await
    }
    .await;
    buf.clear();
    result
}
