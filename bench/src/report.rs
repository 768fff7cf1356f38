//! Results of a run: latency histograms summarised into percentiles, the
//! per-scenario reports, and their two renderings — a Markdown-style table
//! for people (stdout) and JSON for scripts (`--json`).

use std::collections::BTreeMap;
use std::time::Duration;

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::errors::ErrorTally;
use crate::mqtt::{MqttVersion, Qos};
use crate::scenario::chat::layout::LayoutKind;
use crate::scenario::chat::ChatClient;
use crate::scenario::plan::Mode;

/// Largest latency a histogram tracks, in microseconds (one minute).
pub const LATENCY_MAX_US: u64 = 60_000_000;

/// A latency histogram in microseconds, 1 µs to one minute, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Records a duration in microseconds, clamped to the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    histogram.saturating_record(clamped_micros(latency));
}

/// `latency` in microseconds, clamped to the histograms' range.
fn clamped_micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, LATENCY_MAX_US)
}

/// One latency histogram that many tasks record into, a batch at a time.
///
/// A histogram of 1 µs to one minute at 3 significant digits is a ~360 KiB
/// array, and a sample lands at a different place in it each time. With
/// one histogram per connection (hundreds of them, per kind) nearly every
/// sample was a cache miss: 15% of the load generator's CPU at 40,000
/// messages/s, and caches evicted under the node being measured. Tasks now
/// buffer their samples in a [`LatencyRecorder`] and add them to one shared
/// histogram per kind, which stays in cache.
#[derive(Debug, Clone)]
pub struct LatencySink(std::sync::Arc<std::sync::Mutex<Histogram<u64>>>);

impl Default for LatencySink {
    fn default() -> Self {
        LatencySink(std::sync::Arc::new(std::sync::Mutex::new(new_histogram())))
    }
}

impl LatencySink {
    /// A recorder that adds its samples to this histogram.
    pub fn recorder(&self) -> LatencyRecorder {
        LatencyRecorder {
            pending: Vec::new(),
            sink: self.clone(),
        }
    }

    /// What was added so far (recorders add their samples when they flush).
    pub fn histogram(&self) -> Histogram<u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How many samples a [`LatencyRecorder`] holds before adding them.
const RECORDER_BATCH: usize = 256;

/// One task's side of a [`LatencySink`]: samples wait here and are added to
/// the shared histogram [`RECORDER_BATCH`] at a time, on [`Self::flush`] and
/// when the recorder is dropped.
#[derive(Debug)]
pub struct LatencyRecorder {
    pending: Vec<u64>,
    sink: LatencySink,
}

impl LatencyRecorder {
    /// Records a duration in microseconds, clamped to the histogram's range.
    pub fn record(&mut self, latency: Duration) {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(RECORDER_BATCH);
        }
        self.pending.push(clamped_micros(latency));
        if self.pending.len() >= RECORDER_BATCH {
            self.flush();
        }
    }

    /// Adds the samples held so far to the shared histogram.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut histogram = self.sink.0.lock().unwrap_or_else(|e| e.into_inner());
        for us in self.pending.drain(..) {
            histogram.saturating_record(us);
        }
    }

    /// The shared histogram with this recorder's samples added.
    pub fn histogram(&mut self) -> Histogram<u64> {
        self.flush();
        self.sink.histogram()
    }
}

impl Drop for LatencyRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl LatencySummary {
    /// Summarises a histogram (all zeros if it is empty).
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    fn rows(&self, name: &str) -> Vec<(String, String)> {
        if self.count == 0 {
            return vec![(format!("{name} latency"), "no samples".into())];
        }
        [
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p99.9", self.p999),
            ("max", self.max),
        ]
        .into_iter()
        .map(|(q, us)| (format!("{name} latency {q}"), fmt_ms(us)))
        .collect()
    }
}

/// Errors of a run: the total and a count per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ErrorSummary {
    /// All errors.
    pub total: u64,
    /// Errors per kind.
    pub by_kind: BTreeMap<String, u64>,
}

impl From<&ErrorTally> for ErrorSummary {
    fn from(tally: &ErrorTally) -> Self {
        ErrorSummary {
            total: tally.total(),
            by_kind: tally.by_kind(),
        }
    }
}

impl ErrorSummary {
    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![("errors".to_string(), self.total.to_string())];
        rows.extend(
            self.by_kind
                .iter()
                .map(|(kind, n)| (format!("  {kind}"), n.to_string())),
        );
        rows
    }
}

/// Result of the `conn` scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnReport {
    /// Always `"conn"`.
    pub scenario: &'static str,
    /// Broker address.
    pub broker: String,
    /// Protocol version.
    pub mqtt_version: MqttVersion,
    /// Connections attempted.
    pub requested: u64,
    /// Connections that got a successful CONNACK.
    pub connected: u64,
    /// Connections that failed to open.
    pub failed: u64,
    /// Whether each connection subscribed (QoS 1) to `bench/idle/{client_id}`
    /// after CONNACK.
    pub subscribe: bool,
    /// Connections whose subscription the SUBACK granted.
    pub subscribed: u64,
    /// Open connections the broker closed while they were held.
    pub dropped: u64,
    /// Distinct source addresses used (0: the kernel's choice).
    pub source_addresses: usize,
    /// Time from the first attempt until every attempt finished.
    pub ramp_secs: f64,
    /// Connections established per second during the ramp.
    pub connect_rate: f64,
    /// Time the connections were held after the ramp.
    pub hold_secs: f64,
    /// TCP connect time, µs.
    pub tcp_connect_us: LatencySummary,
    /// CONNECT sent to CONNACK received, µs.
    pub connack_us: LatencySummary,
    /// SUBSCRIBE sent to SUBACK received, µs (empty without `subscribe`).
    pub suback_us: LatencySummary,
    /// Errors by kind.
    pub errors: ErrorSummary,
}

impl ConnReport {
    /// The report as a two-column table.
    pub fn table(&self) -> String {
        let mut rows = vec![
            ("scenario".to_string(), "conn".to_string()),
            ("broker".into(), self.broker.clone()),
            ("mqtt version".into(), self.mqtt_version.to_string()),
            ("connections requested".into(), self.requested.to_string()),
            ("connected".into(), self.connected.to_string()),
            ("failed".into(), self.failed.to_string()),
            (
                "subscribed (QoS 1)".into(),
                if self.subscribe {
                    self.subscribed.to_string()
                } else {
                    "no".into()
                },
            ),
            ("dropped while held".into(), self.dropped.to_string()),
            (
                "source addresses".into(),
                match self.source_addresses {
                    0 => "kernel default".to_string(),
                    n => n.to_string(),
                },
            ),
            ("ramp".into(), format!("{:.2} s", self.ramp_secs)),
            ("connect rate".into(), fmt_rate(self.connect_rate)),
            ("hold".into(), format!("{:.2} s", self.hold_secs)),
        ];
        rows.extend(self.tcp_connect_us.rows("tcp connect"));
        rows.extend(self.connack_us.rows("connack"));
        if self.subscribe {
            rows.extend(self.suback_us.rows("suback"));
        }
        rows.extend(self.errors.rows());
        kv_table(&rows)
    }
}

/// Result of the `pubsub` scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PubsubReport {
    /// Always `"pubsub"`.
    pub scenario: &'static str,
    /// Broker address.
    pub broker: String,
    /// Fan-in, fan-out or pairs.
    pub mode: Mode,
    /// Protocol version.
    pub mqtt_version: MqttVersion,
    /// QoS of publishes and subscriptions.
    pub qos: Qos,
    /// Publishing clients.
    pub publishers: usize,
    /// Subscribing clients.
    pub subscribers: usize,
    /// Payload bytes per message.
    pub payload_size: usize,
    /// Target messages per second per publisher.
    pub rate_per_publisher: f64,
    /// How long publishers published.
    pub publish_secs: f64,
    /// Messages published.
    pub sent: u64,
    /// Publishes acknowledged (QoS 1/2 only).
    pub acked: Option<u64>,
    /// Deliveries expected: every sent message times the subscribers it routes to.
    pub expected: u64,
    /// Distinct deliveries received.
    pub received: u64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Deliveries received more than once.
    pub duplicates: u64,
    /// Messages published per second.
    pub sent_rate: f64,
    /// Deliveries received per second (first publish to last delivery).
    pub received_rate: f64,
    /// End-to-end latency (publish call to delivery), µs.
    pub latency_us: LatencySummary,
    /// Errors by kind.
    pub errors: ErrorSummary,
}

impl PubsubReport {
    /// The report as a two-column table.
    pub fn table(&self) -> String {
        let mut rows = vec![
            ("scenario".to_string(), format!("pubsub {}", self.mode)),
            ("broker".into(), self.broker.clone()),
            ("mqtt version".into(), self.mqtt_version.to_string()),
            ("qos".into(), self.qos.to_string()),
            ("publishers".into(), self.publishers.to_string()),
            ("subscribers".into(), self.subscribers.to_string()),
            ("payload".into(), format!("{} B", self.payload_size)),
            (
                "target rate per publisher".into(),
                fmt_rate(self.rate_per_publisher),
            ),
            ("publish time".into(), format!("{:.2} s", self.publish_secs)),
            ("sent".into(), self.sent.to_string()),
            (
                "acked".into(),
                self.acked
                    .map_or_else(|| "n/a (QoS 0)".to_string(), |n| n.to_string()),
            ),
            ("expected deliveries".into(), self.expected.to_string()),
            ("received".into(), self.received.to_string()),
            ("lost".into(), self.lost.to_string()),
            ("duplicates".into(), self.duplicates.to_string()),
            ("sent throughput".into(), fmt_rate(self.sent_rate)),
            ("received throughput".into(), fmt_rate(self.received_rate)),
        ];
        rows.extend(self.latency_us.rows("end-to-end"));
        rows.extend(self.errors.rows());
        kv_table(&rows)
    }
}

/// Result of the `chat` scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatReport {
    /// Always `"chat"`.
    pub scenario: &'static str,
    /// Broker address.
    pub broker: String,
    /// The MQTT client the users ran on.
    pub client: ChatClient,
    /// Protocol version.
    pub mqtt_version: MqttVersion,
    /// Pairs (direct conversations) or groups.
    pub layout: LayoutKind,
    /// Conversations.
    pub conversations: usize,
    /// Members per conversation.
    pub conversation_size: usize,
    /// Users (one connection each).
    pub users: usize,
    /// Sending users.
    pub senders: usize,
    /// Text bytes per message.
    pub text_size: usize,
    /// Envelope bytes per message (the PUBLISH payload).
    pub payload_size: usize,
    /// Target messages per second per sender.
    pub rate_per_sender: f64,
    /// How long senders sent.
    pub publish_secs: f64,
    /// Messages published.
    pub sent: u64,
    /// PUBACKs received with success (for MQTT 3.1.1 this includes messages
    /// the server refused; the refusal comes as an `Error` envelope).
    pub acked: u64,
    /// PUBACKs with a failure reason code (MQTT 5).
    pub rejected_acks: u64,
    /// Messages the server refused with an `Error` envelope on the inbox.
    pub refused: u64,
    /// Deliveries expected: every message not refused, once per member of
    /// its conversation (the sender included).
    pub expected: u64,
    /// Distinct deliveries received.
    pub received: u64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Deliveries received more than once.
    pub duplicates: u64,
    /// Times a receiver saw a conversation's `seq` skip ahead.
    pub seq_gaps: u64,
    /// Times a receiver saw a conversation's `seq` go backwards.
    pub seq_reorders: u64,
    /// Messages published per second.
    pub sent_rate: f64,
    /// Messages acknowledged (stored) per second (first send to last PUBACK).
    pub acked_rate: f64,
    /// Deliveries received per second (first send to last delivery).
    pub received_rate: f64,
    /// Send to PUBACK (stored durably), µs.
    pub ack_latency_us: LatencySummary,
    /// Send to delivery, every member including the sender, µs.
    pub delivery_latency_us: LatencySummary,
    /// Send to delivery, members other than the sender, µs.
    pub peer_delivery_latency_us: LatencySummary,
    /// With users spread over several nodes of a cluster: deliveries by
    /// node, and the bus's records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Box<ClusterFigures>>,
    /// Errors by kind: server `Error` envelopes (code and message), sequence
    /// breaks, connection failures.
    pub errors: ErrorSummary,
}

/// A chat run over a cluster's nodes (`--node-ports`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterFigures {
    /// Nodes the users were spread over.
    pub nodes: usize,
    /// Send to delivery, members on the sender's node (other than the
    /// sender), µs.
    pub same_node_delivery_latency_us: LatencySummary,
    /// Send to delivery, members on another node than the sender's, µs.
    pub cross_node_delivery_latency_us: LatencySummary,
    /// With a bus probe: the cluster bus's records while senders sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<BusCost>,
}

/// What a chat run cost a cluster's bus (see `crate::busprobe`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusCost {
    /// Records produced to the bus topics from the first send to the end
    /// of the drain.
    pub produced: i64,
    /// Records the nodes read (committed) meanwhile.
    pub read: i64,
    /// `produced` per acknowledged message.
    pub produced_per_message: f64,
    /// `read` per acknowledged message.
    pub read_per_message: f64,
}

impl ChatReport {
    /// The report as a two-column table.
    pub fn table(&self) -> String {
        let mut rows = vec![
            ("scenario".to_string(), format!("chat {}", self.layout)),
            ("broker".into(), self.broker.clone()),
            ("client".into(), self.client.to_string()),
            ("mqtt version".into(), self.mqtt_version.to_string()),
            (
                "conversations".into(),
                format!(
                    "{} x {} members",
                    self.conversations, self.conversation_size
                ),
            ),
            ("users".into(), self.users.to_string()),
            ("senders".into(), self.senders.to_string()),
            (
                "message".into(),
                format!(
                    "{} B text, {} B envelope",
                    self.text_size, self.payload_size
                ),
            ),
            (
                "target rate per sender".into(),
                fmt_rate(self.rate_per_sender),
            ),
            ("publish time".into(), format!("{:.2} s", self.publish_secs)),
            ("sent".into(), self.sent.to_string()),
            ("acked".into(), self.acked.to_string()),
            ("rejected acks".into(), self.rejected_acks.to_string()),
            ("refused (Error envelopes)".into(), self.refused.to_string()),
            ("expected deliveries".into(), self.expected.to_string()),
            ("received".into(), self.received.to_string()),
            ("lost".into(), self.lost.to_string()),
            ("duplicates".into(), self.duplicates.to_string()),
            ("seq gaps".into(), self.seq_gaps.to_string()),
            ("seq reorders".into(), self.seq_reorders.to_string()),
            ("sent throughput".into(), fmt_rate(self.sent_rate)),
            ("acked throughput".into(), fmt_rate(self.acked_rate)),
            ("delivery throughput".into(), fmt_rate(self.received_rate)),
        ];
        rows.extend(self.ack_latency_us.rows("send->puback"));
        rows.extend(self.delivery_latency_us.rows("send->delivery"));
        rows.extend(self.peer_delivery_latency_us.rows("send->peer delivery"));
        let cluster = self.cluster.as_deref();
        if let Some(cluster) = cluster {
            rows.extend(
                cluster
                    .same_node_delivery_latency_us
                    .rows("send->same-node peer delivery"),
            );
            rows.extend(
                cluster
                    .cross_node_delivery_latency_us
                    .rows("send->cross-node delivery"),
            );
        }
        if let Some(bus) = cluster.and_then(|c| c.bus.as_ref()) {
            rows.push(("bus records produced".into(), bus.produced.to_string()));
            rows.push(("bus records read".into(), bus.read.to_string()));
            rows.push((
                "bus records produced per message".into(),
                format!("{:.2}", bus.produced_per_message),
            ));
            rows.push((
                "bus records read per message".into(),
                format!("{:.2}", bus.read_per_message),
            ));
        }
        rows.extend(self.errors.rows());
        kv_table(&rows)
    }
}

/// Pretty JSON of any report.
pub fn to_json<T: Serialize>(report: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(report)
}

/// Microseconds as milliseconds with three decimals.
pub fn fmt_ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

/// A per-second rate with one decimal.
pub fn fmt_rate(per_sec: f64) -> String {
    format!("{per_sec:.1}/s")
}

/// A two-column Markdown-style table ("metric | value"), values right-aligned.
pub fn kv_table(rows: &[(String, String)]) -> String {
    let mut table = Table::new();
    table
        .load_preset(ASCII_MARKDOWN)
        .set_header(vec!["metric", "value"]);
    for (k, v) in rows {
        table.add_row(vec![k.as_str(), v.as_str()]);
    }
    if let Some(col) = table.column_mut(1) {
        col.set_cell_alignment(CellAlignment::Right);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known_histogram() -> Histogram<u64> {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        h
    }

    #[test]
    fn recorders_add_to_one_histogram_in_batches_and_when_dropped() {
        let sink = LatencySink::default();
        let mut a = sink.recorder();
        let mut b = sink.recorder();
        for us in 1..=RECORDER_BATCH as u64 {
            a.record(Duration::from_micros(us));
        }
        b.record(Duration::from_micros(5_000));
        // `a` reached a batch and added it; `b` still holds its one sample.
        assert_eq!(sink.histogram().len(), RECORDER_BATCH as u64);
        b.record(Duration::from_secs(3_600));
        drop(b);
        let h = sink.histogram();
        assert_eq!(h.len(), RECORDER_BATCH as u64 + 2);
        assert_eq!(
            h.max(),
            h.highest_equivalent(LATENCY_MAX_US),
            "clamped to a minute"
        );
        a.record(Duration::ZERO);
        let h = a.histogram();
        assert_eq!(h.len(), RECORDER_BATCH as u64 + 3);
        assert_eq!(h.min(), 1, "clamped to 1 µs");
    }

    fn sample_report() -> PubsubReport {
        let errors = ErrorTally::default();
        errors.record("publish: queue closed");
        PubsubReport {
            scenario: "pubsub",
            broker: "127.0.0.1:1883".into(),
            mode: Mode::FanIn,
            mqtt_version: MqttVersion::V4,
            qos: Qos::AtLeastOnce,
            publishers: 2,
            subscribers: 1,
            payload_size: 64,
            rate_per_publisher: 10.0,
            publish_secs: 2.0,
            sent: 40,
            acked: Some(40),
            expected: 40,
            received: 39,
            lost: 1,
            duplicates: 0,
            sent_rate: 20.0,
            received_rate: 19.5,
            latency_us: LatencySummary::from_histogram(&known_histogram()),
            errors: ErrorSummary::from(&errors),
        }
    }

    #[test]
    fn summarises_a_known_histogram() {
        let s = LatencySummary::from_histogram(&known_histogram());
        assert_eq!(s.count, 1000);
        assert_eq!(
            (s.p50, s.p90, s.p99, s.p999, s.max),
            (500, 900, 990, 999, 1000)
        );
        assert!((s.mean - 500.5).abs() < 0.01);
        assert_eq!(
            LatencySummary::from_histogram(&new_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn clamps_out_of_range_latencies() {
        let mut h = new_histogram();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(3600));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= LATENCY_MAX_US);
    }

    #[test]
    fn json_has_the_documented_shape() {
        let json: serde_json::Value =
            serde_json::from_str(&to_json(&sample_report()).unwrap()).unwrap();
        assert_eq!(json["scenario"], "pubsub");
        assert_eq!(json["mode"], "fan-in");
        assert_eq!(json["mqtt_version"], "3.1.1");
        assert_eq!(json["qos"], 1);
        assert_eq!(json["sent"], 40);
        assert_eq!(json["acked"], 40);
        assert_eq!(json["lost"], 1);
        assert_eq!(json["latency_us"]["count"], 1000);
        assert_eq!(json["latency_us"]["p50"], 500);
        assert_eq!(json["latency_us"]["p999"], 999);
        assert_eq!(json["errors"]["total"], 1);
        assert_eq!(json["errors"]["by_kind"]["publish: queue closed"], 1);
    }

    #[test]
    fn table_renders_rows_with_latencies_in_ms() {
        let table = sample_report().table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].contains("metric") && lines[0].contains("value"),
            "{table}"
        );
        let row = |name: &str| {
            lines
                .iter()
                .find(|l| l.split('|').nth(1).is_some_and(|c| c.trim() == name))
                .unwrap_or_else(|| panic!("no row {name:?} in\n{table}"))
                .split('|')
                .nth(2)
                .map(str::trim)
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(row("scenario"), "pubsub fan-in");
        assert_eq!(row("end-to-end latency p50"), "0.500 ms");
        assert_eq!(row("end-to-end latency p99.9"), "0.999 ms");
        assert_eq!(row("end-to-end latency max"), "1.000 ms");
        assert_eq!(row("received throughput"), "19.5/s");
        assert_eq!(row("lost"), "1");
        assert_eq!(row("publish: queue closed"), "1");
    }

    #[test]
    fn qos0_has_no_ack_count() {
        let mut report = sample_report();
        report.acked = None;
        assert!(report.table().contains("n/a (QoS 0)"));
        let json: serde_json::Value = serde_json::from_str(&to_json(&report).unwrap()).unwrap();
        assert!(json["acked"].is_null());
    }
}
