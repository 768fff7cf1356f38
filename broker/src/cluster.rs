//! Several nodes as one service: where the chat pipeline's deliveries go.
//!
//! The chat pipeline hands every server-side delivery (a message to the
//! members' inboxes, a receipt, a typing indicator, a presence change) to
//! [`Deliveries`] as a [`Fanout`]: one payload for a list of topics.
//!
//! - [`Deliveries::Local`] (a single node, or `[cluster] bus = "none"`)
//!   publishes to this node's router at once, exactly as a lone node always
//!   has; waiting on it is free.
//! - [`Deliveries::Bus`] appends to the [`ClusterBus`] instead: one record
//!   per node that holds a recipient (see [`crate::targeting`]: the session
//!   directory says where users are), or one broadcast record for fan-outs
//!   every node needs. One task per node publishes in the order deliveries
//!   were handed over, batching what queued up meanwhile into one
//!   `publish_to` call, so a conversation's entries leave a node in `seq`
//!   order on every stream. A sender's acknowledgement waits for its batch
//!   to be acknowledged by the bus.
//!
//! [`spawn_consumer`] is the other half: every node consumes the broadcast
//! stream and its own, and republishes each record's payload on each of its
//! topics to its own router through the [`ServerPublisher`], acknowledging
//! the record after.
//! Answers to a client's own requests never go through here; they stay on
//! the node the client is on. `docs/cluster.md` describes the design and its
//! limits.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use persistence::kafka::{KafkaBus, KafkaConfig};
use persistence::{Audience, BusConsumer, BusRecord, ClusterBus, MqttForward, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::publisher::ServerPublisher;
use crate::targeting::{resolve, BusCounts, RecentFanouts, RecipientNodes, Replay, Route, Routed};

/// One payload for several MQTT topics: a message or receipt to every
/// member's inbox, a typing indicator to the other members' feeds, a
/// presence change to one retained topic. On the bus it is one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fanout {
    /// The topics to publish on, in this order.
    pub topics: Vec<String>,
    /// The payload, the same on every topic.
    pub payload: Bytes,
    /// Whether the router retains it on each topic.
    pub retain: bool,
    /// For a plain MQTT publish forwarded to other nodes: its properties and
    /// target nodes (see [`crate::cluster_mqtt`]); such a record is handed
    /// to [`ClusterEvents::plain_mqtt`] instead of the router.
    pub mqtt: Option<Box<MqttForward>>,
}

impl Fanout {
    /// `payload` for each of `topics`, not retained.
    pub fn new(topics: Vec<String>, payload: Bytes) -> Fanout {
        Fanout {
            topics,
            payload,
            retain: false,
            mqtt: None,
        }
    }

    /// `payload` on `topic`, retained.
    pub fn retained(topic: String, payload: Bytes) -> Fanout {
        Fanout {
            topics: vec![topic],
            payload,
            retain: true,
            mqtt: None,
        }
    }

    /// The single publishes (topic, payload, retain) it stands for.
    fn publishes(self) -> impl Iterator<Item = (String, Bytes, bool)> {
        let (payload, retain) = (self.payload, self.retain);
        self.topics
            .into_iter()
            .map(move |topic| (topic, payload.clone(), retain))
    }
}

/// Bus records carrying this topic are not published to the router: their
/// payload is a conversation id whose membership changed, and every other
/// node drops its cached copy of that conversation.
pub const CONVERSATION_CHANGED: &str = "$parley/conversation-changed";

/// Most deliveries one bus `publish` call carries.
const MAX_BATCH: usize = 512;

/// Where the chat pipeline's deliveries go. Cheap to clone.
#[derive(Clone)]
pub enum Deliveries {
    /// This node's router, directly.
    Local(ServerPublisher),
    /// The cluster bus, through the node's ordered bus publisher.
    Bus(BusPublisher),
}

/// A fan-out on its way, built by [`Deliveries::outgoing`] and sent with
/// [`Deliveries::send`].
pub struct Outgoing {
    /// The ordering key on the bus (unused locally).
    key: String,
    /// QoS of the record on the bus.
    qos: u8,
    /// The publishes.
    fanout: Fanout,
    /// Which nodes it goes to on the bus.
    route: Route,
    /// Told the bus's answer, if someone waits for it.
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// The outcome of an [`Outgoing`]: ready at once locally, once the bus
/// acknowledged it otherwise.
#[derive(Debug)]
pub enum Pending {
    /// Nothing to wait for.
    Done,
    /// The bus publisher's answer, to come.
    Bus(oneshot::Receiver<Result<(), String>>),
}

impl Pending {
    /// Waits until the publishes are with the router (locally) or durably on the bus.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the bus refused them or the node's bus
    /// publisher has stopped.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self {
            Pending::Done => Ok(()),
            Pending::Bus(answer) => match answer.await {
                Ok(result) => result.map_err(StoreError::Unavailable),
                Err(_) => Err(StoreError::Unavailable(
                    "the cluster bus publisher has stopped".into(),
                )),
            },
        }
    }
}

impl Deliveries {
    /// Prepares `fanout` for sending under ordering `key` (a conversation
    /// id, or a user id for presence), returning it with a handle to wait on.
    /// On the bus it goes to the nodes holding its recipients ([`Route::Resolve`]).
    pub fn outgoing(&self, key: &str, qos: u8, fanout: Fanout) -> (Outgoing, Pending) {
        self.outgoing_to(key, qos, fanout, Route::Resolve)
    }

    /// Like [`Deliveries::outgoing`], going on the bus to the nodes `route`
    /// names ([`Route::Everyone`], or [`Route::Nodes`] for a caller that
    /// knows where the subscribers are). Locally the route does not matter.
    pub fn outgoing_to(
        &self,
        key: &str,
        qos: u8,
        fanout: Fanout,
        route: Route,
    ) -> (Outgoing, Pending) {
        match self {
            Deliveries::Local(_) => (
                Outgoing {
                    key: String::new(),
                    qos,
                    fanout,
                    route,
                    done: None,
                },
                Pending::Done,
            ),
            Deliveries::Bus(_) => {
                let (tx, rx) = oneshot::channel();
                (
                    Outgoing {
                        key: key.to_owned(),
                        qos,
                        fanout,
                        route,
                        done: Some(tx),
                    },
                    Pending::Bus(rx),
                )
            }
        }
    }

    /// Like [`Deliveries::outgoing_to`], telling the bus's answer to `done`
    /// (if given) rather than returning a handle.
    pub fn outgoing_with(
        &self,
        key: &str,
        qos: u8,
        fanout: Fanout,
        route: Route,
        done: Option<oneshot::Sender<Result<(), String>>>,
    ) -> Outgoing {
        Outgoing {
            key: key.to_owned(),
            qos,
            fanout,
            route,
            done,
        }
    }

    /// Sends `outgoing` now (locally) or queues it behind everything this
    /// node sent before (bus). Never blocks.
    pub fn send(&self, outgoing: Outgoing) {
        match self {
            Deliveries::Local(publisher) => publisher.publish_many(outgoing.fanout.publishes()),
            Deliveries::Bus(bus) => bus.enqueue(outgoing),
        }
    }

    /// Sends `fanout` under `key` without waiting for the outcome (presence).
    pub fn send_and_forget(&self, key: &str, qos: u8, fanout: Fanout) {
        let (outgoing, _) = self.outgoing(key, qos, fanout);
        self.send(outgoing);
    }

    /// Sends `fanout` under `key` and waits until it is delivered (locally)
    /// or on the bus.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the bus did not take it.
    pub async fn publish(&self, key: &str, qos: u8, fanout: Fanout) -> Result<(), StoreError> {
        let (outgoing, pending) = self.outgoing(key, qos, fanout);
        self.send(outgoing);
        pending.wait().await
    }

    /// Sends `fanout` under `key` to exactly the nodes `nodes` (each gets
    /// every topic; this node too if listed) and waits until it is on the
    /// bus; locally it is published at once. For fan-outs whose subscribers
    /// are not users' inboxes, by a caller that knows which nodes have them
    /// (an empty `nodes` sends nothing on the bus).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the bus did not take it.
    pub async fn publish_to_nodes(
        &self,
        nodes: Vec<u16>,
        key: &str,
        qos: u8,
        fanout: Fanout,
    ) -> Result<(), StoreError> {
        let (outgoing, pending) = self.outgoing_to(key, qos, fanout, Route::Nodes(nodes));
        self.send(outgoing);
        pending.wait().await
    }

    /// A session of `user` on node `node` just became known here: send
    /// again to `node`, with `user`'s topics, what this node sent recently
    /// that did not go there (see [`crate::targeting::RecentFanouts`]).
    /// Nothing to do on a single node.
    pub fn replay_to(&self, user: &str, node: u16) {
        if let Deliveries::Bus(bus) = self {
            let _ = bus.queue.send(Job::Replay {
                user: user.to_owned(),
                node,
            });
        }
    }

    /// Tells the other nodes that conversation `id` changed, so they drop
    /// their cached copy. Nothing to do on a single node.
    pub fn conversation_changed(&self, id: &str) {
        if let Deliveries::Bus(_) = self {
            let fanout = Fanout::new(
                vec![CONVERSATION_CHANGED.to_owned()],
                Bytes::from(id.to_owned()),
            );
            let (outgoing, _) = self.outgoing_to(id, 1, fanout, Route::Everyone);
            self.send(outgoing);
        }
    }
}

/// What the bus publisher's task works through, in order.
enum Job {
    /// A fan-out to send.
    Send(Outgoing),
    /// Send again to `node` what recently skipped it for `user`.
    Replay { user: String, node: u16 },
}

/// The ordered producer of one node: a queue drained by one task.
#[derive(Clone)]
pub struct BusPublisher {
    queue: mpsc::UnboundedSender<Job>,
    targeting: Arc<Targeting>,
}

/// How the bus publisher picks each fan-out's nodes (`[cluster]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetingSettings {
    /// Fan-outs to at least this many topics are broadcast
    /// (`broadcast_min_recipients`).
    pub broadcast_min_recipients: usize,
    /// How long targeted fan-outs are kept to be sent again to a node
    /// whose session became known late (`join_replay_ms`).
    pub replay_window: Duration,
    /// At most this many bytes of them (`join_replay_max_bytes`).
    pub replay_max_bytes: usize,
}

/// How the bus publisher picks each fan-out's nodes.
struct Targeting {
    /// Where users are; until set, everything is broadcast.
    nodes: std::sync::OnceLock<Arc<dyn RecipientNodes>>,
    settings: TargetingSettings,
    counts: Arc<BusCounts>,
}

impl BusPublisher {
    /// Starts the task that publishes to `bus` on behalf of node `node_id`,
    /// routing fan-outs as `settings` say and counting what it produces in
    /// `counts`. It ends once every clone of the returned publisher is
    /// dropped. Until [`BusPublisher::target_with`] is called every fan-out
    /// is broadcast.
    pub fn start(
        bus: Arc<dyn ClusterBus>,
        node_id: u16,
        settings: TargetingSettings,
        counts: Arc<BusCounts>,
    ) -> BusPublisher {
        let (queue, rx) = mpsc::unbounded_channel();
        let targeting = Arc::new(Targeting {
            nodes: std::sync::OnceLock::new(),
            settings,
            counts,
        });
        tokio::spawn(publish_loop(bus, node_id, targeting.clone(), rx));
        BusPublisher { queue, targeting }
    }

    /// From now on, fan-outs go only to the nodes `nodes` says hold their
    /// recipients (see [`crate::targeting`]). Set once, at start-up.
    pub fn target_with(&self, nodes: Arc<dyn RecipientNodes>) {
        let _ = self.targeting.nodes.set(nodes);
    }

    fn enqueue(&self, outgoing: Outgoing) {
        if let Err(mpsc::error::SendError(Job::Send(outgoing))) =
            self.queue.send(Job::Send(outgoing))
        {
            if let Some(done) = outgoing.done {
                let _ = done.send(Err("the cluster bus publisher has stopped".into()));
            }
        }
    }
}

/// Publishes queued deliveries in order, one record per fan-out and node
/// (or one broadcast record) and one `publish_to` call per batch.
async fn publish_loop(
    bus: Arc<dyn ClusterBus>,
    node_id: u16,
    targeting: Arc<Targeting>,
    mut queue: mpsc::UnboundedReceiver<Job>,
) {
    let mut batch = Vec::new();
    let settings = targeting.settings;
    let mut recent = RecentFanouts::new(settings.replay_window, settings.replay_max_bytes);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let deliveries = batch.len();
        let mut records = Vec::with_capacity(deliveries);
        let mut waiting = Vec::with_capacity(deliveries);
        let now = std::time::Instant::now();
        for job in batch.drain(..) {
            match job {
                Job::Send(mut outgoing) => {
                    waiting.extend(outgoing.done.take());
                    records.extend(targeting.records(outgoing, node_id, &mut recent, now));
                }
                Job::Replay { user, node } => {
                    let replays = recent.replay_for(now, &user, node);
                    BusCounts::add(&targeting.counts.replayed, replays.len() as u64);
                    records.extend(replays.into_iter().filter_map(|replay| {
                        let Replay {
                            key,
                            qos,
                            topics,
                            payload,
                            retain,
                        } = replay;
                        let fanout = Fanout {
                            topics,
                            payload,
                            retain,
                            mqtt: None,
                        };
                        bus_record(key, qos, fanout, node_id)
                            .map(|record| (Audience::Node(node), record))
                    }));
                }
            }
        }
        let counts = &targeting.counts;
        counts
            .replay_overflowed
            .store(recent.overflowed, std::sync::atomic::Ordering::Relaxed);
        let targeted = records
            .iter()
            .filter(|(audience, _)| *audience != Audience::Everyone)
            .count();
        BusCounts::add(&counts.produced_targeted, targeted as u64);
        BusCounts::add(
            &counts.produced_broadcast,
            (records.len() - targeted) as u64,
        );
        let result = bus.publish_to(records).await.map_err(|e| e.to_string());
        if let Err(e) = &result {
            warn!(error = %e, deliveries, "cluster bus publish failed");
        }
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
}

impl Targeting {
    /// The records of `outgoing`, published by node `node_id`: one per node
    /// holding a recipient, or one broadcast record, or none (no topic, or
    /// no recipient on any node). A targeted fan-out is kept in `recent`
    /// (as sent at `now`) to be replayed to nodes it skipped.
    fn records(
        &self,
        outgoing: Outgoing,
        node_id: u16,
        recent: &mut RecentFanouts,
        now: std::time::Instant,
    ) -> Vec<(Audience, BusRecord)> {
        let Outgoing {
            key,
            qos,
            fanout,
            route,
            ..
        } = outgoing;
        if fanout.topics.is_empty() {
            return Vec::new();
        }
        let Fanout {
            topics,
            payload,
            retain,
            mqtt,
        } = fanout;
        let nodes = self.nodes.get().map(|nodes| nodes.as_ref());
        // Kept for replays when the topics decide where it goes.
        let kept = matches!(route, Route::Resolve).then(|| topics.clone());
        match resolve(route, topics, nodes, self.settings.broadcast_min_recipients) {
            Routed::Everyone(topics) => bus_record(
                key,
                qos,
                Fanout {
                    topics,
                    payload,
                    retain,
                    mqtt,
                },
                node_id,
            )
            .map(|record| (Audience::Everyone, record))
            .into_iter()
            .collect(),
            Routed::Nodes(per_node) => {
                if per_node.is_empty() {
                    BusCounts::add(&self.counts.without_recipients, 1);
                }
                if let Some(topics) = kept {
                    recent.remember(
                        now,
                        Replay {
                            key: key.clone(),
                            qos,
                            topics,
                            payload: payload.clone(),
                            retain,
                        },
                        per_node.keys().copied().collect(),
                    );
                }
                per_node
                    .into_iter()
                    .filter_map(|(node, topics)| {
                        let fanout = Fanout {
                            topics,
                            payload: payload.clone(),
                            retain,
                            mqtt: mqtt.as_deref().map(|mqtt| for_node(mqtt, node)),
                        };
                        bus_record(key.clone(), qos, fanout, node_id)
                            .map(|record| (Audience::Node(node), record))
                    })
                    .collect()
            }
        }
    }
}

/// What node `node`'s copy of a forwarded plain MQTT publish carries: the
/// same properties, naming only `node` among its targets (the shared groups
/// it serves), since no other node reads that copy.
fn for_node(mqtt: &MqttForward, node: u16) -> Box<MqttForward> {
    Box::new(MqttForward {
        nodes: mqtt
            .nodes
            .iter()
            .filter(|target| target.node == node)
            .cloned()
            .collect(),
        ..mqtt.clone()
    })
}

/// The bus record of `fanout` under `key`, published by node `node_id`;
/// `None` for a fan-out to no topic (a typing indicator in a group with no
/// other member), which has nothing to deliver.
fn bus_record(key: String, qos: u8, fanout: Fanout, node_id: u16) -> Option<BusRecord> {
    (!fanout.topics.is_empty()).then(|| BusRecord {
        key,
        topics: fanout.topics,
        payload: fanout.payload.to_vec(),
        qos,
        retain: fanout.retain,
        origin_node: node_id,
        mqtt: fanout.mqtt,
    })
}

/// What a consumed record asks of this node besides routing.
pub trait ClusterEvents: Send + Sync + 'static {
    /// Conversation `id` changed on another node: forget any cached copy.
    fn conversation_changed(&self, id: &str);

    /// A session directory change (see [`crate::directory`]), announced by
    /// node `origin` (this one included).
    fn session_directory_changed(&self, _payload: &[u8], _origin: u16) {}

    /// A presence record on `topic` went by (it is published to the router too).
    fn presence_seen(&self, _topic: &str, _payload: &[u8]) {}

    /// A forwarded plain MQTT publish (a record with [`BusRecord::mqtt`]),
    /// from any node (this one included); not published to the router here.
    fn plain_mqtt(&self, _record: BusRecord) {}

    /// A change of node `origin`'s MQTT routes (on [`MQTT_ROUTES`]).
    fn mqtt_routes_changed(&self, _payload: &[u8], _origin: u16) {}
}

/// Bus records carrying this topic are not published to the router: their
/// payload is a change of the publishing node's plain MQTT routes (see
/// [`crate::cluster_mqtt`]).
pub const MQTT_ROUTES: &str = "$parley/mqtt-routes";

/// The events of a node with a session directory: conversation changes to
/// the chat service, directory changes and presence records to the directory.
pub struct WithDirectory {
    /// The chat service.
    pub chat: Arc<dyn ClusterEvents>,
    /// The node's session directory.
    pub directory: Arc<crate::directory::ClusterDirectory>,
}

impl ClusterEvents for WithDirectory {
    fn conversation_changed(&self, id: &str) {
        self.chat.conversation_changed(id);
    }

    fn session_directory_changed(&self, payload: &[u8], origin: u16) {
        self.directory.apply(payload, origin);
    }

    fn presence_seen(&self, topic: &str, payload: &[u8]) {
        self.directory.presence_seen(topic, payload);
    }
}

/// The events of a node that routes plain MQTT across the cluster:
/// `inner`'s, with plain MQTT routes and forwarded publishes going to `mqtt`.
pub struct WithPlainMqtt {
    /// Every other event.
    pub inner: Arc<dyn ClusterEvents>,
    /// The node's plain MQTT routing.
    pub mqtt: Arc<dyn ClusterEvents>,
}

impl ClusterEvents for WithPlainMqtt {
    fn conversation_changed(&self, id: &str) {
        self.inner.conversation_changed(id);
    }

    fn session_directory_changed(&self, payload: &[u8], origin: u16) {
        self.inner.session_directory_changed(payload, origin);
    }

    fn presence_seen(&self, topic: &str, payload: &[u8]) {
        self.inner.presence_seen(topic, payload);
    }

    fn plain_mqtt(&self, record: BusRecord) {
        self.mqtt.plain_mqtt(record);
    }

    fn mqtt_routes_changed(&self, payload: &[u8], origin: u16) {
        self.mqtt.mqtt_routes_changed(payload, origin);
    }
}

/// Subscribes node `node_id` to `bus` (so every record published after this
/// returns reaches it) and spawns the task that hands each record to the
/// local router through `publisher`, acknowledging it afterwards, until
/// `shutdown` is cancelled.
///
/// # Errors
///
/// The bus's error if it cannot subscribe.
/// Records read are counted in `counts`.
pub async fn spawn_consumer(
    bus: &dyn ClusterBus,
    node_id: u16,
    publisher: ServerPublisher,
    events: Arc<dyn ClusterEvents>,
    counts: Arc<BusCounts>,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Result<(), StoreError> {
    let consumer = bus.subscribe(node_id).await?;
    info!(node_id, "consuming the cluster bus");
    tasks.spawn(consume_loop(
        consumer, node_id, publisher, events, counts, shutdown,
    ));
    Ok(())
}

async fn consume_loop(
    mut consumer: Box<dyn BusConsumer>,
    node_id: u16,
    publisher: ServerPublisher,
    events: Arc<dyn ClusterEvents>,
    counts: Arc<BusCounts>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return,
            delivery = consumer.next() => delivery,
        };
        let delivery = match delivery {
            Ok(delivery) => {
                backoff = Duration::from_millis(100);
                delivery
            }
            Err(e) => {
                warn!(error = %e, ?backoff, "reading the cluster bus failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        match delivery.position.stream {
            Audience::Everyone => BusCounts::add(&counts.read_broadcast, 1),
            Audience::Node(_) => BusCounts::add(&counts.read_targeted, 1),
        }
        publisher.publish_many(consumed(delivery.record, node_id, events.as_ref()));
        if let Err(e) = consumer.ack(delivery.position).await {
            warn!(error = %e, position = ?delivery.position, "acknowledging a cluster bus record failed");
        }
    }
}

/// What node `node_id` publishes to its router for a consumed `record`: its
/// payload on each of its topics, in order. The conversation-changed and
/// session directory topics are not published: a conversation change made
/// on another node and every directory change are passed to `events`, as is
/// every presence record (which is published).
fn consumed(
    record: BusRecord,
    node_id: u16,
    events: &dyn ClusterEvents,
) -> Vec<(String, Bytes, bool)> {
    if record.mqtt.is_some() {
        events.plain_mqtt(record);
        return Vec::new();
    }
    let payload = Bytes::from(record.payload);
    let mut publishes = Vec::with_capacity(record.topics.len());
    for topic in record.topics {
        if topic == CONVERSATION_CHANGED {
            if record.origin_node != node_id {
                events.conversation_changed(&String::from_utf8_lossy(&payload));
            }
        } else if topic == crate::directory::events::DIRECTORY_TOPIC {
            events.session_directory_changed(&payload, record.origin_node);
        } else if topic == MQTT_ROUTES {
            events.mqtt_routes_changed(&payload, record.origin_node);
        } else {
            if topic.starts_with("p/") && record.retain {
                events.presence_seen(&topic, &payload);
            }
            publishes.push((topic, payload.clone(), record.retain));
        }
    }
    publishes
}

/// Opens the bus `config.cluster` names, or `None` without one. The Kafka
/// bus creates its topic if asked to and waits until its partitions are known.
///
/// # Errors
///
/// If the bus cannot be reached.
pub async fn open_bus(
    config: &crate::config::Config,
) -> anyhow::Result<Option<Arc<dyn ClusterBus>>> {
    use anyhow::Context;
    match config.cluster.bus {
        crate::config::BusKind::None => Ok(None),
        crate::config::BusKind::Kafka => {
            let k = &config.cluster.kafka;
            let mut settings = KafkaConfig::new(k.bootstrap_servers.clone(), k.topic.clone());
            settings.partitions = i32::try_from(k.partitions).unwrap_or(i32::MAX);
            settings.replication_factor = k.replication_factor.map(i32::from);
            settings.create_topic = k.create_topic;
            settings.timeout = Duration::from_millis(k.timeout_ms);
            settings.max_record_bytes = k.max_record_bytes;
            let bus = KafkaBus::connect(settings).await.with_context(|| {
                format!(
                    "connecting to the Kafka bus (topic {} on {})",
                    k.topic, k.bootstrap_servers
                )
            })?;
            Ok(Some(Arc::new(bus)))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn inboxes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("u/member{i:02}/i")).collect()
    }

    #[test]
    fn a_fan_out_is_one_record_with_every_topic_and_the_payload_once() {
        let fanout = Fanout::new(inboxes(50), Bytes::from_static(b"envelope"));
        let record = bus_record("g1".into(), 1, fanout.clone(), 7).expect("a record");
        assert_eq!(
            record,
            BusRecord {
                key: "g1".into(),
                topics: inboxes(50),
                payload: b"envelope".to_vec(),
                qos: 1,
                retain: false,
                origin_node: 7,
                mqtt: None,
            }
        );
        let presence = Fanout::retained("p/alice".into(), Bytes::from_static(b"on"));
        let record = bus_record("alice".into(), 1, presence, 7).expect("a record");
        assert_eq!(
            (record.topics, record.retain),
            (vec!["p/alice".into()], true)
        );
        let nobody = Fanout::new(Vec::new(), Bytes::from_static(b"typing"));
        assert_eq!(bus_record("g1".into(), 0, nobody, 7), None);
    }

    /// Remembers the conversations it was told about.
    #[derive(Default)]
    struct Changes(Mutex<Vec<String>>);

    impl ClusterEvents for Changes {
        fn conversation_changed(&self, id: &str) {
            self.0.lock().unwrap().push(id.to_owned());
        }
    }

    #[test]
    fn a_consumed_record_is_published_on_each_topic_in_order() {
        let changes = Changes::default();
        let record = bus_record(
            "g1".into(),
            1,
            Fanout::new(inboxes(3), Bytes::from_static(b"m")),
            2,
        )
        .unwrap();
        let payload = Bytes::from_static(b"m");
        assert_eq!(
            consumed(record, 1, &changes),
            inboxes(3)
                .into_iter()
                .map(|t| (t, payload.clone(), false))
                .collect::<Vec<_>>()
        );
        assert!(changes.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_conversation_change_is_an_event_on_other_nodes_and_never_published() {
        let changes = Changes::default();
        let change = Fanout::new(
            vec![CONVERSATION_CHANGED.to_owned()],
            Bytes::from_static(b"g1"),
        );
        let record = bus_record("g1".into(), 1, change, 2).unwrap();
        assert_eq!(consumed(record.clone(), 2, &changes), Vec::new());
        assert!(
            changes.0.lock().unwrap().is_empty(),
            "its own change is not news to a node"
        );
        assert_eq!(consumed(record, 1, &changes), Vec::new());
        assert_eq!(*changes.0.lock().unwrap(), ["g1"]);
    }
}
