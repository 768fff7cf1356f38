//! The `pubsub` scenario: publishers send stamped messages at a target rate
//! for a fixed time to subscribers laid out by [`plan`] (fan-in,
//! fan-out or pairs). Every delivery's end-to-end latency goes into an HDR
//! histogram; sent, acked, received, lost and duplicate messages are counted.
//!
//! Order of events: subscribers connect and subscribe (SUBACK awaited), then
//! publishers connect (CONNACK awaited), then all publishers start together.
//! After the publishing window the run waits — up to a drain timeout — for
//! outstanding acknowledgements and deliveries before counting losses.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::plan::{self, Mode, Plan, PlanError, PublisherPlan, SubscriberPlan};
use super::tracker::{Delivery, SeqTracker};
use super::{RunId, Target};
use crate::mqtt::client::{self, ClientEvent, ClientSpec, Events, Requests};
use crate::mqtt::Qos;
use crate::payload::{Clock, PayloadError, Stamp};
use crate::progress::{Counters, OpenConnection, Progress, Style};
use crate::report::{ErrorSummary, LatencyRecorder, LatencySink, LatencySummary, PubsubReport};

/// Settings of a `pubsub` run.
#[derive(Debug, Clone)]
pub struct PubsubConfig {
    /// The broker and how to log in.
    pub target: Target,
    /// Fan-in, fan-out or pairs.
    pub mode: Mode,
    /// Publishers (fan-in), subscribers (fan-out) or pairs (pairs).
    pub clients: usize,
    /// QoS of publishes and subscriptions.
    pub qos: Qos,
    /// Payload bytes per message (at least the stamp header).
    pub payload_size: usize,
    /// Messages per second per publisher.
    pub rate: f64,
    /// How long publishers publish.
    pub duration: Duration,
    /// Topics live under `{topic_prefix}/{run id}/...`.
    pub topic_prefix: String,
    /// Most QoS 1/2 publishes in flight per publisher.
    pub inflight: u16,
    /// How long to wait for outstanding acks and deliveries after publishing.
    pub drain_timeout: Duration,
    /// Time allowed for every client to connect (and subscribe).
    pub connect_timeout: Duration,
    /// Print a progress line every second on stderr.
    pub progress: bool,
}

/// A `pubsub` run that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum PubsubError {
    /// The client layout is impossible.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The payload size is unusable.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The rate is not a positive number.
    #[error("publish rate must be a positive number, got {0}")]
    BadRate(f64),
    /// The publishing window is zero.
    #[error("duration must be longer than zero")]
    NoDuration,
    /// A client failed to connect or subscribe.
    #[error("{client}: {reason}")]
    Setup {
        /// Which client.
        client: String,
        /// Why.
        reason: String,
    },
    /// Clients did not become ready in time.
    #[error("only {ready} of {total} clients were ready after {timeout:?}")]
    SetupTimeout {
        /// Clients ready.
        ready: usize,
        /// Clients in the run.
        total: usize,
        /// The connect timeout.
        timeout: Duration,
    },
}

/// What one publisher did.
#[derive(Debug, Default)]
struct PublisherStats {
    sent: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
}

/// State shared by every task of a run.
struct Shared {
    counters: Arc<Counters>,
    /// Set while the run waits for outstanding acks and deliveries.
    draining: AtomicBool,
    /// Signalled on every ack and delivery while draining.
    progress_made: Notify,
    /// Cancelled when the run ends (or setup fails).
    stop: CancellationToken,
    /// Delivery latencies, added to by every subscriber.
    latency: LatencySink,
}

impl Shared {
    fn settled_one(&self) {
        if self.draining.load(Ordering::Relaxed) {
            self.progress_made.notify_waiters();
        }
    }
}

/// What one subscriber saw.
struct SubscriberResult {
    latency: LatencyRecorder,
    tracker: SeqTracker,
    expects: Vec<u32>,
    last_delivery: Option<Instant>,
}

type Ready = oneshot::Sender<Result<(), String>>;

/// Runs the scenario and returns its report.
pub async fn run(cfg: &PubsubConfig) -> Result<PubsubReport, PubsubError> {
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        return Err(PubsubError::BadRate(cfg.rate));
    }
    if cfg.duration.is_zero() {
        return Err(PubsubError::NoDuration);
    }
    let probe = Stamp {
        publisher: 0,
        seq: 0,
        sent_nanos: 0,
    };
    probe.encode(cfg.payload_size)?;
    let run_id = RunId::new();
    let root = format!("{}/{}", cfg.topic_prefix.trim_end_matches('/'), run_id.0);
    let plan = plan::plan(cfg.mode, cfg.clients, &root)?;

    let counters = Arc::new(Counters::default());
    let shared = Arc::new(Shared {
        counters: counters.clone(),
        draining: AtomicBool::new(false),
        progress_made: Notify::new(),
        stop: CancellationToken::new(),
        latency: LatencySink::default(),
    });
    let progress = Progress::start(counters.clone(), Style::Messages, cfg.progress);
    let result = drive(cfg, &plan, &run_id, &shared).await;
    shared.stop.cancel();
    progress.stop().await;
    let (mut subscribers, stats, window, started) = result?;

    // Tally.
    let sent_by = |id: u32| {
        stats
            .get(id as usize)
            .map_or(0, |s| s.sent.load(Ordering::Relaxed))
    };
    let (mut received, mut lost) = (0u64, 0u64);
    let mut last_delivery = None;
    for sub in &mut subscribers {
        sub.latency.flush();
        for id in &sub.expects {
            received += sub.tracker.unique_from(*id);
            lost += sub.tracker.missing_from(*id, sent_by(*id));
        }
        last_delivery = last_delivery.max(sub.last_delivery);
    }
    let latency = shared.latency.histogram();
    let sent: u64 = stats.iter().map(|s| s.sent.load(Ordering::Relaxed)).sum();
    let acked: u64 = stats.iter().map(|s| s.acked.load(Ordering::Relaxed)).sum();
    let receive_window = last_delivery.map_or(window, |t| t.saturating_duration_since(started));
    Ok(PubsubReport {
        scenario: "pubsub",
        broker: cfg.target.address(),
        mode: cfg.mode,
        mqtt_version: cfg.target.version,
        qos: cfg.qos,
        publishers: plan.publishers.len(),
        subscribers: plan.subscribers.len(),
        payload_size: cfg.payload_size,
        rate_per_publisher: cfg.rate,
        publish_secs: window.as_secs_f64(),
        sent,
        acked: (cfg.qos != Qos::AtMostOnce).then_some(acked),
        expected: plan.expected_deliveries(sent_by),
        received,
        lost,
        duplicates: counters.duplicates.load(Ordering::Relaxed),
        sent_rate: sent as f64 / window.as_secs_f64().max(1e-9),
        received_rate: received as f64 / receive_window.as_secs_f64().max(1e-9),
        latency_us: LatencySummary::from_histogram(&latency),
        errors: ErrorSummary::from(&counters.errors),
    })
}

type Driven = (
    Vec<SubscriberResult>,
    Vec<Arc<PublisherStats>>,
    Duration,
    Instant,
);

/// Connects everyone, publishes, drains and collects; `shared.stop` is
/// cancelled by the caller afterwards whatever happens.
async fn drive(
    cfg: &PubsubConfig,
    plan: &Plan,
    run_id: &RunId,
    shared: &Arc<Shared>,
) -> Result<Driven, PubsubError> {
    let setup_deadline = tokio::time::Instant::now() + cfg.connect_timeout;
    let total = plan.client_count();
    let mut ready_count = 0usize;

    let mut sub_tasks = JoinSet::new();
    let mut pending = Vec::new();
    for sub in &plan.subscribers {
        let spec = client_spec(cfg, run_id, "sub", sub.client_index);
        let (tx, rx) = oneshot::channel();
        pending.push((spec.client_id.clone(), rx));
        sub_tasks.spawn(subscriber(spec, sub.clone(), cfg.qos, shared.clone(), tx));
    }
    await_ready(
        pending,
        setup_deadline,
        &mut ready_count,
        total,
        cfg.connect_timeout,
    )
    .await?;

    let (go_tx, go_rx) = watch::channel(None::<tokio::time::Instant>);
    let mut stats = Vec::new();
    let mut drivers = JoinSet::new();
    let mut senders = JoinSet::new();
    let mut pending = Vec::new();
    for publisher in &plan.publishers {
        let spec = client_spec(cfg, run_id, "pub", publisher.client_index);
        let (requests, events) = client::connect(&spec);
        let (tx, rx) = oneshot::channel();
        pending.push((spec.client_id.clone(), rx));
        let st = Arc::new(PublisherStats::default());
        stats.push(st.clone());
        drivers.spawn(publisher_events(
            events,
            requests.clone(),
            shared.clone(),
            st.clone(),
            tx,
        ));
        senders.spawn(publish_loop(
            requests,
            publisher.clone(),
            cfg.clone(),
            shared.clone(),
            st,
            go_rx.clone(),
        ));
    }
    await_ready(
        pending,
        setup_deadline,
        &mut ready_count,
        total,
        cfg.connect_timeout,
    )
    .await?;

    let started = Instant::now();
    let _ = go_tx.send(Some(tokio::time::Instant::from_std(started)));
    while senders.join_next().await.is_some() {}
    let window = started.elapsed();

    drain(cfg, plan, shared, &stats).await;
    shared.stop.cancel();
    while drivers.join_next().await.is_some() {}
    let mut subscribers = Vec::new();
    while let Some(joined) = sub_tasks.join_next().await {
        match joined {
            Ok(result) => subscribers.push(result),
            Err(e) => shared
                .counters
                .errors
                .record(format!("internal: subscriber task failed: {e}")),
        }
    }
    Ok((subscribers, stats, window, started))
}

fn client_spec(cfg: &PubsubConfig, run_id: &RunId, role: &str, index: usize) -> ClientSpec {
    ClientSpec {
        host: cfg.target.host.clone(),
        port: cfg.target.port,
        version: cfg.target.version,
        client_id: cfg.target.client_id(run_id, role, index),
        login: cfg.target.login(index),
        keepalive: cfg.target.keepalive,
        inflight: cfg.inflight,
        connect_timeout: cfg.connect_timeout,
    }
}

/// Waits for every client in `pending` to report ready before `deadline`.
async fn await_ready(
    pending: Vec<(String, oneshot::Receiver<Result<(), String>>)>,
    deadline: tokio::time::Instant,
    ready_count: &mut usize,
    total: usize,
    timeout: Duration,
) -> Result<(), PubsubError> {
    for (client, rx) in pending {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(()))) => *ready_count += 1,
            Ok(Ok(Err(reason))) => return Err(PubsubError::Setup { client, reason }),
            Ok(Err(_)) => {
                return Err(PubsubError::Setup {
                    client,
                    reason: "client task ended before it was ready".into(),
                })
            }
            Err(_) => {
                return Err(PubsubError::SetupTimeout {
                    ready: *ready_count,
                    total,
                    timeout,
                })
            }
        }
    }
    Ok(())
}

/// Waits until every publish is acknowledged and every expected delivery has
/// arrived, or the drain timeout passes.
async fn drain(cfg: &PubsubConfig, plan: &Plan, shared: &Shared, stats: &[Arc<PublisherStats>]) {
    shared.draining.store(true, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + cfg.drain_timeout;
    let sent_by = |id: u32| {
        stats
            .get(id as usize)
            .map_or(0, |s| s.sent.load(Ordering::Relaxed))
    };
    let expected = plan.expected_deliveries(sent_by);
    let settled = || {
        let acks_done = cfg.qos == Qos::AtMostOnce
            || stats.iter().all(|s| {
                s.acked.load(Ordering::Relaxed) + s.rejected.load(Ordering::Relaxed)
                    >= s.sent.load(Ordering::Relaxed)
            });
        acks_done && shared.counters.received.load(Ordering::Relaxed) >= expected
    };
    loop {
        let notified = shared.progress_made.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if settled() {
            return;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// A subscriber: connect, subscribe, report ready, record deliveries until stopped.
async fn subscriber(
    spec: ClientSpec,
    plan: SubscriberPlan,
    qos: Qos,
    shared: Arc<Shared>,
    ready: Ready,
) -> SubscriberResult {
    let (requests, mut events) = client::connect(&spec);
    let mut ready = Some(ready);
    let expected: HashSet<u32> = plan.expects.iter().copied().collect();
    let mut result = SubscriberResult {
        latency: shared.latency.recorder(),
        tracker: SeqTracker::default(),
        expects: plan.expects.clone(),
        last_delivery: None,
    };
    let counters = &shared.counters;
    loop {
        let event = tokio::select! {
            _ = shared.stop.cancelled() => break,
            event = events.next() => event,
        };
        let failure = match event {
            Ok(ClientEvent::Connected) => requests
                .subscribe(&plan.filter, qos)
                .err()
                .map(|e| e.to_string()),
            Ok(ClientEvent::Subscribed { refused: None }) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Ok(()));
                }
                None
            }
            Ok(ClientEvent::Subscribed {
                refused: Some(reason),
            }) => Some(format!("subscription to {} refused: {reason}", plan.filter)),
            Ok(ClientEvent::Message { payload, .. }) => {
                on_message(&payload, &expected, &mut result, &shared);
                None
            }
            Ok(_) => None,
            Err(e) => Some(format!("connection: {e}")),
        };
        if let Some(reason) = failure {
            match ready.take() {
                Some(tx) => {
                    let _ = tx.send(Err(reason));
                }
                None => counters.errors.record(format!("subscriber {reason}")),
            }
            return result;
        }
    }
    close(&requests, &mut events).await;
    result
}

fn on_message(
    payload: &Bytes,
    expected: &HashSet<u32>,
    result: &mut SubscriberResult,
    shared: &Shared,
) {
    let counters = &shared.counters;
    let stamp = match Stamp::decode(payload) {
        Ok(stamp) => stamp,
        Err(e) => return counters.errors.record(format!("received payload: {e}")),
    };
    if !expected.contains(&stamp.publisher) {
        return counters
            .errors
            .record("received a message from an unexpected publisher");
    }
    match result.tracker.record(stamp.publisher, stamp.seq) {
        Delivery::First => {
            result
                .latency
                .record(Clock::global().since(stamp.sent_nanos));
            result.last_delivery = Some(Instant::now());
            Counters::bump(&counters.received);
            shared.settled_one();
        }
        Delivery::Duplicate => Counters::bump(&counters.duplicates),
        Delivery::Invalid => counters
            .errors
            .record("received payload: sequence number out of range"),
    }
}

/// A publisher's connection: report ready on CONNACK, count acks, until stopped.
async fn publisher_events(
    mut events: Events,
    requests: Requests,
    shared: Arc<Shared>,
    stats: Arc<PublisherStats>,
    ready: Ready,
) {
    let mut ready = Some(ready);
    let counters = &shared.counters;
    let mut open = None;
    loop {
        let event = tokio::select! {
            _ = shared.stop.cancelled() => break,
            event = events.next() => event,
        };
        match event {
            Ok(ClientEvent::Connected) => {
                open.get_or_insert_with(|| OpenConnection::new(counters));
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(ClientEvent::Acked(_)) => {
                Counters::bump(&stats.acked);
                Counters::bump(&counters.acked);
                shared.settled_one();
            }
            Ok(ClientEvent::PublishRejected { reason, .. }) => {
                Counters::bump(&stats.rejected);
                counters
                    .errors
                    .record(format!("publish rejected: {reason}"));
                shared.settled_one();
            }
            Ok(_) => {}
            Err(e) => {
                match ready.take() {
                    Some(tx) => {
                        let _ = tx.send(Err(format!("connection: {e}")));
                    }
                    None => counters.errors.record(format!("publisher connection: {e}")),
                }
                // Dropping the event loop makes the publish loop's next publish fail.
                return;
            }
        }
    }
    close(&requests, &mut events).await;
}

/// Publishes stamped messages at the configured rate once told to go.
async fn publish_loop(
    requests: Requests,
    plan: PublisherPlan,
    cfg: PubsubConfig,
    shared: Arc<Shared>,
    stats: Arc<PublisherStats>,
    mut go: watch::Receiver<Option<tokio::time::Instant>>,
) {
    let start = tokio::select! {
        _ = shared.stop.cancelled() => return,
        started = go.wait_for(Option::is_some) => match started {
            Ok(start) => match *start {
                Some(start) => start,
                None => return,
            },
            Err(_) => return,
        },
    };
    let deadline = start + cfg.duration;
    let clock = Clock::global();
    let counters = &shared.counters;
    for seq in 0u64.. {
        let due = start + Duration::from_secs_f64(seq as f64 / cfg.rate);
        if due >= deadline {
            break;
        }
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let stamp = Stamp {
            publisher: plan.id,
            seq,
            sent_nanos: clock.now_nanos(),
        };
        let payload = match stamp.encode(cfg.payload_size) {
            Ok(p) => Bytes::from(p),
            Err(e) => return counters.errors.record(format!("payload: {e}")),
        };
        match tokio::time::timeout_at(deadline, requests.publish(&plan.topic, cfg.qos, payload))
            .await
        {
            Ok(Ok(())) => {
                Counters::bump(&stats.sent);
                Counters::bump(&counters.sent);
            }
            Ok(Err(e)) => return counters.errors.record(format!("publish: {e}")),
            // The window closed while the client's queue was full.
            Err(_) => break,
        }
    }
}

/// Sends DISCONNECT and polls until it is out (or a second passes).
async fn close(requests: &Requests, events: &mut Events) {
    if requests.disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match events.next().await {
                Ok(ClientEvent::Disconnected) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}
