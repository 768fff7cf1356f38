//! The PostgreSQL session directory: claims, takeovers, releases and the
//! expiry of a dead node's entries with its node lease, on a database of
//! its own (expiry is database-wide).
//!
//! Needs `PARLEY_TEST_POSTGRES`; see `postgres_support` for what happens
//! without it.

mod postgres_support;

use std::sync::Arc;
use std::time::Duration;

use persistence::postgres::PostgresStore;
use persistence::{LeaseHolder, NodeLeases, SessionDirectory};

async fn store() -> Option<Arc<PostgresStore>> {
    let config = postgres_support::own_database_config().await?;
    Some(Arc::new(
        PostgresStore::connect(config)
            .await
            .expect("connect the PostgreSQL store"),
    ))
}

fn holder(name: &str) -> LeaseHolder {
    LeaseHolder {
        id: name.into(),
        description: format!("test holder {name}"),
    }
}

async fn lease(store: &PostgresStore, node_id: u16, ttl: Duration) {
    store
        .acquire(node_id, &holder(&format!("h{node_id}")), ttl)
        .await
        .expect("lease taken");
}

#[tokio::test]
async fn the_last_claim_wins_and_learns_what_it_replaced() {
    let Some(store) = store().await else {
        return;
    };
    lease(&store, 1, Duration::from_secs(60)).await;
    lease(&store, 2, Duration::from_secs(60)).await;
    let (first, replaced) = store.claim("alice", "phone", 1).await.unwrap();
    assert_eq!(replaced, None, "a new key replaces nothing");
    assert_eq!((first.node_id, first.user.as_str()), (1, "alice"));
    let (second, replaced) = store.claim("alice", "phone", 2).await.unwrap();
    assert_eq!(
        replaced,
        Some(first.clone()),
        "the claim on node 2 replaced node 1's"
    );
    assert!(second.generation > first.generation);
    assert!(
        !store.remove(&first).await.unwrap(),
        "the replaced entry's release leaves the new one alone"
    );
    assert_eq!(store.live().await.unwrap(), vec![second.clone()]);
    assert!(store.remove(&second).await.unwrap());
    assert_eq!(store.live().await.unwrap(), Vec::new());
}

#[tokio::test]
async fn of_two_concurrent_claims_exactly_one_replaces_the_other() {
    let Some(store) = store().await else {
        return;
    };
    lease(&store, 1, Duration::from_secs(60)).await;
    lease(&store, 2, Duration::from_secs(60)).await;
    for round in 0..20 {
        let client = format!("c{round}");
        let (a, b) = tokio::join!(
            store.claim("bob", &client, 1),
            store.claim("bob", &client, 2)
        );
        let ((a, a_replaced), (b, b_replaced)) = (a.unwrap(), b.unwrap());
        let (winner, loser, replaced, other) = if a.generation > b.generation {
            (a, b, a_replaced, b_replaced)
        } else {
            (b, a, b_replaced, a_replaced)
        };
        assert_eq!(
            replaced,
            Some(loser),
            "round {round}: the later claim names the earlier"
        );
        assert_eq!(
            other, None,
            "round {round}: the earlier claim replaced nothing"
        );
        let live = store.live().await.unwrap();
        assert!(
            live.contains(&winner),
            "round {round}: the later claim is live"
        );
    }
}

#[tokio::test]
async fn a_dead_nodes_entries_expire_with_its_lease() {
    let Some(store) = store().await else {
        return;
    };
    lease(&store, 1, Duration::from_secs(60)).await;
    lease(&store, 3, Duration::from_millis(1)).await;
    let (alive, _) = store.claim("carol", "laptop", 1).await.unwrap();
    let (dead, _) = store.claim("carol", "phone", 3).await.unwrap();
    // The store's clock decides when node 3's lease has run out.
    loop {
        let lease = store.lease(3).await.unwrap().expect("a lease row");
        if lease.valid_for.is_zero() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        store.live().await.unwrap(),
        vec![alive.clone()],
        "an entry of a node with an expired lease is not live"
    );
    let (replacing, replaced) = store.claim("carol", "phone", 1).await.unwrap();
    assert_eq!(
        replaced, None,
        "a dead node's entry is not reported as replaced"
    );
    assert!(store.remove(&replacing).await.unwrap());
    let (left_behind, _) = store.claim("carol", "tablet", 3).await.unwrap();
    assert_eq!(
        store.expire().await.unwrap(),
        vec![left_behind],
        "the dead node's remaining entry is removed, the replaced one is long gone"
    );
    assert_eq!(store.expire().await.unwrap(), Vec::new(), "expired once");
    assert_ne!(dead.node_id, alive.node_id);
    assert_eq!(store.clear_node(1).await.unwrap(), vec![alive]);
    assert_eq!(store.live().await.unwrap(), Vec::new());
}

#[tokio::test]
async fn a_detached_entry_stays_live_until_claimed_again_or_removed() {
    let Some(store) = store().await else {
        return;
    };
    lease(&store, 1, Duration::from_secs(60)).await;
    lease(&store, 2, Duration::from_secs(60)).await;
    let (first, _) = store.claim("carol", "phone", 1).await.unwrap();
    let (other, _) = store.claim("carol", "laptop", 1).await.unwrap();
    assert!(
        store.detach(&first).await.unwrap(),
        "the current entry detaches"
    );
    assert_eq!(
        store.detached().await.unwrap(),
        vec![first.clone()],
        "only the detached entry is listed as detached"
    );
    let mut live = store.live().await.unwrap();
    live.sort();
    let mut both = vec![first.clone(), other.clone()];
    both.sort();
    assert_eq!(live, both, "a detached entry is still live");

    // The client comes back on node 2: the new claim is not detached, and
    // the old entry can no longer be detached or removed.
    let (second, replaced) = store.claim("carol", "phone", 2).await.unwrap();
    assert_eq!(replaced, Some(first.clone()));
    assert_eq!(store.detached().await.unwrap(), Vec::new());
    assert!(
        !store.detach(&first).await.unwrap(),
        "a replaced entry stays as it is"
    );
    assert!(!store.remove(&first).await.unwrap());
    assert!(store.detach(&second).await.unwrap());
    assert!(
        store.remove(&second).await.unwrap(),
        "a detached entry is removed"
    );
    assert_eq!(store.live().await.unwrap(), vec![other]);
}
