//! Moving durable MQTT sessions between the nodes of a cluster on
//! PostgreSQL: handovers between live nodes, the old owner fenced off, and
//! sessions of dead nodes taken or adopted, on a database of its own
//! (adoption is database-wide).
//!
//! Needs `PARLEY_TEST_POSTGRES`; see `postgres_support` for what happens
//! without it.

mod postgres_support;

use std::time::Duration;

use persistence::postgres::{PostgresSessions, PostgresStore};
use persistence::sessions::{QueuedMessage, SessionOp, SessionRecord, StoredProperties};
use persistence::{LeaseHolder, NodeLeases, SessionHandover, SessionStore};

async fn store() -> Option<PostgresStore> {
    let config = postgres_support::own_database_config().await?;
    Some(
        PostgresStore::connect(config)
            .await
            .expect("connect the PostgreSQL store"),
    )
}

/// Node `node_id`'s sessions, with a live lease unless `dead`.
async fn node(store: &PostgresStore, node_id: u16, dead: bool) -> PostgresSessions {
    if !dead {
        let holder = LeaseHolder {
            id: format!("h{node_id}"),
            description: format!("test node {node_id}"),
        };
        store
            .acquire(node_id, &holder, Duration::from_secs(600))
            .await
            .expect("lease taken");
    }
    store.sessions(node_id)
}

fn record(key: &str) -> SessionRecord {
    SessionRecord {
        key: key.to_owned(),
        namespace: "someone".to_owned(),
        expiry_secs: 3600,
        disconnected_at_ms: Some(1_700_000_000_000),
        subscriptions: Vec::new(),
        will: None,
    }
}

fn enqueue(key: &str, seq: u64) -> SessionOp {
    SessionOp::Enqueue {
        key: key.to_owned(),
        seq,
        message: QueuedMessage {
            topic: format!("t/{seq}"),
            payload: vec![seq as u8],
            qos: 1,
            retain: false,
            properties: StoredProperties::default(),
            expires_at_ms: None,
            subscription_ids: Vec::new(),
        },
    }
}

async fn seqs(sessions: &PostgresSessions, key: &str) -> Vec<u64> {
    sessions
        .load_queue(key, 0, 100)
        .await
        .expect("queue read")
        .iter()
        .map(|q| q.seq)
        .collect()
}

#[tokio::test]
async fn a_live_node_hands_a_session_over_and_is_fenced_off_after() {
    let Some(store) = store().await else { return };
    let (a, b) = (node(&store, 1, false).await, node(&store, 2, false).await);
    let key = "alice~phone";
    a.apply(vec![
        SessionOp::Put(record(key)),
        enqueue(key, 1),
        enqueue(key, 2),
    ])
    .await
    .expect("stored");
    let owner = b.owner(key).await.expect("read").expect("stored");
    assert_eq!(
        (owner.node_id, owner.live, owner.handover_to),
        (1, true, None)
    );
    assert!(
        !b.take_from_dead(key, 1).await.expect("tried"),
        "node 1 is alive"
    );
    assert!(b.request_handover(key, 1).await.expect("asked"));
    assert_eq!(
        a.handovers_requested().await.expect("read"),
        vec![(key.to_owned(), 2)]
    );
    assert!(
        b.load_one(key).await.expect("read").is_none(),
        "not node 2's yet"
    );
    assert!(a.hand_over(key, 2).await.expect("handed over"));
    assert!(!a.hand_over(key, 2).await.expect("tried"), "only once");
    let moved = b.load_one(key).await.expect("read").expect("node 2's now");
    assert_eq!(
        (moved.queued_messages, moved.first_seq, moved.next_seq),
        (2, 1, 3)
    );
    assert!(a.load_index().await.expect("read").is_empty());
    assert_eq!(b.load_index().await.expect("read").len(), 1);
    // The old owner's late changes are dropped, and counted.
    a.apply(vec![enqueue(key, 3), SessionOp::Delete { key: key.into() }])
        .await
        .expect("answered");
    assert_eq!(a.ignored_ops(), 2);
    assert_eq!(a.take_foreign(), vec![key.to_owned()], "reported once");
    assert!(a.take_foreign().is_empty());
    assert_eq!(seqs(&b, key).await, vec![1, 2]);
    // The new owner goes on writing.
    b.apply(vec![enqueue(key, 3)]).await.expect("stored");
    assert_eq!(seqs(&b, key).await, vec![1, 2, 3]);
    assert_eq!(b.ignored_ops(), 0);
}

#[tokio::test]
async fn a_request_is_withdrawn_by_a_newer_connection_at_the_owner() {
    let Some(store) = store().await else { return };
    let (a, b) = (node(&store, 11, false).await, node(&store, 12, false).await);
    let key = "bob~laptop";
    a.apply(vec![SessionOp::Put(record(key))])
        .await
        .expect("stored");
    assert!(b.request_handover(key, 11).await.expect("asked"));
    a.cancel_handover(key).await.expect("withdrawn");
    assert!(a.handovers_requested().await.expect("read").is_empty());
    assert!(!a.hand_over(key, 12).await.expect("tried"), "nothing asked");
    assert_eq!(
        a.owner(key).await.expect("read").map(|o| o.node_id),
        Some(11)
    );
}

#[tokio::test]
async fn sessions_of_a_dead_node_are_taken_or_adopted_once() {
    let Some(store) = store().await else { return };
    let dead = node(&store, 21, true).await;
    let (b, c) = (node(&store, 22, false).await, node(&store, 23, false).await);
    for key in ["carol~a", "carol~b", "dave~c"] {
        dead.apply(vec![SessionOp::Put(record(key)), enqueue(key, 7)])
            .await
            .expect("stored");
    }
    let owner = b.owner("carol~a").await.expect("read").expect("stored");
    assert!(!owner.live, "node 21 has no lease");
    assert!(b.take_from_dead("carol~a", 21).await.expect("taken"));
    assert!(
        !c.take_from_dead("carol~a", 21).await.expect("tried"),
        "once"
    );
    let adopted = c.adopt_orphans().await.expect("adopted");
    let keys: Vec<&str> = adopted.iter().map(|s| s.record.key.as_str()).collect();
    assert_eq!(keys, vec!["carol~b", "dave~c"], "the rest, in key order");
    assert!(adopted.iter().all(|s| s.queued_messages == 1));
    assert!(
        b.adopt_orphans().await.expect("read").is_empty(),
        "none left"
    );
    assert_eq!(b.load_index().await.expect("read").len(), 1);
    assert_eq!(c.load_index().await.expect("read").len(), 2);
}
