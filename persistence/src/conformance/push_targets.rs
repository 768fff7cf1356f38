//! The push target part of the [`MetadataStore`] conformance suite: one target
//! per (user, device), listed per user in device order, replaced and removed.
//!
//! These checks run with the rest of the metadata suite through
//! [`metadata_conformance_tests!`](crate::metadata_conformance_tests); each takes
//! the store under test and panics with a message naming the broken promise.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::unique_username;
use crate::{MetadataStore, PushTarget, StoreError};

/// How many devices race in the concurrency check.
const RACERS: usize = 16;

/// A push target of `user`'s `device_id`.
fn target(user: &str, device_id: &str, kind: &str, to: &str, updated_at_ms: i64) -> PushTarget {
    PushTarget {
        user: user.to_owned(),
        device_id: device_id.to_owned(),
        kind: kind.to_owned(),
        target: to.to_owned(),
        updated_at_ms,
    }
}

/// The targets of `user`, which must be readable.
async fn targets_of(store: &Arc<dyn MetadataStore>, user: &str) -> Vec<PushTarget> {
    store
        .push_targets(user)
        .await
        .expect("push_targets must succeed")
}

/// Stored targets come back with every field, in device id order.
pub async fn push_targets_round_trip_in_device_order(store: Arc<dyn MetadataStore>) {
    let user = unique_username("push");
    let tablet = target(&user, "tablet", "ntfy", "topic-\u{e9}", i64::MAX);
    let phone = target(&user, "phone", "webhook", "opaque/token?x=1", -5);
    let laptop = target(&user, "laptop", "fcm", "", 0);
    for t in [&tablet, &phone, &laptop] {
        store
            .put_push_target(t.clone())
            .await
            .expect("put_push_target must succeed");
    }
    assert_eq!(
        targets_of(&store, &user).await,
        vec![laptop, phone, tablet],
        "targets must round-trip every field, in device id order"
    );
}

/// Storing a target for a device that has one replaces it.
pub async fn push_target_put_replaces_the_device_entry(store: Arc<dyn MetadataStore>) {
    let user = unique_username("push");
    store
        .put_push_target(target(&user, "phone", "webhook", "old", 1))
        .await
        .expect("first put must succeed");
    let newer = target(&user, "phone", "ntfy", "new", 2);
    store
        .put_push_target(newer.clone())
        .await
        .expect("second put must succeed");
    assert_eq!(
        targets_of(&store, &user).await,
        vec![newer],
        "a device has exactly one target, the last one stored"
    );
}

/// Targets belong to their user: another user, even one whose name is a
/// prefix of this one's, sees none of them.
pub async fn push_targets_are_per_user(store: Arc<dyn MetadataStore>) {
    let user = unique_username("push");
    let longer = format!("{user}x");
    let shorter = &user[..user.len() - 1];
    store
        .put_push_target(target(&user, "phone", "webhook", "mine", 1))
        .await
        .expect("put must succeed");
    store
        .put_push_target(target(&longer, "phone", "webhook", "theirs", 1))
        .await
        .expect("put must succeed");
    let mine = targets_of(&store, &user).await;
    assert_eq!(mine.len(), 1, "exactly the user's own target: {mine:?}");
    assert_eq!(mine[0].target, "mine", "the user's own target: {mine:?}");
    assert!(
        targets_of(&store, shorter).await.is_empty(),
        "a user whose name is a prefix has no targets"
    );
}

/// A user with no targets (or no account) lists none.
pub async fn push_targets_of_unknown_user_are_empty(store: Arc<dyn MetadataStore>) {
    assert!(
        targets_of(&store, &unique_username("nobody"))
            .await
            .is_empty(),
        "a user who never registered a device has no targets"
    );
}

/// Deleting removes exactly that device's target.
pub async fn push_target_delete_removes_only_that_device(store: Arc<dyn MetadataStore>) {
    let user = unique_username("push");
    let tablet = target(&user, "tablet", "webhook", "t", 1);
    store
        .put_push_target(target(&user, "phone", "webhook", "p", 1))
        .await
        .expect("put must succeed");
    store
        .put_push_target(tablet.clone())
        .await
        .expect("put must succeed");
    store
        .delete_push_target(&user, "phone")
        .await
        .expect("deleting a stored target must succeed");
    assert_eq!(
        targets_of(&store, &user).await,
        vec![tablet],
        "only the deleted device's target is gone"
    );
}

/// Deleting a target that is not there is [`StoreError::NotFound`], also right
/// after it was deleted once.
pub async fn push_target_delete_unknown_is_not_found(store: Arc<dyn MetadataStore>) {
    let user = unique_username("push");
    let err = store
        .delete_push_target(&user, "phone")
        .await
        .expect_err("deleting a missing target must fail");
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "deleting a missing target must be NotFound, got {err:?}"
    );
    store
        .put_push_target(target(&user, "phone", "webhook", "p", 1))
        .await
        .expect("put must succeed");
    store
        .delete_push_target(&user, "phone")
        .await
        .expect("the first delete must succeed");
    let again = store
        .delete_push_target(&user, "phone")
        .await
        .expect_err("a second delete must fail");
    assert!(
        matches!(again, StoreError::NotFound(_)),
        "a second delete must be NotFound, got {again:?}"
    );
}

/// Concurrent puts for distinct devices of one user all land.
pub async fn concurrent_push_target_puts_all_land(store: Arc<dyn MetadataStore>) {
    let user = unique_username("push");
    let mut tasks = JoinSet::new();
    for i in 0..RACERS {
        let store = Arc::clone(&store);
        let t = target(
            &user,
            &format!("device{i:02}"),
            "webhook",
            &format!("t{i}"),
            1,
        );
        tasks.spawn(async move { store.put_push_target(t).await });
    }
    while let Some(joined) = tasks.join_next().await {
        joined
            .expect("put task must not panic")
            .expect("every concurrent put must succeed");
    }
    let devices: Vec<String> = targets_of(&store, &user)
        .await
        .into_iter()
        .map(|t| t.device_id)
        .collect();
    let expected: Vec<String> = (0..RACERS).map(|i| format!("device{i:02}")).collect();
    assert_eq!(devices, expected, "every concurrent put must be stored");
}
