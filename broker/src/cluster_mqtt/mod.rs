//! Plain MQTT across the nodes of a cluster: topics outside the chat
//! namespace (allowed by `[[acl]]` rules), their retained messages and
//! wills, delivered to subscribers on any node, the EMQX way.
//!
//! - **Route table** ([`routes`]): every node knows which nodes have at
//!   least one subscription (of a live or a persistent session) matching
//!   which filter. A node's engine reports a filter's first subscriber and
//!   its last ([`RouterEvents`]); the node announces those changes on the
//!   bus ([`events`], keyed by the node) and every node applies them to its
//!   copy. A node joining says `hello` and sends its whole set; the others
//!   answer with theirs. A dead node's routes go when its node lease does.
//! - **Forwarding**: a plain publish accepted here is routed locally as on
//!   a single node and, if the table names other nodes, forwarded on the
//!   bus to exactly those nodes, the way the chat pipeline's fan-outs reach
//!   the nodes of their recipients ([`crate::targeting`]): one record per
//!   node on that node's own stream, with its MQTT 5 properties and what
//!   that node serves ([`persistence::MqttForward`]), keyed by topic. A
//!   node without a matching subscription never reads it. A QoS 1/2
//!   publish is acknowledged once the bus has every record. Receiving nodes
//!   route it into their engine without forwarding it again.
//! - **Shared groups**: one delivery per group in the cluster. The
//!   publishing node serves a group that has a member here; otherwise one
//!   node with members, in turn, is named in the record to serve it.
//! - **Retained messages** go to every node (the broadcast stream). The accepting node writes each
//!   (and each deletion) to the store first ([`ClusterMqttStore`], with a
//!   version), every node keeps the highest version per topic, and a
//!   starting node loads the whole set.
//! - **Wills** published here (at once or after their delay) are forwarded
//!   like any publish. The will of a live connection is also kept in the
//!   store; when a node dies without ending its connections, the first node
//!   to sweep its rows after its lease ran out publishes them.
//!
//! `docs/cluster.md` ("Plain MQTT across nodes") has the design and its costs.

pub mod events;
pub mod routes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chat_core::topics::{is_chat_namespace, is_shared_subscription};
use parley_engine::message::{ForwardedProperties, Message, QoS};
use parley_engine::retained::RetainError;
use parley_engine::router::{PublishReport, Route, Router, RouterEvents, Will, SERVER_NAMESPACE};
use persistence::kafka::codec;
use persistence::{BusRecord, ClusterMqttStore, MqttForward, NodeTarget, StoreError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::{ClusterEvents, Deliveries, Fanout, Pending, MQTT_ROUTES};
use crate::targeting::Route as TargetRoute;
use events::RouteEvent;
use routes::RouteTable;

/// Most forwards or route changes one pass of a task takes.
const BATCH: usize = 512;

/// How long after a failed route announcement the node sends its whole set again.
const ROUTES_RETRY: Duration = Duration::from_secs(1);

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterMqttCounts {
    /// Plain MQTT records this node produced (publishes and wills).
    pub forwarded: AtomicU64,
    /// Plain MQTT records of other nodes this node routed.
    pub received: AtomicU64,
    /// Plain MQTT records of other nodes read but not for this node.
    pub not_addressed: AtomicU64,
    /// Forwards that failed (bus or store): their publisher got an error.
    pub forward_errors: AtomicU64,
    /// Retained messages written to the store.
    pub retained_written: AtomicU64,
    /// Retained messages of other nodes kept although over their owner's
    /// quota here (the accepting node's view of the quota wins).
    pub retained_over_quota: AtomicU64,
    /// Retained messages loaded from the store at start.
    pub retained_loaded: AtomicU64,
    /// Route change records this node produced.
    pub route_records: AtomicU64,
    /// Route announcements the bus refused (the whole set is sent again).
    pub route_errors: AtomicU64,
    /// Nodes whose routes were dropped because their lease ran out.
    pub nodes_expired: AtomicU64,
    /// Reads and writes of the store that failed (live nodes, retained
    /// set, guarded wills).
    pub store_errors: AtomicU64,
    /// Wills of connections on dead nodes this node published.
    pub orphaned_wills: AtomicU64,
}

/// What changed in this node's routes, for the announcer.
enum Announce {
    Added(Route),
    Removed(Route),
    /// Send the whole set (joining, answering a hello, repairing).
    Snapshot,
    /// Say hello (joining).
    Hello,
}

/// A publish on its way to the bus.
struct ForwardJob {
    fanout: Fanout,
    qos: u8,
    /// Told the bus's answer, if the publisher waits for it.
    done: Option<oneshot::Sender<Result<(), String>>>,
    /// For a retained publish: seconds left of its expiry, for the store.
    retained_expiry: Option<Option<u32>>,
}

/// The retained messages' versions as this node knows them.
#[derive(Default)]
struct RetainedState {
    /// The highest version applied per topic.
    known: HashMap<Arc<str>, u64>,
    /// Topics with a local retained publish not yet written to the store:
    /// other nodes' copies wait until its version is known.
    pending_local: HashMap<Arc<str>, usize>,
    /// Other nodes' copies that arrived meanwhile (the newest of each).
    deferred: HashMap<Arc<str>, (u64, Message, String)>,
}

/// A node's part in routing plain MQTT across the cluster.
pub struct ClusterMqtt {
    node_id: u16,
    router: Arc<Router>,
    table: RouteTable,
    deliveries: Deliveries,
    store: Arc<dyn ClusterMqttStore>,
    retained: Mutex<RetainedState>,
    announce: mpsc::UnboundedSender<Announce>,
    forward: mpsc::UnboundedSender<ForwardJob>,
    /// Bumped whenever another node's routes changed (or expired) or one of
    /// its records was read here (see [`ClusterMqtt::wait_until`]).
    changed: watch::Sender<u64>,
    /// What it did, for `/metrics`.
    pub counts: ClusterMqttCounts,
}

/// The engine's events, passed on to the node's [`ClusterMqtt`].
struct Hooks(Weak<ClusterMqtt>);

impl RouterEvents for Hooks {
    fn route_added(&self, route: &Route) {
        if !is_plain_route(route) {
            return;
        }
        if let Some(this) = self.0.upgrade() {
            this.table.add(this.node_id, route.clone());
            let _ = this.announce.send(Announce::Added(route.clone()));
        }
    }

    fn route_removed(&self, route: &Route) {
        if !is_plain_route(route) {
            return;
        }
        if let Some(this) = self.0.upgrade() {
            this.table.remove(this.node_id, route);
            let _ = this.announce.send(Announce::Removed(route.clone()));
        }
    }

    fn will_published(&self, message: &Message, namespace: &str) {
        if let Some(this) = self.0.upgrade() {
            let targets = this.table.targets(&message.topic);
            if message.retain || !targets.is_empty() {
                if message.retain {
                    this.begin_local_retained(&message.topic);
                }
                this.enqueue(message.clone(), namespace, targets, false);
            }
        }
    }
}

impl ClusterMqtt {
    /// Node `node_id`'s plain MQTT routing: it follows `router`'s routes
    /// and wills (install it before any session is restored or connects),
    /// sends through `deliveries` (the bus) and keeps retained messages in
    /// `store`. Call [`ClusterMqtt::start`] once the node consumes the bus.
    pub fn new(
        node_id: u16,
        router: Arc<Router>,
        deliveries: Deliveries,
        store: Arc<dyn ClusterMqttStore>,
    ) -> Arc<ClusterMqtt> {
        let (announce, announced) = mpsc::unbounded_channel();
        let (forward, forwarded) = mpsc::unbounded_channel();
        let this = Arc::new(ClusterMqtt {
            node_id,
            router: router.clone(),
            table: RouteTable::new(node_id),
            deliveries,
            store,
            retained: Mutex::new(RetainedState::default()),
            announce,
            forward,
            changed: watch::Sender::new(0),
            counts: ClusterMqttCounts::default(),
        });
        router.set_events(Arc::new(Hooks(Arc::downgrade(&this))));
        tokio::spawn(announce_loop(Arc::downgrade(&this), announced));
        tokio::spawn(forward_loop(Arc::downgrade(&this), forwarded));
        this
    }

    /// Joins the cluster's routing: says hello with this node's routes (the
    /// others answer with theirs), loads the retained messages from the
    /// store and starts dropping dead nodes' routes every `sweep_every`,
    /// until `shutdown`. The node must already consume the bus.
    ///
    /// # Errors
    ///
    /// If the retained messages cannot be read.
    pub async fn start(
        self: &Arc<Self>,
        sweep_every: Duration,
        shutdown: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<(), StoreError> {
        let _ = self.announce.send(Announce::Hello);
        let _ = self.announce.send(Announce::Snapshot);
        self.load_retained().await?;
        // Wills an earlier run of this node (a crash) left behind.
        self.publish_orphaned_wills(Some(self.node_id)).await;
        tasks.spawn(sweep(Arc::downgrade(self), sweep_every, shutdown));
        Ok(())
    }

    /// Tells the other nodes that this node has no routes any more (a
    /// graceful shutdown, once its connections are closed) and waits until
    /// the bus has it, so they stop forwarding to it at once rather than
    /// when its lease is gone.
    pub async fn leave(&self) {
        let record = RouteEvent::Snapshot(Vec::new());
        let fanout = Fanout::new(vec![MQTT_ROUTES.to_owned()], Bytes::from(record.encode()));
        self.counts.route_records.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self
            .deliveries
            .publish(&events::key(self.node_id), 1, fanout)
            .await
        {
            self.counts.route_errors.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, "could not withdraw this node's MQTT routes; they go with its lease");
        }
    }

    /// Keeps `will` of connection `connection` (this node's registry id) of
    /// `user`'s `client_id` in the store while the connection lives, so
    /// another node publishes it if this node dies. A failure is counted
    /// and logged: the will then only lives here.
    pub async fn guard_will(&self, user: &str, client_id: &str, connection: u64, will: &Will) {
        let record = BusRecord {
            key: will.message.topic.to_string(),
            topics: vec![will.message.topic.to_string()],
            payload: will.message.payload.to_vec(),
            qos: will.message.qos as u8,
            retain: will.message.retain,
            origin_node: self.node_id,
            mqtt: Some(Box::new(forward_of(
                &will.message,
                user,
                Vec::new(),
                Instant::now(),
            ))),
        };
        let result = match codec::encode_value(&record) {
            Ok(value) => {
                self.store
                    .guard_will(
                        user,
                        client_id,
                        self.node_id,
                        connection,
                        &value,
                        will.delay_secs,
                    )
                    .await
            }
            Err(e) => Err(StoreError::Corrupt(e.to_string())),
        };
        if let Err(e) = result {
            self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
            warn!(%user, %client_id, error = %e, "could not keep the will in the store; it is lost if this node dies");
        }
    }

    /// The connection whose will was guarded ended (its will, if due, was
    /// published here): forgets it.
    pub async fn drop_will(&self, user: &str, client_id: &str, connection: u64) {
        if let Err(e) = self
            .store
            .drop_will(user, client_id, self.node_id, connection)
            .await
        {
            self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
            warn!(%user, %client_id, error = %e, "could not drop a guarded will; it is published if this node dies");
        }
    }

    /// Takes the wills of connections on dead nodes (and on an earlier run
    /// of `own_node`) and publishes each, after its Will Delay, as its
    /// user: routed here and forwarded like any publish.
    async fn publish_orphaned_wills(self: &Arc<Self>, own_node: Option<u16>) {
        let wills = match self.store.take_orphaned_wills(own_node).await {
            Ok(wills) => wills,
            Err(e) => {
                self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "could not take the wills of dead nodes");
                return;
            }
        };
        for orphan in wills {
            let record = match codec::decode(Some(b"will"), Some(&orphan.will)) {
                Ok(record) => record,
                Err(e) => {
                    warn!(user = %orphan.user, error = %e, "skipping a stored will that does not decode");
                    continue;
                }
            };
            info!(user = %orphan.user, client_id = %orphan.client_id, delay_secs = orphan.delay_secs, "publishing the will of a connection on a dead node");
            let this = self.clone();
            let delay = Duration::from_secs(orphan.delay_secs.into()).min(Duration::from_secs(
                this.router.config().max_will_delay_secs.into(),
            ));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let now = Instant::now();
                let message = message_of(record, now);
                let namespace = orphan.user.as_str();
                this.counts.orphaned_wills.fetch_add(1, Ordering::Relaxed);
                let (result, _) = this.publish(message.clone(), namespace, now);
                if result.is_err() {
                    // Over the retained quota: delivered, not retained.
                    let mut message = message;
                    message.retain = false;
                    let _ = this.publish(message, namespace, now);
                }
            });
        }
    }

    /// A forwarded publish was refused by the bus (its publisher is told).
    pub fn forward_refused(&self) {
        self.counts.forward_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        &self.table
    }

    /// Waits until `done` holds, checking it again after every change of
    /// another node's routes and every record of another node read here.
    pub async fn wait_until(&self, done: impl Fn(&ClusterMqtt) -> bool) {
        let mut changes = self.changed.subscribe();
        while !done(self) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Routes a client's plain publish in `namespace` (its user) here and
    /// forwards it to the other nodes that need it. Returns the engine's
    /// outcome and, if it was forwarded, the bus's answer to wait for before
    /// acknowledging it.
    pub fn publish(
        &self,
        message: Message,
        namespace: &str,
        now: Instant,
    ) -> (Result<PublishReport, RetainError>, Option<Pending>) {
        let targets = self.table.targets(&message.topic);
        if targets.is_empty() && !message.retain {
            return (self.router.publish(message, namespace, now), None);
        }
        if message.retain {
            self.begin_local_retained(&message.topic);
        }
        let copy = message.clone();
        match self.router.publish(message, namespace, now) {
            Ok(report) => {
                let wait = copy.qos != QoS::AtMostOnce;
                let pending = self.enqueue(copy, namespace, targets, wait);
                (Ok(report), pending)
            }
            Err(e) => {
                if copy.retain {
                    self.end_local_retained(&copy.topic, None);
                }
                (Err(e), None)
            }
        }
    }

    /// Queues `message` for the bus, for `targets` (and every node if
    /// retained); returns the bus's answer to wait for if `wait`.
    fn enqueue(
        &self,
        message: Message,
        namespace: &str,
        targets: Vec<NodeTarget>,
        wait: bool,
    ) -> Option<Pending> {
        let mqtt = forward_of(&message, namespace, targets, Instant::now());
        let retained_expiry = message.retain.then_some(mqtt.message_expiry_secs);
        let (done, pending) = match wait {
            true => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(Pending::Bus(rx)))
            }
            false => (None, None),
        };
        let job = ForwardJob {
            fanout: Fanout {
                topics: vec![message.topic.to_string()],
                payload: message.payload,
                retain: message.retain,
                mqtt: Some(Box::new(mqtt)),
            },
            qos: message.qos as u8,
            done,
            retained_expiry,
        };
        if let Err(mpsc::error::SendError(job)) = self.forward.send(job) {
            self.counts.forward_errors.fetch_add(1, Ordering::Relaxed);
            if let Some(done) = job.done {
                let _ = done.send(Err("the plain MQTT forwarder has stopped".into()));
            }
        }
        pending
    }

    /// A local retained publish of `topic` is on its way to the store.
    fn begin_local_retained(&self, topic: &Arc<str>) {
        *self
            .lock_retained()
            .pending_local
            .entry(topic.clone())
            .or_default() += 1;
    }

    /// A local retained publish of `topic` was written with `version` (or
    /// not at all): copies of other nodes that waited for it and are newer
    /// are kept now.
    fn end_local_retained(&self, topic: &str, version: Option<u64>) {
        let mut state = self.lock_retained();
        if let Some(version) = version {
            let known = state.known.entry(Arc::from(topic)).or_default();
            *known = (*known).max(version);
        }
        let Some(count) = state.pending_local.get_mut(topic) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        state.pending_local.remove(topic);
        if let Some((version, message, namespace)) = state.deferred.remove(topic) {
            self.keep_retained(&mut state, version, message, &namespace);
        }
    }

    /// Keeps another node's retained `message` (`version`) unless a newer
    /// one is known or a local one is on its way; true if kept now.
    fn apply_retained(&self, version: u64, message: Message, namespace: &str) -> bool {
        let mut state = self.lock_retained();
        if state
            .known
            .get(&message.topic)
            .is_some_and(|known| *known >= version)
        {
            return false;
        }
        if state.pending_local.contains_key(&message.topic) {
            let newer = state
                .deferred
                .get(&message.topic)
                .is_none_or(|(v, _, _)| *v < version);
            if newer {
                let topic = message.topic.clone();
                state
                    .deferred
                    .insert(topic, (version, message, namespace.to_owned()));
            }
            return false;
        }
        self.keep_retained(&mut state, version, message, namespace);
        true
    }

    fn keep_retained(
        &self,
        state: &mut RetainedState,
        version: u64,
        message: Message,
        namespace: &str,
    ) {
        state.known.insert(message.topic.clone(), version);
        let owner = if namespace.is_empty() {
            SERVER_NAMESPACE
        } else {
            namespace
        };
        if !self.router.keep_retained(message, owner) {
            self.counts
                .retained_over_quota
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Loads every retained message of the store into the engine.
    async fn load_retained(&self) -> Result<(), StoreError> {
        let rows = self.store.retained().await?;
        let now = Instant::now();
        let mut loaded = 0u64;
        for row in rows {
            let (message, namespace) = match &row.message {
                Some(value) => match codec::decode(Some(row.topic.as_bytes()), Some(value)) {
                    Ok(record) => {
                        let namespace = record
                            .mqtt
                            .as_ref()
                            .map(|m| m.namespace.clone())
                            .unwrap_or_default();
                        let mut message = message_of(record, now);
                        message.expires_at =
                            row.expires_in_ms.map(|ms| now + Duration::from_millis(ms));
                        message.retain = true;
                        (message, namespace)
                    }
                    Err(e) => {
                        warn!(topic = %row.topic, error = %e, "skipping a stored retained message that does not decode");
                        continue;
                    }
                },
                None => (deletion(&row.topic), String::new()),
            };
            if self.apply_retained(row.version, message, &namespace) && row.message.is_some() {
                loaded += 1;
            }
        }
        self.counts
            .retained_loaded
            .fetch_add(loaded, Ordering::Relaxed);
        info!(retained = loaded, "retained MQTT messages loaded");
        Ok(())
    }

    /// Routes a plain MQTT record another node forwarded.
    fn receive(&self, record: BusRecord) {
        if record.origin_node == self.node_id {
            return;
        }
        let Some(mqtt) = record.mqtt.as_deref() else {
            return;
        };
        let _bump = Bump(&self.changed);
        let target = mqtt.nodes.iter().find(|t| t.node == self.node_id).cloned();
        if target.is_none() && !record.retain {
            self.counts.not_addressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counts.received.fetch_add(1, Ordering::Relaxed);
        let (version, namespace) = (mqtt.retained_version, mqtt.namespace.clone());
        let message = message_of(record, Instant::now());
        if message.retain {
            self.apply_retained(version, message.clone(), &namespace);
        }
        let shared = target.map(|t| t.shared).unwrap_or_default();
        let report = self
            .router
            .publish_forwarded(message, Instant::now(), &|group| {
                shared
                    .iter()
                    .any(|g| *g.namespace == *group.namespace && *g.filter == *group.filter)
            });
        let lost = report
            .dropped
            .iter()
            .filter(|(_, qos)| *qos != QoS::AtMostOnce)
            .count();
        if lost > 0 {
            warn!(lost, "forwarded publish dropped by full subscriber queues");
        }
    }

    /// Applies a route change announced by node `origin`.
    fn routes_changed(&self, payload: &[u8], origin: u16) {
        if origin == self.node_id {
            return;
        }
        let _bump = Bump(&self.changed);
        match RouteEvent::decode(payload) {
            Some(RouteEvent::Added(routes)) => {
                for route in routes {
                    self.table.add(origin, route);
                }
            }
            Some(RouteEvent::Removed(routes)) => {
                for route in &routes {
                    self.table.remove(origin, route);
                }
            }
            Some(RouteEvent::Snapshot(routes)) => self.table.replace(origin, routes),
            Some(RouteEvent::Hello) => {
                let _ = self.announce.send(Announce::Snapshot);
            }
            None => warn!(origin, "skipping a route change this version does not know"),
        }
    }

    fn lock_retained(&self) -> std::sync::MutexGuard<'_, RetainedState> {
        self.retained.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClusterEvents for ClusterMqtt {
    fn conversation_changed(&self, _id: &str) {}

    fn plain_mqtt(&self, record: BusRecord) {
        self.receive(record);
    }

    fn mqtt_routes_changed(&self, payload: &[u8], origin: u16) {
        self.routes_changed(payload, origin);
    }
}

/// Whether the other nodes need to know `route`. A filter in the chat
/// namespace (an inbox, a typing feed, presence, answers) matches only what
/// the chat pipeline delivers, which reaches the nodes of its recipients
/// through the session directory ([`crate::targeting`]), never a forwarded
/// plain publish; announcing it would cost a bus record per chat connection.
fn is_plain_route(route: &Route) -> bool {
    let filter: &str = &route.filter;
    let filter = match is_shared_subscription(filter) {
        true => filter.splitn(3, '/').nth(2).unwrap_or(""),
        false => filter,
    };
    !is_chat_namespace(filter)
}

/// Bumps a change counter when dropped (after the change it guards).
struct Bump<'a>(&'a watch::Sender<u64>);

impl Drop for Bump<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n += 1);
    }
}

/// What a forwarded record of `message`, published in `namespace` for
/// `targets`, carries besides topic and payload, as of `now`.
fn forward_of(
    message: &Message,
    namespace: &str,
    targets: Vec<NodeTarget>,
    now: Instant,
) -> MqttForward {
    let properties = &message.properties;
    MqttForward {
        namespace: namespace.to_owned(),
        payload_format_indicator: properties.payload_format_indicator,
        content_type: properties.content_type.clone(),
        response_topic: properties.response_topic.clone(),
        correlation_data: properties.correlation_data.as_ref().map(|d| d.to_vec()),
        user_properties: properties.user_properties.clone(),
        // At least a second: an expiry that ran out here would otherwise
        // become "never" on the way.
        message_expiry_secs: message
            .expires_at
            .map(|_| message.remaining_expiry(now).unwrap_or(0).max(1)),
        retained_version: 0,
        nodes: targets,
    }
}

/// The engine message of a forwarded record, as received at `now`.
fn message_of(record: BusRecord, now: Instant) -> Message {
    let mqtt = record.mqtt.map(|m| *m).unwrap_or_default();
    Message {
        topic: Arc::from(record.topics.into_iter().next().unwrap_or_default()),
        payload: Bytes::from(record.payload),
        qos: QoS::from_u8(record.qos).unwrap_or(QoS::AtMostOnce),
        retain: record.retain,
        properties: ForwardedProperties {
            payload_format_indicator: mqtt.payload_format_indicator,
            content_type: mqtt.content_type,
            response_topic: mqtt.response_topic,
            correlation_data: mqtt.correlation_data.map(Bytes::from),
            user_properties: mqtt.user_properties,
        },
        expires_at: mqtt
            .message_expiry_secs
            .map(|secs| now + Duration::from_secs(secs.into())),
        origin: None,
    }
}

/// A retained deletion of `topic` (an empty retained payload).
fn deletion(topic: &str) -> Message {
    Message {
        topic: Arc::from(topic),
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: ForwardedProperties::default(),
        expires_at: None,
        origin: None,
    }
}

/// Sends this node's route changes, in order, batching what queued up.
async fn announce_loop(this: Weak<ClusterMqtt>, mut queue: mpsc::UnboundedReceiver<Announce>) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let Some(this) = this.upgrade() else { return };
        let mut records: Vec<RouteEvent> = Vec::new();
        for change in batch.drain(..) {
            match change {
                Announce::Added(route) => match records.last_mut() {
                    Some(RouteEvent::Added(routes)) if routes.len() < events::ROUTES_PER_RECORD => {
                        routes.push(route)
                    }
                    _ => records.push(RouteEvent::Added(vec![route])),
                },
                Announce::Removed(route) => match records.last_mut() {
                    Some(RouteEvent::Removed(routes))
                        if routes.len() < events::ROUTES_PER_RECORD =>
                    {
                        routes.push(route)
                    }
                    _ => records.push(RouteEvent::Removed(vec![route])),
                },
                Announce::Snapshot => records.extend(events::snapshot(
                    this.router
                        .routes()
                        .into_iter()
                        .filter(is_plain_route)
                        .collect(),
                )),
                Announce::Hello => records.push(RouteEvent::Hello),
            }
        }
        let key = events::key(this.node_id);
        let mut pending = Vec::with_capacity(records.len());
        for record in &records {
            let fanout = Fanout::new(vec![MQTT_ROUTES.to_owned()], Bytes::from(record.encode()));
            let (outgoing, done) = this.deliveries.outgoing(&key, 1, fanout);
            this.deliveries.send(outgoing);
            pending.push(done);
        }
        this.counts
            .route_records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let mut failed = false;
        for done in pending {
            if let Err(e) = done.wait().await {
                warn!(error = %e, "could not announce a change of this node's MQTT routes");
                failed = true;
            }
        }
        if failed {
            this.counts.route_errors.fetch_add(1, Ordering::Relaxed);
            let retry = this.announce.clone();
            drop(this);
            tokio::time::sleep(ROUTES_RETRY).await;
            let _ = retry.send(Announce::Snapshot);
        }
    }
}

/// Sends forwarded publishes to the bus in order, writing retained ones to
/// the store first.
async fn forward_loop(this: Weak<ClusterMqtt>, mut queue: mpsc::UnboundedReceiver<ForwardJob>) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let Some(this) = this.upgrade() else { return };
        for mut job in batch.drain(..) {
            let topic = job.fanout.topics[0].clone();
            if let Some(expiry) = job.retained_expiry {
                match this.write_retained(&job, expiry).await {
                    Ok(version) => {
                        if let Some(mqtt) = job.fanout.mqtt.as_mut() {
                            mqtt.retained_version = version;
                        }
                        this.end_local_retained(&topic, Some(version));
                    }
                    Err(e) => {
                        warn!(%topic, error = %e, "could not store a retained MQTT message; not forwarded");
                        this.counts.forward_errors.fetch_add(1, Ordering::Relaxed);
                        this.end_local_retained(&topic, None);
                        if let Some(done) = job.done {
                            let _ = done.send(Err(e.to_string()));
                        }
                        continue;
                    }
                }
            }
            let route = route_of(&job.fanout);
            let outgoing = this
                .deliveries
                .outgoing_with(&topic, job.qos, job.fanout, route, job.done);
            this.deliveries.send(outgoing);
            this.counts.forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Which nodes read a forwarded publish: a retained one goes to every node
/// (each keeps it), any other only to the nodes the route table named, each
/// on its own stream (see [`crate::targeting`]), so a node without a
/// matching subscription never reads it.
fn route_of(fanout: &Fanout) -> TargetRoute {
    match (&fanout.mqtt, fanout.retain) {
        (Some(mqtt), false) => TargetRoute::Nodes(mqtt.nodes.iter().map(|t| t.node).collect()),
        _ => TargetRoute::Everyone,
    }
}

impl ClusterMqtt {
    /// Writes a retained publish (or its deletion) to the store; its version.
    async fn write_retained(
        &self,
        job: &ForwardJob,
        expiry: Option<u32>,
    ) -> Result<u64, StoreError> {
        let topic = &job.fanout.topics[0];
        let value = match job.fanout.payload.is_empty() {
            true => None,
            false => {
                let mut mqtt = job.fanout.mqtt.clone();
                if let Some(mqtt) = mqtt.as_mut() {
                    mqtt.nodes.clear();
                }
                let record = BusRecord {
                    key: topic.clone(),
                    topics: vec![topic.clone()],
                    payload: job.fanout.payload.to_vec(),
                    qos: job.qos,
                    retain: true,
                    origin_node: self.node_id,
                    mqtt,
                };
                Some(codec::encode_value(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
        };
        let version = self
            .store
            .write_retained(topic, value.as_deref(), expiry)
            .await?;
        self.counts.retained_written.fetch_add(1, Ordering::Relaxed);
        Ok(version)
    }
}

/// Every `every`, drops the routes of nodes whose lease ran out.
async fn sweep(this: Weak<ClusterMqtt>, every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(this) = this.upgrade() else { return };
        this.publish_orphaned_wills(None).await;
        match this.store.live_nodes().await {
            Ok(live) => {
                for node in this.table.nodes() {
                    if node != this.node_id && !live.contains(&node) {
                        info!(
                            node,
                            "dropping the MQTT routes of a node whose lease ran out"
                        );
                        let _bump = Bump(&this.changed);
                        this.table.clear(node);
                        this.counts.nodes_expired.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(e) => {
                this.counts.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "could not read the live nodes");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(filter: &str) -> Route {
        Route {
            filter: Arc::from(filter),
            namespace: Arc::from(""),
        }
    }

    #[test]
    fn chat_filters_are_not_announced_and_plain_ones_are() {
        for chat in [
            "u/alice/i",
            "u/alice/t",
            "p/bob",
            "a/alice",
            "$share/g/u/alice/i",
        ] {
            assert!(!is_plain_route(&route(chat)), "{chat}");
        }
        for plain in ["sensors/#", "#", "+/lamp", "$share/g/jobs/+", "up/alice"] {
            assert!(is_plain_route(&route(plain)), "{plain}");
        }
    }

    #[test]
    fn a_forward_goes_to_its_target_nodes_and_a_retained_one_to_every_node() {
        let mut fanout = Fanout::new(vec!["jobs/1".into()], Bytes::from_static(b"x"));
        fanout.mqtt = Some(Box::new(MqttForward {
            nodes: vec![
                NodeTarget {
                    node: 2,
                    shared: Vec::new(),
                },
                NodeTarget {
                    node: 5,
                    shared: Vec::new(),
                },
            ],
            ..MqttForward::default()
        }));
        assert_eq!(route_of(&fanout), TargetRoute::Nodes(vec![2, 5]));
        fanout.retain = true;
        assert_eq!(route_of(&fanout), TargetRoute::Everyone);
    }
}
