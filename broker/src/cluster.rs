//! Several nodes as one service: where the chat pipeline's deliveries go.
//!
//! The chat pipeline hands every server-side delivery (a message to the
//! members' inboxes, a receipt, a typing indicator, a presence change) to
//! [`Deliveries`]:
//!
//! - [`Deliveries::Local`] (a single node, or `[cluster] bus = "none"`)
//!   publishes to this node's router at once, exactly as a lone node always
//!   has; waiting on it is free.
//! - [`Deliveries::Bus`] appends to the [`ClusterBus`] instead. One task per
//!   node publishes in the order deliveries were handed over, batching what
//!   queued up meanwhile into one `publish` call, so a conversation's entries
//!   leave a node in `seq` order. A sender's acknowledgement waits for its
//!   batch to be acknowledged by the bus.
//!
//! [`spawn_consumer`] is the other half: every node consumes the whole bus
//! and republishes each record to its own router through the
//! [`ServerPublisher`], acknowledging it after. Answers to a client's own
//! requests never go through here; they stay on the node the client is on.
//! `docs/cluster.md` describes the design and its limits.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use persistence::kafka::{KafkaBus, KafkaConfig};
use persistence::{BusConsumer, BusRecord, ClusterBus, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::mqtt::publisher::ServerPublisher;

/// One publish: topic, payload, retain.
pub type Item = (String, Bytes, bool);

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

/// A batch of publishes on its way, built by [`Deliveries::outgoing`] and
/// sent with [`Deliveries::send`].
pub struct Outgoing {
    /// The ordering key on the bus (unused locally).
    key: String,
    /// QoS of the records on the bus.
    qos: u8,
    /// The publishes.
    items: Vec<Item>,
    /// Told the bus's answer, if someone waits for it.
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// The outcome of an [`Outgoing`]: ready at once locally, once the bus
/// acknowledged it otherwise.
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
    /// Prepares `items` for sending under ordering `key` (a conversation id,
    /// or a user id for presence), returning them with a handle to wait on.
    pub fn outgoing(&self, key: &str, qos: u8, items: Vec<Item>) -> (Outgoing, Pending) {
        match self {
            Deliveries::Local(_) => (
                Outgoing {
                    key: String::new(),
                    qos,
                    items,
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
                        items,
                        done: Some(tx),
                    },
                    Pending::Bus(rx),
                )
            }
        }
    }

    /// Sends `outgoing` now (locally) or queues it behind everything this
    /// node sent before (bus). Never blocks.
    pub fn send(&self, outgoing: Outgoing) {
        match self {
            Deliveries::Local(publisher) => publisher.publish_many(outgoing.items),
            Deliveries::Bus(bus) => bus.enqueue(outgoing),
        }
    }

    /// Sends `items` under `key` without waiting for the outcome (presence).
    pub fn send_and_forget(&self, key: &str, qos: u8, items: Vec<Item>) {
        let (outgoing, _) = self.outgoing(key, qos, items);
        self.send(outgoing);
    }

    /// Sends `items` under `key` and waits until they are delivered (locally)
    /// or on the bus.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the bus did not take them.
    pub async fn publish(&self, key: &str, qos: u8, items: Vec<Item>) -> Result<(), StoreError> {
        let (outgoing, pending) = self.outgoing(key, qos, items);
        self.send(outgoing);
        pending.wait().await
    }

    /// Tells the other nodes that conversation `id` changed, so they drop
    /// their cached copy. Nothing to do on a single node.
    pub fn conversation_changed(&self, id: &str) {
        if let Deliveries::Bus(_) = self {
            self.send_and_forget(
                id,
                1,
                vec![(
                    CONVERSATION_CHANGED.to_owned(),
                    Bytes::from(id.to_owned()),
                    false,
                )],
            );
        }
    }
}

/// The ordered producer of one node: a queue drained by one task.
#[derive(Clone)]
pub struct BusPublisher {
    queue: mpsc::UnboundedSender<Outgoing>,
}

impl BusPublisher {
    /// Starts the task that publishes to `bus` on behalf of node `node_id`.
    /// It ends once every clone of the returned publisher is dropped.
    pub fn start(bus: Arc<dyn ClusterBus>, node_id: u16) -> BusPublisher {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(publish_loop(bus, node_id, rx));
        BusPublisher { queue }
    }

    fn enqueue(&self, outgoing: Outgoing) {
        if let Err(mpsc::error::SendError(outgoing)) = self.queue.send(outgoing) {
            if let Some(done) = outgoing.done {
                let _ = done.send(Err("the cluster bus publisher has stopped".into()));
            }
        }
    }
}

/// Publishes queued deliveries in order, one `publish` call per batch.
async fn publish_loop(
    bus: Arc<dyn ClusterBus>,
    node_id: u16,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let records: Vec<BusRecord> = batch
            .iter()
            .flat_map(|o| {
                o.items.iter().map(|(topic, payload, retain)| BusRecord {
                    key: o.key.clone(),
                    topics: vec![topic.clone()],
                    payload: payload.to_vec(),
                    qos: o.qos,
                    retain: *retain,
                    origin_node: node_id,
                })
            })
            .collect();
        let result = bus.publish(records).await.map_err(|e| e.to_string());
        if let Err(e) = &result {
            warn!(error = %e, deliveries = batch.len(), "cluster bus publish failed");
        }
        for outgoing in batch.drain(..) {
            if let Some(done) = outgoing.done {
                let _ = done.send(result.clone());
            }
        }
    }
}

/// What a consumed record asks of this node besides routing.
pub trait ClusterEvents: Send + Sync + 'static {
    /// Conversation `id` changed on another node: forget any cached copy.
    fn conversation_changed(&self, id: &str);
}

/// Subscribes node `node_id` to `bus` (so every record published after this
/// returns reaches it) and spawns the task that hands each record to the
/// local router through `publisher`, acknowledging it afterwards, until
/// `shutdown` is cancelled.
///
/// # Errors
///
/// The bus's error if it cannot subscribe.
pub async fn spawn_consumer(
    bus: &dyn ClusterBus,
    node_id: u16,
    publisher: ServerPublisher,
    events: Arc<dyn ClusterEvents>,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Result<(), StoreError> {
    let consumer = bus.subscribe(node_id).await?;
    info!(node_id, "consuming the cluster bus");
    tasks.spawn(consume_loop(consumer, node_id, publisher, events, shutdown));
    Ok(())
}

async fn consume_loop(
    mut consumer: Box<dyn BusConsumer>,
    node_id: u16,
    publisher: ServerPublisher,
    events: Arc<dyn ClusterEvents>,
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
        let record = delivery.record;
        let payload = Bytes::from(record.payload);
        for topic in record.topics {
            if topic == CONVERSATION_CHANGED {
                if record.origin_node != node_id {
                    events.conversation_changed(&String::from_utf8_lossy(&payload));
                }
            } else {
                publisher.publish(&topic, payload.clone(), record.retain);
            }
        }
        if let Err(e) = consumer.ack(delivery.position).await {
            warn!(error = %e, position = ?delivery.position, "acknowledging a cluster bus record failed");
        }
    }
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
