//! What the engine tells a store about persistent sessions, and what it
//! takes back at start-up. The engine does no IO: it reports each change to a
//! [`Journal`] the broker installs ([`crate::router::Router::set_journal`]),
//! while the session's lock is held, so the journal sees one session's
//! changes in the order they happened. The journal numbers them (tickets);
//! a caller that must not answer its client before a change is durable (a
//! PUBACK after the message was queued for persistent sessions) waits until
//! the store has committed that ticket.
//!
//! Only sessions that outlive their connection (Session Expiry > 0) while a
//! journal is installed report anything; clean sessions cost nothing.
//!
//! Queued QoS 1/2 deliveries of a persistent session carry a sequence number
//! assigned in queue order, and are sent with the packet id [`pkid_of`] their
//! sequence number, so a session restored after a crash uses the same packet
//! ids as before it: a QoS 2 PUBLISH sent again reaches a client that already
//! holds that packet id, and is not delivered twice.

use std::sync::Arc;
use std::time::Duration;

use crate::message::SubscriptionOptions;
use crate::router::Will;
use crate::session::Delivery;

/// A persistent session's description: everything but its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionImage {
    /// Whose namespace the session is in.
    pub namespace: Arc<str>,
    /// Session Expiry Interval granted, in seconds.
    pub expiry_secs: u32,
    /// Whether its connection has just ended (the expiry counts from now).
    pub detached: bool,
    /// Its subscriptions.
    pub subscriptions: Vec<(String, SubscriptionOptions)>,
    /// Its will, if any.
    pub will: Option<Will>,
}

/// One change to a persistent session.
#[derive(Debug, Clone)]
pub enum Change {
    /// The session was created or its description changed.
    Described(Box<SessionImage>),
    /// The session ended: forget it with its queue.
    Ended,
    /// A QoS 1/2 delivery was queued under `seq`.
    Queued {
        /// Its sequence number in the session.
        seq: u64,
        /// The delivery.
        delivery: Delivery,
    },
    /// The client answered QoS 2 delivery `seq` with PUBREC: from now on only
    /// PUBREL `pkid` is sent for it, never the message again.
    Released {
        /// The delivery's sequence number.
        seq: u64,
        /// Its packet id.
        pkid: u16,
    },
    /// Delivery `seq` completed (PUBACK, PUBCOMP, a refusing PUBREC) or was
    /// given up (expired, too large for the client).
    Done {
        /// The delivery's sequence number.
        seq: u64,
    },
    /// A QoS 2 publish of the session's client with `pkid` was received
    /// (`pending`, PUBREC about to be sent) or released (PUBCOMP about to be sent).
    Incoming {
        /// The packet id.
        pkid: u16,
        /// Received (`true`) or released (`false`).
        pending: bool,
    },
}

/// Where the engine reports changes to persistent sessions.
pub trait Journal: Send + Sync {
    /// Records `change` to the session with `key`; returns its ticket, which
    /// grows with every call.
    fn record(&self, key: &Arc<str>, change: Change) -> u64;
}

/// One queued delivery read back from a store.
#[derive(Debug, Clone)]
pub struct RestoredDelivery {
    /// Its sequence number.
    pub seq: u64,
    /// The delivery.
    pub delivery: Delivery,
    /// Set when PUBREC was received for it: only PUBREL is sent again.
    pub released: bool,
}

/// What a store holds of a session's queue, without the messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueSummary {
    /// The lowest sequence number queued (meaningless when `messages` is 0).
    pub first_seq: u64,
    /// One above the highest sequence number ever queued (0 if unknown).
    pub next_seq: u64,
    /// QoS 1/2 messages queued, not counting those awaiting PUBCOMP.
    pub messages: usize,
    /// Their size (topic, payload and properties, as [`crate::message::Message::size`]).
    pub bytes: usize,
}

/// A persistent session as stored, to put back into the router. Its queue
/// stays in the store: the session reads it back in pages once a client
/// resumes it ([`crate::session::Session::take_page_request`]).
#[derive(Debug, Clone)]
pub struct RestoredSession {
    /// The session key.
    pub key: String,
    /// Its description (`detached` is ignored).
    pub image: SessionImage,
    /// How long ago its connection ended (zero if it was connected when the
    /// node stopped: its expiry counts from the restore).
    pub detached_for: Duration,
    /// Its queue in the store.
    pub queue: QueueSummary,
    /// Sequence numbers of QoS 2 deliveries PUBRECed, awaiting PUBCOMP.
    pub released: Vec<u64>,
    /// QoS 2 packet ids of its client awaiting PUBREL.
    pub incoming_qos2: Vec<u16>,
}

/// The packet id a persistent session's delivery `seq` is sent with.
pub fn pkid_of(seq: u64) -> u16 {
    (seq % u64::from(u16::MAX)) as u16 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_are_never_zero_and_cycle() {
        assert_eq!(pkid_of(0), 1);
        assert_eq!(pkid_of(65_534), 65_535);
        assert_eq!(pkid_of(65_535), 1);
        assert!((0..200_000).all(|s| pkid_of(s) != 0));
    }
}
