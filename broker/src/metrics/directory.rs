//! [`DirectoryCollector`]: the session directory's view of the cluster and
//! what it did, read at scrape time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

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
        for (name, help, value) in [
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
        ] {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counts = &self.directory.counts;
        for (name, help, value) in [
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
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}
