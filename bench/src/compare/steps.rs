//! Stepped rates: fan-in and pairs run again at rising rates per publisher
//! until a step fails, and each broker's ceiling is the highest step that
//! passed. A step passes when nothing was lost, no client erred and the
//! subscribers received at least [`PASS_FRACTION`] of the offered rate.

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};
use serde::Serialize;

use super::brokers::BrokerKind;
use super::{BrokerRun, ScenarioName, ScenarioReport, ScenarioRun};
use crate::report::PubsubReport;

/// The share of the offered rate a passing step must deliver.
pub const PASS_FRACTION: f64 = 0.95;

/// One stepped run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Messages per second offered by all publishers together.
    pub offered_rate: f64,
    /// Messages per second the subscribers received.
    pub received_rate: f64,
    /// Publish-to-delivery p99, milliseconds.
    pub latency_p99_ms: f64,
    /// PUBACKed messages never delivered.
    pub lost: u64,
    /// Whether the step passed.
    pub passed: bool,
}

/// One broker's steps in one mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ceiling {
    /// Which broker.
    pub broker: BrokerKind,
    /// Which stepped scenario.
    pub scenario: ScenarioName,
    /// Its steps in the order run (the last one failed unless all passed).
    pub steps: Vec<Step>,
    /// The highest offered rate that passed (`None`: not even the first).
    pub ceiling_rate: Option<f64>,
}

fn pubsub(run: &ScenarioRun) -> Option<&PubsubReport> {
    match &run.report {
        Some(ScenarioReport::Pubsub(r)) => Some(r),
        _ => None,
    }
}

fn step(report: &PubsubReport) -> Step {
    let offered_rate = report.rate_per_publisher * report.publishers as f64;
    Step {
        offered_rate,
        received_rate: report.received_rate,
        latency_p99_ms: report.latency_us.p99 as f64 / 1000.0,
        lost: report.lost,
        passed: report.lost == 0
            && report.errors.total == 0
            && report.received_rate >= PASS_FRACTION * offered_rate,
    }
}

/// Whether a stepped run passed (a run that failed to run did not).
pub fn passed(run: &ScenarioRun) -> bool {
    pubsub(run).is_some_and(|r| step(r).passed)
}

/// Every broker's steps and ceiling, per stepped scenario that ran.
pub fn ceilings(brokers: &[BrokerRun]) -> Vec<Ceiling> {
    let mut out = Vec::new();
    for scenario in [ScenarioName::FanInStep, ScenarioName::PairsStep] {
        for broker in brokers {
            let runs: Vec<&ScenarioRun> = broker
                .scenarios
                .iter()
                .filter(|s| s.scenario == scenario)
                .collect();
            if runs.is_empty() {
                continue;
            }
            let steps: Vec<Step> = runs.iter().filter_map(|r| pubsub(r).map(step)).collect();
            let ceiling_rate = steps
                .iter()
                .take_while(|s| s.passed)
                .map(|s| s.offered_rate)
                .last();
            out.push(Ceiling {
                broker: broker.broker,
                scenario,
                steps,
                ceiling_rate,
            });
        }
    }
    out
}

/// The steps as a table per scenario: a row per offered rate, a column per
/// broker with "received/s, p99 ms, lost" (a `✗` marks a failed step), and a
/// last row with each broker's ceiling.
pub fn table(ceilings: &[Ceiling]) -> String {
    let mut out = String::new();
    for scenario in [ScenarioName::FanInStep, ScenarioName::PairsStep] {
        let of: Vec<&Ceiling> = ceilings.iter().filter(|c| c.scenario == scenario).collect();
        if of.is_empty() {
            continue;
        }
        let mut rates: Vec<f64> = of
            .iter()
            .flat_map(|c| c.steps.iter().map(|s| s.offered_rate))
            .collect();
        rates.sort_by(f64::total_cmp);
        rates.dedup();
        let mut table = Table::new();
        let mut header = vec![format!("{scenario}: offered msg/s")];
        header.extend(
            of.iter()
                .map(|c| format!("{} (recv/s, p99 ms, lost)", c.broker)),
        );
        table.load_preset(ASCII_MARKDOWN).set_header(header);
        for rate in rates {
            let mut row = vec![format!("{rate:.0}")];
            row.extend(
                of.iter()
                    .map(|c| match c.steps.iter().find(|s| s.offered_rate == rate) {
                        Some(s) => format!(
                            "{}{:.0}, {:.1}, {}",
                            if s.passed { "" } else { "✗ " },
                            s.received_rate,
                            s.latency_p99_ms,
                            s.lost
                        ),
                        None => "-".into(),
                    }),
            );
            table.add_row(row);
        }
        let mut last = vec!["ceiling (offered msg/s)".to_string()];
        last.extend(of.iter().map(|c| match c.ceiling_rate {
            Some(r) => format!("{r:.0}"),
            None => "below the first step".into(),
        }));
        table.add_row(last);
        for i in 1..=of.len() {
            if let Some(col) = table.column_mut(i) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        out.push('\n');
        out.push_str(&table.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{MqttVersion, Qos};
    use crate::report::{ErrorSummary, LatencySummary};
    use crate::scenario::plan::Mode;

    fn stepped(rate: f64, received_rate: f64, lost: u64) -> ScenarioRun {
        ScenarioRun {
            scenario: ScenarioName::FanInStep,
            report: Some(ScenarioReport::Pubsub(PubsubReport {
                scenario: "pubsub",
                broker: "127.0.0.1:1".into(),
                mode: Mode::FanIn,
                mqtt_version: MqttVersion::V4,
                qos: Qos::AtLeastOnce,
                publishers: 10,
                subscribers: 1,
                payload_size: 64,
                rate_per_publisher: rate,
                publish_secs: 5.0,
                sent: 0,
                acked: None,
                expected: 0,
                received: 0,
                lost,
                duplicates: 0,
                sent_rate: rate * 10.0,
                received_rate,
                latency_us: LatencySummary::default(),
                errors: ErrorSummary::default(),
            })),
            error: None,
            resources: None,
            idle_rss: None,
        }
    }

    #[test]
    fn a_step_passes_only_without_loss_and_near_the_offered_rate() {
        assert!(passed(&stepped(1000.0, 9_600.0, 0)));
        assert!(!passed(&stepped(1000.0, 9_400.0, 0)), "under 95%");
        assert!(!passed(&stepped(1000.0, 10_000.0, 1)), "a loss");
        let failed = ScenarioRun {
            report: None,
            error: Some("refused".into()),
            ..stepped(1000.0, 0.0, 0)
        };
        assert!(!passed(&failed), "a run that did not run");
    }

    #[test]
    fn the_ceiling_is_the_last_step_before_the_first_failure() {
        let run = |scenarios| BrokerRun {
            broker: BrokerKind::Parley,
            version: None,
            skipped: None,
            scenarios,
        };
        let c = ceilings(&[run(vec![
            stepped(1000.0, 10_000.0, 0),
            stepped(2000.0, 20_000.0, 0),
            stepped(4000.0, 30_000.0, 0),
        ])]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].steps.len(), 3);
        assert_eq!(c[0].ceiling_rate, Some(20_000.0));
        let none = ceilings(&[run(vec![stepped(1000.0, 10_000.0, 3)])]);
        assert_eq!(none[0].ceiling_rate, None, "the first step lost messages");
        assert!(ceilings(&[run(Vec::new())]).is_empty(), "no steps, no rows");
        let text = table(&c);
        assert!(text.contains("20000") && text.contains("✗ 30000"), "{text}");
    }
}
