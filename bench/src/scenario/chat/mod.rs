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
//! group creators also subscribe to `a/{user}` and create their group with a
//! `CreateGroup` request on `q/{user}`, answered on `a/{user}`. Then all
//! senders start together. After the window the run waits, up to a drain
//! timeout, for outstanding PUBACKs and deliveries before counting losses.
//!
//! Parley limits each user to 20 messages/s (burst 50) by default; loads
//! above that need `[chat] messages_per_sec` and `message_burst` raised.

pub mod inbox;
pub mod layout;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::inbox::{Arrival, Inbox, SeqIssue};
use self::layout::{ChatPlan, ConversationKey, Layout, LayoutError, UserPlan};
use self::wire::{GroupAnswer, InboxItem, MessageStamp};
use super::{RunId, Target};
use crate::busprobe::BusSnapshot;
use crate::credentials::Credentials;
use crate::mqtt::client::{self, ClientEvent, ClientSpec, Events, Requests};
use crate::mqtt::Qos;
use crate::payload::Clock;
use crate::progress::{Counters, OpenConnection, Progress, Style};
use crate::report::{self, ChatReport, ErrorSummary, LatencySummary};

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

/// A publish queued on a connection, in queue order; the connection's
/// `Published(pkid)` events come in the same order.
#[derive(Debug, Clone, Copy)]
enum Queued {
    /// A chat message sent at this time (bench clock).
    Message { sent_nanos: u64 },
    /// The `CreateGroup` request.
    Request,
}

type Queue = Arc<Mutex<VecDeque<Queued>>>;

fn lock(queue: &Queue) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
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
    ack_latency: Histogram<u64>,
    last_ack: Option<Instant>,
}

/// Ready with the id of the group the user created, if it created one.
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
    });
    let progress = Progress::start(counters.clone(), Style::Messages, cfg.progress);
    let result = drive(cfg, &run_id, &shared).await;
    shared.stop.cancel();
    progress.stop().await;
    let (users, window, started, bus) = result?;
    let mut report = tally(cfg, &shared, &users, window, started);
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
    users: &[UserResult],
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
    let mut latency = report::new_histogram();
    let mut peer_latency = report::new_histogram();
    let mut same_node = report::new_histogram();
    let mut cross_node = report::new_histogram();
    let mut ack_latency = report::new_histogram();
    let (mut received, mut missing) = (0u64, 0u64);
    let (mut last_delivery, mut last_ack) = (None, None);
    for user in users {
        // Histograms share bounds, so adding cannot fail.
        let _ = latency.add(&user.inbox.latency);
        let _ = peer_latency.add(&user.inbox.peer_latency);
        let _ = same_node.add(&user.inbox.same_node_latency);
        let _ = cross_node.add(&user.inbox.cross_node_latency);
        let _ = ack_latency.add(&user.ack_latency);
        let conversation = &plan.conversations[plan.users[user.inbox.user()].conversation];
        for sender in &conversation.senders {
            received += user.inbox.tracker.unique_from(*sender);
            missing += user.inbox.tracker.missing_from(*sender, sent_by(*sender));
        }
        last_delivery = last_delivery.max(user.inbox.last_delivery);
        last_ack = last_ack.max(user.last_ack);
    }
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
    let mut tasks = JoinSet::new();
    let mut pending = Vec::new();
    let mut sender_handles = Vec::new();
    for user in &plan.users {
        let spec = ClientSpec {
            host: cfg.target.host.clone(),
            port: match cfg.node_ports.len() {
                0 => cfg.target.port,
                n => cfg.node_ports[user.index % n],
            },
            version: cfg.target.version,
            client_id: cfg.target.client_id(run_id, "chat", user.index),
            login: cfg.target.login(user.index),
            keepalive: cfg.target.keepalive,
            inflight: cfg.inflight,
            connect_timeout: cfg.connect_timeout,
        };
        let (requests, events) = client::connect(&spec);
        let queue: Queue = Arc::default();
        let (tx, rx) = oneshot::channel();
        pending.push((spec.client_id.clone(), user.conversation, rx));
        if let Some(sender) = user.sender {
            sender_handles.push((sender, user.conversation, requests.clone(), queue.clone()));
        }
        tasks.spawn(user_task(
            user.clone(),
            requests,
            events,
            queue,
            shared.clone(),
            tx,
        ));
    }

    // Wait for every user; creators answer with their group's id.
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

    let (go_tx, go_rx) = watch::channel(None::<tokio::time::Instant>);
    let mut senders = JoinSet::new();
    for (sender, conversation, requests, queue) in sender_handles {
        let Some(id) = conversation_ids[conversation].clone() else {
            return Err(ChatError::Setup {
                client: format!("conversation {conversation}"),
                reason: "group was not created".into(),
            });
        };
        senders.spawn(send_loop(
            requests,
            queue,
            sender,
            format!("s/{id}"),
            cfg.clone(),
            shared.clone(),
            go_rx.clone(),
        ));
    }
    let bus_before = bus_snapshot(cfg).await;
    let started = Instant::now();
    let _ = go_tx.send(Some(tokio::time::Instant::from_std(started)));
    while senders.join_next().await.is_some() {}
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

/// One user's connection: subscribe, create the group if it is the creator,
/// report ready, then record acknowledgements and inbox deliveries until
/// stopped.
async fn user_task(
    user: UserPlan,
    requests: Requests,
    mut events: Events,
    queue: Queue,
    shared: Arc<Shared>,
    ready: Ready,
) -> UserResult {
    let counters = &shared.counters;
    let inbox_topic = format!("u/{}/i", user.name);
    let answer_topic = format!("a/{}", user.name);
    let request_id = format!("{}-create-{}", shared.run, user.conversation);
    let mut ready = Some(ready);
    let mut subscriptions_pending = if user.creates_group { 2 } else { 1 };
    let mut in_flight: HashMap<u16, u64> = HashMap::new();
    let mut result = UserResult {
        inbox: Inbox::new(&shared.run, user.index).on_nodes(shared.nodes),
        ack_latency: report::new_histogram(),
        last_ack: None,
    };
    let stats = user.sender.and_then(|id| shared.senders.get(id as usize));
    let clock = Clock::global();
    let mut open = None;
    loop {
        let event = tokio::select! {
            _ = shared.stop.cancelled() => break,
            event = events.next() => event,
        };
        let failure = match event {
            Ok(ClientEvent::Connected) => {
                open.get_or_insert_with(|| OpenConnection::new(counters));
                let mut filters = vec![inbox_topic.as_str()];
                if user.creates_group {
                    filters.push(answer_topic.as_str());
                }
                filters
                    .into_iter()
                    .find_map(|f| requests.subscribe(f, Qos::AtLeastOnce).err())
                    .map(|e| format!("subscribe: {e}"))
            }
            Ok(ClientEvent::Subscribed { refused: None }) => {
                subscriptions_pending -= 1;
                if subscriptions_pending > 0 {
                    None
                } else if user.creates_group {
                    create_group(&user, &shared, &requests, &queue, &request_id)
                } else {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Ok(None));
                    }
                    None
                }
            }
            Ok(ClientEvent::Subscribed {
                refused: Some(reason),
            }) => Some(format!("subscription refused: {reason}")),
            Ok(ClientEvent::Published(pkid)) => {
                if let Some(Queued::Message { sent_nanos }) = lock(&queue).pop_front() {
                    in_flight.insert(pkid, sent_nanos);
                }
                None
            }
            Ok(ClientEvent::Acked(pkid)) => {
                if let (Some(sent), Some(stats)) = (in_flight.remove(&pkid), stats) {
                    report::record(&mut result.ack_latency, clock.since(sent));
                    result.last_ack = Some(Instant::now());
                    Counters::bump(&stats.acked);
                    Counters::bump(&counters.acked);
                    shared.settled_one();
                }
                None
            }
            Ok(ClientEvent::PublishRejected { pkid, reason }) => {
                match (in_flight.remove(&pkid), stats) {
                    (Some(_), Some(stats)) => {
                        Counters::bump(&stats.rejected_acks);
                        shared.settled_one();
                        None
                    }
                    // The CreateGroup request.
                    _ if ready.is_some() => Some(format!("CreateGroup publish rejected: {reason}")),
                    _ => None,
                }
            }
            Ok(ClientEvent::Message { topic, payload }) => {
                if topic == inbox_topic {
                    on_inbox(&payload, &mut result.inbox, &shared);
                    None
                } else if topic == answer_topic {
                    match wire::group_answer(&payload, &request_id) {
                        Ok(GroupAnswer::Created(id)) => {
                            if let Some(tx) = ready.take() {
                                let _ = tx.send(Ok(Some(id)));
                            }
                            None
                        }
                        Ok(GroupAnswer::Refused(e)) => {
                            Some(format!("CreateGroup refused: {} {}", e.code, e.message))
                        }
                        Ok(GroupAnswer::NotOurs) => None,
                        Err(e) => Some(format!("answer on {answer_topic}: {e}")),
                    }
                } else {
                    counters
                        .errors
                        .record(format!("message on an unexpected topic {topic}"));
                    None
                }
            }
            Ok(_) => None,
            Err(e) => Some(format!("connection: {e}")),
        };
        if let Some(reason) = failure {
            match ready.take() {
                Some(tx) => {
                    let _ = tx.send(Err(reason));
                }
                None => counters.errors.record(format!("user connection {reason}")),
            }
            return result;
        }
    }
    close(&requests, &mut events).await;
    result
}

/// Publishes the creator's `CreateGroup` request; `Some(reason)` if it can't.
fn create_group(
    user: &UserPlan,
    shared: &Shared,
    requests: &Requests,
    queue: &Queue,
    request_id: &str,
) -> Option<String> {
    let conversation = &shared.plan.conversations[user.conversation];
    let ConversationKey::Group { name } = &conversation.key else {
        return Some("only groups are created".into());
    };
    let members = conversation
        .members
        .iter()
        .filter(|m| **m != user.index)
        .map(|m| shared.plan.users[*m].name.clone())
        .collect();
    let payload = wire::create_group(request_id, name, members);
    lock(queue).push_back(Queued::Request);
    match requests.try_publish(&format!("q/{}", user.name), Qos::AtLeastOnce, payload) {
        Ok(()) => None,
        Err(e) => {
            lock(queue).pop_back();
            Some(format!("CreateGroup: {e}"))
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

/// Sends stamped messages to `topic` at the configured rate once told to go.
async fn send_loop(
    requests: Requests,
    queue: Queue,
    sender: u32,
    topic: String,
    cfg: ChatConfig,
    shared: Arc<Shared>,
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
    // A publish may wait for room in the client's queue past the window, but
    // not forever.
    let give_up = deadline + cfg.drain_timeout;
    let clock = Clock::global();
    let counters = &shared.counters;
    let Some(stats) = shared.senders.get(sender as usize) else {
        return;
    };
    for seq in 0u64.. {
        let due = start + Duration::from_secs_f64(seq as f64 / cfg.rate);
        if due >= deadline {
            break;
        }
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let stamp = MessageStamp {
            sender,
            seq,
            sent_nanos: clock.now_nanos(),
        };
        let payload = wire::chat_message(stamp.client_message_id(&shared.run), shared.text_size);
        // Queued before the request so the connection task always finds it.
        lock(&queue).push_back(Queued::Message {
            sent_nanos: stamp.sent_nanos,
        });
        match tokio::time::timeout_at(
            give_up,
            requests.publish(&topic, Qos::AtLeastOnce, payload.into()),
        )
        .await
        {
            Ok(Ok(())) => {
                Counters::bump(&stats.sent);
                Counters::bump(&counters.sent);
            }
            Ok(Err(e)) => {
                lock(&queue).pop_back();
                return counters.errors.record(format!("publish: {e}"));
            }
            Err(_) => {
                lock(&queue).pop_back();
                return counters
                    .errors
                    .record("publish: client queue still full after the drain timeout");
            }
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
