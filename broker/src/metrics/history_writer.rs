//! [`HistoryWriterCollector`]: the embedded store's history writer (its
//! batches, the history log and the checkpoints), read at scrape time.

use std::sync::Arc;

use persistence::embedded::EmbeddedStore;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::constant::counters;

/// Reads the embedded store's [`persistence::embedded::GroupCommitStats`] on
/// every scrape.
#[derive(Clone)]
pub struct HistoryWriterCollector {
    store: Arc<EmbeddedStore>,
}

impl std::fmt::Debug for HistoryWriterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriterCollector")
            .finish_non_exhaustive()
    }
}

impl HistoryWriterCollector {
    /// A collector over `store`'s history writer.
    pub fn new(store: Arc<EmbeddedStore>) -> HistoryWriterCollector {
        HistoryWriterCollector { store }
    }
}

impl Collector for HistoryWriterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.store.group_commit_stats();
        counters(
            &mut encoder,
            &[
                (
                    "history_log_batches",
                    "History batches made durable by one append to the history log (group commits)",
                    stats.commits,
                ),
                (
                    "history_log_requests",
                    "History writes answered from those batches (appends, retries, refusals, cursor moves)",
                    stats.requests,
                ),
                (
                    "history_log_bytes",
                    "Bytes appended to the history log",
                    stats.log_bytes,
                ),
                (
                    "history_checkpoints",
                    "Durable checkpoints of the embedded database, each letting the history log be emptied (storage.history_checkpoint_ms / _bytes)",
                    stats.checkpoints,
                ),
            ],
        )?;
        Ok(())
    }
}
