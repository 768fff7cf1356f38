//! The [`MetadataStore`] conformance suite.
//!
//! Every check takes the store under test as an `Arc<dyn MetadataStore>` and panics
//! with a message naming the broken promise. A backend runs them all with
//! [`metadata_conformance_tests!`](crate::metadata_conformance_tests):
//!
//! ```
//! // tests/embedded_conformance.rs
//! use std::sync::Arc;
//!
//! use persistence::embedded::EmbeddedStore;
//! use persistence::MetadataStore;
//!
//! persistence::metadata_conformance_tests!(async {
//!     let dir = tempfile::tempdir().expect("tempdir");
//!     let store = EmbeddedStore::open(dir.path()).expect("open");
//!     // The TempDir rides along so it outlives the store.
//!     (Arc::new(store) as Arc<dyn MetadataStore>, dir)
//! });
//! # fn main() {}
//! ```

use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::unique_username;
use crate::{MetadataStore, NewUser, StoreError};

/// What a backend's fixture expression hands to
/// [`metadata_conformance_tests!`](crate::metadata_conformance_tests): the store
/// under test, optionally with a guard (such as a temporary directory) that must
/// live until the check ends.
pub trait MetadataFixture {
    /// The store the check runs against.
    fn store(&self) -> Arc<dyn MetadataStore>;
}

impl MetadataFixture for Arc<dyn MetadataStore> {
    fn store(&self) -> Arc<dyn MetadataStore> {
        Arc::clone(self)
    }
}

/// A store plus a guard that is dropped after the store's handle.
impl<G> MetadataFixture for (Arc<dyn MetadataStore>, G) {
    fn store(&self) -> Arc<dyn MetadataStore> {
        Arc::clone(&self.0)
    }
}

/// How many tasks race in the concurrency checks.
const RACERS: usize = 16;

/// A sign-up request with the given fields.
fn new_user(username: &str, password_hash: &str, created_at_ms: i64) -> NewUser {
    NewUser {
        username: username.to_owned(),
        password_hash: password_hash.to_owned(),
        created_at_ms,
    }
}

/// A realistic encoded password hash, distinct per `seed`.
fn hash(seed: &str) -> String {
    format!("pbkdf2-sha256$600000$c2FsdC17c2VlZH0$aGFzaC0{seed}")
}

/// Creating a user returns the stored record: the given fields, enabled.
pub async fn create_returns_the_new_record(store: Arc<dyn MetadataStore>) {
    let name = unique_username("new");
    let record = store
        .create_user(new_user(&name, &hash("a"), 1_700_000_000_000))
        .await
        .expect("creating a fresh username must succeed");
    assert_eq!(
        record.username, name,
        "returned record has the wrong username"
    );
    assert_eq!(
        record.password_hash,
        hash("a"),
        "returned record has the wrong hash"
    );
    assert_eq!(
        record.created_at_ms, 1_700_000_000_000,
        "wrong created_at_ms"
    );
    assert!(!record.disabled, "a new user must start enabled");
}

/// A created user can be read back, identical to what create returned.
pub async fn create_then_get(store: Arc<dyn MetadataStore>) {
    let name = unique_username("get");
    let created = store
        .create_user(new_user(&name, &hash("b"), 42))
        .await
        .expect("creating a fresh username must succeed");
    let fetched = store
        .get_user(&name)
        .await
        .expect("get_user must succeed")
        .expect("a created user must be found");
    assert_eq!(
        fetched, created,
        "get_user must return what create_user stored"
    );
}

/// A taken username is rejected with `AlreadyExists`, and the first account is untouched.
pub async fn duplicate_username_is_rejected(store: Arc<dyn MetadataStore>) {
    let name = unique_username("dup");
    let first = store
        .create_user(new_user(&name, &hash("first"), 1))
        .await
        .expect("the first sign-up must succeed");
    let err = store
        .create_user(new_user(&name, &hash("second"), 2))
        .await
        .expect_err("a second sign-up with a taken username must fail");
    assert!(
        matches!(err, StoreError::AlreadyExists(_)),
        "a taken username must be AlreadyExists, got {err:?}"
    );
    let stored = store
        .get_user(&name)
        .await
        .expect("get_user must succeed")
        .expect("the first account must still exist");
    assert_eq!(
        stored, first,
        "a rejected sign-up must not change the account"
    );
}

/// Looking up a username nobody has is `Ok(None)`, not an error.
pub async fn unknown_user_is_none(store: Arc<dyn MetadataStore>) {
    let name = unique_username("nobody");
    let found = store
        .get_user(&name)
        .await
        .expect("looking up an unknown user must not fail");
    assert_eq!(found, None, "an unknown username must not be found");
}

/// Usernames are compared exactly (byte for byte); normalising them is the caller's job.
pub async fn usernames_match_exactly(store: Arc<dyn MetadataStore>) {
    let name = unique_username("case");
    store
        .create_user(new_user(&name, &hash("c"), 3))
        .await
        .expect("creating a fresh username must succeed");
    let upper = name.to_uppercase();
    let found = store.get_user(&upper).await.expect("get_user must succeed");
    assert_eq!(found, None, "{upper:?} must not find the account {name:?}");
    let prefix = &name[..name.len() - 1];
    let found = store.get_user(prefix).await.expect("get_user must succeed");
    assert_eq!(found, None, "{prefix:?} must not find the account {name:?}");
}

/// Disabling and re-enabling a user flips only the `disabled` flag.
pub async fn disable_and_enable(store: Arc<dyn MetadataStore>) {
    let name = unique_username("dis");
    let created = store
        .create_user(new_user(&name, &hash("d"), 4))
        .await
        .expect("creating a fresh username must succeed");

    store
        .set_user_disabled(&name, true)
        .await
        .expect("disabling an existing user must succeed");
    let disabled = store
        .get_user(&name)
        .await
        .expect("get_user must succeed")
        .expect("a disabled user must still be found");
    assert!(disabled.disabled, "the user must read back as disabled");
    assert_eq!(
        (
            &disabled.username,
            &disabled.password_hash,
            disabled.created_at_ms
        ),
        (
            &created.username,
            &created.password_hash,
            created.created_at_ms
        ),
        "disabling must not change any other field"
    );

    store
        .set_user_disabled(&name, false)
        .await
        .expect("re-enabling an existing user must succeed");
    let enabled = store
        .get_user(&name)
        .await
        .expect("get_user must succeed")
        .expect("a re-enabled user must be found");
    assert_eq!(
        enabled, created,
        "re-enabling must restore the original record"
    );
}

/// Setting the flag to the value it already has succeeds and changes nothing.
pub async fn disable_is_idempotent(store: Arc<dyn MetadataStore>) {
    let name = unique_username("idem");
    store
        .create_user(new_user(&name, &hash("e"), 5))
        .await
        .expect("creating a fresh username must succeed");
    for attempt in 1..=2 {
        store
            .set_user_disabled(&name, true)
            .await
            .unwrap_or_else(|e| panic!("disabling (attempt {attempt}) must succeed: {e:?}"));
    }
    let user = store
        .get_user(&name)
        .await
        .expect("get_user must succeed")
        .expect("the user must be found");
    assert!(user.disabled, "the user must stay disabled");
    store
        .set_user_disabled(&name, false)
        .await
        .expect("enabling must succeed");
    store
        .set_user_disabled(&name, false)
        .await
        .expect("enabling an enabled user must succeed");
    let user = store
        .get_user(&name)
        .await
        .expect("get_user must succeed")
        .expect("the user must be found");
    assert!(!user.disabled, "the user must stay enabled");
}

/// Disabling a username nobody has is `NotFound`, and creates no account.
pub async fn disable_unknown_is_not_found(store: Arc<dyn MetadataStore>) {
    let name = unique_username("ghost");
    let err = store
        .set_user_disabled(&name, true)
        .await
        .expect_err("disabling an unknown user must fail");
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "disabling an unknown user must be NotFound, got {err:?}"
    );
    let found = store.get_user(&name).await.expect("get_user must succeed");
    assert_eq!(found, None, "a failed disable must not create an account");
}

/// Disabling one user leaves every other user as it was.
pub async fn disabling_one_user_leaves_others_alone(store: Arc<dyn MetadataStore>) {
    let target = unique_username("tgt");
    let bystander = unique_username("by");
    store
        .create_user(new_user(&target, &hash("t"), 6))
        .await
        .expect("creating the target must succeed");
    let before = store
        .create_user(new_user(&bystander, &hash("b"), 7))
        .await
        .expect("creating the bystander must succeed");
    store
        .set_user_disabled(&target, true)
        .await
        .expect("disabling the target must succeed");
    let after = store
        .get_user(&bystander)
        .await
        .expect("get_user must succeed")
        .expect("the bystander must still exist");
    assert_eq!(after, before, "disabling one user must not touch another");
}

/// Field values at the edges of their ranges are stored exactly.
pub async fn extreme_values_round_trip(store: Arc<dyn MetadataStore>) {
    let long_hash = format!(
        "pbkdf2-sha256$4294967295${}${}",
        "A".repeat(512),
        "z".repeat(512)
    );
    let cases = [
        (unique_username("min"), String::new(), i64::MIN),
        (unique_username("neg"), "$".to_owned(), -1),
        (unique_username("zero"), hash("0"), 0),
        (unique_username("max"), long_hash, i64::MAX),
    ];
    for (name, password_hash, created_at_ms) in cases {
        store
            .create_user(new_user(&name, &password_hash, created_at_ms))
            .await
            .unwrap_or_else(|e| panic!("creating {name:?} must succeed: {e:?}"));
        let user = store
            .get_user(&name)
            .await
            .expect("get_user must succeed")
            .unwrap_or_else(|| panic!("{name:?} must be found"));
        assert_eq!(
            user.password_hash, password_hash,
            "hash of {name:?} changed"
        );
        assert_eq!(
            user.created_at_ms, created_at_ms,
            "created_at_ms of {name:?} changed"
        );
    }
}

/// Of many simultaneous sign-ups for one username, exactly one succeeds, every other
/// is `AlreadyExists`, and the stored account is the winner's.
pub async fn concurrent_create_exactly_one_wins(store: Arc<dyn MetadataStore>) {
    let name = unique_username("race");
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for racer in 0..RACERS {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        let user = new_user(&name, &hash(&racer.to_string()), racer as i64);
        racers.spawn(async move {
            start.wait().await;
            (racer, store.create_user(user).await)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = racers.join_next().await {
        let (racer, outcome) = joined.expect("a racing task must not panic");
        match outcome {
            Ok(record) => winners.push((racer, record)),
            Err(StoreError::AlreadyExists(_)) => {}
            Err(other) => panic!("a losing sign-up must be AlreadyExists, got {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {RACERS} simultaneous sign-ups must win, got {:?}",
        winners.iter().map(|(racer, _)| racer).collect::<Vec<_>>()
    );
    let (racer, winner) = &winners[0];
    assert_eq!(
        winner.password_hash,
        hash(&racer.to_string()),
        "winner returned another's record"
    );
    let stored = store
        .get_user(&name)
        .await
        .expect("get_user must succeed")
        .expect("the winning account must exist");
    assert_eq!(&stored, winner, "the stored account must be the winner's");
}

/// Many simultaneous sign-ups for different usernames all succeed and are all stored.
pub async fn concurrent_distinct_creates_all_succeed(store: Arc<dyn MetadataStore>) {
    let names: Vec<String> = (0..RACERS).map(|_| unique_username("many")).collect();
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for name in &names {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        let user = new_user(name, &hash(name), 8);
        racers.spawn(async move {
            start.wait().await;
            store.create_user(user).await
        });
    }
    while let Some(joined) = racers.join_next().await {
        let outcome = joined.expect("a sign-up task must not panic");
        outcome.expect("sign-ups for distinct usernames must all succeed");
    }
    for name in &names {
        let user = store
            .get_user(name)
            .await
            .expect("get_user must succeed")
            .unwrap_or_else(|| panic!("{name:?} must be stored"));
        assert_eq!(
            user.password_hash,
            hash(name),
            "{name:?} has another user's hash"
        );
    }
}

/// `flush` succeeds and completed writes stay readable after it.
pub async fn flush_keeps_completed_writes(store: Arc<dyn MetadataStore>) {
    let name = unique_username("flush");
    let created = store
        .create_user(new_user(&name, &hash("f"), 9))
        .await
        .expect("creating a fresh username must succeed");
    store.flush().await.expect("flush must succeed");
    let fetched = store
        .get_user(&name)
        .await
        .expect("get_user must succeed after flush")
        .expect("a user created before flush must be found");
    assert_eq!(fetched, created, "flush must not change stored data");
}

/// Expands to one `#[tokio::test]` per [`MetadataStore`] conformance check: the
/// user checks of [`conformance::metadata`](crate::conformance::metadata), the
/// conversation checks of [`conformance::conversations`](crate::conformance::conversations)
/// the push target checks of [`conformance::push_targets`](crate::conformance::push_targets)
/// and the relation checks of [`conformance::relations`](crate::conformance::relations).
///
/// The argument is an expression whose `.await` yields a
/// [`MetadataFixture`](crate::conformance::metadata::MetadataFixture): an
/// `Arc<dyn MetadataStore>`, or a `(Arc<dyn MetadataStore>, guard)` pair whose
/// guard (e.g. a temporary directory) lives until the check ends. It is evaluated
/// afresh for every check. The calling crate needs `tokio` (with the `macros` and
/// `rt-multi-thread` features) among its dev-dependencies.
#[macro_export]
macro_rules! metadata_conformance_tests {
    (@checks $suite:ident ($fixture:expr) $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture.await;
                let store =
                    $crate::conformance::metadata::MetadataFixture::store(&fixture);
                $crate::conformance::$suite::$check(store).await;
            }
        )*
    };
    ($fixture:expr $(,)?) => {
        $crate::metadata_conformance_tests!(@checks metadata ($fixture)
            create_returns_the_new_record,
            create_then_get,
            duplicate_username_is_rejected,
            unknown_user_is_none,
            usernames_match_exactly,
            disable_and_enable,
            disable_is_idempotent,
            disable_unknown_is_not_found,
            disabling_one_user_leaves_others_alone,
            extreme_values_round_trip,
            concurrent_create_exactly_one_wins,
            concurrent_distinct_creates_all_succeed,
            flush_keeps_completed_writes,
        );
        $crate::metadata_conformance_tests!(@checks conversations ($fixture)
            create_conversation_stores_version_one,
            create_conversation_with_taken_id_is_already_exists,
            unknown_conversation_is_none,
            conversation_fields_round_trip,
            update_conversation_increments_version,
            stale_conversation_update_is_conflict,
            update_of_unknown_conversation_is_not_found,
            conversations_of_follows_membership,
            conversations_of_unknown_user_is_empty,
            concurrent_conversation_updates_exactly_one_wins,
            mark_read_never_moves_back,
            read_cursors_list_each_reader,
            concurrent_mark_read_keeps_the_highest,
        );
        $crate::metadata_conformance_tests!(@checks push_targets ($fixture)
            push_targets_round_trip_in_device_order,
            push_target_put_replaces_the_device_entry,
            push_targets_are_per_user,
            push_targets_of_unknown_user_are_empty,
            push_target_delete_removes_only_that_device,
            push_target_delete_unknown_is_not_found,
            concurrent_push_target_puts_all_land,
        );
        $crate::metadata_conformance_tests!(@checks relations ($fixture)
            relations_round_trip_in_order,
            relation_put_replaces_and_delete_removes_one,
        );
    };
}
