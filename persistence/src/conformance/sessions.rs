//! The [`SessionStore`] conformance suite: durable MQTT sessions.
//!
//! Every check takes the store under test as an `Arc<dyn SessionStore>` and
//! panics with a message naming the broken promise. A backend runs them all
//! with [`session_store_conformance_tests!`](crate::session_store_conformance_tests):
//!
//! ```
//! use std::sync::Arc;
//!
//! use persistence::embedded::EmbeddedStore;
//! use persistence::SessionStore;
//!
//! persistence::session_store_conformance_tests!(async {
//!     let dir = tempfile::tempdir().expect("tempdir");
//!     let store = EmbeddedStore::open(dir.path()).expect("open");
//!     (Arc::new(store) as Arc<dyn SessionStore>, dir)
//! });
//! # fn main() {}
//! ```

use std::sync::Arc;

use tokio::task::JoinSet;

use super::unique_username;
use crate::sessions::{
    Inflight, InflightStage, QueuedMessage, SessionOp, SessionRecord, StoredProperties,
    StoredSession, StoredSubscription, StoredWill,
};
use crate::SessionStore;

/// What a backend's fixture expression hands to
/// [`session_store_conformance_tests!`](crate::session_store_conformance_tests):
/// the store under test, optionally with a guard that must live until the check ends.
pub trait SessionFixture {
    /// The store the check runs against.
    fn store(&self) -> Arc<dyn SessionStore>;
}

impl SessionFixture for Arc<dyn SessionStore> {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::clone(self)
    }
}

/// A store plus a guard that is dropped after the store's handle.
impl<G> SessionFixture for (Arc<dyn SessionStore>, G) {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::clone(&self.0)
    }
}

/// A fresh session key.
fn key() -> String {
    format!("{}/client", unique_username("mqtt"))
}

fn record(key: &str) -> SessionRecord {
    SessionRecord {
        key: key.to_owned(),
        namespace: "someone".to_owned(),
        expiry_secs: 3600,
        disconnected_at_ms: None,
        subscriptions: vec![StoredSubscription {
            filter: "sensors/+/temp".to_owned(),
            qos: 1,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
            subscription_id: None,
        }],
        will: None,
    }
}

fn message(n: u8) -> QueuedMessage {
    QueuedMessage {
        topic: format!("t/{n}"),
        payload: vec![n, 0, 255],
        qos: 1,
        retain: false,
        properties: StoredProperties::default(),
        expires_at_ms: None,
        subscription_ids: Vec::new(),
    }
}

async fn apply(store: &Arc<dyn SessionStore>, ops: Vec<SessionOp>) {
    store.apply(ops).await.expect("apply must succeed");
}

/// The stored session with `key`, if any.
async fn load(store: &Arc<dyn SessionStore>, key: &str) -> Option<StoredSession> {
    store
        .load()
        .await
        .expect("load must succeed")
        .into_iter()
        .find(|s| s.record.key == key)
}

/// Everything a session holds comes back as it was stored.
pub async fn a_session_round_trips(store: Arc<dyn SessionStore>) {
    let key = key();
    let mut rec = record(&key);
    rec.disconnected_at_ms = Some(1_700_000_000_000);
    rec.subscriptions.push(StoredSubscription {
        filter: "$share/g/a/#".to_owned(),
        qos: 2,
        no_local: false,
        retain_as_published: true,
        retain_handling: 2,
        subscription_id: Some(42),
    });
    rec.will = Some(StoredWill {
        message: QueuedMessage {
            retain: true,
            ..message(9)
        },
        delay_secs: 30,
    });
    let rich = QueuedMessage {
        topic: "a/b".to_owned(),
        payload: (0..=255).collect(),
        qos: 2,
        retain: true,
        properties: StoredProperties {
            payload_format_indicator: Some(1),
            content_type: Some("application/json".to_owned()),
            response_topic: Some("reply/here".to_owned()),
            correlation_data: Some(vec![1, 2, 3]),
            user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
        },
        expires_at_ms: Some(1_800_000_000_000),
        subscription_ids: vec![3, 42],
    };
    apply(
        &store,
        vec![
            SessionOp::Put(rec.clone()),
            SessionOp::Enqueue {
                key: key.clone(),
                seq: 7,
                message: rich.clone(),
            },
            SessionOp::IncomingQos2 {
                key: key.clone(),
                pkid: 65535,
                pending: true,
            },
        ],
    )
    .await;
    let loaded = load(&store, &key)
        .await
        .expect("the session must be stored");
    assert_eq!(loaded.record, rec, "the description must round-trip");
    assert_eq!(loaded.queued.len(), 1);
    assert_eq!(loaded.queued[0].seq, 7);
    assert_eq!(
        loaded.queued[0].message, rich,
        "the message must round-trip"
    );
    assert_eq!(loaded.queued[0].inflight, None);
    assert_eq!(loaded.incoming_qos2, vec![65535]);
}

/// Messages come back in seq order with their in-flight state; removed ones do not.
pub async fn queue_order_inflight_and_removal(store: Arc<dyn SessionStore>) {
    let key = key();
    let mut ops = vec![SessionOp::Put(record(&key))];
    // Out of order on purpose, and past 255 so byte-wise key order would differ.
    for seq in [300u64, 2, 1, 256] {
        ops.push(SessionOp::Enqueue {
            key: key.clone(),
            seq,
            message: message(seq as u8),
        });
    }
    apply(&store, ops).await;
    apply(
        &store,
        vec![
            SessionOp::SetInflight {
                key: key.clone(),
                seq: 2,
                inflight: Inflight {
                    pkid: 3,
                    stage: InflightStage::AwaitingPubcomp,
                },
            },
            SessionOp::SetInflight {
                key: key.clone(),
                seq: 256,
                inflight: Inflight {
                    pkid: 257,
                    stage: InflightStage::AwaitingPuback,
                },
            },
            SessionOp::Remove {
                key: key.clone(),
                seq: 1,
            },
            // Removing twice, or something never queued, is harmless.
            SessionOp::Remove {
                key: key.clone(),
                seq: 1,
            },
            SessionOp::Remove {
                key: key.clone(),
                seq: 999,
            },
        ],
    )
    .await;
    let loaded = load(&store, &key).await.expect("stored");
    let seqs: Vec<u64> = loaded.queued.iter().map(|q| q.seq).collect();
    assert_eq!(seqs, vec![2, 256, 300], "ascending seq order, 1 removed");
    assert_eq!(
        loaded.queued[0].inflight,
        Some(Inflight {
            pkid: 3,
            stage: InflightStage::AwaitingPubcomp
        })
    );
    assert_eq!(
        loaded.queued[1].inflight.map(|i| i.stage),
        Some(InflightStage::AwaitingPuback)
    );
    assert_eq!(loaded.queued[2].inflight, None);
    assert_eq!(loaded.queued[2].message, message(300u64 as u8));
    // A removed message loses its in-flight state too.
    apply(
        &store,
        vec![SessionOp::Remove {
            key: key.clone(),
            seq: 2,
        }],
    )
    .await;
    let loaded = load(&store, &key).await.expect("stored");
    assert_eq!(loaded.queued[0].seq, 256);
}

/// QoS 2 packet ids are recorded and released.
pub async fn incoming_qos2_ids_are_recorded_and_released(store: Arc<dyn SessionStore>) {
    let key = key();
    let mut ops = vec![SessionOp::Put(record(&key))];
    for pkid in [5u16, 1, 300] {
        ops.push(SessionOp::IncomingQos2 {
            key: key.clone(),
            pkid,
            pending: true,
        });
    }
    ops.push(SessionOp::IncomingQos2 {
        key: key.clone(),
        pkid: 5,
        pending: false,
    });
    apply(&store, ops).await;
    let loaded = load(&store, &key).await.expect("stored");
    assert_eq!(loaded.incoming_qos2, vec![1, 300]);
}

/// A deleted session is gone with its messages; a new one under the same key starts empty;
/// other sessions are untouched.
pub async fn delete_removes_the_session_and_its_queue(store: Arc<dyn SessionStore>) {
    let (doomed, other) = (key(), key());
    let mut ops = Vec::new();
    for k in [&doomed, &other] {
        ops.push(SessionOp::Put(record(k)));
        ops.push(SessionOp::Enqueue {
            key: k.clone(),
            seq: 1,
            message: message(1),
        });
        ops.push(SessionOp::SetInflight {
            key: k.clone(),
            seq: 1,
            inflight: Inflight {
                pkid: 1,
                stage: InflightStage::AwaitingPubrec,
            },
        });
        ops.push(SessionOp::IncomingQos2 {
            key: k.clone(),
            pkid: 9,
            pending: true,
        });
    }
    apply(&store, ops).await;
    apply(
        &store,
        vec![SessionOp::Delete {
            key: doomed.clone(),
        }],
    )
    .await;
    assert!(load(&store, &doomed).await.is_none(), "deleted");
    let kept = load(&store, &other).await.expect("the other session stays");
    assert_eq!(kept.queued.len(), 1);
    assert_eq!(kept.incoming_qos2, vec![9]);
    apply(&store, vec![SessionOp::Put(record(&doomed))]).await;
    let fresh = load(&store, &doomed).await.expect("recreated");
    assert!(fresh.queued.is_empty(), "a recreated session starts empty");
    assert!(fresh.incoming_qos2.is_empty());
}

/// A Put replaces the description and keeps the queue; messages of a key
/// without a description are not loaded.
pub async fn put_replaces_the_description_only(store: Arc<dyn SessionStore>) {
    let key = key();
    let orphan = key.clone() + "-orphan";
    apply(
        &store,
        vec![
            SessionOp::Put(record(&key)),
            SessionOp::Enqueue {
                key: key.clone(),
                seq: 1,
                message: message(1),
            },
            SessionOp::Enqueue {
                key: orphan.clone(),
                seq: 1,
                message: message(1),
            },
        ],
    )
    .await;
    let mut changed = record(&key);
    changed.expiry_secs = 10;
    changed.subscriptions.clear();
    apply(&store, vec![SessionOp::Put(changed.clone())]).await;
    let loaded = load(&store, &key).await.expect("stored");
    assert_eq!(loaded.record, changed);
    assert_eq!(loaded.queued.len(), 1, "the queue stays");
    assert!(load(&store, &orphan).await.is_none());
    apply(&store, vec![SessionOp::Delete { key: orphan }]).await;
}

/// How many tasks race in the concurrency check, and messages each.
const RACERS: usize = 16;
const EACH: u64 = 20;

/// Concurrent callers each get their changes durably applied, none lost.
pub async fn concurrent_applies_all_land(store: Arc<dyn SessionStore>) {
    let key = key();
    apply(&store, vec![SessionOp::Put(record(&key))]).await;
    let mut tasks = JoinSet::new();
    for racer in 0..RACERS as u64 {
        let (store, key) = (Arc::clone(&store), key.clone());
        tasks.spawn(async move {
            for i in 0..EACH {
                let seq = racer * 1000 + i;
                apply(
                    &store,
                    vec![SessionOp::Enqueue {
                        key: key.clone(),
                        seq,
                        message: message(i as u8),
                    }],
                )
                .await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a racer panicked");
    }
    let loaded = load(&store, &key).await.expect("stored");
    assert_eq!(loaded.queued.len(), RACERS * EACH as usize);
    apply(&store, vec![SessionOp::Delete { key }]).await;
}

/// The start-up index gives each session's description and queue summary:
/// counts, sequence bounds, deliveries awaiting PUBCOMP and QoS 2 ids.
pub async fn the_index_summarises_queues_without_messages(store: Arc<dyn SessionStore>) {
    let (busy, idle) = (key(), key());
    let mut ops = vec![SessionOp::Put(record(&busy)), SessionOp::Put(record(&idle))];
    for seq in [4u64, 5, 6, 9] {
        ops.push(SessionOp::Enqueue {
            key: busy.clone(),
            seq,
            message: message(seq as u8),
        });
    }
    ops.push(SessionOp::SetInflight {
        key: busy.clone(),
        seq: 5,
        inflight: Inflight {
            pkid: 6,
            stage: InflightStage::AwaitingPubcomp,
        },
    });
    ops.push(SessionOp::Remove {
        key: busy.clone(),
        seq: 6,
    });
    ops.push(SessionOp::IncomingQos2 {
        key: busy.clone(),
        pkid: 11,
        pending: true,
    });
    apply(&store, ops).await;
    let index = store.load_index().await.expect("load_index must succeed");
    let find = |k: &str| index.iter().find(|i| i.record.key == k).cloned();
    let b = find(&busy).expect("the busy session is indexed");
    assert_eq!(b.record, record(&busy));
    assert_eq!(b.queued_messages, 2, "4 and 9; 5 awaits PUBCOMP, 6 is gone");
    assert!(b.queued_bytes > 0);
    assert_eq!((b.first_seq, b.next_seq), (4, 10));
    assert_eq!(b.released, vec![5]);
    assert_eq!(b.incoming_qos2, vec![11]);
    let i = find(&idle).expect("the idle session is indexed");
    assert_eq!((i.queued_messages, i.queued_bytes, i.next_seq), (0, 0, 0));
    assert!(i.released.is_empty() && i.incoming_qos2.is_empty());
    let keys: Vec<&str> = index.iter().map(|i| i.record.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "ordered by key");
}

/// A queue is read back in pages: from a sequence number on, ascending, at
/// most `limit` at a time, other sessions' messages never mixed in.
pub async fn queue_pages_come_back_in_order(store: Arc<dyn SessionStore>) {
    let (a, b) = (key(), key());
    let mut ops = vec![SessionOp::Put(record(&a)), SessionOp::Put(record(&b))];
    for seq in 1..=10u64 {
        for k in [&a, &b] {
            ops.push(SessionOp::Enqueue {
                key: k.clone(),
                seq,
                message: message(seq as u8),
            });
        }
    }
    ops.push(SessionOp::SetInflight {
        key: a.clone(),
        seq: 2,
        inflight: Inflight {
            pkid: 3,
            stage: InflightStage::AwaitingPuback,
        },
    });
    apply(&store, ops).await;
    let page = |from, limit| {
        let store = store.clone();
        let a = a.clone();
        async move {
            store
                .load_queue(&a, from, limit)
                .await
                .expect("load_queue must succeed")
        }
    };
    let first = page(0, 4).await;
    assert_eq!(
        first.iter().map(|q| q.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(first[2].message, message(3));
    assert_eq!(
        first[1].inflight,
        Some(Inflight {
            pkid: 3,
            stage: InflightStage::AwaitingPuback
        })
    );
    let rest = page(5, 100).await;
    assert_eq!(
        rest.iter().map(|q| q.seq).collect::<Vec<_>>(),
        (5..=10).collect::<Vec<_>>()
    );
    assert!(page(11, 100).await.is_empty());
    assert!(store
        .load_queue(&key(), 0, 100)
        .await
        .expect("load_queue must succeed")
        .is_empty());
}

/// Defines one `#[tokio::test]` per [`SessionStore`] conformance check,
/// each on the store `$fixture` (an `async` expression) yields.
#[macro_export]
macro_rules! session_store_conformance_tests {
    (@checks ($fixture:expr) $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture.await;
                let store = $crate::conformance::sessions::SessionFixture::store(&fixture);
                $crate::conformance::sessions::$check(store).await;
            }
        )*
    };
    ($fixture:expr $(,)?) => {
        $crate::session_store_conformance_tests!(@checks ($fixture)
            a_session_round_trips,
            queue_order_inflight_and_removal,
            incoming_qos2_ids_are_recorded_and_released,
            delete_removes_the_session_and_its_queue,
            put_replaces_the_description_only,
            concurrent_applies_all_land,
            the_index_summarises_queues_without_messages,
            queue_pages_come_back_in_order,
        );
    };
}
