//! Parley's chat domain logic, free of IO and async.
//!
//! Everything the broker decides about chat lives here as pure functions and
//! plain data: which topics exist, which ids are valid, who may publish or
//! subscribe where. The `broker` crate executes these decisions.
//!
//! - [`ids`]: user, conversation and client ids.
//! - [`topics`]: the chat topic tree and MQTT topic matching.
//! - [`acl`]: publish and subscribe decisions for a connected principal.
//! - [`rules`]: configured ACL rules for plain MQTT topics.
//! - [`consent`]: message requests and blocking.
//! - [`membership`]: who may change a conversation's members, name and roles.
//! - [`events`]: the stored entries those changes leave, and their recipients.
//! - [`message`]: validation of client messages and their limits.
//! - [`message_id`]: server-assigned, cluster-unique message ids.
//! - [`rate`]: token-bucket rate limiting.
//! - [`fuzzing`]: the invariant check behind the `chat_validate` fuzz target.

#![deny(missing_docs)]

pub mod acl;
pub mod consent;
pub mod events;
pub mod fuzzing;
pub mod ids;
pub mod membership;
pub mod message;
pub mod message_id;
pub mod rate;
pub mod rules;
pub mod topics;
