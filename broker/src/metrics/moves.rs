//! [`MovesCollector`]: persistent sessions moved between the nodes of a
//! cluster, read at scrape time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::constant::counters;

use crate::mqtt::handover::SessionMoves;

/// Reads [`SessionMoves`]' counts on every scrape.
#[derive(Debug, Clone)]
pub struct MovesCollector {
    moves: Arc<SessionMoves>,
}

impl MovesCollector {
    /// A collector over `moves`.
    pub fn new(moves: Arc<SessionMoves>) -> MovesCollector {
        MovesCollector { moves }
    }
}

impl Collector for MovesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = &self.moves.counts;
        counters(
            &mut encoder,
            &[
                (
                    "mqtt_sessions_handed_in",
                    "Persistent sessions another live node handed to this node for a connecting client",
                    counts.handed_in.load(Ordering::Relaxed),
                ),
                (
                    "mqtt_sessions_handed_out",
                    "Persistent sessions this node handed to another node that asked for them",
                    counts.handed_out.load(Ordering::Relaxed),
                ),
                (
                    "mqtt_sessions_taken_from_dead",
                    "Persistent sessions this node took from a node whose lease had expired, for a connecting client",
                    counts.taken_from_dead.load(Ordering::Relaxed),
                ),
                (
                    "mqtt_sessions_adopted",
                    "Persistent sessions of dead nodes this node adopted while their clients were away",
                    counts.adopted.load(Ordering::Relaxed),
                ),
                (
                    "mqtt_session_moves_refused",
                    "CONNECTs refused (Server Unavailable) because the node holding the session did not hand it over in time",
                    counts.refused.load(Ordering::Relaxed),
                ),
                (
                    "mqtt_session_move_errors",
                    "Store operations of session moves that failed",
                    counts.store_errors.load(Ordering::Relaxed),
                ),
                (
                    "mqtt_session_changes_ignored",
                    "Session changes this node wrote for sessions another node owned, dropped by the store",
                    self.moves.ignored_ops(),
                ),
            ],
        )?;
        Ok(())
    }
}
