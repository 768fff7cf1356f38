//! Resource use of a broker process, read from procfs: resident memory
//! (`VmRSS` of /proc/PID/status) and CPU time (`utime + stime` of
//! /proc/PID/stat), sampled periodically while a scenario runs.

use std::time::{Duration, Instant};

use procfs::process::Process;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// User plus system CPU time so far, seconds.
    pub cpu_secs: f64,
}

/// A process could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading /proc/{pid}: {source}")]
pub struct ProcStatError {
    /// The process.
    pub pid: u32,
    /// Why.
    pub source: procfs::ProcError,
}

/// Reads RSS and CPU time of `pid` now.
pub fn sample(pid: u32) -> Result<Sample, ProcStatError> {
    let wrap = |source| ProcStatError { pid, source };
    let process = Process::new(pid as i32).map_err(wrap)?;
    let status = process.status().map_err(wrap)?;
    let stat = process.stat().map_err(wrap)?;
    let ticks = procfs::ticks_per_second().max(1) as f64;
    Ok(Sample {
        rss_kib: status.vmrss.unwrap_or(0),
        cpu_secs: (stat.utime + stat.stime) as f64 / ticks,
    })
}

/// What a process used over a sampling period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceUsage {
    /// RSS when sampling started, MiB.
    pub rss_start_mib: f64,
    /// Highest RSS seen, MiB.
    pub rss_peak_mib: f64,
    /// RSS when sampling stopped, MiB.
    pub rss_end_mib: f64,
    /// CPU time used during the period, seconds.
    pub cpu_secs: f64,
    /// Length of the period, seconds.
    pub wall_secs: f64,
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: f64,
    /// Samples taken.
    pub samples: usize,
}

impl ResourceUsage {
    /// Summarises samples taken over `wall` (first and last bound the period).
    pub fn from_samples(samples: &[Sample], wall: Duration) -> Option<ResourceUsage> {
        let (first, last) = (samples.first()?, samples.last()?);
        let mib = |kib: u64| kib as f64 / 1024.0;
        let cpu_secs = (last.cpu_secs - first.cpu_secs).max(0.0);
        let wall_secs = wall.as_secs_f64();
        Some(ResourceUsage {
            rss_start_mib: mib(first.rss_kib),
            rss_peak_mib: mib(samples.iter().map(|s| s.rss_kib).max().unwrap_or(0)),
            rss_end_mib: mib(last.rss_kib),
            cpu_secs,
            wall_secs,
            cpu_percent: if wall_secs > 0.0 {
                100.0 * cpu_secs / wall_secs
            } else {
                0.0
            },
            samples: samples.len(),
        })
    }
}

/// Samples a process in the background until [`Sampler::finish`].
pub struct Sampler {
    pid: u32,
    stop: CancellationToken,
    task: JoinHandle<Vec<Sample>>,
    started: Instant,
}

impl Sampler {
    /// Takes a first sample now, then one every `interval`.
    pub fn start(pid: u32, interval: Duration) -> Sampler {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut ticker = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return samples,
                    _ = ticker.tick() => {
                        if let Ok(s) = sample(pid) {
                            samples.push(s);
                        }
                    }
                }
            }
        });
        Sampler {
            pid,
            stop,
            task,
            started: Instant::now(),
        }
    }

    /// Stops sampling, takes a last sample and summarises the period.
    pub async fn finish(self) -> Result<ResourceUsage, ProcStatError> {
        self.stop.cancel();
        let mut samples = self.task.await.unwrap_or_default();
        samples.push(sample(self.pid)?);
        let wall = self.started.elapsed();
        // At least the final sample exists, so this is always Some.
        ResourceUsage::from_samples(&samples, wall).ok_or(ProcStatError {
            pid: self.pid,
            source: procfs::ProcError::Other("no samples".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.cpu_secs >= 0.0);
        assert!(sample(u32::MAX / 2).is_err());
    }

    #[test]
    fn summarises_samples() {
        let samples = [
            Sample {
                rss_kib: 1024,
                cpu_secs: 1.0,
            },
            Sample {
                rss_kib: 4096,
                cpu_secs: 1.5,
            },
            Sample {
                rss_kib: 2048,
                cpu_secs: 2.0,
            },
        ];
        let u = ResourceUsage::from_samples(&samples, Duration::from_secs(2)).unwrap();
        assert_eq!(
            (u.rss_start_mib, u.rss_peak_mib, u.rss_end_mib),
            (1.0, 4.0, 2.0)
        );
        assert_eq!((u.cpu_secs, u.cpu_percent, u.samples), (1.0, 50.0, 3));
        assert!(ResourceUsage::from_samples(&[], Duration::from_secs(1)).is_none());
    }

    #[tokio::test]
    async fn sampler_measures_cpu_burnt_by_this_process() {
        let sampler = Sampler::start(std::process::id(), Duration::from_millis(20));
        // Burn CPU on a blocking thread so the sampler task keeps running.
        tokio::task::spawn_blocking(|| {
            let started = Instant::now();
            let mut x = 0u64;
            while started.elapsed() < Duration::from_millis(300) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            x
        })
        .await
        .unwrap();
        let usage = sampler.finish().await.unwrap();
        assert!(usage.samples >= 2, "{usage:?}");
        assert!(usage.cpu_secs > 0.0, "{usage:?}");
        assert!(usage.rss_peak_mib > 0.0);
    }
}
