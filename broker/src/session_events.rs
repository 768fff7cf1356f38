//! The session lifecycle as the rest of Parley sees it: the MQTT front end
//! reports each connection that opens and closes on this node, and whatever
//! follows who is connected (chat presence today, cluster-wide presence
//! later) listens, without the two knowing each other.
//!
//! The MQTT layer's session registry (`mqtt::sessions`) calls every
//! [`SessionListener`] it was built with; the server registers them where it
//! is wired (`server.rs`). This module depends on nothing else in Parley, so
//! neither side of it imports the other.
//!
//! The contract, per connection of user U with client id C:
//!
//! 1. [`SessionListener::opened`] once it passed authentication and its
//!    CONNECT was accepted, **before** its engine session is attached: in
//!    particular before an older connection of U with C is told that it was
//!    taken over.
//! 2. [`SessionListener::closed`] exactly once for every `opened`, when the
//!    connection is over (its engine session detached, its socket closed),
//!    also when CONNACK could not be sent. [`SessionEnd::Superseded`] says
//!    that a newer connection of U with C had opened by then (a take-over:
//!    the client is still connected, through the newer one).
//!
//! So a listener counting `opened` minus `closed` per user never sees a
//! take-over as a moment with no connection. Calls for one connection are
//! ordered; calls for different connections come from their own tasks, on
//! any thread, concurrently. Listeners run on the connection's task: they
//! must be quick and never block (hand slow work to a task of their own).
//! Sessions that outlive their connection (MQTT persistent sessions) are not
//! reported: these events are about connections.

/// One connection's identity, as a listener is told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef<'a> {
    /// The authenticated user.
    pub user: &'a str,
    /// The client id the client connected with (an assigned one if it sent none).
    pub client_id: &'a str,
}

/// How a connection's time on this node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// It ended and no newer connection of the same user and client id had
    /// opened: the client is gone (unless it reconnects).
    Ended,
    /// A newer connection of the same user and client id opened before this
    /// one closed (it took the session over).
    Superseded,
}

/// Told when connections of this node open and close (see the module doc
/// for the contract).
pub trait SessionListener: Send + Sync {
    /// A connection of `session.user` with `session.client_id` opened.
    fn opened(&self, session: SessionRef<'_>);

    /// A connection that was reported opened is over.
    fn closed(&self, session: SessionRef<'_>, end: SessionEnd);
}
