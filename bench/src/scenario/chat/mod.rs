//! The `chat` scenario: Parley's own chat topics under load. Users
//! `{prefix}{i}` talk in 1:1 pairs or in groups ([`layout`]); each user is
//! one MQTT connection subscribed to its inbox `u/{user}/i` at QoS 1. Senders
//! publish `parley.v1` text messages to `s/{conv}` at QoS 1 at a target rate;
//! Parley stores each durably, then acknowledges it (PUBACK) and delivers the
//! stored message, with its `seq`, to every member's inbox, the sender's
//! included.
//!
//! Measured: send→PUBACK latency (the durable acknowledgement), send→delivery
//! latency to every member, throughput, server `Error` envelopes (by code and
//! message), lost and duplicate deliveries, and breaks in each conversation's
//! `seq` as every receiver saw them. The send time travels in the message's
//! `client_message_id` ([`wire::MessageStamp`]).
//!
//! Order of events: every user connects and subscribes (SUBACK awaited);
//! each conversation's first member also subscribes to `a/{user}` and opens
//! the conversation with a request on `q/{user}`, answered on `a/{user}`:
//! `CreateGroup` for a group, `OpenDirect` for a pair (which would otherwise
//! be created by its first message, inside the timed window). Then all
//! senders start together. After the window the run waits, up to a drain
//! timeout, for outstanding PUBACKs and deliveries before counting losses.
//!
//! Each user runs on the client [`ChatConfig::client`] picks: the lean
//! client (`lean_user`: one task per user owns the socket and the send
//! schedule) or rumqttc (`rumqttc_user`: an event loop task per user and a
//! send task per sender). Both measure the same spans.
//!
//! Parley limits each user to 20 messages/s (burst 50) by default; loads
//! above that need `[chat] messages_per_sec` and `message_burst` raised.

pub mod inbox;
pub mod layout;
mod lean_user;
mod rumqttc_user;
pub mod wire;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::inbox::{Arrival, Inbox, InboxLatency, SeqIssue};
use self::layout::{ChatPlan, ConversationKey, Layout, LayoutError};
use self::wire::{InboxItem, MessageStamp};
use super::{RunId, Target};
use crate::busprobe::BusSnapshot;
use crate::credentials::Credentials;
use crate::mqtt::client::{self, ClientSpec, Requests};
use crate::payload::Clock;
use crate::progress::{Counters, Progress, Style};
use crate::report::{self, ChatReport, ErrorSummary, LatencyRecorder, LatencySink, LatencySummary};

/// Settings of a `chat` run.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// The broker and how to log in: one user per connection
    /// ([`Credentials::PerClient`]); the users must exist.
    pub target: Target,
    /// Pairs or groups.
    pub layout: Layout,
    /// Sending members per conversation.
    pub senders: usize,
    /// Messages per second per sender.
    pub rate: f64,
    /// How long senders send.
    pub duration: Duration,
    /// Text bytes per message.
    pub text_size: usize,
    /// Most publishes awaiting PUBACK per connection.
    pub inflight: u16,
    /// How long to wait for outstanding acks and deliveries after sending.
    pub drain_timeout: Duration,
    /// Time allowed for every user to connect, subscribe and create its group.
    pub connect_timeout: Duration,
    /// Print a progress line every second on stderr.
    pub progress: bool,
    /// MQTT ports of a cluster's nodes on the target host: user `i`
    /// connects to the `i % len`th (empty: the target's port).
    pub node_ports: Vec<u16>,
    /// Count the cluster bus's records from the Kafka side while senders
    /// send (see [`crate::busprobe`]).
    pub bus: Option<crate::busprobe::BusProbeConfig>,
    /// The MQTT client the users run on.
    pub client: ChatClient,
}

/// The MQTT client a `chat` run's users run on. Both measure the same
/// spans (PUBACK latency from the stamp's send time, taken when the
/// schedule releases a message, to the handling of its PUBACK); they differ
/// in what the load generator itself costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatClient {
    /// [`crate::mqtt::lean`]: one task per user owns the socket and the
    /// send schedule, one write per wake-up.
    #[default]
    Lean,
    /// [`crate::mqtt::client`] (rumqttc): an event loop per user plus a
    /// send task per sender, joined by a request channel.
    Rumqttc,
}

impl FromStr for ChatClient {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "lean" => Ok(ChatClient::Lean),
            "rumqttc" => Ok(ChatClient::Rumqttc),
            other => Err(format!("unknown client {other:?}; use lean or rumqttc")),
        }
    }
}

impl fmt::Display for ChatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChatClient::Lean => "lean",
            ChatClient::Rumqttc => "rumqttc",
        })
    }
}

/// The start signal: when the senders' window opens, and each
/// conversation's topic `s/{id}` (by conversation index).
#[derive(Debug, Clone)]
struct Go {
    start: tokio::time::Instant,
    topics: Arc<Vec<String>>,
}

/// How the run waits for a sender to finish sending.
enum SenderHandle {
    /// A rumqttc sender: its send task is spawned at the start signal.
    Rumqttc {
        sender: u32,
        conversation: usize,
        requests: Requests,
        queue: rumqttc_user::Queue,
    },
    /// A lean sender sends from its user's task and says when it is done.
    Lean(oneshot::Receiver<()>),
}

/// A `chat` run that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The users can't be laid out.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The credentials are not one user per connection.
    #[error("chat needs one user per connection: --user-prefix and --password")]
    NeedsUsers,
    /// The rate is not a positive number.
    #[error("message rate must be a positive number, got {0}")]
    BadRate(f64),
    /// The sending window is zero.
    #[error("duration must be longer than zero")]
    NoDuration,
    /// A user failed to connect, subscribe or create its group.
    #[error("{client}: {reason}")]
    Setup {
        /// Which client.
        client: String,
        /// Why.
        reason: String,
    },
    /// Users did not become ready in time.
    #[error("only {ready} of {total} users were ready after {timeout:?}")]
    SetupTimeout {
        /// Users ready.
        ready: usize,
        /// Users in the run.
        total: usize,
        /// The connect timeout.
        timeout: Duration,
    },
}

/// What one sender did.
#[derive(Debug, Default)]
struct SenderStats {
    sent: AtomicU64,
    acked: AtomicU64,
    rejected_acks: AtomicU64,
    refused: AtomicU64,
}

impl SenderStats {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// State shared by every task of a run.
struct Shared {
    counters: Arc<Counters>,
    plan: ChatPlan,
    run: String,
    text_size: usize,
    /// Indexed by sender id.
    senders: Vec<SenderStats>,
    seq_gaps: AtomicU64,
    seq_reorders: AtomicU64,
    /// Set while the run waits for outstanding acks and deliveries.
    draining: AtomicBool,
    /// Signalled on every ack, delivery and refusal while draining.
    progress_made: Notify,
    /// Cancelled when the run ends (or setup fails).
    stop: CancellationToken,
    /// Nodes the users are spread over (1 without node ports).
    nodes: usize,
    /// Delivery latencies, added to by every user's inbox.
    inbox_latency: InboxLatency,
    /// Send to PUBACK, added to by every sender.
    ack_latency: LatencySink,
}

impl Shared {
    fn settled_one(&self) {
        if self.draining.load(Ordering::Relaxed) {
            self.progress_made.notify_waiters();
        }
    }

    /// Deliveries expected from what was sent and refused so far.
    fn expected(&self) -> u64 {
        self.senders
            .iter()
            .enumerate()
            .map(|(id, s)| {
                let accepted =
                    SenderStats::get(&s.sent).saturating_sub(SenderStats::get(&s.refused));
                self.plan.deliveries_of(id as u32, accepted)
            })
            .sum()
    }
}

/// What one user's connection saw.
struct UserResult {
    inbox: Inbox,
    ack_latency: LatencyRecorder,
    last_ack: Option<Instant>,
}

/// Ready with the id of the conversation the user opened, if it opened one.
type Ready = oneshot::Sender<Result<Option<String>, String>>;

/// Runs the scenario and returns its report.
pub async fn run(cfg: &ChatConfig) -> Result<ChatReport, ChatError> {
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        return Err(ChatError::BadRate(cfg.rate));
    }
    if cfg.duration.is_zero() {
        return Err(ChatError::NoDuration);
    }
    let Credentials::PerClient { prefix, .. } = &cfg.target.credentials else {
        return Err(ChatError::NeedsUsers);
    };
    let run_id = RunId::new();
    let plan = layout::plan(
        cfg.layout,
        cfg.senders,
        prefix,
        &format!("bench-{}", run_id.0),
    )?;
    let counters = Arc::new(Counters::default());
    let shared = Arc::new(Shared {
        counters: counters.clone(),
        senders: plan
            .sender_users
            .iter()
            .map(|_| SenderStats::default())
            .collect(),
        plan,
        run: run_id.0.clone(),
        text_size: cfg.text_size,
        seq_gaps: AtomicU64::new(0),
        seq_reorders: AtomicU64::new(0),
        draining: AtomicBool::new(false),
        progress_made: Notify::new(),
        stop: CancellationToken::new(),
        nodes: cfg.node_ports.len().max(1),
        inbox_latency: InboxLatency::default(),
        ack_latency: LatencySink::default(),
    });
    let progress = Progress::start(counters.clone(), Style::Messages, cfg.progress);
    let result = drive(cfg, &run_id, &shared).await;
    shared.stop.cancel();
    progress.stop().await;
    let (mut users, window, started, bus) = result?;
    let mut report = tally(cfg, &shared, &mut users, window, started);
    let acked = report.acked.max(1) as f64;
    if let Some(cluster) = report.cluster.as_mut() {
        cluster.bus = bus.map(|bus| report::BusCost {
            produced: bus.produced,
            read: bus.read,
            produced_per_message: bus.produced as f64 / acked,
            read_per_message: bus.read as f64 / acked,
        });
    }
    Ok(report)
}

/// Adds up what every connection saw.
fn tally(
    cfg: &ChatConfig,
    shared: &Shared,
    users: &mut [UserResult],
    window: Duration,
    started: Instant,
) -> ChatReport {
    let plan = &shared.plan;
    let stat = |pick: fn(&SenderStats) -> &AtomicU64| -> u64 {
        shared
            .senders
            .iter()
            .map(|s| SenderStats::get(pick(s)))
            .sum()
    };
    let sent_by = |id: u32| {
        shared
            .senders
            .get(id as usize)
            .map_or(0, |s| SenderStats::get(&s.sent))
    };
    let (mut received, mut missing) = (0u64, 0u64);
    let (mut last_delivery, mut last_ack) = (None, None);
    for user in users.iter_mut() {
        user.inbox.flush_latency();
        user.ack_latency.flush();
        let conversation = &plan.conversations[plan.users[user.inbox.user()].conversation];
        for sender in &conversation.senders {
            received += user.inbox.tracker.unique_from(*sender);
            missing += user.inbox.tracker.missing_from(*sender, sent_by(*sender));
        }
        last_delivery = last_delivery.max(user.inbox.last_delivery);
        last_ack = last_ack.max(user.last_ack);
    }
    let latency = shared.inbox_latency.latency.histogram();
    let peer_latency = shared.inbox_latency.peer.histogram();
    let same_node = shared.inbox_latency.same_node.histogram();
    let cross_node = shared.inbox_latency.cross_node.histogram();
    let ack_latency = shared.ack_latency.histogram();
    // A refused message is missing at every member; that is not a loss.
    let refused_deliveries: u64 = shared
        .senders
        .iter()
        .enumerate()
        .map(|(id, s)| plan.deliveries_of(id as u32, SenderStats::get(&s.refused)))
        .sum();
    let (sent, acked) = (stat(|s| &s.sent), stat(|s| &s.acked));
    let rate_over = |n: u64, until: Option<Instant>| {
        let span = until.map_or(window, |t| t.saturating_duration_since(started));
        n as f64 / span.as_secs_f64().max(1e-9)
    };
    let sample = MessageStamp {
        sender: 0,
        seq: 0,
        sent_nanos: Clock::global().now_nanos(),
    };
    let conversation_size = cfg.layout.conversation_size();
    ChatReport {
        scenario: "chat",
        broker: cfg.target.address(),
        client: cfg.client,
        mqtt_version: cfg.target.version,
        layout: cfg.layout.kind(),
        conversations: plan.conversations.len(),
        conversation_size,
        users: plan.users.len(),
        senders: plan.sender_users.len(),
        text_size: cfg.text_size.max(1),
        payload_size: wire::chat_message(sample.client_message_id(&shared.run), cfg.text_size)
            .len(),
        rate_per_sender: cfg.rate,
        publish_secs: window.as_secs_f64(),
        sent,
        acked,
        rejected_acks: stat(|s| &s.rejected_acks),
        refused: stat(|s| &s.refused),
        expected: shared.expected(),
        received,
        lost: missing.saturating_sub(refused_deliveries),
        duplicates: shared.counters.duplicates.load(Ordering::Relaxed),
        seq_gaps: shared.seq_gaps.load(Ordering::Relaxed),
        seq_reorders: shared.seq_reorders.load(Ordering::Relaxed),
        sent_rate: sent as f64 / window.as_secs_f64().max(1e-9),
        acked_rate: rate_over(acked, last_ack),
        received_rate: rate_over(received, last_delivery),
        ack_latency_us: LatencySummary::from_histogram(&ack_latency),
        delivery_latency_us: LatencySummary::from_histogram(&latency),
        peer_delivery_latency_us: LatencySummary::from_histogram(&peer_latency),
        cluster: (!cfg.node_ports.is_empty()).then(|| {
            Box::new(report::ClusterFigures {
                nodes: cfg.node_ports.len(),
                same_node_delivery_latency_us: LatencySummary::from_histogram(&same_node),
                cross_node_delivery_latency_us: LatencySummary::from_histogram(&cross_node),
                bus: None,
            })
        }),
        errors: ErrorSummary::from(&shared.counters.errors),
    }
}

/// Connects everyone, creates the groups, sends, drains and collects;
/// `shared.stop` is cancelled by the caller afterwards whatever happens.
async fn drive(
    cfg: &ChatConfig,
    run_id: &RunId,
    shared: &Arc<Shared>,
) -> Result<(Vec<UserResult>, Duration, Instant, Option<BusSnapshot>), ChatError> {
    let plan = &shared.plan;
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
    let broker = match cfg.client {
        ChatClient::Lean => Some(cfg.target.resolve().await.map_err(|e| ChatError::Setup {
            client: cfg.target.address(),
            reason: e.to_string(),
        })?),
        ChatClient::Rumqttc => None,
    };
    let shared_cfg = Arc::new(cfg.clone());
    let (go_tx, go_rx) = watch::channel(None::<Go>);
    let mut tasks = JoinSet::new();
    let mut pending = Vec::new();
    let mut sender_handles = Vec::new();
    for user in &plan.users {
        let port = match cfg.node_ports.len() {
            0 => cfg.target.port,
            n => cfg.node_ports[user.index % n],
        };
        let client_id = cfg.target.client_id(run_id, "chat", user.index);
        let (tx, rx) = oneshot::channel();
        pending.push((client_id.clone(), user.conversation, rx));
        if let Some(mut target) = broker {
            target.set_port(port);
            let (done_tx, done_rx) = oneshot::channel();
            if user.sender.is_some() {
                sender_handles.push(SenderHandle::Lean(done_rx));
            }
            tasks.spawn(lean_user::run(lean_user::LeanUser {
                user: user.clone(),
                target,
                client_id,
                login: cfg.target.login(user.index),
                cfg: shared_cfg.clone(),
                shared: shared.clone(),
                ready: tx,
                go: go_rx.clone(),
                sending_done: user.sender.is_some().then_some(done_tx),
            }));
            continue;
        }
        let spec = ClientSpec {
            host: cfg.target.host.clone(),
            port,
            version: cfg.target.version,
            client_id,
            login: cfg.target.login(user.index),
            keepalive: cfg.target.keepalive,
            inflight: cfg.inflight,
            connect_timeout: cfg.connect_timeout,
        };
        let (requests, events) = client::connect(&spec);
        let queue: rumqttc_user::Queue = Arc::default();
        if let Some(sender) = user.sender {
            sender_handles.push(SenderHandle::Rumqttc {
                sender,
                conversation: user.conversation,
                requests: requests.clone(),
                queue: queue.clone(),
            });
        }
        tasks.spawn(rumqttc_user::user_task(
            user.clone(),
            requests,
            events,
            queue,
            shared.clone(),
            tx,
        ));
    }

    // Wait for every user; openers answer with their conversation's id.
    let total = pending.len();
    let mut conversation_ids: Vec<Option<String>> = plan
        .conversations
        .iter()
        .map(|c| match &c.key {
            ConversationKey::Direct(id) => Some(id.clone()),
            ConversationKey::Group { .. } => None,
        })
        .collect();
    for (ready, (client, conversation, rx)) in pending.into_iter().enumerate() {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(created))) => {
                if let Some(id) = created {
                    conversation_ids[conversation] = Some(id);
                }
            }
            Ok(Ok(Err(reason))) => return Err(ChatError::Setup { client, reason }),
            Ok(Err(_)) => {
                return Err(ChatError::Setup {
                    client,
                    reason: "connection task ended before it was ready".into(),
                })
            }
            Err(_) => {
                return Err(ChatError::SetupTimeout {
                    ready,
                    total,
                    timeout: cfg.connect_timeout,
                })
            }
        }
    }

    let mut topics = Vec::with_capacity(conversation_ids.len());
    for (conversation, id) in conversation_ids.into_iter().enumerate() {
        let Some(id) = id else {
            return Err(ChatError::Setup {
                client: format!("conversation {conversation}"),
                reason: "group was not created".into(),
            });
        };
        topics.push(format!("s/{id}"));
    }
    let topics = Arc::new(topics);
    let mut senders = JoinSet::new();
    let mut lean_senders = Vec::new();
    for handle in sender_handles {
        match handle {
            SenderHandle::Rumqttc {
                sender,
                conversation,
                requests,
                queue,
            } => {
                senders.spawn(rumqttc_user::send_loop(
                    requests,
                    queue,
                    sender,
                    topics[conversation].clone(),
                    cfg.clone(),
                    shared.clone(),
                    go_rx.clone(),
                ));
            }
            SenderHandle::Lean(done) => lean_senders.push(done),
        }
    }
    let bus_before = bus_snapshot(cfg).await;
    let started = Instant::now();
    let _ = go_tx.send(Some(Go {
        start: tokio::time::Instant::from_std(started),
        topics,
    }));
    while senders.join_next().await.is_some() {}
    for done in lean_senders {
        // A sender whose connection failed drops its end: done too.
        let _ = done.await;
    }
    let window = started.elapsed();

    drain(cfg, shared).await;
    let bus = match (bus_before, bus_snapshot(cfg).await) {
        (Some(before), Some(after)) => Some(after.since(before)),
        _ => None,
    };
    shared.stop.cancel();
    let mut users = Vec::with_capacity(total);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => users.push(result),
            Err(e) => shared
                .counters
                .errors
                .record(format!("internal: connection task failed: {e}")),
        }
    }
    Ok((users, window, started, bus))
}

/// The bus's counters after a second's pause (so what is under way, such
/// as the commits of the last records read, has settled), with a probe.
async fn bus_snapshot(cfg: &ChatConfig) -> Option<BusSnapshot> {
    let probe = cfg.bus.clone()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    match tokio::task::spawn_blocking(move || crate::busprobe::snapshot(&probe)).await {
        Ok(Ok(snapshot)) => Some(snapshot),
        Ok(Err(e)) => {
            eprintln!("parley-bench: reading the bus counters failed: {e}");
            None
        }
        Err(e) => {
            eprintln!("parley-bench: reading the bus counters failed: {e}");
            None
        }
    }
}

/// Waits until every message is acknowledged and every expected delivery has
/// arrived, or the drain timeout passes.
async fn drain(cfg: &ChatConfig, shared: &Shared) {
    shared.draining.store(true, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + cfg.drain_timeout;
    let settled = || {
        let acks_done = shared.senders.iter().all(|s| {
            SenderStats::get(&s.acked) + SenderStats::get(&s.rejected_acks)
                >= SenderStats::get(&s.sent)
        });
        acks_done && shared.counters.received.load(Ordering::Relaxed) >= shared.expected()
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

/// Records one payload from the inbox.
fn on_inbox(payload: &[u8], inbox: &mut Inbox, shared: &Shared) {
    let counters = &shared.counters;
    match wire::inbox_item(payload) {
        Err(e) => counters.errors.record(format!("inbox payload: {e}")),
        Ok(InboxItem::Message(message)) => {
            let (arrival, issue) =
                inbox.record(&message, &shared.plan, Clock::global().now_nanos());
            match arrival {
                Arrival::First { .. } => {
                    Counters::bump(&counters.received);
                    shared.settled_one();
                }
                Arrival::Duplicate => Counters::bump(&counters.duplicates),
                Arrival::Foreign => counters
                    .errors
                    .record("delivery of a message this run did not send"),
                Arrival::Invalid(reason) => counters.errors.record(format!("delivery: {reason}")),
            }
            if let Some(issue) = issue {
                let count = match issue {
                    SeqIssue::Gap { .. } => &shared.seq_gaps,
                    SeqIssue::Reordered { .. } => &shared.seq_reorders,
                };
                Counters::bump(count);
                counters.errors.record(issue.kind());
            }
        }
        Ok(InboxItem::Error(error)) => {
            counters.errors.record(error.kind());
            let refused = MessageStamp::parse(&error.client_message_id, &shared.run)
                .and_then(|stamp| shared.senders.get(stamp.sender as usize));
            if let Some(stats) = refused {
                Counters::bump(&stats.refused);
                shared.settled_one();
            }
        }
        Ok(InboxItem::Other) => {}
    }
}
