//! Durable MQTT sessions: what a persistent session (3.1.1 clean session 0,
//! MQTT 5 Session Expiry > 0) keeps across a restart or a crash of the node.
//!
//! A session is stored as its description ([`SessionRecord`]: expiry,
//! subscriptions, pending will), the QoS 1/2 messages queued for it
//! ([`QueuedMessage`], keyed by a per-session sequence number the engine
//! assigns in queue order), the stage of those already sent
//! ([`InflightStage`]), and the packet ids of QoS 2 publishes it sent that
//! await PUBREL. Changes arrive as a list of [`SessionOp`]s applied in order;
//! once [`SessionStore::apply`] returns `Ok` they survive a `kill -9`.
//! Backends batch concurrent callers into one durable commit.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Options of one stored subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubscription {
    /// The topic filter, as subscribed (including any `$share/{group}/` prefix).
    pub filter: String,
    /// Maximum QoS granted (0, 1 or 2).
    pub qos: u8,
    /// No Local.
    pub no_local: bool,
    /// Retain As Published.
    pub retain_as_published: bool,
    /// Retain Handling (0, 1 or 2).
    pub retain_handling: u8,
    /// MQTT 5 Subscription Identifier.
    pub subscription_id: Option<u32>,
}

/// The MQTT 5 properties a stored message forwards to its subscriber.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProperties {
    /// Payload Format Indicator.
    pub payload_format_indicator: Option<u8>,
    /// Content Type.
    pub content_type: Option<String>,
    /// Response Topic.
    pub response_topic: Option<String>,
    /// Correlation Data.
    pub correlation_data: Option<Vec<u8>>,
    /// User Properties, in order.
    pub user_properties: Vec<(String, String)>,
}

/// One message queued for a session, as it will be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// The topic name.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The QoS it is delivered with (1 or 2).
    pub qos: u8,
    /// The RETAIN flag it is delivered with.
    pub retain: bool,
    /// Forwarded MQTT 5 properties.
    pub properties: StoredProperties,
    /// When it expires (Message Expiry), ms since the Unix epoch.
    pub expires_at_ms: Option<i64>,
    /// Subscription identifiers of the subscriptions it matched.
    pub subscription_ids: Vec<u32>,
}

/// A session's last will, waiting for the session's connection to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWill {
    /// The will message (its `qos` is the will's QoS, `subscription_ids` empty).
    pub message: QueuedMessage,
    /// MQTT 5 Will Delay Interval, in seconds.
    pub delay_secs: u32,
}

/// A session's description: everything but its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session key the engine uses (user and client id).
    pub key: String,
    /// The namespace (user) the session's subscriptions belong to.
    pub namespace: String,
    /// Session Expiry Interval, in seconds, counted from `disconnected_at_ms`.
    pub expiry_secs: u32,
    /// When its connection ended, ms since the Unix epoch; `None` while a
    /// connection was attached (after a crash the node counts from its start).
    pub disconnected_at_ms: Option<i64>,
    /// Its subscriptions, in no particular order.
    pub subscriptions: Vec<StoredSubscription>,
    /// Its will, if one is pending.
    pub will: Option<StoredWill>,
}

/// How far the delivery of a queued QoS 1/2 message got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InflightStage {
    /// QoS 1 PUBLISH sent, PUBACK awaited.
    AwaitingPuback,
    /// QoS 2 PUBLISH sent, PUBREC awaited.
    AwaitingPubrec,
    /// QoS 2 PUBREC received and PUBREL sent, PUBCOMP awaited: the message
    /// must never be sent again, only the PUBREL.
    AwaitingPubcomp,
}

/// The stored in-flight state of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflight {
    /// The packet id it was sent with.
    pub pkid: u16,
    /// What is awaited.
    pub stage: InflightStage,
}

/// One change to the stored sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOp {
    /// Creates or replaces a session's description (keeps its messages).
    Put(SessionRecord),
    /// Deletes a session with its messages, in-flight state and QoS 2 ids.
    Delete {
        /// The session key.
        key: String,
    },
    /// Queues a message for a session under `seq`.
    Enqueue {
        /// The session key.
        key: String,
        /// The message's sequence number in the session (ascending in queue order).
        seq: u64,
        /// The message.
        message: QueuedMessage,
    },
    /// Records how far a queued message's delivery got.
    SetInflight {
        /// The session key.
        key: String,
        /// The message's sequence number.
        seq: u64,
        /// Its in-flight state.
        inflight: Inflight,
    },
    /// Removes a message whose delivery completed (or was given up).
    Remove {
        /// The session key.
        key: String,
        /// The message's sequence number.
        seq: u64,
    },
    /// Records (or forgets) a QoS 2 packet id received from the session's
    /// client and awaiting PUBREL.
    IncomingQos2 {
        /// The session key.
        key: String,
        /// The packet id.
        pkid: u16,
        /// `true` when received (PUBREC sent), `false` when released.
        pending: bool,
    },
}

/// One stored queued message with its in-flight state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredQueued {
    /// The message's sequence number in its session.
    pub seq: u64,
    /// The message.
    pub message: QueuedMessage,
    /// How far its delivery got, if it was sent.
    pub inflight: Option<Inflight>,
}

/// One stored session, as loaded at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Its description.
    pub record: SessionRecord,
    /// Its queued messages, in ascending `seq` order.
    pub queued: Vec<StoredQueued>,
    /// QoS 2 packet ids awaiting PUBREL, ascending.
    pub incoming_qos2: Vec<u16>,
}

/// A stored session's description and what its queue holds, without the
/// messages: what a node loads at start-up (queues are read back in pages,
/// [`SessionStore::load_queue`], once a client resumes its session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSessionIndex {
    /// Its description.
    pub record: SessionRecord,
    /// Queued messages not awaiting PUBCOMP.
    pub queued_messages: u64,
    /// Their stored size in bytes (an approximation of their size in memory).
    pub queued_bytes: u64,
    /// The lowest queued sequence number (0 if none is queued).
    pub first_seq: u64,
    /// One above the highest queued sequence number (0 if none is queued).
    pub next_seq: u64,
    /// Sequence numbers of queued messages awaiting PUBCOMP, ascending.
    pub released: Vec<u64>,
    /// QoS 2 packet ids awaiting PUBREL, ascending.
    pub incoming_qos2: Vec<u16>,
}

/// Where persistent MQTT sessions are kept.
///
/// Operations on a key without a stored description ([`SessionOp::Put`]) are
/// kept but not loaded; a [`SessionOp::Delete`] removes them too.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Applies `ops` in order. Once this returns `Ok`, every op is durable
    /// (survives a crash or `kill -9`); concurrent callers share commits.
    /// On an error none of `ops` may be assumed applied (a retry is safe:
    /// every op is idempotent).
    async fn apply(&self, ops: Vec<SessionOp>) -> Result<(), StoreError>;

    /// Every stored session with all its messages, ordered by key (for
    /// tools and tests: a node loads [`SessionStore::load_index`]).
    async fn load(&self) -> Result<Vec<StoredSession>, StoreError>;

    /// Every stored session without its messages, ordered by key.
    async fn load_index(&self) -> Result<Vec<StoredSessionIndex>, StoreError>;

    /// Up to `limit` queued messages of session `key` with a sequence number
    /// of at least `from_seq`, ascending, with their in-flight state. Sees
    /// every [`SessionStore::apply`] that returned before it was called.
    async fn load_queue(
        &self,
        key: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredQueued>, StoreError>;
}

/// Who holds a stored session, as the store knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOwner {
    /// The node whose router holds the session and which writes its changes.
    pub node_id: u16,
    /// Whether that node's lease is live.
    pub live: bool,
    /// The node that asked for the session, if a handover is pending.
    pub handover_to: Option<u16>,
}

/// Moving stored sessions between the nodes of a cluster that share one
/// store: every session is owned by one node, whose changes alone are
/// applied; another node takes it over either from a dead owner directly or
/// by asking a live one to hand it over (see `docs/sessions.md`, "Sessions in
/// a cluster"). Implemented by stores shared by several nodes, each handle
/// acting for one node ([`SessionHandover::node_id`]).
#[async_trait]
pub trait SessionHandover: Send + Sync + 'static {
    /// The node this handle acts for.
    fn node_id(&self) -> u16;

    /// Ops this handle's [`SessionStore::apply`] dropped so far because
    /// another node owned their session.
    fn ignored_ops(&self) -> u64;

    /// Sessions whose changes [`SessionStore::apply`] dropped since the last
    /// call because another node owns them (each once): this node should no
    /// longer hold them.
    fn take_foreign(&self) -> Vec<String>;

    /// Who owns session `key`; `None` if it is not stored.
    async fn owner(&self, key: &str) -> Result<Option<SessionOwner>, StoreError>;

    /// Makes this node the owner of `key` if `from` still owns it and
    /// `from`'s lease is not live; `true` if it did.
    async fn take_from_dead(&self, key: &str, from: u16) -> Result<bool, StoreError>;

    /// Asks `from`, which must still own `key`, to hand it to this node;
    /// `true` if the request was recorded.
    async fn request_handover(&self, key: &str, from: u16) -> Result<bool, StoreError>;

    /// Withdraws a pending request for `key`, whether this node made it or
    /// this node owns the session (a newer connection of it came here).
    async fn cancel_handover(&self, key: &str) -> Result<(), StoreError>;

    /// Sessions of this node that another node asked for, with who asked.
    async fn handovers_requested(&self) -> Result<Vec<(String, u16)>, StoreError>;

    /// Hands `key` to `to`, if this node owns it and `to` asked for it;
    /// `true` if it did. Call it once every change this node made to the
    /// session is applied: from then on this node's changes to it are ignored.
    async fn hand_over(&self, key: &str, to: u16) -> Result<bool, StoreError>;

    /// Session `key`'s description and queue summary, if this node owns it.
    async fn load_one(&self, key: &str) -> Result<Option<StoredSessionIndex>, StoreError>;

    /// Takes over every session owned by a node (other than this one) whose
    /// lease is not live, and returns them, ordered by key.
    async fn adopt_orphans(&self) -> Result<Vec<StoredSessionIndex>, StoreError>;
}
