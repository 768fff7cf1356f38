//! The PostgreSQL store of a cluster's retained plain MQTT messages:
//! versions that grow with every write, deletions kept as rows without a
//! message, expired messages left out, the live nodes by their lease, and
//! the guarded wills of connections, taken once their node is dead.
//!
//! Needs `PARLEY_TEST_POSTGRES`; see `postgres_support` for what happens
//! without it.

mod postgres_support;

use std::time::Duration;

use persistence::postgres::PostgresStore;
use persistence::{ClusterMqttStore, LeaseHolder, NodeLeases, RetainedRow};

async fn store() -> Option<PostgresStore> {
    let config = postgres_support::own_database_config().await?;
    Some(
        PostgresStore::connect(config)
            .await
            .expect("connect the PostgreSQL store"),
    )
}

fn row<'a>(rows: &'a [RetainedRow], topic: &str) -> &'a RetainedRow {
    rows.iter().find(|r| r.topic == topic).expect("a row")
}

#[tokio::test]
async fn every_write_gets_a_higher_version_and_a_deletion_stays_as_a_row() {
    let Some(store) = store().await else {
        return;
    };
    let first = store
        .write_retained("state/lamp", Some(b"on"), None)
        .await
        .unwrap();
    let second = store
        .write_retained("state/door", Some(b"shut"), Some(3_600))
        .await
        .unwrap();
    let third = store
        .write_retained("state/lamp", Some(b"off"), None)
        .await
        .unwrap();
    assert!(
        first < second && second < third,
        "{first} < {second} < {third}"
    );
    let rows = store.retained().await.unwrap();
    assert_eq!(rows.len(), 2);
    let lamp = row(&rows, "state/lamp");
    assert_eq!(
        (lamp.version, lamp.message.as_deref(), lamp.expires_in_ms),
        (third, Some(&b"off"[..]), None)
    );
    let door = row(&rows, "state/door");
    let left = door.expires_in_ms.expect("an expiry");
    assert!(left > 3_500_000 && left <= 3_600_000, "{left} ms left");

    let deleted = store
        .write_retained("state/lamp", None, None)
        .await
        .unwrap();
    assert!(deleted > third);
    let rows = store.retained().await.unwrap();
    let lamp = row(&rows, "state/lamp");
    assert_eq!((lamp.version, lamp.message.as_deref()), (deleted, None));
}

#[tokio::test]
async fn an_expired_message_is_left_out_but_its_version_kept() {
    let Some(store) = store().await else {
        return;
    };
    let version = store
        .write_retained("state/brief", Some(b"x"), Some(0))
        .await
        .unwrap();
    let rows = store.retained().await.unwrap();
    let brief = row(&rows, "state/brief");
    assert_eq!((brief.version, brief.message.as_deref()), (version, None));
}

#[tokio::test]
async fn live_nodes_are_those_with_a_live_lease() {
    let Some(store) = store().await else {
        return;
    };
    let holder = |id: &str| LeaseHolder {
        id: id.into(),
        description: format!("test holder {id}"),
    };
    store
        .acquire(3, &holder("a"), Duration::from_secs(60))
        .await
        .unwrap();
    store
        .acquire(5, &holder("b"), Duration::from_millis(1))
        .await
        .unwrap();
    // The store's clock decides when node 5's lease has run out.
    while !store
        .lease(5)
        .await
        .unwrap()
        .expect("a lease row")
        .valid_for
        .is_zero()
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.live_nodes().await.unwrap(), [3]);
}

#[tokio::test]
async fn guarded_wills_are_taken_once_their_node_is_dead_and_only_once() {
    let Some(store) = store().await else {
        return;
    };
    let holder = |id: &str| LeaseHolder {
        id: id.into(),
        description: format!("test holder {id}"),
    };
    store
        .acquire(3, &holder("a"), Duration::from_secs(60))
        .await
        .unwrap();
    store
        .acquire(5, &holder("b"), Duration::from_millis(1))
        .await
        .unwrap();
    store
        .guard_will("alice", "phone", 3, 1, b"w-alive", 0)
        .await
        .unwrap();
    store
        .guard_will("bob", "sensor", 5, 7, b"w-dead", 30)
        .await
        .unwrap();
    store
        .guard_will("carol", "tab", 5, 8, b"w-gone", 0)
        .await
        .unwrap();
    // A stale removal (another connection id) leaves the row; the right one removes it.
    store.drop_will("carol", "tab", 5, 99).await.unwrap();
    store.drop_will("carol", "tab", 5, 8).await.unwrap();
    while !store
        .lease(5)
        .await
        .unwrap()
        .expect("a lease row")
        .valid_for
        .is_zero()
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let taken = store.take_orphaned_wills(None).await.unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(
        (
            taken[0].user.as_str(),
            taken[0].client_id.as_str(),
            &taken[0].will[..],
            taken[0].delay_secs
        ),
        ("bob", "sensor", &b"w-dead"[..], 30)
    );
    assert!(
        store.take_orphaned_wills(None).await.unwrap().is_empty(),
        "taken once"
    );
    // A node that restarts takes what its earlier run left, although its lease is live.
    let own = store.take_orphaned_wills(Some(3)).await.unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].will, b"w-alive");
}
