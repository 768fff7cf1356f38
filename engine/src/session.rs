//! One client's session: the MQTT state that outlives a connection.
//!
//! A [`Session`] holds what MQTT says a server keeps for a client: the
//! messages queued for it, the QoS 1/2 deliveries in flight (by packet id
//! and stage), the QoS 2 packet ids it published that await PUBREL, and,
//! while a connection is attached, that connection's negotiated limits and
//! topic aliases in both directions.
//!
//! It is a plain state machine: the connection task tells it what arrived
//! (acks, PUBREL, topic aliases) and asks it to write what is due with
//! [`Session::poll_transmit`], which encodes PUBLISH and PUBREL packets into
//! the caller's buffer. Nothing here blocks, allocates per idle session, or
//! knows about sockets.
//!
//! A persistent session whose connection ended keeps its QoS 1/2 queue in
//! the store only ([`Session::page_out`]): in memory it holds counters, and
//! messages queued meanwhile are only reported to the journal. Once a client
//! resumes it, the connection asks for the queue back in pages of
//! [`PAGE_MESSAGES`] ([`Session::take_page_request`], [`Session::page_in`]),
//! in sequence order, while new messages keep going to the store behind them.
//!
//! Bounds: the queue (in memory and in the store together) holds at most
//! `max_queued_messages` and `max_queued_bytes`; past them QoS 0 messages go first (the oldest queued
//! QoS 0, else the new one), and a QoS 1/2 message is refused only when no
//! QoS 0 is left to drop. Every drop is counted in [`SessionStats`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::{Packet, PubRel, PubRelReason, PublishProperties};

use crate::codec::{Codec, OutgoingPublish, Version};
use crate::message::{Message, QoS};
use crate::persist::{pkid_of, Change, QueueSummary, RestoredDelivery};

/// Bounds of one session, from the engine's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Messages queued for the client beyond those in flight.
    pub max_queued_messages: usize,
    /// Bytes queued for the client (see [`Message::size`]).
    pub max_queued_bytes: usize,
    /// Outgoing QoS 1/2 deliveries in flight at once (further capped by the
    /// client's Receive Maximum).
    pub max_inflight: u16,
    /// Incoming QoS 2 publishes awaiting PUBREL (Parley's Receive Maximum).
    pub receive_maximum: u16,
    /// Topic aliases the client may set on its publishes (Parley's Topic Alias Maximum).
    pub topic_alias_maximum: u16,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_queued_messages: 1_000,
            max_queued_bytes: 16 * 1024 * 1024,
            max_inflight: 64,
            receive_maximum: 64,
            topic_alias_maximum: 64,
        }
    }
}

/// What the client announced at CONNECT about what it can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionParams {
    /// The connection's codec (protocol version).
    pub codec: Codec,
    /// The client's Receive Maximum (65,535 when absent).
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size (unlimited when absent).
    pub max_packet_size: u32,
    /// The client's Topic Alias Maximum (0 when absent).
    pub topic_alias_maximum: u16,
}

impl ConnectionParams {
    /// Parameters of a client that announced nothing (MQTT 3.1.1 defaults).
    pub fn defaults(codec: Codec) -> ConnectionParams {
        ConnectionParams {
            codec,
            receive_maximum: u16::MAX,
            max_packet_size: u32::MAX,
            topic_alias_maximum: 0,
        }
    }
}

/// One message on its way to this session, at the QoS it is delivered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The routed message.
    pub message: Arc<Message>,
    /// min(published QoS, granted QoS).
    pub qos: QoS,
    /// The RETAIN flag as delivered (Retain As Published, or a retained message sent at subscribe).
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
}

/// What an outgoing QoS 1/2 delivery awaits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// QoS 1 sent, PUBACK awaited.
    Ack,
    /// QoS 2 sent, PUBREC awaited.
    Rec,
    /// PUBREL sent, PUBCOMP awaited.
    Comp,
}

#[derive(Debug, Clone)]
struct Inflight {
    delivery: Delivery,
    stage: Stage,
    /// Send order, to resend in the original order.
    order: u64,
    /// Its sequence number, in a persistent session.
    seq: Option<u64>,
}

/// Per-connection state, gone when the connection ends.
#[derive(Debug)]
struct Link {
    params: ConnectionParams,
    /// Inbound aliases the client set: alias -> topic.
    inbound_aliases: BTreeMap<u16, Arc<str>>,
    /// Outbound aliases Parley set: topic -> alias.
    outbound_aliases: BTreeMap<Arc<str>, u16>,
    /// Next outbound alias to assign or reuse.
    next_alias: u16,
}

/// Counters of what happened to messages for this session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// PUBLISH packets written to the client.
    pub sent: u64,
    /// QoS 0 messages dropped because the queue was full.
    pub dropped_qos0: u64,
    /// QoS 1/2 messages dropped because the queue was full (loss).
    pub dropped_qos12: u64,
    /// Messages larger than the client's Maximum Packet Size, discarded.
    pub dropped_too_large: u64,
    /// Messages whose Message Expiry passed before they could be sent.
    pub expired: u64,
}

/// What [`Session::enqueue`] did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued (possibly after dropping an older QoS 0 message).
    Queued,
    /// The new QoS 0 message was dropped: the queue is full.
    DroppedQos0,
    /// The new QoS 1/2 message was dropped: the queue is full of QoS 1/2 messages.
    DroppedQos12,
    /// The message had already expired.
    Expired,
}

/// A client broke the protocol; the connection must close with this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Topic alias 0 or above Parley's Topic Alias Maximum (0x94).
    #[error("topic alias out of range")]
    TopicAliasInvalid,
    /// An empty topic with an alias never set, or no topic at all (0x82).
    #[error("unknown topic alias or empty topic")]
    UnknownAlias,
    /// A topic name that is not UTF-8 (0x81).
    #[error("topic name is not UTF-8")]
    TopicNotUtf8,
    /// More QoS 2 publishes awaiting PUBREL than Parley's Receive Maximum (0x93).
    #[error("receive maximum exceeded")]
    ReceiveMaximumExceeded,
}

impl Violation {
    /// The MQTT 5 DISCONNECT reason code for this violation.
    pub fn reason_code(self) -> rumqttd::protocol::DisconnectReasonCode {
        use rumqttd::protocol::DisconnectReasonCode as R;
        match self {
            Violation::TopicAliasInvalid => R::TopicAliasInvalid,
            Violation::UnknownAlias => R::ProtocolError,
            Violation::TopicNotUtf8 => R::MalformedPacket,
            Violation::ReceiveMaximumExceeded => R::ReceiveMaximumExceeded,
        }
    }
}

/// Result of an outgoing PUBREC from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubRecOutcome {
    /// Answer PUBREL; PUBCOMP is awaited.
    Released,
    /// The client refused the message (reason ≥ 0x80): the flow ended.
    Refused,
    /// No QoS 2 delivery with this packet id: answer PUBREL 0x92.
    Unknown,
}

/// The MQTT state of one client session.
#[derive(Debug)]
pub struct Session {
    limits: SessionLimits,
    link: Option<Link>,
    queue: VecDeque<Delivery>,
    queued_bytes: usize,
    queued_qos0: usize,
    inflight: BTreeMap<u16, Inflight>,
    next_pkid: u16,
    next_order: u64,
    incoming_qos2: BTreeSet<u16>,
    stats: SessionStats,
    /// Whether changes are reported (see [`crate::persist`]).
    durable: bool,
    /// Sequence numbers of the queued QoS 1/2 deliveries, in queue order
    /// (only while durable).
    seqs: VecDeque<u64>,
    next_seq: u64,
    /// Changes not yet handed to the journal.
    changes: Vec<Change>,
    /// The part of the queue in the store only, if any.
    paged: Option<Paged>,
    /// Deliveries with a lower sequence number were sent to an earlier
    /// connection before they left memory: read back, they go out again
    /// with DUP set, as a resumed session's unacknowledged PUBLISHes must.
    dup_below_seq: u64,
}

/// Most queued messages a persistent session reads back from the store at once.
pub const PAGE_MESSAGES: usize = 256;

/// The part of a persistent session's queue that is in the store only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Paged {
    /// The lowest sequence number not read back yet.
    from_seq: u64,
    /// QoS 1/2 messages in the store only (not awaiting PUBCOMP).
    messages: usize,
    /// Their size (see [`Message::size`]).
    bytes: usize,
    /// A page was asked for and has not arrived yet.
    pending: bool,
}

/// A page of a persistent session's queue to read from the store: up to
/// `limit` messages with sequence numbers from `from_seq` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// The first sequence number wanted.
    pub from_seq: u64,
    /// Most messages wanted.
    pub limit: usize,
    /// Every message below this sequence number was reported to the journal
    /// before the request: a page read once the session's ticket is durable
    /// that holds fewer than `limit` messages holds all of them.
    pub upto_seq: u64,
}

/// Bytes [`Session::poll_transmit`] writes before it returns, so the
/// connection can flush and the buffer stays small.
const TRANSMIT_CHUNK: usize = 64 * 1024;

impl Session {
    /// A new, empty session with `limits`, not connected.
    pub fn new(limits: SessionLimits) -> Session {
        Session {
            limits,
            link: None,
            queue: VecDeque::new(),
            queued_bytes: 0,
            queued_qos0: 0,
            inflight: BTreeMap::new(),
            next_pkid: 1,
            next_order: 0,
            incoming_qos2: BTreeSet::new(),
            stats: SessionStats::default(),
            durable: false,
            seqs: VecDeque::new(),
            next_seq: 1,
            changes: Vec::new(),
            paged: None,
            dup_below_seq: 0,
        }
    }

    /// A detached persistent session put back from a store, its queue left
    /// there (read back in pages once a client resumes it): `released` are
    /// the sequence numbers of QoS 2 deliveries awaiting PUBCOMP, and
    /// `incoming_qos2` the client's QoS 2 packet ids awaiting PUBREL.
    pub fn restore(
        limits: SessionLimits,
        queue: QueueSummary,
        released: Vec<u64>,
        incoming_qos2: Vec<u16>,
    ) -> Session {
        let mut session = Session::new(limits);
        session.durable = true;
        session.next_seq = queue.next_seq.max(1);
        for seq in released {
            session.next_seq = session.next_seq.max(seq + 1);
            let order = session.next_order;
            session.next_order += 1;
            session.inflight.insert(
                pkid_of(seq),
                Inflight {
                    delivery: released_placeholder(),
                    stage: Stage::Comp,
                    order,
                    seq: Some(seq),
                },
            );
        }
        session.paged = Some(Paged {
            from_seq: if queue.messages > 0 {
                queue.first_seq
            } else {
                session.next_seq
            },
            messages: queue.messages,
            bytes: queue.bytes,
            pending: false,
        });
        session.incoming_qos2 = incoming_qos2.into_iter().collect();
        session
    }

    /// Moves a detached persistent session's queue out of memory: QoS 1/2
    /// deliveries queued or in flight (not yet PUBRECed) are left to the
    /// store, where the journal already has them, and read back in pages
    /// when a client resumes the session. Queued QoS 0 messages are dropped
    /// (and counted); returns how many. A no-op for a session that is not
    /// durable or still attached.
    pub fn page_out(&mut self) -> usize {
        if !self.durable || self.link.is_some() || self.inflight.values().any(|f| f.seq.is_none()) {
            return 0;
        }
        let (mut from_seq, mut messages, mut bytes) = (self.next_seq, 0, 0);
        if let Some(p) = self.paged {
            (from_seq, messages, bytes) = (p.from_seq, p.messages, p.bytes);
        }
        for (pkid, flight) in std::mem::take(&mut self.inflight) {
            match flight.seq {
                Some(seq) if flight.stage != Stage::Comp => {
                    self.dup_below_seq = self.dup_below_seq.max(seq + 1);
                    from_seq = from_seq.min(seq);
                    messages += 1;
                    bytes += flight.delivery.message.size();
                }
                // Awaiting PUBCOMP: only the packet id is needed.
                _ => {
                    self.inflight.insert(
                        pkid,
                        Inflight {
                            delivery: released_placeholder(),
                            ..flight
                        },
                    );
                }
            }
        }
        let mut seqs = std::mem::take(&mut self.seqs).into_iter();
        let mut dropped = 0;
        for delivery in std::mem::take(&mut self.queue) {
            if delivery.qos == QoS::AtMostOnce {
                dropped += 1;
                continue;
            }
            if let Some(seq) = seqs.next() {
                from_seq = from_seq.min(seq);
                messages += 1;
                bytes += delivery.message.size();
            }
        }
        self.queued_bytes = 0;
        self.queued_qos0 = 0;
        self.stats.dropped_qos0 += dropped as u64;
        self.paged = Some(Paged {
            from_seq,
            messages,
            bytes,
            pending: false,
        });
        dropped
    }

    /// Whether part of the queue is in the store only.
    pub fn is_paged(&self) -> bool {
        self.paged.is_some()
    }

    /// Whether the attached connection should read the next page of the
    /// queue from the store ([`Session::take_page_request`]).
    pub fn wants_page(&self) -> bool {
        self.link.is_some()
            && self.paged.is_some_and(|p| !p.pending)
            && self.seqs.len() < PAGE_MESSAGES / 2
    }

    /// The next page to read back from the store, if one is wanted now; the
    /// session then waits for [`Session::page_in`] (or [`Session::page_failed`]).
    pub fn take_page_request(&mut self) -> Option<PageRequest> {
        if !self.wants_page() {
            return None;
        }
        let upto_seq = self.next_seq;
        let paged = self.paged.as_mut()?;
        paged.pending = true;
        Some(PageRequest {
            from_seq: paged.from_seq,
            limit: PAGE_MESSAGES,
            upto_seq,
        })
    }

    /// Reading the page of `request` failed: it may be asked for again.
    pub fn page_failed(&mut self, request: PageRequest) {
        if let Some(p) = self
            .paged
            .as_mut()
            .filter(|p| p.from_seq == request.from_seq)
        {
            p.pending = false;
        }
    }

    /// Appends a page read from the store for `request` (ascending sequence
    /// numbers) to the queue. Messages awaiting PUBCOMP, or already read back,
    /// are skipped. Once everything the store holds is back in memory, the
    /// session queues in memory again.
    pub fn page_in(&mut self, request: PageRequest, page: Vec<RestoredDelivery>) {
        let Some(mut paged) = self
            .paged
            .filter(|p| p.pending && p.from_seq == request.from_seq)
        else {
            return;
        };
        paged.pending = false;
        let complete = page.len() < request.limit;
        for item in page {
            if item.seq < paged.from_seq || item.seq >= self.next_seq {
                continue;
            }
            paged.from_seq = item.seq + 1;
            if item.released {
                continue;
            }
            let size = item.delivery.message.size();
            paged.messages = paged.messages.saturating_sub(1);
            paged.bytes = paged.bytes.saturating_sub(size);
            self.queued_bytes += size;
            self.seqs.push_back(item.seq);
            self.queue.push_back(item.delivery);
        }
        let more = if complete {
            // Everything below `upto_seq` is back; what is left came later.
            paged.from_seq = paged.from_seq.max(request.upto_seq);
            paged.from_seq < self.next_seq && paged.messages > 0
        } else {
            true
        };
        self.paged = more.then_some(paged);
    }

    /// Messages and bytes queued, in memory and in the store only.
    fn held(&self) -> (usize, usize) {
        let (messages, bytes) = self.paged.map_or((0, 0), |p| (p.messages, p.bytes));
        (self.queue.len() + messages, self.queued_bytes + bytes)
    }

    /// Starts or stops reporting changes (the session became persistent, or
    /// stopped being so). Starting reports every QoS 1/2 delivery already queued.
    pub fn set_durable(&mut self, durable: bool) {
        if durable == self.durable {
            return;
        }
        self.durable = durable;
        self.seqs = VecDeque::new();
        self.changes = Vec::new();
        if !durable {
            self.inflight.values_mut().for_each(|f| f.seq = None);
            return;
        }
        for delivery in &self.queue {
            if delivery.qos != QoS::AtMostOnce {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.seqs.push_back(seq);
                self.changes.push(Change::Queued {
                    seq,
                    delivery: delivery.clone(),
                });
            }
        }
    }

    /// Whether changes are reported.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// The changes since the last call, oldest first (none unless durable).
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Reports that delivery `seq`, if any, is done.
    fn done(&mut self, seq: Option<u64>) {
        if let (Some(seq), true) = (seq, self.durable) {
            self.changes.push(Change::Done { seq });
        }
    }

    /// The packet id the front of the queue would be sent with if it must
    /// be a fixed one (persistent sessions), and whether it is free.
    fn front_pkid_free(&self) -> bool {
        match self.seqs.front() {
            Some(&seq) if self.durable => !self.inflight.contains_key(&pkid_of(seq)),
            _ => true,
        }
    }

    /// Attaches a connection. In-flight deliveries are written again into
    /// `out` (PUBLISH with DUP set, or PUBREL), in their original order, as
    /// MQTT requires when a session resumes.
    pub fn attach(&mut self, params: ConnectionParams, out: &mut BytesMut) {
        if let Some(p) = self.paged.as_mut() {
            // A page asked for by a connection that was taken over never lands.
            p.pending = false;
            if p.messages == 0 {
                // Nothing in the store to read back: queue in memory again.
                self.paged = None;
            }
        }
        self.link = Some(Link {
            params,
            inbound_aliases: BTreeMap::new(),
            outbound_aliases: BTreeMap::new(),
            next_alias: 1,
        });
        let mut resend: Vec<(u64, u16)> = self
            .inflight
            .iter()
            .map(|(pkid, f)| (f.order, *pkid))
            .collect();
        resend.sort_unstable();
        for (_, pkid) in resend {
            let Some(flight) = self.inflight.get(&pkid) else {
                continue;
            };
            match flight.stage {
                Stage::Comp => write_pubrel(params.codec, pkid, PubRelReason::Success, out),
                Stage::Ack | Stage::Rec => {
                    let delivery = flight.delivery.clone();
                    // A resend never uses an alias: the new connection has none yet.
                    encode_delivery(
                        params.codec,
                        &delivery,
                        pkid,
                        true,
                        None,
                        Instant::now(),
                        out,
                    );
                }
            }
        }
    }

    /// Detaches the connection: its aliases are forgotten, everything else stays.
    pub fn detach(&mut self) {
        self.link = None;
    }

    /// Whether a connection is attached.
    pub fn is_attached(&self) -> bool {
        self.link.is_some()
    }

    /// The attached connection's protocol version.
    pub fn version(&self) -> Option<Version> {
        self.link.as_ref().map(|l| l.params.codec.version())
    }

    /// Counters so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Messages queued, not yet in flight.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Deliveries in flight (sent, not completed).
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Whether the queue is past half its bound (publishers should slow down).
    pub fn is_congested(&self) -> bool {
        let (messages, bytes) = self.held();
        messages * 2 > self.limits.max_queued_messages || bytes * 2 > self.limits.max_queued_bytes
    }

    /// Whether the queue is back under a quarter of its bound.
    pub fn is_drained(&self) -> bool {
        let (messages, bytes) = self.held();
        messages * 4 <= self.limits.max_queued_messages && bytes * 4 <= self.limits.max_queued_bytes
    }

    /// Whether [`Session::poll_transmit`] would write something now.
    pub fn wants_transmit(&self) -> bool {
        let Some(link) = &self.link else {
            return false;
        };
        match self.queue.front() {
            None => false,
            Some(d) if d.qos == QoS::AtMostOnce => true,
            Some(_) => self.inflight.len() < self.window(link) && self.front_pkid_free(),
        }
    }

    fn window(&self, link: &Link) -> usize {
        usize::from(
            link.params
                .receive_maximum
                .min(self.limits.max_inflight)
                .max(1),
        )
    }

    /// Queues `delivery` for the client, applying the queue bounds.
    pub fn enqueue(&mut self, delivery: Delivery, now: Instant) -> Enqueued {
        if delivery.message.is_expired(now) {
            self.stats.expired += 1;
            return Enqueued::Expired;
        }
        if delivery.qos == QoS::AtMostOnce && self.paged.is_some() && self.link.is_none() {
            // An offline persistent session keeps no QoS 0 messages.
            self.stats.dropped_qos0 += 1;
            return Enqueued::DroppedQos0;
        }
        let size = delivery.message.size();
        loop {
            let (messages, bytes) = self.held();
            if messages < self.limits.max_queued_messages
                && (bytes + size <= self.limits.max_queued_bytes || messages == 0)
            {
                break;
            }
            if delivery.qos == QoS::AtMostOnce || self.queued_qos0 == 0 {
                if delivery.qos == QoS::AtMostOnce {
                    self.stats.dropped_qos0 += 1;
                    return Enqueued::DroppedQos0;
                }
                self.stats.dropped_qos12 += 1;
                return Enqueued::DroppedQos12;
            }
            self.drop_oldest_qos0();
        }
        if delivery.qos == QoS::AtMostOnce {
            self.queued_qos0 += 1;
        } else if self.durable {
            let seq = self.next_seq;
            self.next_seq += 1;
            if let Some(paged) = self.paged.as_mut() {
                // Behind what the store holds: only the store gets it.
                paged.messages += 1;
                paged.bytes += size;
                self.changes.push(Change::Queued { seq, delivery });
                return Enqueued::Queued;
            }
            self.seqs.push_back(seq);
            self.changes.push(Change::Queued {
                seq,
                delivery: delivery.clone(),
            });
        }
        self.queued_bytes += size;
        self.queue.push_back(delivery);
        Enqueued::Queued
    }

    fn drop_oldest_qos0(&mut self) {
        if let Some(at) = self.queue.iter().position(|d| d.qos == QoS::AtMostOnce) {
            if let Some(d) = self.queue.remove(at) {
                self.forget_queued(&d);
                self.stats.dropped_qos0 += 1;
            }
        }
    }

    fn forget_queued(&mut self, d: &Delivery) {
        self.queued_bytes = self.queued_bytes.saturating_sub(d.message.size());
        if d.qos == QoS::AtMostOnce {
            self.queued_qos0 = self.queued_qos0.saturating_sub(1);
        }
    }

    /// Writes what is due into `out`: queued messages while the in-flight
    /// window has room (QoS 0 is never held by the window), dropping expired
    /// ones and those larger than the client's Maximum Packet Size. Returns
    /// the number of PUBLISH packets written; `on_sent` sees each message
    /// written. Writes at most about 64 KiB per call; call again while
    /// [`Session::wants_transmit`].
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut BytesMut,
        mut on_sent: impl FnMut(&Message),
    ) -> usize {
        let Some(link) = self.link.as_ref() else {
            return 0;
        };
        let window = self.window(link);
        let start = out.len();
        let mut written = 0;
        while out.len() - start < TRANSMIT_CHUNK {
            let Some(front) = self.queue.front() else {
                break;
            };
            if front.qos != QoS::AtMostOnce
                && (self.inflight.len() >= window || !self.front_pkid_free())
            {
                break;
            }
            let Some(delivery) = self.queue.pop_front() else {
                break;
            };
            self.forget_queued(&delivery);
            let seq = if self.durable && delivery.qos != QoS::AtMostOnce {
                self.seqs.pop_front()
            } else {
                None
            };
            if delivery.message.is_expired(now) {
                self.stats.expired += 1;
                self.done(seq);
                continue;
            }
            let Some(link) = self.link.as_mut() else {
                break;
            };
            let codec = link.params.codec;
            // Checked at the largest form (full topic, no alias): an alias
            // only shrinks it. Only clients that set a Maximum Packet Size pay
            // for the measuring (it builds the properties once more).
            let limit = link.params.max_packet_size;
            if limit < u32::MAX && delivery_len(codec, &delivery, now) > limit as usize {
                self.stats.dropped_too_large += 1;
                self.done(seq);
                continue;
            }
            let alias = outbound_alias(link, &delivery.message.topic);
            let pkid = match (delivery.qos, seq) {
                (QoS::AtMostOnce, _) => 0,
                (_, Some(seq)) => pkid_of(seq),
                (_, None) => self.allocate_pkid(),
            };
            let dup = seq.is_some_and(|s| s < self.dup_below_seq);
            encode_delivery(codec, &delivery, pkid, dup, alias, now, out);
            on_sent(&delivery.message);
            written += 1;
            self.stats.sent += 1;
            if pkid != 0 {
                let stage = if delivery.qos == QoS::AtLeastOnce {
                    Stage::Ack
                } else {
                    Stage::Rec
                };
                let order = self.next_order;
                self.next_order += 1;
                self.inflight.insert(
                    pkid,
                    Inflight {
                        delivery,
                        stage,
                        order,
                        seq,
                    },
                );
            }
        }
        written
    }

    fn allocate_pkid(&mut self) -> u16 {
        // The window is at most 65,535 - 1 wide, so a free id always exists.
        loop {
            let pkid = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&pkid) {
                return pkid;
            }
        }
    }

    /// The client acknowledged QoS 1 delivery `pkid`. `false` if no such
    /// delivery was awaiting PUBACK (ignored, as MQTT allows).
    pub fn on_puback(&mut self, pkid: u16) -> bool {
        match self.inflight.get(&pkid) {
            Some(f) if f.stage == Stage::Ack => {
                let seq = f.seq;
                self.inflight.remove(&pkid);
                self.done(seq);
                true
            }
            _ => false,
        }
    }

    /// The client answered QoS 2 delivery `pkid` with PUBREC (`refused` for a
    /// reason code ≥ 0x80). On [`PubRecOutcome::Released`] answer PUBREL, on
    /// [`PubRecOutcome::Unknown`] PUBREL 0x92.
    pub fn on_pubrec(&mut self, pkid: u16, refused: bool) -> PubRecOutcome {
        match self.inflight.get_mut(&pkid) {
            Some(f) if f.stage == Stage::Rec || f.stage == Stage::Comp => {
                let seq = f.seq;
                if refused {
                    self.inflight.remove(&pkid);
                    self.done(seq);
                    return PubRecOutcome::Refused;
                }
                if f.stage == Stage::Rec {
                    f.stage = Stage::Comp;
                    if let (Some(seq), true) = (seq, self.durable) {
                        self.changes.push(Change::Released { seq, pkid });
                    }
                }
                PubRecOutcome::Released
            }
            _ => PubRecOutcome::Unknown,
        }
    }

    /// The client completed QoS 2 delivery `pkid`. `false` if none awaited PUBCOMP.
    pub fn on_pubcomp(&mut self, pkid: u16) -> bool {
        match self.inflight.get(&pkid) {
            Some(f) if f.stage == Stage::Comp => {
                let seq = f.seq;
                self.inflight.remove(&pkid);
                self.done(seq);
                true
            }
            _ => false,
        }
    }

    /// Resolves the topic of an incoming PUBLISH: sets or uses the client's
    /// topic alias (MQTT 5).
    pub fn resolve_topic(
        &mut self,
        topic: &Bytes,
        alias: Option<u16>,
    ) -> Result<Arc<str>, Violation> {
        let name = std::str::from_utf8(topic).map_err(|_| Violation::TopicNotUtf8)?;
        let Some(alias) = alias else {
            if name.is_empty() {
                return Err(Violation::UnknownAlias);
            }
            return Ok(Arc::from(name));
        };
        if alias == 0 || alias > self.limits.topic_alias_maximum {
            return Err(Violation::TopicAliasInvalid);
        }
        let Some(link) = self.link.as_mut() else {
            return Err(Violation::UnknownAlias);
        };
        if name.is_empty() {
            return link
                .inbound_aliases
                .get(&alias)
                .cloned()
                .ok_or(Violation::UnknownAlias);
        }
        let topic: Arc<str> = Arc::from(name);
        link.inbound_aliases.insert(alias, topic.clone());
        Ok(topic)
    }

    /// Whether QoS 2 publish `pkid` was already received and awaits PUBREL
    /// (a resend: acknowledge again, do not route again).
    pub fn is_qos2_pending(&self, pkid: u16) -> bool {
        self.incoming_qos2.contains(&pkid)
    }

    /// Records QoS 2 publish `pkid` as received (PUBREC sent, PUBREL awaited).
    pub fn begin_qos2(&mut self, pkid: u16) -> Result<(), Violation> {
        if self.incoming_qos2.contains(&pkid) {
            return Ok(());
        }
        if self.incoming_qos2.len() >= usize::from(self.limits.receive_maximum) {
            return Err(Violation::ReceiveMaximumExceeded);
        }
        self.incoming_qos2.insert(pkid);
        if self.durable {
            self.changes.push(Change::Incoming {
                pkid,
                pending: true,
            });
        }
        Ok(())
    }

    /// Counts QoS 2 publishes awaiting PUBREL.
    pub fn qos2_pending(&self) -> usize {
        self.incoming_qos2.len()
    }

    /// The client released QoS 2 publish `pkid`. `false` if it was unknown
    /// (answer PUBCOMP 0x92 on MQTT 5).
    pub fn on_pubrel(&mut self, pkid: u16) -> bool {
        let known = self.incoming_qos2.remove(&pkid);
        if known && self.durable {
            self.changes.push(Change::Incoming {
                pkid,
                pending: false,
            });
        }
        known
    }

    /// Drops everything queued and in flight (the session ends); returns how
    /// many QoS 1/2 messages were still undelivered.
    pub fn clear(&mut self) -> usize {
        let undelivered = self
            .queue
            .iter()
            .filter(|d| d.qos != QoS::AtMostOnce)
            .count()
            + self
                .inflight
                .values()
                .filter(|f| f.stage != Stage::Comp)
                .count()
            + self.paged.map_or(0, |p| p.messages);
        self.paged = None;
        self.queue = VecDeque::new();
        self.inflight = BTreeMap::new();
        self.incoming_qos2 = BTreeSet::new();
        self.seqs = VecDeque::new();
        self.queued_bytes = 0;
        self.queued_qos0 = 0;
        undelivered
    }

    /// Frees spare capacity of an idle session's collections.
    pub fn shrink(&mut self) {
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
        if self.inflight.is_empty() {
            self.inflight = BTreeMap::new();
        }
        if self.incoming_qos2.is_empty() {
            self.incoming_qos2 = BTreeSet::new();
        }
        if self.seqs.is_empty() {
            self.seqs = VecDeque::new();
        }
    }
}

/// What an in-flight QoS 2 delivery awaiting PUBCOMP keeps instead of its
/// message: only its packet id matters from then on.
fn released_placeholder() -> Delivery {
    Delivery {
        message: Arc::new(Message {
            topic: Arc::from(""),
            payload: Bytes::new(),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
            origin: None,
        }),
        qos: QoS::ExactlyOnce,
        retain: false,
        subscription_ids: Vec::new(),
    }
}

/// Picks the outbound alias for `topic` on `link`: `(alias, already known)`.
fn outbound_alias(link: &mut Link, topic: &Arc<str>) -> Option<(u16, bool)> {
    let max = link.params.topic_alias_maximum;
    if max == 0 {
        return None;
    }
    if let Some(&alias) = link.outbound_aliases.get(topic) {
        return Some((alias, true));
    }
    let alias = link.next_alias;
    link.next_alias = if alias >= max { 1 } else { alias + 1 };
    // Reusing an alias rebinds it: forget the topic it named.
    link.outbound_aliases.retain(|_, a| *a != alias);
    link.outbound_aliases.insert(topic.clone(), alias);
    Some((alias, false))
}

fn properties_of(
    codec: Codec,
    delivery: &Delivery,
    alias: Option<u16>,
    now: Instant,
) -> Option<PublishProperties> {
    if codec.version() != Version::V5 {
        return None;
    }
    let m = &delivery.message;
    let p = &m.properties;
    let expiry = m.remaining_expiry(now).map(|s| s.max(1));
    if p == &Default::default()
        && expiry.is_none()
        && alias.is_none()
        && delivery.subscription_ids.is_empty()
    {
        return None;
    }
    Some(PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: expiry,
        topic_alias: alias,
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        subscription_identifiers: delivery
            .subscription_ids
            .iter()
            .map(|&id| id as usize)
            .collect(),
        content_type: p.content_type.clone(),
    })
}

fn delivery_len(codec: Codec, delivery: &Delivery, now: Instant) -> usize {
    let properties = properties_of(codec, delivery, None, now);
    codec.publish_len(&OutgoingPublish {
        topic: &delivery.message.topic,
        payload: &delivery.message.payload,
        qos: delivery.qos as u8,
        pkid: 1,
        dup: false,
        retain: delivery.retain,
        properties: properties.as_ref(),
    })
}

fn encode_delivery(
    codec: Codec,
    delivery: &Delivery,
    pkid: u16,
    dup: bool,
    alias: Option<(u16, bool)>,
    now: Instant,
    out: &mut BytesMut,
) {
    let properties = properties_of(codec, delivery, alias.map(|(a, _)| a), now);
    let topic: &str = match alias {
        Some((_, true)) => "",
        _ => &delivery.message.topic,
    };
    codec.encode_publish(
        &OutgoingPublish {
            topic,
            payload: &delivery.message.payload,
            qos: delivery.qos as u8,
            pkid,
            dup,
            retain: delivery.retain,
            properties: properties.as_ref(),
        },
        out,
    );
}

fn write_pubrel(codec: Codec, pkid: u16, reason: PubRelReason, out: &mut BytesMut) {
    // PUBREL always encodes: both versions know it and it has no variable parts.
    let _ = codec.encode(Packet::PubRel(PubRel { pkid, reason }, None), out);
}
