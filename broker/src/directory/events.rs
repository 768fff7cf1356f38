//! Session directory changes as they travel on the cluster bus: one record
//! per change on the topic [`DIRECTORY_TOPIC`], keyed by the user, so every
//! node sees a user's changes (and their presence records, keyed the same
//! way) in one order.

use persistence::DirectoryEntry;
use serde::{Deserialize, Serialize};

/// Bus records on this topic are directory changes, never published to a router.
pub const DIRECTORY_TOPIC: &str = "$parley/session-directory";

/// One change of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryEvent {
    /// A session was claimed (connected, or took an older one over).
    Joined(DirectoryEntry),
    /// A session ended, was taken over, or its node died.
    Left(DirectoryEntry),
    /// A persistent session's connection ended; the session stays on its
    /// node (which still gets its deliveries) until [`DirectoryEvent::Left`].
    Detached(DirectoryEntry),
}

/// The wire form: JSON, small and readable in a bus dump.
#[derive(Serialize, Deserialize)]
struct Wire {
    /// `"joined"`, `"left"` or `"detached"`.
    change: String,
    user: String,
    client_id: String,
    node_id: u16,
    generation: i64,
}

impl DirectoryEvent {
    /// The entry the change is about.
    pub fn entry(&self) -> &DirectoryEntry {
        match self {
            DirectoryEvent::Joined(e) | DirectoryEvent::Left(e) | DirectoryEvent::Detached(e) => e,
        }
    }

    /// The record's payload.
    pub fn encode(&self) -> Vec<u8> {
        let (change, e) = match self {
            DirectoryEvent::Joined(e) => ("joined", e),
            DirectoryEvent::Left(e) => ("left", e),
            DirectoryEvent::Detached(e) => ("detached", e),
        };
        let wire = Wire {
            change: change.to_owned(),
            user: e.user.clone(),
            client_id: e.client_id.clone(),
            node_id: e.node_id,
            generation: e.generation,
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Decodes a payload; `None` if it is not a directory change this
    /// version knows.
    pub fn decode(payload: &[u8]) -> Option<DirectoryEvent> {
        let wire: Wire = serde_json::from_slice(payload).ok()?;
        let entry = DirectoryEntry {
            user: wire.user,
            client_id: wire.client_id,
            node_id: wire.node_id,
            generation: wire.generation,
        };
        match wire.change.as_str() {
            "joined" => Some(DirectoryEvent::Joined(entry)),
            "left" => Some(DirectoryEvent::Left(entry)),
            "detached" => Some(DirectoryEvent::Detached(entry)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_the_wire_and_garbage_is_refused() {
        let entry = DirectoryEntry {
            user: "alice".into(),
            client_id: "phone\twith\"odd\" chars".into(),
            node_id: 3,
            generation: 42,
        };
        for event in [
            DirectoryEvent::Joined(entry.clone()),
            DirectoryEvent::Left(entry.clone()),
            DirectoryEvent::Detached(entry),
        ] {
            assert_eq!(DirectoryEvent::decode(&event.encode()), Some(event));
        }
        assert_eq!(DirectoryEvent::decode(b"not json"), None);
        assert_eq!(
            DirectoryEvent::decode(
                br#"{"change":"moved","user":"a","client_id":"c","node_id":1,"generation":1}"#
            ),
            None
        );
    }
}
