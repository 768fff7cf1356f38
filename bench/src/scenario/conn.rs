//! The `conn` scenario: open N connections at a fixed rate (optionally from
//! many source addresses), hold them all for a while with keep-alive pings,
//! then disconnect. With `subscribe`, each connection first subscribes (QoS 1)
//! to `bench/idle/{client_id}` and waits for its SUBACK. Measures TCP connect
//! time, CONNECT→CONNACK and SUBSCRIBE→SUBACK latency, and counts failures and
//! connections the broker drops while held.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::conn_trace::ConnTrace;
use super::{ResolveError, RunId, Target};
use crate::mqtt::endpoint::Endpoint;
use crate::mqtt::idle::{self, IdleSpec};
use crate::progress::{Counters, OpenConnection, Progress, Style};
use crate::report::{self, ConnReport, ErrorSummary, LatencySummary};
use crate::source_addr::SourceAddrs;

/// Settings of a `conn` run.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// The broker and how to log in.
    pub target: Target,
    /// Connections to open.
    pub count: usize,
    /// Connection attempts started per second.
    pub rate: f64,
    /// How long to hold the connections once every attempt has finished.
    pub hold: Duration,
    /// Source addresses to bind, round-robin (`None`: kernel's choice).
    pub source_addrs: Option<SourceAddrs>,
    /// Time allowed for TCP connect plus CONNACK (plus SUBACK).
    pub connect_timeout: Duration,
    /// After CONNACK, subscribe (QoS 1) to `bench/idle/{client_id}` and wait
    /// for the SUBACK; a refused subscription fails the connection.
    pub subscribe: bool,
    /// Notified once every attempt has finished, as the hold begins (lets a
    /// caller measure the broker while the connections are held).
    pub held: Option<Arc<Notify>>,
    /// Print a progress line every second on stderr.
    pub progress: bool,
}

/// A `conn` run that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Zero connections requested.
    #[error("connection count must be at least 1")]
    NoConnections,
    /// The rate is not a positive number.
    #[error("connection rate must be a positive number, got {0}")]
    BadRate(f64),
    /// The broker address did not resolve.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// How long to wait for connections to close after the hold.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Shared state of the connection tasks.
struct Shared {
    counters: Arc<Counters>,
    tcp: Mutex<Histogram<u64>>,
    connack: Mutex<Histogram<u64>>,
    suback: Mutex<Histogram<u64>>,
    stop: CancellationToken,
    trace: Option<ConnTrace>,
}

/// Runs the scenario and returns its report.
pub async fn run(cfg: &ConnConfig) -> Result<ConnReport, ConnError> {
    if cfg.count == 0 {
        return Err(ConnError::NoConnections);
    }
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        return Err(ConnError::BadRate(cfg.rate));
    }
    let target_addr = cfg.target.resolve().await?;
    let run_id = RunId::new();
    let counters = Arc::new(Counters::default());
    let shared = Arc::new(Shared {
        counters: counters.clone(),
        tcp: Mutex::new(report::new_histogram()),
        connack: Mutex::new(report::new_histogram()),
        suback: Mutex::new(report::new_histogram()),
        stop: CancellationToken::new(),
        trace: ConnTrace::from_env(&cfg.target.address()),
    });
    let progress = Progress::start(counters.clone(), Style::Connections, cfg.progress);

    // Each task reports once whether its handshake succeeded, then drops its
    // sender; the channel closes when every task has reported (or died).
    let (outcome_tx, mut outcome_rx) = mpsc::channel::<bool>(cfg.count.min(65_536));
    let started = Instant::now();
    let spawner = tokio::spawn(spawn_connections(
        cfg.clone(),
        target_addr,
        run_id,
        shared.clone(),
        outcome_tx,
        started,
    ));
    let mut succeeded = 0u64;
    while let Some(ok) = outcome_rx.recv().await {
        succeeded += u64::from(ok);
    }
    let ramp = started.elapsed();

    // Hold what opened (nothing to hold if every attempt failed).
    let hold_started = Instant::now();
    if let Some(held) = &cfg.held {
        held.notify_one();
    }
    if succeeded > 0 {
        tokio::time::sleep(cfg.hold).await;
    }
    let held = hold_started.elapsed();

    shared.stop.cancel();
    let mut tasks = match spawner.await {
        Ok(tasks) => tasks,
        Err(e) => {
            counters
                .errors
                .record(format!("internal: connection spawner failed: {e}"));
            JoinSet::new()
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    progress.stop().await;

    if let Some(trace) = &shared.trace {
        if let Err(e) = trace.write() {
            counters
                .errors
                .record(format!("internal: connection trace not written: {e}"));
        }
    }
    let failed = cfg.count as u64 - succeeded;
    let tcp = LatencySummary::from_histogram(&shared.tcp.lock().unwrap_or_else(|e| e.into_inner()));
    let connack =
        LatencySummary::from_histogram(&shared.connack.lock().unwrap_or_else(|e| e.into_inner()));
    let suback =
        LatencySummary::from_histogram(&shared.suback.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(ConnReport {
        scenario: "conn",
        broker: cfg.target.address(),
        mqtt_version: cfg.target.version,
        requested: cfg.count as u64,
        connected: succeeded,
        failed,
        subscribe: cfg.subscribe,
        subscribed: suback.count,
        dropped: counters.dropped.load(Ordering::Relaxed),
        source_addresses: cfg.source_addrs.as_ref().map_or(0, SourceAddrs::len),
        ramp_secs: ramp.as_secs_f64(),
        connect_rate: succeeded as f64 / ramp.as_secs_f64().max(1e-9),
        hold_secs: held.as_secs_f64(),
        tcp_connect_us: tcp,
        connack_us: connack,
        suback_us: suback,
        errors: ErrorSummary::from(&counters.errors),
    })
}

/// Starts connection `i` at `started + i / rate`, for every `i`.
async fn spawn_connections(
    cfg: ConnConfig,
    target_addr: SocketAddr,
    run_id: RunId,
    shared: Arc<Shared>,
    outcome_tx: mpsc::Sender<bool>,
    started: Instant,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for i in 0..cfg.count {
        let due = started + Duration::from_secs_f64(i as f64 / cfg.rate);
        tokio::time::sleep_until(due.into()).await;
        let shared = shared.clone();
        let outcome = outcome_tx.clone();
        let client_id = cfg.target.client_id(&run_id, "conn", i);
        let login = cfg.target.login(i);
        let source = cfg.source_addrs.as_ref().map(|s| s.for_connection(i));
        let topic = cfg.subscribe.then(|| idle::subscription_topic(&client_id));
        let (version, keepalive, timeout) = (
            cfg.target.version,
            cfg.target.keepalive,
            cfg.connect_timeout,
        );
        tasks.spawn(async move {
            let spec = IdleSpec {
                endpoint: Endpoint {
                    target: target_addr,
                    source,
                    version,
                    client_id: &client_id,
                    login: login.as_ref(),
                    keepalive,
                },
                subscribe: topic.as_deref(),
            };
            connection(&shared, &spec, timeout, outcome, i).await;
        });
    }
    tasks
}

/// One connection (number `index`): open, report, hold until stopped, close.
async fn connection(
    shared: &Shared,
    spec: &IdleSpec<'_>,
    timeout: Duration,
    outcome: mpsc::Sender<bool>,
    index: usize,
) {
    let counters = &shared.counters;
    let start = shared.trace.as_ref().map(ConnTrace::now);
    let opened = tokio::time::timeout(timeout, idle::open(spec)).await;
    let (mut session, _open) = match opened {
        Ok(Ok((session, times))) => {
            report::record(
                &mut shared.tcp.lock().unwrap_or_else(|e| e.into_inner()),
                times.tcp,
            );
            report::record(
                &mut shared.connack.lock().unwrap_or_else(|e| e.into_inner()),
                times.connack,
            );
            if let Some(suback) = times.suback {
                report::record(
                    &mut shared.suback.lock().unwrap_or_else(|e| e.into_inner()),
                    suback,
                );
            }
            if let (Some(trace), Some(start)) = (&shared.trace, start) {
                trace.record(index, start, times.tcp, times.connack, times.suback);
            }
            let _ = outcome.send(true).await;
            drop(outcome);
            (session, OpenConnection::new(counters))
        }
        Ok(Err(e)) => {
            counters.errors.record(format!("connect: {e}"));
            let _ = outcome.send(false).await;
            return;
        }
        Err(_) => {
            counters
                .errors
                .record(format!("connect: timed out after {timeout:?}"));
            let _ = outcome.send(false).await;
            return;
        }
    };
    match session.hold(&shared.stop).await {
        Ok(()) => {
            if let Err(e) = session.close().await {
                counters.errors.record(format!("disconnect: {e}"));
            }
        }
        Err(e) => {
            Counters::bump(&counters.dropped);
            counters.errors.record(format!("held connection: {e}"));
        }
    }
}
