//! The comparison's summary: one row per scenario and metric with each
//! broker's figure and Parley's ratio to each peer, rendered as a table.

use std::collections::BTreeMap;

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};
use serde::Serialize;

use super::brokers::BrokerKind;
use super::{CompareReport, ScenarioName, ScenarioReport, ScenarioRun};

/// How a metric's numbers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// A plain count.
    Count,
    /// Per second.
    PerSec,
    /// Milliseconds.
    Ms,
    /// Mebibytes.
    Mib,
    /// Kibibytes.
    Kib,
    /// Percent of one core.
    Percent,
}

impl Unit {
    fn format(self, v: f64) -> String {
        match self {
            Unit::Count | Unit::PerSec => format!("{v:.0}"),
            Unit::Ms => format!("{v:.3}"),
            Unit::Mib | Unit::Kib | Unit::Percent => format!("{v:.1}"),
        }
    }
}

/// One metric of one scenario across brokers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The scenario.
    pub scenario: ScenarioName,
    /// What is measured.
    pub metric: &'static str,
    /// How it is printed.
    pub unit: Unit,
    /// Each broker's figure (absent if skipped or failed).
    pub values: BTreeMap<BrokerKind, Option<f64>>,
    /// Parley's figure divided by each peer's (`parley/<peer>`).
    pub ratios: BTreeMap<String, Option<f64>>,
}

type Extract = fn(&ScenarioRun) -> Option<f64>;

fn pubsub(run: &ScenarioRun) -> Option<&crate::report::PubsubReport> {
    match &run.report {
        Some(ScenarioReport::Pubsub(r)) => Some(r),
        _ => None,
    }
}

fn conn(run: &ScenarioRun) -> Option<&crate::report::ConnReport> {
    match &run.report {
        Some(ScenarioReport::Conn(r)) => Some(r),
        _ => None,
    }
}

fn chat(run: &ScenarioRun) -> Option<&crate::report::ChatReport> {
    match &run.report {
        Some(ScenarioReport::Chat(r)) => Some(r),
        _ => None,
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

const MESSAGE_METRICS: &[(&str, Unit, Extract)] = &[
    ("received throughput", Unit::PerSec, |r| {
        pubsub(r).map(|p| p.received_rate)
    }),
    ("latency p50", Unit::Ms, |r| {
        pubsub(r).map(|p| ms(p.latency_us.p50))
    }),
    ("latency p99", Unit::Ms, |r| {
        pubsub(r).map(|p| ms(p.latency_us.p99))
    }),
    ("latency p99.9", Unit::Ms, |r| {
        pubsub(r).map(|p| ms(p.latency_us.p999))
    }),
    ("latency max", Unit::Ms, |r| {
        pubsub(r).map(|p| ms(p.latency_us.max))
    }),
    ("lost", Unit::Count, |r| pubsub(r).map(|p| p.lost as f64)),
    ("errors", Unit::Count, |r| {
        pubsub(r).map(|p| p.errors.total as f64)
    }),
    ("broker CPU % of a core", Unit::Percent, |r| {
        r.resources.as_ref().map(|u| u.cpu_percent)
    }),
    ("broker RSS peak MiB", Unit::Mib, |r| {
        r.resources.as_ref().map(|u| u.rss_peak_mib)
    }),
];

const CONN_METRICS: &[(&str, Unit, Extract)] = &[
    ("connected", Unit::Count, |r| {
        conn(r).map(|c| c.connected as f64)
    }),
    ("connect rate", Unit::PerSec, |r| {
        conn(r).map(|c| c.connect_rate)
    }),
    ("subscribed (QoS 1)", Unit::Count, |r| {
        conn(r).map(|c| c.subscribed as f64)
    }),
    ("connack p50", Unit::Ms, |r| {
        conn(r).map(|c| ms(c.connack_us.p50))
    }),
    ("connack p99", Unit::Ms, |r| {
        conn(r).map(|c| ms(c.connack_us.p99))
    }),
    ("errors", Unit::Count, |r| {
        conn(r).map(|c| c.errors.total as f64)
    }),
    ("broker CPU % of a core", Unit::Percent, |r| {
        r.resources.as_ref().map(|u| u.cpu_percent)
    }),
    ("broker RSS peak MiB", Unit::Mib, |r| {
        r.resources.as_ref().map(|u| u.rss_peak_mib)
    }),
    ("broker RSS per connection KiB", Unit::Kib, |r| {
        r.idle_rss.as_ref()?.per_connection_kib
    }),
];

const CHAT_METRICS: &[(&str, Unit, Extract)] = &[
    ("sent throughput", Unit::PerSec, |r| {
        chat(r).map(|c| c.sent_rate)
    }),
    ("acked (stored) throughput", Unit::PerSec, |r| {
        chat(r).map(|c| c.acked_rate)
    }),
    ("delivery throughput", Unit::PerSec, |r| {
        chat(r).map(|c| c.received_rate)
    }),
    ("send->puback p50", Unit::Ms, |r| {
        chat(r).map(|c| ms(c.ack_latency_us.p50))
    }),
    ("send->puback p99", Unit::Ms, |r| {
        chat(r).map(|c| ms(c.ack_latency_us.p99))
    }),
    ("send->peer delivery p50", Unit::Ms, |r| {
        chat(r).map(|c| ms(c.peer_delivery_latency_us.p50))
    }),
    ("send->peer delivery p99", Unit::Ms, |r| {
        chat(r).map(|c| ms(c.peer_delivery_latency_us.p99))
    }),
    ("send->peer delivery p99.9", Unit::Ms, |r| {
        chat(r).map(|c| ms(c.peer_delivery_latency_us.p999))
    }),
    ("send->peer delivery max", Unit::Ms, |r| {
        chat(r).map(|c| ms(c.peer_delivery_latency_us.max))
    }),
    ("delivered", Unit::Count, |r| {
        chat(r).map(|c| c.received as f64)
    }),
    ("expected deliveries", Unit::Count, |r| {
        chat(r).map(|c| c.expected as f64)
    }),
    ("lost", Unit::Count, |r| chat(r).map(|c| c.lost as f64)),
    ("errors", Unit::Count, |r| {
        chat(r).map(|c| c.errors.total as f64)
    }),
    ("broker CPU % of a core", Unit::Percent, |r| {
        r.resources.as_ref().map(|u| u.cpu_percent)
    }),
    ("broker RSS peak MiB", Unit::Mib, |r| {
        r.resources.as_ref().map(|u| u.rss_peak_mib)
    }),
];

/// Builds the summary rows of a comparison.
pub fn rows(report: &CompareReport) -> Vec<Row> {
    let brokers: Vec<BrokerKind> = report.brokers.iter().map(|b| b.broker).collect();
    let peers: Vec<BrokerKind> = brokers
        .iter()
        .copied()
        .filter(|b| *b != BrokerKind::Parley)
        .collect();
    let has_parley = brokers.contains(&BrokerKind::Parley);
    let scenarios = [
        (ScenarioName::FanIn, MESSAGE_METRICS),
        (ScenarioName::Pairs, MESSAGE_METRICS),
        (ScenarioName::IdleConnections, CONN_METRICS),
        (ScenarioName::Chat, CHAT_METRICS),
    ];
    let mut rows = Vec::new();
    for (scenario, metrics) in scenarios {
        let ran = report
            .brokers
            .iter()
            .any(|b| b.scenarios.iter().any(|s| s.scenario == scenario));
        if scenario == ScenarioName::Chat && !ran {
            continue;
        }
        for (metric, unit, extract) in metrics {
            let values: BTreeMap<BrokerKind, Option<f64>> = report
                .brokers
                .iter()
                .map(|b| {
                    let run = b.scenarios.iter().find(|s| s.scenario == scenario);
                    (b.broker, run.and_then(extract))
                })
                .collect();
            let parley = values.get(&BrokerKind::Parley).copied().flatten();
            let ratios = if has_parley {
                peers
                    .iter()
                    .map(|peer| {
                        let peer_value = values.get(peer).copied().flatten();
                        let ratio = match (parley, peer_value) {
                            (Some(p), Some(q)) if q != 0.0 => Some(p / q),
                            _ => None,
                        };
                        (format!("parley/{peer}"), ratio)
                    })
                    .collect()
            } else {
                BTreeMap::new()
            };
            rows.push(Row {
                scenario,
                metric,
                unit: *unit,
                values,
                ratios,
            });
        }
    }
    rows
}

/// The summary as a Markdown-style table, followed by notes on skipped
/// brokers and failed scenarios.
pub fn table(report: &CompareReport) -> String {
    let brokers: Vec<BrokerKind> = report.brokers.iter().map(|b| b.broker).collect();
    let ratio_names: Vec<String> = report
        .summary
        .first()
        .map(|r| r.ratios.keys().cloned().collect())
        .unwrap_or_default();
    let mut table = Table::new();
    let mut header = vec!["scenario".to_string(), "metric".to_string()];
    header.extend(brokers.iter().map(ToString::to_string));
    header.extend(ratio_names.iter().cloned());
    table.load_preset(ASCII_MARKDOWN).set_header(header);
    for row in &report.summary {
        let mut cells = vec![row.scenario.to_string(), row.metric.to_string()];
        cells.extend(
            brokers
                .iter()
                .map(|b| match row.values.get(b).copied().flatten() {
                    Some(v) => row.unit.format(v),
                    None => "-".into(),
                }),
        );
        cells.extend(
            ratio_names
                .iter()
                .map(|n| match row.ratios.get(n).copied().flatten() {
                    Some(r) => format!("{r:.2}"),
                    None => "-".into(),
                }),
        );
        table.add_row(cells);
    }
    for i in 2..2 + brokers.len() + ratio_names.len() {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = table.to_string();
    for b in &report.brokers {
        if let Some(reason) = &b.skipped {
            out.push_str(&format!("\n{}: skipped: {reason}", b.broker));
        }
        for s in &b.scenarios {
            if let Some(e) = &s.error {
                out.push_str(&format!("\n{}: {} failed: {e}", b.broker, s.scenario));
            }
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::super::procstat::ResourceUsage;
    use super::super::{BrokerRun, Machine, Settings};
    use super::*;
    use crate::mqtt::{MqttVersion, Qos};
    use crate::report::{ErrorSummary, LatencySummary, PubsubReport};
    use crate::scenario::plan::Mode;

    fn fan_in(received_rate: f64, p50_us: u64, cpu: f64) -> ScenarioRun {
        ScenarioRun {
            scenario: ScenarioName::FanIn,
            report: Some(ScenarioReport::Pubsub(PubsubReport {
                scenario: "pubsub",
                broker: "127.0.0.1:1".into(),
                mode: Mode::FanIn,
                mqtt_version: MqttVersion::V4,
                qos: Qos::AtLeastOnce,
                publishers: 10,
                subscribers: 1,
                payload_size: 64,
                rate_per_publisher: 500.0,
                publish_secs: 10.0,
                sent: 50_000,
                acked: Some(50_000),
                expected: 50_000,
                received: 50_000,
                lost: 0,
                duplicates: 0,
                sent_rate: 5000.0,
                received_rate,
                latency_us: LatencySummary {
                    count: 50_000,
                    p50: p50_us,
                    ..LatencySummary::default()
                },
                errors: ErrorSummary::default(),
            })),
            error: None,
            resources: Some(ResourceUsage {
                rss_start_mib: 10.0,
                rss_peak_mib: 20.0,
                rss_end_mib: 15.0,
                cpu_secs: cpu / 10.0,
                wall_secs: 10.0,
                cpu_percent: cpu,
                samples: 50,
            }),
            idle_rss: None,
        }
    }

    fn report(brokers: Vec<BrokerRun>) -> CompareReport {
        let mut r = CompareReport {
            started_unix_secs: 0,
            machine: Machine {
                cores: 2,
                cpu_model: "test".into(),
                memory_gib: 1.0,
                kernel: "test".into(),
            },
            settings: Settings {
                duration_secs: 10.0,
                fan_in_publishers: 10,
                pairs: 10,
                rate_per_publisher: 500.0,
                payload_size: 64,
                qos: Qos::AtLeastOnce,
                mqtt_version: MqttVersion::V4,
                idle_connections: 100,
                conn_rate: 100.0,
                idle_subscribe: true,
                idle_source_addresses: 0,
                chat_pairs: 10,
                chat_rate_per_sender: 100.0,
                step_rates_per_publisher: Vec::new(),
            },
            brokers,
            summary: Vec::new(),
            ceilings: Vec::new(),
        };
        r.summary = rows(&r);
        r
    }

    fn broker(kind: BrokerKind, scenarios: Vec<ScenarioRun>, skipped: Option<&str>) -> BrokerRun {
        BrokerRun {
            broker: kind,
            version: Some("v".into()),
            skipped: skipped.map(Into::into),
            scenarios,
        }
    }

    #[test]
    fn ratios_divide_parley_by_each_peer() {
        let r = report(vec![
            broker(BrokerKind::Mosquitto, vec![fan_in(5000.0, 400, 40.0)], None),
            broker(BrokerKind::Rumqttd, vec![fan_in(4000.0, 800, 20.0)], None),
            broker(BrokerKind::Parley, vec![fan_in(5000.0, 200, 30.0)], None),
        ]);
        let row = r
            .summary
            .iter()
            .find(|row| row.scenario == ScenarioName::FanIn && row.metric == "latency p50")
            .unwrap();
        assert_eq!(row.values[&BrokerKind::Mosquitto], Some(0.4));
        assert_eq!(row.ratios["parley/mosquitto"], Some(0.5));
        assert_eq!(row.ratios["parley/rumqttd"], Some(0.25));
        let table = table(&r);
        let line = table
            .lines()
            .find(|l| l.contains("broker CPU % of a core") && l.contains("fan-in"))
            .unwrap();
        let cells: Vec<&str> = line
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cells,
            [
                "fan-in",
                "broker CPU % of a core",
                "40.0",
                "20.0",
                "30.0",
                "0.75",
                "1.50"
            ]
        );
    }

    #[test]
    fn skipped_parley_shows_dashes_and_the_reason() {
        let r = report(vec![
            broker(BrokerKind::Mosquitto, vec![fan_in(5000.0, 400, 40.0)], None),
            broker(
                BrokerKind::Parley,
                vec![],
                Some("not available: parley not found"),
            ),
        ]);
        let row = r
            .summary
            .iter()
            .find(|row| row.metric == "received throughput")
            .unwrap();
        assert_eq!(row.values[&BrokerKind::Parley], None);
        assert_eq!(row.ratios["parley/mosquitto"], None);
        let table = table(&r);
        let line = table
            .lines()
            .find(|l| l.contains("received throughput") && l.contains("fan-in"))
            .unwrap();
        let cells: Vec<&str> = line
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(cells, ["fan-in", "received throughput", "5000", "-", "-"]);
        assert!(table.contains("parley: skipped: not available: parley not found"));
    }

    #[test]
    fn without_parley_there_are_no_ratio_columns() {
        let r = report(vec![broker(
            BrokerKind::Mosquitto,
            vec![fan_in(5000.0, 400, 40.0)],
            None,
        )]);
        assert!(r.summary.iter().all(|row| row.ratios.is_empty()));
        let header = table(&r).lines().next().unwrap().to_string();
        assert!(
            header.contains("mosquitto") && !header.contains("parley/"),
            "{header}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["summary"][0]["values"]["mosquitto"], 5000.0);
        assert_eq!(
            json["brokers"][0]["scenarios"][0]["report"]["mode"],
            "fan-in"
        );
    }
}
