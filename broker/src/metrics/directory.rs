//! [`DirectoryCollector`]: the session directory's view of the cluster and
//! what it did, read at scrape time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::constant::{counters, gauges};

use crate::directory::ClusterDirectory;

/// Reads the session directory on every scrape.
#[derive(Clone)]
pub struct DirectoryCollector {
    directory: Arc<ClusterDirectory>,
}

impl std::fmt::Debug for DirectoryCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryCollector").finish_non_exhaustive()
    }
}

impl DirectoryCollector {
    /// A collector over `directory`.
    pub fn new(directory: Arc<ClusterDirectory>) -> DirectoryCollector {
        DirectoryCollector { directory }
    }
}

impl Collector for DirectoryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (sessions, users) = self.directory.totals();
        gauges(
            &mut encoder,
            &[
                (
                    "cluster_sessions",
                    "Live MQTT sessions in the whole cluster, as this node's directory cache knows them",
                    sessions,
                ),
                (
                    "cluster_users_online",
                    "Users with a live session on any node, as this node's directory cache knows them",
                    users,
                ),
            ],
        )?;
        let counts = &self.directory.counts;
        counters(
            &mut encoder,
            &[
                (
                    "cluster_sessions_taken_over",
                    "Connections on this node ended because a connection on another node took their session over",
                    counts.taken_over.load(Ordering::Relaxed),
                ),
                (
                    "cluster_sessions_expired",
                    "Directory entries of dead nodes (expired node lease) this node removed",
                    counts.expired.load(Ordering::Relaxed),
                ),
                (
                    "cluster_directory_errors",
                    "Session directory operations that failed against the store",
                    counts.store_errors.load(Ordering::Relaxed),
                ),
            ],
        )?;
        Ok(())
    }
}
