//! The [`NodeLeases`] conformance suite: one live holder per node id.
//!
//! Every check takes the store under test as an `Arc<dyn NodeLeases>` and
//! panics with a message naming the broken promise. A backend runs them all
//! with [`node_leases_conformance_tests!`](crate::node_leases_conformance_tests):
//!
//! ```
//! use std::sync::Arc;
//!
//! use persistence::postgres::{PostgresConfig, PostgresStore};
//! use persistence::NodeLeases;
//!
//! persistence::node_leases_conformance_tests!(async {
//!     let url = std::env::var("DATABASE_URL").expect("a database to test");
//!     let config = PostgresConfig::from_url(&url).expect("a valid URL");
//!     let store = PostgresStore::connect(config).await.expect("connect");
//!     Arc::new(store) as Arc<dyn NodeLeases>
//! });
//! # fn main() {}
//! ```
//!
//! Checks that need a lease to run out take one with a time to live of
//! [`SHORT`] and wait until the store reports it expired, so the suite
//! measures time only by the store's clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{unique_node_id, unique_username};
use crate::{Lease, LeaseHolder, NodeLeases, StoreError};

/// What a backend's fixture expression hands to
/// [`node_leases_conformance_tests!`](crate::node_leases_conformance_tests):
/// the store under test, optionally with a guard that must live until the
/// check ends.
pub trait NodeLeasesFixture {
    /// The store the check runs against.
    fn store(&self) -> Arc<dyn NodeLeases>;
}

impl NodeLeasesFixture for Arc<dyn NodeLeases> {
    fn store(&self) -> Arc<dyn NodeLeases> {
        Arc::clone(self)
    }
}

/// A store plus a guard that is dropped after the store's handle.
impl<G> NodeLeasesFixture for (Arc<dyn NodeLeases>, G) {
    fn store(&self) -> Arc<dyn NodeLeases> {
        Arc::clone(&self.0)
    }
}

/// A time to live no check outlasts.
pub const LONG: Duration = Duration::from_secs(60);

/// A time to live checks wait out.
pub const SHORT: Duration = Duration::from_millis(50);

/// Longest a [`SHORT`] lease may take to be reported expired.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(10);

/// How many holders race in the concurrency checks.
const RACERS: usize = 8;

/// A holder no other check uses, described with `tag`.
fn holder(tag: &str) -> LeaseHolder {
    let id = unique_username(tag);
    LeaseHolder {
        description: format!("test holder {id} on host-{tag}"),
        id,
    }
}

/// Takes the lease, which must be granted.
async fn take(
    store: &Arc<dyn NodeLeases>,
    node_id: u16,
    holder: &LeaseHolder,
    ttl: Duration,
) -> Lease {
    store
        .acquire(node_id, holder, ttl)
        .await
        .unwrap_or_else(|e| panic!("{} must get node id {node_id}: {e:?}", holder.id))
}

/// Tries to take the lease, which must be refused because `other` holds it;
/// returns the refusal's message.
async fn refused(
    store: &Arc<dyn NodeLeases>,
    node_id: u16,
    holder: &LeaseHolder,
    other: &LeaseHolder,
) -> String {
    match store.acquire(node_id, holder, LONG).await {
        Err(StoreError::AlreadyExists(why)) => {
            assert!(
                why.contains(&format!("node id {node_id}")),
                "a refusal must name the node id: {why}"
            );
            assert!(
                why.contains(&other.description),
                "a refusal must describe the live holder ({}): {why}",
                other.description
            );
            why
        }
        other => panic!(
            "{} must be refused node id {node_id}, held by another holder: got {other:?}",
            holder.id
        ),
    }
}

/// The lease on `node_id`, which must be readable.
async fn current(store: &Arc<dyn NodeLeases>, node_id: u16) -> Option<Lease> {
    store
        .lease(node_id)
        .await
        .expect("reading a lease must succeed")
}

/// Waits until the store reports the lease on `node_id` expired, by its clock.
async fn wait_until_expired(store: &Arc<dyn NodeLeases>, node_id: u16) -> Lease {
    let outcome = tokio::time::timeout(EXPIRY_DEADLINE, async {
        loop {
            let lease = current(store, node_id)
                .await
                .expect("an expired lease must still be readable");
            if lease.valid_for.is_zero() {
                return lease;
            }
            tokio::time::sleep(lease.valid_for).await;
        }
    })
    .await;
    outcome.unwrap_or_else(|_| {
        panic!("a lease of {SHORT:?} on node id {node_id} must expire within {EXPIRY_DEADLINE:?}")
    })
}

/// A node id nobody holds is granted, with the holder, description and
/// times the store reports afterwards.
pub async fn a_free_node_id_is_granted(store: Arc<dyn NodeLeases>) {
    let (node_id, alpha) = (unique_node_id(), holder("alpha"));
    assert_eq!(
        current(&store, node_id).await,
        None,
        "an untaken node id has no lease"
    );
    let lease = take(&store, node_id, &alpha, LONG).await;
    assert_eq!(lease.node_id, node_id);
    assert_eq!(lease.holder, alpha.id);
    assert_eq!(lease.description, alpha.description);
    assert_eq!(
        lease.acquired_at_ms, lease.renewed_at_ms,
        "a new lease was acquired when it was last renewed"
    );
    let ttl_ms = lease.expires_at_ms - lease.renewed_at_ms;
    assert!(
        (LONG.as_millis() as i64 - 1..=LONG.as_millis() as i64 + 1).contains(&ttl_ms),
        "a lease expires its ttl after it was taken, got {ttl_ms} ms"
    );
    assert!(
        !lease.valid_for.is_zero() && lease.valid_for <= LONG,
        "a new lease is valid for at most its ttl, got {:?}",
        lease.valid_for
    );
    let stored = current(&store, node_id)
        .await
        .expect("the granted lease must be readable");
    assert_eq!(
        (
            &stored.holder,
            &stored.description,
            stored.acquired_at_ms,
            stored.expires_at_ms
        ),
        (
            &lease.holder,
            &lease.description,
            lease.acquired_at_ms,
            lease.expires_at_ms
        ),
        "reading the lease must return what was granted"
    );
}

/// While one holder's lease is live, every other holder is refused, with a
/// message naming the node id and the holder; the lease stays untouched.
pub async fn a_live_lease_refuses_another_holder(store: Arc<dyn NodeLeases>) {
    let (node_id, alpha, beta) = (unique_node_id(), holder("alpha"), holder("beta"));
    let granted = take(&store, node_id, &alpha, LONG).await;
    refused(&store, node_id, &beta, &alpha).await;
    let after = current(&store, node_id)
        .await
        .expect("the lease must still be there");
    assert_eq!(after.holder, alpha.id, "a refused take must not steal");
    assert_eq!(
        after.expires_at_ms, granted.expires_at_ms,
        "a refused take must not move the lease's expiry"
    );
}

/// The holder may take its lease again at any time: that renews it (later
/// expiry, new description) and keeps when it was first acquired.
pub async fn the_holder_renews_its_lease(store: Arc<dyn NodeLeases>) {
    let (node_id, alpha) = (unique_node_id(), holder("alpha"));
    let first = take(&store, node_id, &alpha, LONG).await;
    let restarted = LeaseHolder {
        id: alpha.id.clone(),
        description: format!("{} after a restart", alpha.description),
    };
    let renewed = take(&store, node_id, &restarted, LONG * 2).await;
    assert_eq!(renewed.holder, alpha.id);
    assert_eq!(
        renewed.description, restarted.description,
        "a renewal replaces the description"
    );
    assert_eq!(
        renewed.acquired_at_ms, first.acquired_at_ms,
        "a renewal keeps the acquisition time"
    );
    assert!(
        renewed.renewed_at_ms >= first.renewed_at_ms,
        "a renewal moves the renewal time forward"
    );
    assert!(
        renewed.expires_at_ms > first.expires_at_ms && renewed.valid_for > LONG,
        "a renewal for twice the ttl extends the lease: {first:?} then {renewed:?}"
    );
}

/// An expired lease is reported with no validity left and goes to the next
/// holder that asks; its former holder is then refused, which is how a node
/// that stalled past its ttl learns that it lost its id.
pub async fn an_expired_lease_goes_to_the_next_holder(store: Arc<dyn NodeLeases>) {
    let (node_id, alpha, beta) = (unique_node_id(), holder("alpha"), holder("beta"));
    let first = take(&store, node_id, &alpha, SHORT).await;
    let expired = wait_until_expired(&store, node_id).await;
    assert_eq!(
        expired.holder, alpha.id,
        "an expired lease is still reported, with its holder"
    );
    let taken = take(&store, node_id, &beta, LONG).await;
    assert_eq!(taken.holder, beta.id);
    assert!(
        taken.acquired_at_ms >= first.expires_at_ms,
        "a new holder's lease is acquired anew: {first:?} then {taken:?}"
    );
    refused(&store, node_id, &alpha, &beta).await;
}

/// A holder whose lease expired gets it back if nobody took it meanwhile
/// (nobody else ran the id in between), keeping its acquisition time.
pub async fn the_holder_reclaims_its_expired_lease(store: Arc<dyn NodeLeases>) {
    let (node_id, alpha) = (unique_node_id(), holder("alpha"));
    let first = take(&store, node_id, &alpha, SHORT).await;
    wait_until_expired(&store, node_id).await;
    let again = take(&store, node_id, &alpha, LONG).await;
    assert_eq!(again.holder, alpha.id);
    assert_eq!(again.acquired_at_ms, first.acquired_at_ms);
    assert!(!again.valid_for.is_zero(), "the reclaimed lease is live");
}

/// Releasing removes the lease at once, so another holder gets the id
/// without waiting for it to expire; releasing again finds nothing.
pub async fn release_frees_the_node_id_at_once(store: Arc<dyn NodeLeases>) {
    let (node_id, alpha, beta) = (unique_node_id(), holder("alpha"), holder("beta"));
    take(&store, node_id, &alpha, LONG).await;
    assert!(
        store
            .release(node_id, &alpha.id)
            .await
            .expect("release must succeed"),
        "releasing a held lease reports that it was held"
    );
    assert_eq!(
        current(&store, node_id).await,
        None,
        "a released lease is gone"
    );
    take(&store, node_id, &beta, LONG).await;
    assert!(
        !store
            .release(node_id, &alpha.id)
            .await
            .expect("a second release must succeed"),
        "releasing a lease one no longer holds reports that nothing was held"
    );
    assert_eq!(
        current(&store, node_id).await.map(|l| l.holder),
        Some(beta.id.clone()),
        "a former holder's release must not remove the new holder's lease"
    );
}

/// Only the holder can release its lease: another holder's release leaves
/// it live.
pub async fn release_leaves_another_holders_lease_alone(store: Arc<dyn NodeLeases>) {
    let (node_id, alpha, beta) = (unique_node_id(), holder("alpha"), holder("beta"));
    take(&store, node_id, &alpha, LONG).await;
    assert!(
        !store
            .release(node_id, &beta.id)
            .await
            .expect("release must succeed"),
        "a holder without the lease releases nothing"
    );
    refused(&store, node_id, &beta, &alpha).await;
}

/// Leases are per node id: one holder's lease does not block other ids, and
/// releasing one leaves the others.
pub async fn leases_are_per_node_id(store: Arc<dyn NodeLeases>) {
    let (one, two) = (unique_node_id(), unique_node_id());
    let (alpha, beta) = (holder("alpha"), holder("beta"));
    take(&store, one, &alpha, LONG).await;
    take(&store, two, &beta, LONG).await;
    refused(&store, two, &alpha, &beta).await;
    assert!(store
        .release(one, &alpha.id)
        .await
        .expect("release must succeed"));
    assert_eq!(
        current(&store, two).await.map(|l| l.holder),
        Some(beta.id.clone()),
        "releasing one node id must leave another's lease"
    );
}

/// Holders racing for one node id: exactly one gets it, every other is
/// refused, and the store names the winner.
async fn race(store: &Arc<dyn NodeLeases>, node_id: u16) {
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for i in 0..RACERS {
        let (store, start) = (Arc::clone(store), Arc::clone(&start));
        let racer = holder(&format!("racer{i}"));
        racers.spawn(async move {
            start.wait().await;
            let outcome = store.acquire(node_id, &racer, LONG).await;
            (racer, outcome)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = racers.join_next().await {
        let (racer, outcome) = joined.expect("a racing task must not panic");
        match outcome {
            Ok(lease) => {
                assert_eq!(lease.holder, racer.id);
                winners.push(racer.id);
            }
            Err(StoreError::AlreadyExists(_)) => {}
            Err(other) => panic!("a racing take must be granted or refused, got {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {RACERS} racing holders must get node id {node_id}: {winners:?}"
    );
    assert_eq!(
        current(store, node_id).await.map(|l| l.holder),
        Some(winners[0].clone()),
        "the store must name the winner"
    );
}

/// Holders racing for a free node id: exactly one gets it.
pub async fn racing_for_a_free_node_id_grants_exactly_one(store: Arc<dyn NodeLeases>) {
    race(&store, unique_node_id()).await;
}

/// Holders racing for an expired lease: exactly one gets it.
pub async fn racing_for_an_expired_lease_grants_exactly_one(store: Arc<dyn NodeLeases>) {
    let node_id = unique_node_id();
    take(&store, node_id, &holder("gone"), SHORT).await;
    wait_until_expired(&store, node_id).await;
    race(&store, node_id).await;
}

/// Expands to one `#[tokio::test]` per [`NodeLeases`] conformance check (see
/// [`conformance::leases`](crate::conformance::leases)).
///
/// The argument is an expression whose `.await` yields a
/// [`NodeLeasesFixture`](crate::conformance::leases::NodeLeasesFixture); it
/// is evaluated afresh for every check. The calling crate needs `tokio` (with
/// the `macros` and `rt-multi-thread` features) among its dev-dependencies.
#[macro_export]
macro_rules! node_leases_conformance_tests {
    (@checks ($fixture:expr) $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture.await;
                let store = $crate::conformance::leases::NodeLeasesFixture::store(&fixture);
                $crate::conformance::leases::$check(store).await;
            }
        )*
    };
    ($fixture:expr $(,)?) => {
        $crate::node_leases_conformance_tests!(@checks ($fixture)
            a_free_node_id_is_granted,
            a_live_lease_refuses_another_holder,
            the_holder_renews_its_lease,
            an_expired_lease_goes_to_the_next_holder,
            the_holder_reclaims_its_expired_lease,
            release_frees_the_node_id_at_once,
            release_leaves_another_holders_lease_alone,
            leases_are_per_node_id,
            racing_for_a_free_node_id_grants_exactly_one,
            racing_for_an_expired_lease_grants_exactly_one,
        );
    };
}
