//! Counters and gauges read at scrape time: the one way the collectors of
//! this folder write a value under its name and help text.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Writes one counter.
pub fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

/// Writes one gauge.
pub fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: usize,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

/// Writes each `(name, help, value)` as a counter.
pub fn counters(
    encoder: &mut DescriptorEncoder,
    rows: &[(&str, &str, u64)],
) -> Result<(), std::fmt::Error> {
    rows.iter()
        .try_for_each(|&(name, help, value)| counter(encoder, name, help, value))
}

/// Writes each `(name, help, value)` as a gauge.
pub fn gauges(
    encoder: &mut DescriptorEncoder,
    rows: &[(&str, &str, usize)],
) -> Result<(), std::fmt::Error> {
    rows.iter()
        .try_for_each(|&(name, help, value)| gauge(encoder, name, help, value))
}
