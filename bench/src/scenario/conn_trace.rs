//! An optional per-connection record of a `conn` run, to see *when* slow
//! handshakes happen (a stall shows as a run of neighbours that all waited)
//! rather than only the latency percentiles.
//!
//! Set `BENCH_CONN_TRACE` to a path prefix and every `conn` run (also the
//! one `compare` makes per broker) writes `{prefix}.{host}_{port}.csv`: one
//! row per connection that opened, with its index, its start (µs after the
//! run began) and its TCP connect, CONNACK and SUBACK times in µs (SUBACK 0
//! without `--subscribe`). The variable is not `PARLEY_`-prefixed, since
//! brokers started by `compare` inherit the bench's environment and Parley
//! reads `PARLEY_*` as configuration.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The environment variable naming the trace's path prefix.
pub const TRACE_ENV: &str = "BENCH_CONN_TRACE";

/// One connection's handshake, as traced.
#[derive(Debug, Clone, Copy)]
struct Row {
    index: usize,
    start_us: u64,
    tcp_us: u64,
    connack_us: u64,
    suback_us: u64,
}

/// Rows collected during a run, written at its end.
#[derive(Debug)]
pub struct ConnTrace {
    path: PathBuf,
    started: Instant,
    rows: Mutex<Vec<Row>>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl ConnTrace {
    /// A trace for a run against `address` starting now, if [`TRACE_ENV`] is set.
    pub fn from_env(address: &str) -> Option<ConnTrace> {
        let prefix = std::env::var_os(TRACE_ENV)?;
        let mut name = prefix;
        name.push(format!(".{}.csv", address.replace([':', '/'], "_")));
        Some(ConnTrace {
            path: PathBuf::from(name),
            started: Instant::now(),
            rows: Mutex::new(Vec::new()),
        })
    }

    /// Time since the run began, to pass back to [`ConnTrace::record`].
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records connection `index`, started at `start`, with its step times.
    pub fn record(
        &self,
        index: usize,
        start: Duration,
        tcp: Duration,
        connack: Duration,
        suback: Option<Duration>,
    ) {
        let row = Row {
            index,
            start_us: micros(start),
            tcp_us: micros(tcp),
            connack_us: micros(connack),
            suback_us: suback.map_or(0, micros),
        };
        self.rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(row);
    }

    /// Writes the rows, ordered by start, to the trace's file.
    pub fn write(&self) -> std::io::Result<PathBuf> {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner()).clone();
        rows.sort_by_key(|r| (r.start_us, r.index));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&self.path)?);
        writeln!(out, "index,start_us,tcp_us,connack_us,suback_us")?;
        for r in &rows {
            writeln!(
                out,
                "{},{},{},{},{}",
                r.index, r.start_us, r.tcp_us, r.connack_us, r.suback_us
            )?;
        }
        out.flush()?;
        Ok(self.path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_written_in_start_order_with_a_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let trace = ConnTrace {
            path: dir.path().join("t.csv"),
            started: Instant::now(),
            rows: Mutex::new(Vec::new()),
        };
        let ms = Duration::from_millis;
        trace.record(1, ms(5), ms(1), ms(2), Some(ms(3)));
        trace.record(0, ms(2), ms(1), ms(9), None);
        let text = std::fs::read_to_string(trace.write().expect("write")).expect("read");
        assert_eq!(
            text,
            "index,start_us,tcp_us,connack_us,suback_us\n0,2000,1000,9000,0\n1,5000,1000,2000,3000\n"
        );
    }
}
