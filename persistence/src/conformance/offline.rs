//! The [`OfflineQueue`] conformance suite: delivered cursors.
//!
//! Every check takes the store under test as an `Arc<dyn OfflineQueue>` and panics
//! with a message naming the broken promise. A backend runs them all with
//! [`offline_conformance_tests!`](crate::offline_conformance_tests):
//!
//! ```
//! use std::sync::Arc;
//!
//! use persistence::embedded::EmbeddedStore;
//! use persistence::OfflineQueue;
//!
//! persistence::offline_conformance_tests!(async {
//!     let dir = tempfile::tempdir().expect("tempdir");
//!     let store = EmbeddedStore::open(dir.path()).expect("open");
//!     (Arc::new(store) as Arc<dyn OfflineQueue>, dir)
//! });
//! # fn main() {}
//! ```

use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{unique_conversation_id, unique_username};
use crate::OfflineQueue;

/// What a backend's fixture expression hands to
/// [`offline_conformance_tests!`](crate::offline_conformance_tests): the store
/// under test, optionally with a guard that must live until the check ends.
pub trait OfflineFixture {
    /// The store the check runs against.
    fn store(&self) -> Arc<dyn OfflineQueue>;
}

impl OfflineFixture for Arc<dyn OfflineQueue> {
    fn store(&self) -> Arc<dyn OfflineQueue> {
        Arc::clone(self)
    }
}

/// A store plus a guard that is dropped after the store's handle.
impl<G> OfflineFixture for (Arc<dyn OfflineQueue>, G) {
    fn store(&self) -> Arc<dyn OfflineQueue> {
        Arc::clone(&self.0)
    }
}

/// How many tasks race in the concurrency check.
const RACERS: usize = 16;

/// The delivered cursor, which must be readable.
async fn cursor(store: &Arc<dyn OfflineQueue>, user: &str, conversation_id: &str) -> u64 {
    store
        .delivered(user, conversation_id)
        .await
        .expect("delivered must succeed")
}

/// A cursor nothing was delivered on reads 0.
pub async fn delivered_defaults_to_zero(store: Arc<dyn OfflineQueue>) {
    let (user, id) = (unique_username("fresh"), unique_conversation_id("fresh"));
    assert_eq!(
        cursor(&store, &user, &id).await,
        0,
        "an untouched cursor must be 0"
    );
}

/// A delivered cursor only moves forward; `mark_delivered` returns where it ended up.
pub async fn mark_delivered_never_moves_back(store: Arc<dyn OfflineQueue>) {
    let (user, id) = (unique_username("mono"), unique_conversation_id("mono"));
    for (seq, expected) in [
        (0, 0),
        (4, 4),
        (2, 4),
        (4, 4),
        (10, 10),
        (u64::MAX, u64::MAX),
    ] {
        let after = store
            .mark_delivered(&user, &id, seq)
            .await
            .expect("mark_delivered must succeed");
        assert_eq!(
            after, expected,
            "marking {seq} delivered must leave the cursor at {expected}"
        );
        assert_eq!(
            cursor(&store, &user, &id).await,
            expected,
            "delivered must read back what mark_delivered returned"
        );
    }
}

/// Cursors are kept per user and per conversation: moving one moves no other.
pub async fn cursors_are_per_user_and_conversation(store: Arc<dyn OfflineQueue>) {
    let (alice, bob) = (unique_username("alice"), unique_username("bob"));
    let (first, second) = (unique_conversation_id("one"), unique_conversation_id("two"));
    store
        .mark_delivered(&alice, &first, 7)
        .await
        .expect("mark alice in first");
    store
        .mark_delivered(&bob, &second, 3)
        .await
        .expect("mark bob in second");
    assert_eq!(cursor(&store, &alice, &first).await, 7);
    assert_eq!(
        cursor(&store, &alice, &second).await,
        0,
        "alice's cursor in another conversation must not move"
    );
    assert_eq!(
        cursor(&store, &bob, &first).await,
        0,
        "another user's cursor in the same conversation must not move"
    );
    assert_eq!(cursor(&store, &bob, &second).await, 3);
}

/// Simultaneous `mark_delivered`s leave the cursor at the highest of them, and
/// none returns a cursor below its own mark.
pub async fn concurrent_marks_keep_the_highest(store: Arc<dyn OfflineQueue>) {
    let (user, id) = (unique_username("race"), unique_conversation_id("race"));
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    // Racers mark in descending order of spawn, so the scheduler has to reorder to be lucky.
    for seq in (1..=RACERS as u64).rev() {
        let (store, start, user, id) = (
            Arc::clone(&store),
            Arc::clone(&start),
            user.clone(),
            id.clone(),
        );
        racers.spawn(async move {
            start.wait().await;
            (seq, store.mark_delivered(&user, &id, seq).await)
        });
    }
    while let Some(joined) = racers.join_next().await {
        let (seq, after) = joined.expect("a racing task must not panic");
        let after = after.expect("mark_delivered must succeed");
        assert!(
            after >= seq,
            "marking {seq} returned a cursor below it: {after}"
        );
    }
    assert_eq!(
        cursor(&store, &user, &id).await,
        RACERS as u64,
        "the cursor must end at the highest mark"
    );
}

/// Expands to one `#[tokio::test]` per [`OfflineQueue`] conformance check (see
/// [`conformance::offline`](crate::conformance::offline)).
///
/// The argument is an expression whose `.await` yields an
/// [`OfflineFixture`](crate::conformance::offline::OfflineFixture); it is
/// evaluated afresh for every check. The calling crate needs `tokio` (with the
/// `macros` and `rt-multi-thread` features) among its dev-dependencies.
#[macro_export]
macro_rules! offline_conformance_tests {
    (@checks ($fixture:expr) $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture.await;
                let store = $crate::conformance::offline::OfflineFixture::store(&fixture);
                $crate::conformance::offline::$check(store).await;
            }
        )*
    };
    ($fixture:expr $(,)?) => {
        $crate::offline_conformance_tests!(@checks ($fixture)
            delivered_defaults_to_zero,
            mark_delivered_never_moves_back,
            cursors_are_per_user_and_conversation,
            concurrent_marks_keep_the_highest,
        );
    };
}
