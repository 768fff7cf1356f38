//! Route changes as they travel on the cluster bus: records on
//! [`MQTT_ROUTES`](crate::cluster::MQTT_ROUTES), keyed by the announcing
//! node ([`key`]), so every node sees one node's changes in the order it
//! made them. Small JSON bodies, readable in a bus dump.
//!
//! - `added` / `removed`: filters (or shared groups) that gained their
//!   first / lost their last subscriber on the node;
//! - `snapshot`: the node's whole set, replacing what the reader knew
//!   (sent on joining and in answer to another node's `hello`; a large set
//!   is one `snapshot` followed by `added` records);
//! - `hello`: the node just joined; every other node answers with its
//!   `snapshot`.

use std::sync::Arc;

use parley_engine::router::Route;
use serde::{Deserialize, Serialize};

/// Most routes one record carries.
pub const ROUTES_PER_RECORD: usize = 2_000;

/// One change of a node's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteEvent {
    /// Routes the node gained.
    Added(Vec<Route>),
    /// Routes the node lost.
    Removed(Vec<Route>),
    /// All of the node's routes (the first part of them, if `Added` follow).
    Snapshot(Vec<Route>),
    /// The node joined and asks the others for their snapshots.
    Hello,
}

/// The bus key of node `node`'s route changes.
pub fn key(node: u16) -> String {
    format!("mqtt-routes/{node}")
}

#[derive(Serialize, Deserialize)]
struct WireRoute {
    filter: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    namespace: String,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    /// `"added"`, `"removed"`, `"snapshot"` or `"hello"`.
    change: String,
    #[serde(default)]
    routes: Vec<WireRoute>,
}

impl RouteEvent {
    /// The record's payload.
    pub fn encode(&self) -> Vec<u8> {
        let (change, routes): (&str, &[Route]) = match self {
            RouteEvent::Added(r) => ("added", r),
            RouteEvent::Removed(r) => ("removed", r),
            RouteEvent::Snapshot(r) => ("snapshot", r),
            RouteEvent::Hello => ("hello", &[]),
        };
        let wire = Wire {
            change: change.to_owned(),
            routes: routes
                .iter()
                .map(|r| WireRoute {
                    filter: r.filter.to_string(),
                    namespace: r.namespace.to_string(),
                })
                .collect(),
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Decodes a payload; `None` if it is not a route change this version knows.
    pub fn decode(payload: &[u8]) -> Option<RouteEvent> {
        let wire: Wire = serde_json::from_slice(payload).ok()?;
        let routes = wire
            .routes
            .into_iter()
            .map(|r| Route {
                filter: Arc::from(r.filter),
                namespace: Arc::from(r.namespace),
            })
            .collect();
        Some(match wire.change.as_str() {
            "added" => RouteEvent::Added(routes),
            "removed" => RouteEvent::Removed(routes),
            "snapshot" => RouteEvent::Snapshot(routes),
            "hello" => RouteEvent::Hello,
            _ => return None,
        })
    }
}

/// `routes` as a snapshot in records of at most [`ROUTES_PER_RECORD`].
pub fn snapshot(routes: Vec<Route>) -> Vec<RouteEvent> {
    let mut chunks = routes.chunks(ROUTES_PER_RECORD);
    let first = RouteEvent::Snapshot(chunks.next().map(<[Route]>::to_vec).unwrap_or_default());
    std::iter::once(first)
        .chain(chunks.map(|c| RouteEvent::Added(c.to_vec())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(filter: &str, namespace: &str) -> Route {
        Route {
            filter: Arc::from(filter),
            namespace: Arc::from(namespace),
        }
    }

    #[test]
    fn every_change_round_trips() {
        let routes = vec![route("a/+/c", ""), route("$share/g/jobs/#", "alice")];
        for event in [
            RouteEvent::Added(routes.clone()),
            RouteEvent::Removed(routes.clone()),
            RouteEvent::Snapshot(routes),
            RouteEvent::Hello,
        ] {
            assert_eq!(RouteEvent::decode(&event.encode()), Some(event));
        }
        assert_eq!(RouteEvent::decode(b"{\"change\":\"later\"}"), None);
        assert_eq!(RouteEvent::decode(b"garbage"), None);
    }

    #[test]
    fn a_large_snapshot_is_one_snapshot_then_additions() {
        let routes: Vec<Route> = (0..ROUTES_PER_RECORD * 2 + 1)
            .map(|i| route(&format!("d/{i}"), ""))
            .collect();
        let parts = snapshot(routes.clone());
        assert_eq!(parts.len(), 3);
        assert!(matches!(&parts[0], RouteEvent::Snapshot(r) if r.len() == ROUTES_PER_RECORD));
        assert!(matches!(&parts[2], RouteEvent::Added(r) if r.len() == 1));
        assert_eq!(snapshot(Vec::new()), [RouteEvent::Snapshot(Vec::new())]);
    }
}
