//! [`PushCollector`]: the push counters in `/metrics`, read at scrape time:
//!
//! - `parley_push_messages_total{outcome}`: new messages handed to push,
//!   `queued` for the worker or `dropped` because the queue was full;
//! - `parley_push_notifications_total{outcome}`: notifications to one device,
//!   `delivered` (the notifier accepted it) or `failed` (refused, or out of tries);
//! - `parley_push_retries_total`: tries that failed and were repeated.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use super::PushService;

/// Reads the push counters on every scrape.
#[derive(Debug)]
pub struct PushCollector {
    push: PushService,
}

impl PushCollector {
    /// A collector over `push`'s counters.
    pub fn new(push: PushService) -> PushCollector {
        PushCollector { push }
    }
}

/// Labels `{outcome}` of the push counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

impl Collector for PushCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.push.stats();
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "push_messages",
            "New messages handed to push notifications, queued or dropped (queue full)",
            None,
            counter.metric_type(),
        )?;
        for (outcome, count) in [("queued", stats.enqueued), ("dropped", stats.dropped)] {
            ConstCounter::new(count).encode(family.encode_family(&OutcomeLabels { outcome })?)?;
        }
        let mut family = encoder.encode_descriptor(
            "push_notifications",
            "Push notifications to one device, delivered or failed (refused or out of tries)",
            None,
            counter.metric_type(),
        )?;
        for (outcome, count) in [("delivered", stats.delivered), ("failed", stats.failed)] {
            ConstCounter::new(count).encode(family.encode_family(&OutcomeLabels { outcome })?)?;
        }
        let retries = ConstCounter::new(stats.retried);
        retries.encode(encoder.encode_descriptor(
            "push_retries",
            "Push notification tries that failed and were repeated",
            None,
            retries.metric_type(),
        )?)?;
        Ok(())
    }
}
