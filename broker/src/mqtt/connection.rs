//! One client connection after CONNECT: reads and decodes the socket, hands
//! packets to the inbound rules and the engine, and writes what the engine's
//! session has to send. One task per connection; its buffers start empty,
//! grow with the traffic and are given back when idle.
//!
//! Timeouts: nothing received for 1.5 × keep-alive closes the connection; a
//! packet started but not finished within `packet_timeout_ms` closes it
//! whatever the keep-alive; a write that stalls (the client stopped reading)
//! for 1.5 × keep-alive, or `write_timeout_ms` without one, closes it.
//!
//! Backpressure: when a publish leaves a live subscriber's queue half full,
//! this connection stops reading (so its client slows down) until that
//! subscriber drains, for at most `max_publisher_pause_ms`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parley_engine::codec::{DecodeError, Version};
use parley_engine::router::{Attachment, Detach, SessionSlot};
use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;
use tracing::{debug, info, warn};

use super::chat_pipeline::{ChatDone, ChatPipeline};
use super::durable::DurableSessions;
use super::handshake::{handshake, Session};
use super::inbound::{Close, Effects, InboundState};
use super::sessions::{SessionHandle, TransportKind};
use super::MqttContext;
use crate::metrics::{DisconnectReason, Limit, OutKind};

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client sent DISCONNECT.
    Client {
        publish_will: bool,
        session_expiry: Option<u32>,
    },
    /// The socket closed or failed without DISCONNECT.
    Network,
    /// Nothing arrived for 1.5 x keep-alive, or a packet was left unfinished.
    KeepAlive,
    /// The client stopped reading: a write stalled past its bound.
    StalledWriter,
    /// The client broke the protocol.
    Protocol(DisconnectReasonCode),
    /// Another connection took the session over.
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
            End::KeepAlive | End::StalledWriter => DisconnectReason::KeepAlive,
            End::Protocol(_) => DisconnectReason::ProtocolError,
            End::TakenOver => DisconnectReason::TakenOver,
            End::Shutdown => DisconnectReason::Shutdown,
            End::Kicked => DisconnectReason::Kicked,
            End::RateLimited => DisconnectReason::RateLimited,
        }
    }

    /// What MQTT 5 clients are told before the socket closes.
    fn reason(self) -> Option<DisconnectReasonCode> {
        match self {
            End::Shutdown => Some(DisconnectReasonCode::ServerShuttingDown),
            End::TakenOver => Some(DisconnectReasonCode::SessionTakenOver),
            End::KeepAlive | End::StalledWriter => Some(DisconnectReasonCode::KeepAliveTimeout),
            End::Kicked => Some(DisconnectReasonCode::AdministrativeAction),
            End::RateLimited => Some(DisconnectReasonCode::MessageRateTooHigh),
            End::Protocol(code) => Some(code),
            End::Client { .. } | End::Network => None,
        }
    }
}

/// Serves one connection from `peer`, accepted on `transport`, until it
/// ends. Never panics on client input.
pub async fn serve<S>(
    mut stream: S,
    peer: std::net::SocketAddr,
    transport: TransportKind,
    ctx: Arc<MqttContext>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Boxed: the handshake's state is freed once CONNACK is sent.
    let parts = match Box::pin(handshake(&mut stream, peer, transport, &ctx)).await {
        Ok(session) => {
            ctx.metrics.connected(transport);
            // Boxed: an async fn's arguments stay in its state beside the
            // locals they are moved into.
            Box::new(Parts { stream, session })
        }
        Err(e) => {
            debug!(%peer, error = %e, "handshake ended");
            return;
        }
    };
    if let Some(directory) = &ctx.directory {
        let principal = &parts.session.principal;
        let id = parts.session.registration.id();
        directory.connected(principal.user.as_str(), &principal.client_id, id);
        directory
            .claim(principal.user.as_str(), &principal.client_id, id)
            .await;
    }
    let mut parts = parts;
    if let (Some(cluster), Some(will)) = (&ctx.cluster_mqtt, parts.session.guarded_will.take()) {
        let principal = &parts.session.principal;
        let id = parts.session.registration.id();
        cluster
            .guard_will(principal.user.as_str(), &principal.client_id, id, &will)
            .await;
        parts.session.guarded_will = Some(will);
    }
    // Awaited in place: a future held in a local and then awaited would be
    // stored twice in this task's state.
    run(parts, &ctx).await;
}

/// What [`run`] starts from.
struct Parts<S> {
    stream: S,
    session: Session,
}

/// Above this, a write buffer's memory is given back after each write.
const KEEP_BUFFER: usize = 8 * 1024;

/// A chat pipeline idle this long is given back (a new one is made for the
/// next chat publish).
const CHAT_PIPELINE_IDLE: Duration = Duration::from_secs(10);

/// How long a closing connection waits for its session's state to be stored.
const DETACH_STORE_WAIT: Duration = Duration::from_secs(5);

/// How long a connection waits before asking the store for a queue page again after a failure.
const PAGE_RETRY: Duration = Duration::from_secs(1);

/// Room made for the next read of a busy connection.
const READ_CHUNK: usize = 8 * 1024;

/// A connection that read something this recently keeps its buffers
/// between packets: a steady sender then reads each packet whole, in one
/// read, and encodes into a buffer that is already there, rather than
/// allocating both again for every packet. Idle longer, it gives them back.
const BUFFER_GRACE: Duration = Duration::from_millis(50);

/// A publisher paused until the subscribers it filled drain.
struct Pause {
    congested: Vec<Arc<SessionSlot>>,
    until: Instant,
}

async fn run<S>(parts: Box<Parts<S>>, ctx: &MqttContext)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Moved out whole, so the box is freed here rather than when `run` ends.
    let Parts {
        mut stream,
        session:
            Session {
                principal,
                codec,
                attachment,
                session_expiry,
                keep_alive,
                leftover,
                resend,
                registration,
                guarded_will,
            },
    } = { *parts };
    // Only whether there is one matters from here (its row is dropped at the end).
    let will_guarded = guarded_will.is_some();
    drop(guarded_will);
    let mut inbound = InboundState::new(
        principal,
        codec.version(),
        ctx.router.clone(),
        attachment.clone(),
        session_expiry,
        ctx.metrics.clone(),
        ctx.limits.publishes(),
    )
    .with_cluster(ctx.cluster_mqtt.clone());
    let mut byte_budget = ctx.limits.byte_budget();
    // The pipeline borrows the user for as long as it lives.
    let chat_user = inbound.principal().user.clone();
    // Boxed: an idle connection carries a pointer, not the pipeline.
    let mut chat: Option<Box<ChatPipeline<'_>>> = None;
    let mut chat_done: Vec<ChatDone> = Vec::new();
    let mut rbuf = leftover;
    let mut wbuf = resend;
    let mut last_read_full = false;
    // When the buffers are given back unless more is read; `None` once they are.
    let mut keep_buffers_until: Option<Instant> = None;
    let idle_limit = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let write_limit =
        idle_limit.unwrap_or_else(|| Duration::from_millis(ctx.config.write_timeout_ms));
    let packet_limit = Duration::from_millis(ctx.config.packet_timeout_ms);
    let mut deadline = idle_limit.map(|d| Instant::now() + d);
    let mut packet_deadline: Option<Instant> = None;
    let mut pause: Option<Pause> = None;
    let pause_limit = Duration::from_millis(ctx.config.max_publisher_pause_ms);
    // While the connection is busy (it read within `BUFFER_GRACE`), its kick
    // waiter and its timer are kept across the loop's turns: it turns
    // several times per message, and registering a new kick waiter and a new
    // timer each turn (and removing them again) cost more than the turn. An
    // idle connection gives them back and waits on ones made for the wait,
    // inside its task, so it carries no more than two pointers for them.
    let mut kept_kick: Option<Pin<Box<WaitForCancellationFuture<'_>>>> = None;
    let mut kept_timer: Option<WakeTimer> = None;

    let end = 'conn: loop {
        let mut fx = Effects::default();
        // Woken by a delivery, take the outcomes finished meanwhile too, so
        // their acknowledgements share this wake-up's write.
        if let Some(pipeline) = chat.as_mut() {
            pipeline.take_finished(&mut chat_done).await;
        }
        // Acknowledge the chat publishes the pipeline has finished, in order.
        for done in chat_done.drain(..) {
            if !inbound.ack_chat(done.qos, done.pkid, done.ack, &mut fx) {
                warn!(user = %inbound.principal().user, client_id = %inbound.principal().client_id, ack = ?done.ack, "closing: a message was not stored and 3.1.1 cannot say so");
                fx.close = Some(Close::ProtocolViolation(
                    DisconnectReasonCode::UnspecifiedError,
                ));
                break;
            }
        }
        // Decode and act on every complete packet already buffered, unless
        // paused for a subscriber to drain.
        while fx.close.is_none() && pause.is_none() {
            // The decoded packet moves into the boxed handling here, so it is
            // not kept in this task's state while the packet is handled.
            let handling = match codec.decode(&mut rbuf) {
                // Boxed: its state exists only while a packet is handled,
                // not in every idle connection's task.
                Ok(Some(incoming)) => {
                    Box::pin(inbound.on_packet(incoming, &ctx.acl, &ctx.chat, &mut fx))
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(user = %inbound.principal().user, client_id = %inbound.principal().client_id, error = %e, "bad packet");
                    if matches!(e, DecodeError::TooLarge(_)) {
                        ctx.metrics.limited(Limit::PacketSize);
                    }
                    fx.close = Some(Close::ProtocolViolation(e.reason_code()));
                    break;
                }
            };
            handling.await;
            if !fx.congested.is_empty() {
                pause = Some(Pause {
                    congested: std::mem::take(&mut fx.congested),
                    until: Instant::now() + pause_limit,
                });
            }
        }
        // A packet left half-read must be finished in time.
        packet_deadline = match (rbuf.is_empty(), packet_deadline) {
            (true, _) => None,
            (false, Some(d)) => Some(d),
            (false, None) => Some(Instant::now() + packet_limit),
        };
        if !fx.chat.is_empty() {
            let pipeline = chat.get_or_insert_with(|| {
                Box::new(ChatPipeline::new(&ctx.chat, &ctx.metrics, &chat_user))
            });
            for pending in fx.chat.drain(..) {
                pipeline.submit(pending);
            }
            // Begin them now: their commits start before this turn writes.
            // Outcomes ready already (a typing indicator, a refusal) are
            // taken by the wait below, which then returns at once, so their
            // acknowledgements are not left until something else wakes
            // the connection.
            pipeline.begin_queued().await;
        }
        // Acknowledgements of publishes forwarded to other nodes wait for the bus.
        for (index, pending) in std::mem::take(&mut fx.forwarded) {
            if pending.wait().await.is_err() {
                let answer = &mut fx.to_client[index];
                if !inbound.forward_failed(answer) {
                    warn!(user = %inbound.principal().user, client_id = %inbound.principal().client_id, "closing: a publish did not reach the cluster bus and 3.1.1 cannot say so");
                    break 'conn End::Protocol(DisconnectReasonCode::UnspecifiedError);
                }
            }
        }
        if let (false, Some(durable)) = (fx.to_client.is_empty(), &ctx.durable) {
            // Answers go out once what they acknowledge is on disk.
            let ticket = fx.ticket.max(ctx.router.ticket(&attachment));
            durable.wait(ticket).await;
        }
        for packet in fx.to_client.drain(..) {
            if codec.encode(packet, &mut wbuf).is_err() {
                break 'conn End::Protocol(DisconnectReasonCode::ImplementationSpecificError);
            }
        }
        if let Some(durable) = &ctx.durable {
            if let Some(request) = ctx
                .router
                .with_session(&attachment, |s| s.take_page_request())
                .flatten()
            {
                // Boxed: its state exists only while a page is read.
                Box::pin(page_in(ctx, durable, &attachment, request)).await;
            }
        }
        if !transmit(ctx, &attachment, &mut wbuf) {
            break 'conn End::TakenOver;
        }
        match flush(&mut stream, &mut wbuf, write_limit).await {
            Ok(()) => {}
            Err(Flush::Stalled) => break 'conn End::StalledWriter,
            Err(Flush::Failed) => break 'conn End::Network,
        }
        match fx.close {
            Some(Close::ClientDisconnect {
                publish_will,
                session_expiry,
            }) => {
                // Answer what the client published before its DISCONNECT.
                if let Some(pipeline) = chat.as_mut() {
                    pipeline.settle(&mut chat_done).await;
                }
                let mut fx = Effects::default();
                for done in chat_done.drain(..) {
                    inbound.ack_chat(done.qos, done.pkid, done.ack, &mut fx);
                }
                for packet in fx.to_client {
                    codec.encode(packet, &mut wbuf).ok();
                }
                flush(&mut stream, &mut wbuf, write_limit).await.ok();
                break 'conn End::Client {
                    publish_will,
                    session_expiry,
                };
            }
            Some(Close::ProtocolViolation(code)) => break 'conn End::Protocol(code),
            Some(Close::TakenOver) => break 'conn End::TakenOver,
            None => {}
        }
        if pause.as_ref().is_some_and(|p| Instant::now() >= p.until) {
            end_pause(pause.take());
            // The client was not read while paused: its timers restart.
            deadline = idle_limit.map(|d| Instant::now() + d);
            packet_deadline = None;
            continue;
        }
        // Buffers follow the traffic: a connection whose last read filled its
        // buffer (more is likely waiting), that holds half a packet or that
        // read something within `BUFFER_GRACE` reads into a roomy buffer; an
        // idle one holds none (a pending read then takes 64 bytes), and its
        // writes give their buffer back.
        let busy = keep_buffers_until.is_some_and(|until| Instant::now() < until);
        if !busy {
            keep_buffers_until = None;
        }
        if rbuf.is_empty() && !last_read_full && !busy {
            if rbuf.capacity() > 0 {
                rbuf = BytesMut::new();
            }
        } else {
            rbuf.reserve(READ_CHUNK);
        }
        if wbuf.capacity() > KEEP_BUFFER || (wbuf.is_empty() && !last_read_full && !busy) {
            wbuf = BytesMut::new();
        }
        if chat
            .as_ref()
            .is_some_and(|p| !p.is_busy() && p.idle_for() > CHAT_PIPELINE_IDLE)
        {
            // No chat work for a while: give the pipeline back until the
            // next chat publish (a busy sender keeps its pipeline).
            chat = None;
        }
        // Too many chat publishes wait to be begun: read no more until they are.
        let chat_full = chat.as_ref().is_some_and(|p| p.is_full());
        let read_deadline = earliest(deadline, packet_deadline);
        // One timer for both: the keep-alive (or packet) deadline, or giving
        // the buffers back, whichever comes first.
        let wake_at = earliest(read_deadline, keep_buffers_until);
        if busy {
            kept_kick.get_or_insert_with(|| Box::pin(registration.kicked()));
            kept_timer.get_or_insert_with(WakeTimer::new).arm(wake_at);
        } else {
            kept_kick = None;
            kept_timer = None;
        }
        // An idle connection keeps no effects buffers while it waits.
        drop(fx);
        tokio::select! {
            // The registration's token is a child of the node's shutdown token.
            _ = kicked(&mut kept_kick, &registration) => {
                break 'conn if ctx.shutdown.is_cancelled() {
                    End::Shutdown
                } else if registration.was_taken_over() {
                    End::TakenOver
                } else {
                    End::Kicked
                };
            }
            _ = chat_finished(&mut chat, &mut chat_done) => {}
            _ = woken(&mut kept_timer, wake_at), if pause.is_none() => {
                if read_deadline.is_some_and(|d| Instant::now() >= d) {
                    break 'conn End::KeepAlive;
                }
                // Only the buffers' grace ran out: they are given back above.
            }
            _ = attachment.ready() => {
                if !attachment.is_current() {
                    break 'conn End::TakenOver;
                }
            }
            _ = drained(&pause) => {
                end_pause(pause.take());
                // The client was not read while paused: its timers restart.
                deadline = idle_limit.map(|d| Instant::now() + d);
                packet_deadline = None;
            }
            read = stream.read_buf(&mut rbuf), if pause.is_none() && !chat_full => match read {
                Ok(0) | Err(_) => break 'conn End::Network,
                Ok(n) => {
                    last_read_full = rbuf.len() == rbuf.capacity();
                    keep_buffers_until = Some(Instant::now() + BUFFER_GRACE);
                    if byte_budget.as_mut().is_some_and(|budget| !budget.spend(n)) {
                        ctx.metrics.limited(Limit::BytesPerConnection);
                        warn!(user = %inbound.principal().user, client_id = %inbound.principal().client_id, "closing: over the bytes-per-second limit");
                        break 'conn End::RateLimited;
                    }
                    deadline = idle_limit.map(|d| Instant::now() + d);
                }
            },
        }
    };

    drop(kept_kick);
    if end == End::StalledWriter {
        ctx.metrics.limited(Limit::StalledWriter);
    }
    // Tell the client why, where MQTT 5 lets the server say so.
    if let (Some(reason_code), Version::V5, false) =
        (end.reason(), codec.version(), end == End::StalledWriter)
    {
        let packet = Packet::Disconnect(Disconnect { reason_code }, None);
        if codec.encode(packet, &mut wbuf).is_ok() {
            flush(&mut stream, &mut wbuf, Duration::from_secs(1))
                .await
                .ok();
        }
    }
    // How long the session outlives this connection (a persistent one stays
    // on this node): the directory keeps its deliveries coming here so long.
    let kept_for = match end {
        End::Client {
            session_expiry: Some(secs),
            ..
        } => secs,
        End::TakenOver => 0,
        _ => session_expiry,
    };
    let (publish_will, session_expiry) = match end {
        End::Client {
            publish_will,
            session_expiry,
        } => (publish_will, session_expiry),
        End::Shutdown | End::TakenOver => (false, None),
        _ => (true, None),
    };
    // Publishes already received are still handled (and stored) before the
    // connection's task ends, so a shutdown waits for them.
    if let Some(mut pipeline) = chat {
        pipeline.settle(&mut chat_done).await;
    }
    let detach = Detach {
        publish_will,
        session_expiry_secs: session_expiry,
    };
    ctx.router
        .detach(&attachment, detach, std::time::Instant::now());
    if let Some(durable) = &ctx.durable {
        // A persistent session's new state (detached, an expiry changed at
        // DISCONNECT) is on disk before the client sees the socket close.
        let ticket = ctx.router.ticket(&attachment);
        if tokio::time::timeout(DETACH_STORE_WAIT, durable.wait(ticket))
            .await
            .is_err()
        {
            warn!(user = %inbound.principal().user, client_id = %inbound.principal().client_id, "the session's state at disconnect is not stored yet");
        }
    }
    stream.shutdown().await.ok();
    if let (true, Some(cluster)) = (will_guarded, &ctx.cluster_mqtt) {
        let principal = inbound.principal();
        cluster
            .drop_will(
                principal.user.as_str(),
                &principal.client_id,
                registration.id(),
            )
            .await;
    }
    if let Some(directory) = &ctx.directory {
        let principal = inbound.principal();
        directory
            .disconnected(
                principal.user.as_str(),
                &principal.client_id,
                registration.id(),
                (kept_for > 0).then(|| Duration::from_secs(kept_for.into())),
            )
            .await;
    }
    ctx.metrics.disconnected(end.metric());
    // Unregisters the connection and reports it closed to the session listeners.
    drop(registration);
    info!(user = %inbound.principal().user, client_id = %inbound.principal().client_id, ended = ?end, denied_publishes = inbound.denied_publishes, lost_deliveries = inbound.lost_deliveries, "disconnected");
}

/// Reads the page `request` of a resumed persistent session's queue back
/// from the store (see `parley_engine::session`).
async fn page_in(
    ctx: &MqttContext,
    durable: &DurableSessions,
    attachment: &Attachment,
    request: parley_engine::session::PageRequest,
) {
    let ticket = ctx.router.ticket(attachment);
    match durable.page(attachment.slot().key(), request, ticket).await {
        Ok(page) => {
            ctx.router
                .with_session(attachment, |s| s.page_in(request, page));
        }
        Err(error) => {
            warn!(session = %attachment.slot().key(), %error, "reading a session's queue failed; retrying");
            tokio::time::sleep(PAGE_RETRY).await;
            ctx.router
                .with_session(attachment, |s| s.page_failed(request));
        }
    }
}

/// Moves what the session has due into `wbuf`; `false` if the attachment
/// is no longer current.
fn transmit(ctx: &MqttContext, attachment: &Attachment, wbuf: &mut BytesMut) -> bool {
    let now = std::time::Instant::now();
    let metrics = &ctx.metrics;
    ctx.router
        .with_session(attachment, |session| {
            while session.wants_transmit() && wbuf.len() < 256 * 1024 {
                session.poll_transmit(now, wbuf, |m| {
                    metrics.message_out(OutKind::of(m.topic.as_bytes(), &m.payload))
                });
            }
        })
        .is_some()
}

/// Works on the connection's chat publishes until outcomes are ready; never
/// without a pipeline.
async fn chat_finished(chat: &mut Option<Box<ChatPipeline<'_>>>, into: &mut Vec<ChatDone>) {
    match chat {
        Some(pipeline) => pipeline.finished(into).await,
        None => std::future::pending().await,
    }
}

/// Ends a pause; the subscribers that did not drain in time no longer slow
/// publishers until they do.
fn end_pause(pause: Option<Pause>) {
    if let Some(p) = pause {
        if Instant::now() >= p.until {
            p.congested.iter().for_each(|s| s.pause_expired());
        }
    }
}

/// Resolves when a pause ends: every congested subscriber drained, or the
/// pause ran out; never without a pause. The waiting is boxed, so a
/// connection that is not paused carries a pointer's worth of it.
fn drained(pause: &Option<Pause>) -> impl std::future::Future<Output = ()> + '_ {
    let waiting = pause.as_ref().map(|p| {
        Box::pin(async move {
            let all = futures::future::join_all(p.congested.iter().map(|s| s.drained()));
            tokio::select! {
                _ = all => {}
                _ = tokio::time::sleep_until(p.until) => {}
            }
        })
    });
    async move {
        match waiting {
            Some(waiting) => waiting.await,
            None => std::future::pending().await,
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Resolves when the connection is kicked, through its kept kick waiter
/// if it has one.
async fn kicked(
    kept: &mut Option<Pin<Box<WaitForCancellationFuture<'_>>>>,
    registration: &SessionHandle,
) {
    match kept {
        Some(kick) => kick.as_mut().await,
        None => registration.kicked().await,
    }
}

/// Resolves at `wake_at` (never without one), or earlier through the kept
/// timer if there is one (see [`WakeTimer`]).
async fn woken(kept: &mut Option<WakeTimer>, wake_at: Option<Instant>) {
    match kept {
        Some(timer) => timer.fired().await,
        None => sleep_until(wake_at).await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A busy connection's timer, kept across the loop's turns.
///
/// Its deadlines (keep-alive, a half-read packet, giving the buffers back)
/// move later with almost every read, and moving a timer costs a removal
/// and an insertion in the runtime's timer wheel. So the timer only moves
/// to an earlier instant; asked for a later one, it keeps the one it has,
/// fires early, and the loop, finding nothing due, arms it again.
struct WakeTimer {
    /// Boxed so that a connection carries a pointer's worth of it.
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// When it fires; `None` once it fired (or was never armed).
    at: Option<Instant>,
}

impl WakeTimer {
    /// A timer that is not armed.
    fn new() -> WakeTimer {
        WakeTimer {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            at: None,
        }
    }

    /// Makes sure the timer fires no later than `wake_at` (if any).
    fn arm(&mut self, wake_at: Option<Instant>) {
        if let Some(wake_at) = wake_at {
            if self.at.is_none_or(|at| wake_at < at) {
                self.sleep.as_mut().reset(wake_at);
                self.at = Some(wake_at);
            }
        }
    }

    /// Resolves when the armed instant comes, and disarms the timer; never
    /// if it is not armed.
    async fn fired(&mut self) {
        if self.at.is_none() {
            return std::future::pending().await;
        }
        self.sleep.as_mut().await;
        self.at = None;
    }
}

/// Why a flush failed.
enum Flush {
    /// The client did not take the bytes within the write bound.
    Stalled,
    /// The socket failed.
    Failed,
}

async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: Duration,
) -> Result<(), Flush> {
    if buf.is_empty() {
        return Ok(());
    }
    let write = async {
        stream.write_all(buf).await?;
        stream.flush().await
    };
    let result = tokio::time::timeout(limit, write).await;
    buf.clear();
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Flush::Failed),
        Err(_) => Err(Flush::Stalled),
    }
}
