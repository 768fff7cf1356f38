//! Parley's MQTT engine, without IO.
//!
//! Everything MQTT decides lives here as plain data structures driven by
//! method calls: no sockets, no async runtime, no clocks (time is passed in
//! as [`std::time::Instant`]). The broker's connection tasks feed decoded
//! packets in and write out what comes back, as quinn is to quinn-proto.
//!
//! - [`message`]: the message as routed, and subscription options.
//! - [`topic`]: topic name and filter rules, shared-subscription names.
//! - [`trie`]: the subscription tree (`+`, `#`, `$share` groups).
//! - [`retained`]: retained messages, matched against new subscriptions.
//! - [`codec`]: MQTT 3.1.1/5 framing on top of `rumqttd::protocol`.
//! - [`session`]: one client's session state machine.
//! - [`persist`]: what persistent sessions report to a store, and restore from.
//! - [`router`]: the thread-safe table of sessions, trie and retained store
//!   the connection tasks share.

pub mod codec;
pub mod message;
pub mod persist;
pub mod retained;
pub mod router;
pub mod session;
mod session_filters;
mod subscribers;
pub mod topic;
pub mod trie;
