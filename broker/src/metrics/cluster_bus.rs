//! [`BusCollector`]: what this node produced to and read from the cluster
//! bus, per stream (broadcast, or a single node's), read at scrape time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use super::constant::counter;

use crate::targeting::BusCounts;

/// Reads the bus counters on every scrape.
#[derive(Debug, Clone)]
pub struct BusCollector {
    counts: Arc<BusCounts>,
}

impl BusCollector {
    /// A collector over `counts`.
    pub fn new(counts: Arc<BusCounts>) -> BusCollector {
        BusCollector { counts }
    }
}

impl Collector for BusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.counts;
        for (name, help, broadcast, targeted) in [
            (
                "cluster_bus_records_produced",
                "Records this node produced to the cluster bus, by stream: broadcast (read by every node) or targeted (to one node's own stream)",
                &c.produced_broadcast,
                &c.produced_targeted,
            ),
            (
                "cluster_bus_records_read",
                "Records this node read from the cluster bus, by stream: broadcast or targeted (its own stream)",
                &c.read_broadcast,
                &c.read_targeted,
            ),
        ] {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (stream, value) in [("broadcast", broadcast), ("targeted", targeted)] {
                let counter = ConstCounter::new(value.load(Ordering::Relaxed));
                counter.encode(family.encode_family(&[("stream", stream)])?)?;
            }
        }
        for (name, help, value) in [
            (
                "cluster_bus_fanouts_without_recipients",
                "Fan-outs this node did not put on the bus because no node held any of their recipients",
                &c.without_recipients,
            ),
            (
                "cluster_bus_records_replayed",
                "Records sent again to a node once a recipient's session there became known (included in the targeted records produced)",
                &c.replayed,
            ),
            (
                "cluster_bus_replay_overflowed",
                "Fan-outs dropped from the replay window before their time to keep cluster.join_replay_max_bytes; a session that appears on a node late may miss them live (sync recovers them)",
                &c.replay_overflowed,
            ),
        ] {
            counter(&mut encoder, name, help, value.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}
