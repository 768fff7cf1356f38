//! The [`KeyDirectory`] conformance suite: device keys, one-time prekeys and
//! the atomic take of bundles.
//!
//! Every check takes the store under test as an `Arc<dyn KeyDirectory>` and
//! panics with a message naming the broken promise. A backend runs them all
//! with [`key_directory_conformance_tests!`](crate::key_directory_conformance_tests):
//!
//! ```
//! use std::sync::Arc;
//!
//! use persistence::embedded::EmbeddedStore;
//! use persistence::KeyDirectory;
//!
//! persistence::key_directory_conformance_tests!(async {
//!     let dir = tempfile::tempdir().expect("tempdir");
//!     let store = EmbeddedStore::open(dir.path()).expect("open");
//!     (Arc::new(store) as Arc<dyn KeyDirectory>, dir)
//! });
//! # fn main() {}
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::unique_username;
use crate::keys::{PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::{
    AddOneTimePrekeys, DeviceKeys, KeyDirectory, KeyLimits, OneTimePrekey, PutDeviceKeys,
    SignedPrekey,
};

/// What a backend's fixture expression hands to
/// [`key_directory_conformance_tests!`](crate::key_directory_conformance_tests):
/// the store under test, optionally with a guard that must live until the
/// check ends.
pub trait KeyDirectoryFixture {
    /// The store the check runs against.
    fn store(&self) -> Arc<dyn KeyDirectory>;
}

impl KeyDirectoryFixture for Arc<dyn KeyDirectory> {
    fn store(&self) -> Arc<dyn KeyDirectory> {
        Arc::clone(self)
    }
}

/// A store plus a guard that is dropped after the store's handle.
impl<G> KeyDirectoryFixture for (Arc<dyn KeyDirectory>, G) {
    fn store(&self) -> Arc<dyn KeyDirectory> {
        Arc::clone(&self.0)
    }
}

/// How many tasks race in the concurrency checks.
const RACERS: usize = 16;

/// Limits roomy enough not to matter.
const ROOMY: KeyLimits = KeyLimits {
    max_devices: 100,
    max_one_time_prekeys: 10_000,
};

/// Device keys whose every byte derives from `seed`, so different seeds give different keys.
fn keys(seed: u8) -> DeviceKeys {
    DeviceKeys {
        identity_key: [seed; PUBLIC_KEY_LEN],
        signed_prekey: SignedPrekey {
            public_key: [seed.wrapping_add(1); PUBLIC_KEY_LEN],
            signature: [seed.wrapping_add(2); SIGNATURE_LEN],
        },
        updated_at_ms: 1_700_000_000_000 + i64::from(seed),
    }
}

/// One-time prekeys with the given ids, each public key derived from its id.
fn prekeys(ids: impl IntoIterator<Item = u32>) -> Vec<OneTimePrekey> {
    ids.into_iter()
        .map(|id| OneTimePrekey {
            id,
            public_key: public_of(id),
        })
        .collect()
}

/// The public key [`prekeys`] gives id `id`.
fn public_of(id: u32) -> [u8; PUBLIC_KEY_LEN] {
    let mut key = [0xa5; PUBLIC_KEY_LEN];
    key[..4].copy_from_slice(&id.to_be_bytes());
    key
}

/// Stores `keys` for a device that must be new.
async fn create_device(store: &Arc<dyn KeyDirectory>, user: &str, device: &str, keys: DeviceKeys) {
    let outcome = store
        .put_device_keys(user, device, keys, ROOMY)
        .await
        .expect("put_device_keys must succeed");
    assert_eq!(
        outcome,
        PutDeviceKeys::Created,
        "the first put of a device creates it"
    );
}

/// Adds prekeys that must be accepted; returns the stored count.
async fn add(store: &Arc<dyn KeyDirectory>, user: &str, device: &str, ids: &[u32]) -> u64 {
    match store
        .add_one_time_prekeys(user, device, prekeys(ids.iter().copied()), ROOMY)
        .await
        .expect("add_one_time_prekeys must succeed")
    {
        AddOneTimePrekeys::Added { stored } => stored,
        other => panic!("adding fresh ids {ids:?} must succeed, got {other:?}"),
    }
}

/// The one-time prekey count of a device that must exist.
async fn count(store: &Arc<dyn KeyDirectory>, user: &str, device: &str) -> u64 {
    store
        .one_time_prekey_count(user, device)
        .await
        .expect("one_time_prekey_count must succeed")
        .unwrap_or_else(|| panic!("device {device:?} must exist"))
}

/// The ids handed out by one `take_bundles`, per device in device order.
async fn take_ids(store: &Arc<dyn KeyDirectory>, user: &str) -> Vec<(String, Option<u32>)> {
    store
        .take_bundles(user)
        .await
        .expect("take_bundles must succeed")
        .into_iter()
        .map(|b| (b.device_id, b.one_time_prekey.map(|p| p.id)))
        .collect()
}

/// Stored device keys read back unchanged; a new device has no prekeys.
pub async fn put_then_get(store: Arc<dyn KeyDirectory>) {
    let user = unique_username("put");
    create_device(&store, &user, "phone", keys(1)).await;
    let stored = store
        .device_keys(&user, "phone")
        .await
        .expect("device_keys must succeed");
    assert_eq!(
        stored,
        Some(keys(1)),
        "device_keys must return what was put"
    );
    assert_eq!(
        count(&store, &user, "phone").await,
        0,
        "a new device has no one-time prekeys"
    );
}

/// A device without keys reads as absent, takes no prekeys and yields no bundle.
pub async fn unknown_device_is_absent(store: Arc<dyn KeyDirectory>) {
    let user = unique_username("none");
    assert_eq!(
        store
            .device_keys(&user, "phone")
            .await
            .expect("device_keys"),
        None
    );
    assert_eq!(
        store
            .one_time_prekey_count(&user, "phone")
            .await
            .expect("one_time_prekey_count"),
        None,
        "an unknown device has no count"
    );
    assert_eq!(
        store
            .add_one_time_prekeys(&user, "phone", prekeys([1]), ROOMY)
            .await
            .expect("add_one_time_prekeys"),
        AddOneTimePrekeys::UnknownDevice,
        "prekeys for an unknown device must be refused"
    );
    assert!(
        take_ids(&store, &user).await.is_empty(),
        "a user without devices has no bundles"
    );
    assert_eq!(
        store
            .device_keys(&user, "phone")
            .await
            .expect("device_keys"),
        None,
        "a refused add must not create the device"
    );
}

/// Replacing keys with the same identity key keeps the device's prekeys.
pub async fn same_identity_replacement_keeps_prekeys(store: Arc<dyn KeyDirectory>) {
    let user = unique_username("rot");
    create_device(&store, &user, "phone", keys(1)).await;
    add(&store, &user, "phone", &[1, 2, 3]).await;
    let rotated = DeviceKeys {
        signed_prekey: keys(9).signed_prekey,
        ..keys(1)
    };
    let outcome = store
        .put_device_keys(&user, "phone", rotated, ROOMY)
        .await
        .expect("put_device_keys");
    assert_eq!(
        outcome,
        PutDeviceKeys::Replaced {
            discarded_one_time_prekeys: 0
        }
    );
    assert_eq!(
        store
            .device_keys(&user, "phone")
            .await
            .expect("device_keys"),
        Some(rotated),
        "the rotated signed prekey must be stored"
    );
    assert_eq!(
        count(&store, &user, "phone").await,
        3,
        "a signed prekey rotation must keep the one-time prekeys"
    );
}

/// Replacing keys with a new identity key discards the old prekeys.
pub async fn new_identity_discards_prekeys(store: Arc<dyn KeyDirectory>) {
    let user = unique_username("reinstall");
    create_device(&store, &user, "phone", keys(1)).await;
    create_device(&store, &user, "tablet", keys(5)).await;
    add(&store, &user, "phone", &[1, 2, 3]).await;
    add(&store, &user, "tablet", &[1, 2]).await;
    let outcome = store
        .put_device_keys(&user, "phone", keys(2), ROOMY)
        .await
        .expect("put_device_keys");
    assert_eq!(
        outcome,
        PutDeviceKeys::Replaced {
            discarded_one_time_prekeys: 3
        }
    );
    assert_eq!(count(&store, &user, "phone").await, 0);
    assert_eq!(
        count(&store, &user, "tablet").await,
        2,
        "another device's prekeys must stay"
    );
    assert_eq!(
        add(&store, &user, "phone", &[1]).await,
        1,
        "discarded ids may be used again"
    );
}

/// A new device is refused once the user has `max_devices`; existing ones may still be replaced.
pub async fn device_limit_is_enforced(store: Arc<dyn KeyDirectory>) {
    let user = unique_username("limit");
    let limits = KeyLimits {
        max_devices: 2,
        ..ROOMY
    };
    for device in ["a", "b"] {
        assert_eq!(
            store
                .put_device_keys(&user, device, keys(1), limits)
                .await
                .expect("put"),
            PutDeviceKeys::Created
        );
    }
    assert_eq!(
        store
            .put_device_keys(&user, "c", keys(1), limits)
            .await
            .expect("put"),
        PutDeviceKeys::TooManyDevices { max: 2 },
        "a third device must be refused"
    );
    assert_eq!(
        store.device_keys(&user, "c").await.expect("device_keys"),
        None,
        "a refused device must not be stored"
    );
    assert_eq!(
        store
            .put_device_keys(&user, "a", keys(3), limits)
            .await
            .expect("put"),
        PutDeviceKeys::Replaced {
            discarded_one_time_prekeys: 0
        },
        "replacing an existing device's keys is not a new device"
    );
    let other = unique_username("limit");
    assert_eq!(
        store
            .put_device_keys(&other, "c", keys(1), limits)
            .await
            .expect("put"),
        PutDeviceKeys::Created,
        "the limit is per user"
    );
}

/// Batches are counted, and one that would exceed the limit is refused whole.
pub async fn prekey_limit_is_enforced(store: Arc<dyn KeyDirectory>) {
    let user = unique_username("cap");
    create_device(&store, &user, "phone", keys(1)).await;
    let limits = KeyLimits {
        max_one_time_prekeys: 5,
        ..ROOMY
    };
    assert_eq!(
        store
            .add_one_time_prekeys(&user, "phone", prekeys(1..=3), limits)
            .await
            .expect("add"),
        AddOneTimePrekeys::Added { stored: 3 }
    );
    assert_eq!(
        store
            .add_one_time_prekeys(&user, "phone", prekeys(4..=6), limits)
            .await
            .expect("add"),
        AddOneTimePrekeys::TooMany { stored: 3, max: 5 }
    );
    assert_eq!(
        count(&store, &user, "phone").await,
        3,
        "a refused batch must store nothing"
    );
    assert_eq!(
        store
            .add_one_time_prekeys(&user, "phone", prekeys(4..=5), limits)
            .await
            .expect("add"),
        AddOneTimePrekeys::Added { stored: 5 },
        "filling up to the limit exactly is allowed"
    );
}

/// An id that is stored already, or repeated in the batch, refuses the whole batch.
pub async fn duplicate_ids_are_refused(store: Arc<dyn KeyDirectory>) {
    let user = unique_username("dup");
    create_device(&store, &user, "phone", keys(1)).await;
    add(&store, &user, "phone", &[10, 11]).await;
    for batch in [vec![12, 11, 13], vec![20, 21, 20]] {
        let repeated = if batch.contains(&11) { 11 } else { 20 };
        assert_eq!(
            store
                .add_one_time_prekeys(&user, "phone", prekeys(batch.clone()), ROOMY)
                .await
                .expect("add"),
            AddOneTimePrekeys::DuplicateId(repeated),
            "batch {batch:?} must be refused"
        );
    }
    assert_eq!(
        count(&store, &user, "phone").await,
        2,
        "refused batches must store nothing"
    );
    assert_eq!(
        add(&store, &user, "phone", &[12]).await,
        3,
        "an id of a refused batch is still free"
    );
    let other = unique_username("dup");
    create_device(&store, &other, "phone", keys(1)).await;
    assert_eq!(
        add(&store, &other, "phone", &[10, 11]).await,
        2,
        "ids are per device"
    );
}

/// Each take hands every device's lowest prekey out once, then bundles come without one.
pub async fn take_hands_out_lowest_prekeys_once(store: Arc<dyn KeyDirectory>) {
    let user = unique_username("take");
    create_device(&store, &user, "phone", keys(1)).await;
    create_device(&store, &user, "laptop", keys(2)).await;
    add(&store, &user, "phone", &[7, 3, 5]).await;
    add(&store, &user, "laptop", &[1]).await;

    let bundles = store.take_bundles(&user).await.expect("take_bundles");
    assert_eq!(bundles.len(), 2, "one bundle per device");
    assert_eq!(bundles[0].device_id, "laptop", "bundles in device id order");
    assert_eq!(
        bundles[0].keys,
        keys(2),
        "a bundle carries its device's keys"
    );
    assert_eq!(
        bundles[0].one_time_prekey,
        Some(OneTimePrekey {
            id: 1,
            public_key: public_of(1)
        })
    );
    assert_eq!(bundles[1].device_id, "phone");
    assert_eq!(bundles[1].keys, keys(1));
    assert_eq!(
        bundles[1].one_time_prekey.map(|p| p.id),
        Some(3),
        "lowest id first"
    );
    assert_eq!(count(&store, &user, "phone").await, 2, "a take consumes");
    assert_eq!(count(&store, &user, "laptop").await, 0);

    assert_eq!(
        take_ids(&store, &user).await,
        vec![("laptop".to_owned(), None), ("phone".to_owned(), Some(5))],
        "an exhausted device still yields its bundle, without a prekey"
    );
    assert_eq!(
        take_ids(&store, &user).await,
        vec![("laptop".to_owned(), None), ("phone".to_owned(), Some(7))]
    );
    assert_eq!(
        take_ids(&store, &user).await,
        vec![("laptop".to_owned(), None), ("phone".to_owned(), None)]
    );
}

/// Bundles are per user: a user whose name extends another's is a different user.
pub async fn bundles_are_per_user(store: Arc<dyn KeyDirectory>) {
    let user = unique_username("own");
    let longer = format!("{user}x");
    create_device(&store, &user, "phone", keys(1)).await;
    create_device(&store, &longer, "phone", keys(2)).await;
    create_device(&store, &longer, "a", keys(3)).await;
    add(&store, &user, "phone", &[1]).await;
    add(&store, &longer, "phone", &[1]).await;

    assert_eq!(
        take_ids(&store, &user).await,
        vec![("phone".to_owned(), Some(1))],
        "only the user's own devices"
    );
    assert_eq!(
        count(&store, &longer, "phone").await,
        1,
        "another user's prekey must not be taken"
    );
    let bundles = store.take_bundles(&longer).await.expect("take_bundles");
    let devices: Vec<&str> = bundles.iter().map(|b| b.device_id.as_str()).collect();
    assert_eq!(devices, ["a", "phone"]);
    assert_eq!(bundles[1].keys, keys(2));
}

/// Simultaneous takes never hand out one prekey twice, and hand out every
/// prekey there is while any is left.
pub async fn concurrent_takes_hand_out_each_prekey_at_most_once(store: Arc<dyn KeyDirectory>) {
    let user = unique_username("race");
    create_device(&store, &user, "phone", keys(1)).await;
    create_device(&store, &user, "tablet", keys(2)).await;
    // Fewer prekeys than racers on one device, more on the other.
    let phone_ids: Vec<u32> = (1..=10).collect();
    let tablet_ids: Vec<u32> = (100..100 + RACERS as u32 + 4).collect();
    add(&store, &user, "phone", &phone_ids).await;
    add(&store, &user, "tablet", &tablet_ids).await;

    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for _ in 0..RACERS {
        let (store, start, user) = (Arc::clone(&store), Arc::clone(&start), user.clone());
        racers.spawn(async move {
            start.wait().await;
            store.take_bundles(&user).await
        });
    }
    let mut handed_out: Vec<(String, u32)> = Vec::new();
    while let Some(joined) = racers.join_next().await {
        let bundles = joined
            .expect("a racing task must not panic")
            .expect("take_bundles must succeed");
        assert_eq!(bundles.len(), 2, "every take sees both devices");
        for bundle in bundles {
            if let Some(prekey) = bundle.one_time_prekey {
                assert_eq!(
                    prekey.public_key,
                    public_of(prekey.id),
                    "a prekey must come with its own public key"
                );
                handed_out.push((bundle.device_id, prekey.id));
            }
        }
    }
    let distinct: HashSet<&(String, u32)> = handed_out.iter().collect();
    assert_eq!(
        distinct.len(),
        handed_out.len(),
        "a one-time prekey was handed out twice: {handed_out:?}"
    );
    let phone: HashSet<u32> = handed_out
        .iter()
        .filter(|(d, _)| d == "phone")
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(
        phone,
        phone_ids.iter().copied().collect(),
        "all 10 phone prekeys must be handed out to 16 takers"
    );
    let tablet = handed_out.iter().filter(|(d, _)| d == "tablet").count();
    assert_eq!(tablet, RACERS, "every taker must get a tablet prekey");
    assert_eq!(count(&store, &user, "phone").await, 0);
    assert_eq!(count(&store, &user, "tablet").await, 4);
}

/// Simultaneous batches never push a device past its limit, and every
/// accepted batch is stored whole.
pub async fn concurrent_adds_respect_the_limit(store: Arc<dyn KeyDirectory>) {
    let user = unique_username("fill");
    create_device(&store, &user, "phone", keys(1)).await;
    let limits = KeyLimits {
        max_one_time_prekeys: 20,
        ..ROOMY
    };
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for racer in 0..RACERS as u32 {
        let (store, start, user) = (Arc::clone(&store), Arc::clone(&start), user.clone());
        racers.spawn(async move {
            start.wait().await;
            let batch = prekeys(racer * 3..racer * 3 + 3);
            store
                .add_one_time_prekeys(&user, "phone", batch, limits)
                .await
        });
    }
    let mut accepted = 0;
    while let Some(joined) = racers.join_next().await {
        match joined
            .expect("a racing task must not panic")
            .expect("add_one_time_prekeys must succeed")
        {
            AddOneTimePrekeys::Added { stored } => {
                assert!(stored <= 20, "stored {stored} prekeys, over the limit");
                accepted += 1;
            }
            AddOneTimePrekeys::TooMany { max: 20, .. } => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(accepted, 6, "exactly six batches of three fit under 20");
    assert_eq!(count(&store, &user, "phone").await, 18);
}

/// Expands to one `#[tokio::test]` per [`KeyDirectory`] conformance check
/// (see [`conformance::keys`](crate::conformance::keys)).
///
/// The argument is an expression whose `.await` yields a
/// [`KeyDirectoryFixture`](crate::conformance::keys::KeyDirectoryFixture); it
/// is evaluated afresh for every check. The calling crate needs `tokio` (with
/// the `macros` and `rt-multi-thread` features) among its dev-dependencies.
#[macro_export]
macro_rules! key_directory_conformance_tests {
    (@checks ($fixture:expr) $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture.await;
                let store = $crate::conformance::keys::KeyDirectoryFixture::store(&fixture);
                $crate::conformance::keys::$check(store).await;
            }
        )*
    };
    ($fixture:expr $(,)?) => {
        $crate::key_directory_conformance_tests!(@checks ($fixture)
            put_then_get,
            unknown_device_is_absent,
            same_identity_replacement_keeps_prekeys,
            new_identity_discards_prekeys,
            device_limit_is_enforced,
            prekey_limit_is_enforced,
            duplicate_ids_are_refused,
            take_hands_out_lowest_prekeys_once,
            bundles_are_per_user,
            concurrent_takes_hand_out_each_prekey_at_most_once,
            concurrent_adds_respect_the_limit,
        );
    };
}
