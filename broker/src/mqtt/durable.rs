//! Durable MQTT sessions on this node: the engine's [`Journal`] backed by a
//! [`SessionStore`], and the start-up load of the stored sessions into the
//! router.
//!
//! The engine reports each change of a persistent session (a QoS 1/2
//! message queued for it, an ack, a subscription, its end) while the
//! session is locked; [`DurableSessions::record`] numbers it (a ticket) and
//! hands it to one writer task. The writer takes every change queued at
//! that moment, applies them to the store in one call (one durable commit:
//! group commit across all publishers), then announces the highest ticket
//! now durable. A connection waits for the tickets of its own packets
//! before it answers them: a PUBACK/PUBREC is written only once the message
//! is on disk for every persistent session it was queued for.
//!
//! A failed commit is retried (every op is idempotent) once a second:
//! answers wait meanwhile, so nothing is acknowledged that is not stored.
//!
//! Queues live in the store: a detached session keeps only counters in
//! memory, and at start-up only the sessions' descriptions and queue
//! summaries are loaded ([`load`]). A resumed session's connection reads its
//! queue back in pages ([`DurableSessions::page`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parley_engine::message::{
    ForwardedProperties, Message, QoS, RetainHandling, SubscriptionOptions,
};
use parley_engine::persist::{
    Change, Journal, QueueSummary, RestoredDelivery, RestoredSession, SessionImage,
};
use parley_engine::router::{Router, Will};
use parley_engine::session::{Delivery, PageRequest};
use persistence::sessions::{
    Inflight, InflightStage, QueuedMessage, SessionOp, SessionRecord, StoredProperties,
    StoredQueued, StoredSessionIndex, StoredSubscription, StoredWill,
};
use persistence::{SessionStore, StoreError};
use tokio::sync::{mpsc, watch};

/// Most changes one store call takes.
const MAX_BATCH: usize = 4096;

/// One recorded change, waiting for the writer.
type Entry = (u64, Arc<str>, Change);

/// The journal of this node's persistent sessions.
pub struct DurableSessions {
    /// The last ticket handed out, and the writer's queue (taken together,
    /// so the queue is in ticket order).
    queue: Mutex<(u64, mpsc::UnboundedSender<Entry>)>,
    /// The highest ticket durable in the store.
    durable: watch::Receiver<u64>,
    /// Where queues are read back from.
    store: Arc<dyn SessionStore>,
}

impl std::fmt::Debug for DurableSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableSessions")
            .field("durable", &*self.durable.borrow())
            .finish()
    }
}

impl DurableSessions {
    /// Starts the writer task over `store` (on the current Tokio runtime).
    pub fn start(store: Arc<dyn SessionStore>) -> Arc<DurableSessions> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (announce, durable) = watch::channel(0);
        tokio::spawn(write_loop(store.clone(), receiver, announce));
        Arc::new(DurableSessions {
            queue: Mutex::new((0, sender)),
            durable,
            store,
        })
    }

    /// Reads the page `request` asks for of session `key`'s queue, once
    /// `ticket` (the session's latest change) is durable, so the page holds
    /// every message queued before the request and none already done.
    pub async fn page(
        &self,
        key: &str,
        request: PageRequest,
        ticket: u64,
    ) -> Result<Vec<RestoredDelivery>, StoreError> {
        self.wait(ticket).await;
        let stored = self
            .store
            .load_queue(key, request.from_seq, request.limit)
            .await?;
        let (now, now_ms) = (Instant::now(), now_ms());
        Ok(stored
            .into_iter()
            .map(|q| restored_delivery(q, now, now_ms))
            .collect())
    }

    /// The ticket of the latest change recorded so far: once it is durable,
    /// so is everything recorded before this call.
    pub fn latest(&self) -> u64 {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Returns once every change up to `ticket` is durable (at once for 0).
    pub async fn wait(&self, ticket: u64) {
        if ticket == 0 || *self.durable.borrow() >= ticket {
            return;
        }
        let mut durable = self.durable.clone();
        // The writer lives as long as the runtime; if it is gone, so is the node.
        let _ = durable.wait_for(|&done| done >= ticket).await;
    }
}

impl Journal for DurableSessions {
    fn record(&self, key: &Arc<str>, change: Change) -> u64 {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.0 += 1;
        let ticket = queue.0;
        // The writer only stops with the runtime.
        let _ = queue.1.send((ticket, key.clone(), change));
        ticket
    }
}

/// The writer task: one store call per batch of queued changes.
async fn write_loop(
    store: Arc<dyn SessionStore>,
    mut queue: mpsc::UnboundedReceiver<Entry>,
    announce: watch::Sender<u64>,
) {
    let mut batch: Vec<Entry> = Vec::new();
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Some(last) = batch.last().map(|(ticket, _, _)| *ticket) else {
            continue;
        };
        loop {
            let ops = batch.iter().map(to_op).collect();
            match store.apply(ops).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::error!(%error, changes = batch.len(), "storing MQTT session changes failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        announce.send_replace(last);
        batch.clear();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The store op of one engine change.
fn to_op((_, key, change): &Entry) -> SessionOp {
    let key = key.to_string();
    match change {
        Change::Described(image) => SessionOp::Put(record_of(key, image)),
        Change::Ended => SessionOp::Delete { key },
        Change::Queued { seq, delivery } => SessionOp::Enqueue {
            key,
            seq: *seq,
            message: queued_of(delivery),
        },
        Change::Released { seq, pkid } => SessionOp::SetInflight {
            key,
            seq: *seq,
            inflight: Inflight {
                pkid: *pkid,
                stage: InflightStage::AwaitingPubcomp,
            },
        },
        Change::Done { seq } => SessionOp::Remove { key, seq: *seq },
        Change::Incoming { pkid, pending } => SessionOp::IncomingQos2 {
            key,
            pkid: *pkid,
            pending: *pending,
        },
    }
}

fn record_of(key: String, image: &SessionImage) -> SessionRecord {
    SessionRecord {
        key,
        namespace: image.namespace.to_string(),
        expiry_secs: image.expiry_secs,
        disconnected_at_ms: image.detached.then(now_ms),
        subscriptions: image
            .subscriptions
            .iter()
            .map(|(filter, o)| StoredSubscription {
                filter: filter.clone(),
                qos: o.qos as u8,
                no_local: o.no_local,
                retain_as_published: o.retain_as_published,
                retain_handling: match o.retain_handling {
                    RetainHandling::OnSubscribe => 0,
                    RetainHandling::OnNewSubscribe => 1,
                    RetainHandling::Never => 2,
                },
                subscription_id: o.subscription_id,
            })
            .collect(),
        will: image.will.as_ref().map(|w| StoredWill {
            message: stored_message(&w.message, w.message.qos, w.message.retain, &[]),
            delay_secs: w.delay_secs,
        }),
    }
}

fn queued_of(delivery: &Delivery) -> QueuedMessage {
    stored_message(
        &delivery.message,
        delivery.qos,
        delivery.retain,
        &delivery.subscription_ids,
    )
}

fn stored_message(message: &Message, qos: QoS, retain: bool, ids: &[u32]) -> QueuedMessage {
    let p = &message.properties;
    let (now, now_ms) = (Instant::now(), now_ms());
    QueuedMessage {
        topic: message.topic.to_string(),
        payload: message.payload.to_vec(),
        qos: qos as u8,
        retain,
        properties: StoredProperties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.as_ref().map(|d| d.to_vec()),
            user_properties: p.user_properties.clone(),
        },
        expires_at_ms: message.expires_at.map(|at| {
            now_ms
                + at.saturating_duration_since(now)
                    .as_millis()
                    .min(i64::MAX as u128) as i64
        }),
        subscription_ids: ids.to_vec(),
    }
}

/// Loads every stored session into `router` (which must already have this
/// journal installed, so sessions that expired while the node was down are
/// deleted from the store), then runs one tick so those expiries and due
/// wills happen now. Only descriptions and queue summaries are loaded: the
/// queues stay in the store. Returns how many sessions were loaded.
pub async fn load(store: &dyn SessionStore, router: &Router) -> anyhow::Result<usize> {
    let stored = store.load_index().await?;
    let (now, now_ms) = (Instant::now(), now_ms());
    let count = stored.len();
    for session in stored {
        router.restore(restored_of(session, now, now_ms), now);
    }
    let report = router.tick(now);
    tracing::info!(
        sessions = count,
        expired = report.sessions_expired,
        "persistent MQTT sessions loaded"
    );
    Ok(count)
}

/// Puts one stored session (its description and queue summary) into
/// `router`, detached; `false` if the router already has a session with its key.
pub fn restore(router: &Router, session: StoredSessionIndex) -> bool {
    let now = Instant::now();
    router.restore(restored_of(session, now, now_ms()), now)
}

fn restored_of(session: StoredSessionIndex, now: Instant, now_ms: i64) -> RestoredSession {
    let record = session.record;
    let detached_for = record.disconnected_at_ms.map_or(Duration::ZERO, |at| {
        Duration::from_millis(now_ms.saturating_sub(at).max(0) as u64)
    });
    RestoredSession {
        key: record.key,
        image: SessionImage {
            namespace: Arc::from(record.namespace.as_str()),
            expiry_secs: record.expiry_secs,
            detached: true,
            subscriptions: record
                .subscriptions
                .into_iter()
                .map(|s| {
                    let options = SubscriptionOptions {
                        qos: QoS::from_u8(s.qos).unwrap_or(QoS::AtMostOnce),
                        no_local: s.no_local,
                        retain_as_published: s.retain_as_published,
                        retain_handling: match s.retain_handling {
                            1 => RetainHandling::OnNewSubscribe,
                            2 => RetainHandling::Never,
                            _ => RetainHandling::OnSubscribe,
                        },
                        subscription_id: s.subscription_id,
                    };
                    (s.filter, options)
                })
                .collect(),
            will: record.will.map(|w| Will {
                message: message_of(w.message, now, now_ms),
                delay_secs: w.delay_secs,
            }),
        },
        detached_for,
        queue: QueueSummary {
            first_seq: session.first_seq,
            next_seq: session.next_seq,
            messages: usize::try_from(session.queued_messages).unwrap_or(usize::MAX),
            bytes: usize::try_from(session.queued_bytes).unwrap_or(usize::MAX),
        },
        released: session.released,
        incoming_qos2: session.incoming_qos2,
    }
}

fn restored_delivery(q: StoredQueued, now: Instant, now_ms: i64) -> RestoredDelivery {
    let ids = q.message.subscription_ids.clone();
    let message = message_of(q.message, now, now_ms);
    RestoredDelivery {
        seq: q.seq,
        released: q
            .inflight
            .is_some_and(|i| i.stage == InflightStage::AwaitingPubcomp),
        delivery: Delivery {
            qos: message.qos,
            retain: message.retain,
            message: Arc::new(message),
            subscription_ids: ids,
        },
    }
}

fn message_of(stored: QueuedMessage, now: Instant, now_ms: i64) -> Message {
    let p = stored.properties;
    Message {
        topic: Arc::from(stored.topic.as_str()),
        payload: Bytes::from(stored.payload),
        qos: QoS::from_u8(stored.qos).unwrap_or(QoS::AtLeastOnce),
        retain: stored.retain,
        properties: ForwardedProperties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data.map(Bytes::from),
            user_properties: p.user_properties,
        },
        expires_at: stored
            .expires_at_ms
            .map(|at| now + Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64)),
        origin: None,
    }
}
