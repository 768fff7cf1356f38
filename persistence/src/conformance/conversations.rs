//! The conversation part of the [`MetadataStore`] conformance suite: records,
//! compare-and-set updates, the member index and read cursors.
//!
//! These checks run with the rest of the metadata suite through
//! [`metadata_conformance_tests!`](crate::metadata_conformance_tests); each takes
//! the store under test and panics with a message naming the broken promise.

use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{unique_conversation_id, unique_username};
use crate::{
    ConversationKind, ConversationRecord, MemberRecord, MetadataStore, ReadCursor, Role, StoreError,
};

/// How many tasks race in the concurrency checks.
const RACERS: usize = 16;

/// A member entry.
fn member(user: &str, role: Role, joined_at_ms: i64) -> MemberRecord {
    MemberRecord {
        user: user.to_owned(),
        role,
        joined_at_ms,
    }
}

/// A group conversation `id` named `name` whose first user is the owner and
/// the rest plain members.
fn group(id: &str, name: &str, users: &[&str]) -> ConversationRecord {
    let members = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let role = if i == 0 { Role::Owner } else { Role::Member };
            member(user, role, 1_000 + i as i64)
        })
        .collect();
    ConversationRecord {
        id: id.to_owned(),
        kind: ConversationKind::Group,
        name: name.to_owned(),
        members,
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
        version: 1,
    }
}

/// Reads conversation `id`, which must exist.
async fn stored(store: &Arc<dyn MetadataStore>, id: &str) -> ConversationRecord {
    store
        .get_conversation(id)
        .await
        .expect("get_conversation must succeed")
        .unwrap_or_else(|| panic!("conversation {id:?} must exist"))
}

/// Ids `user` is a member of, per the store.
async fn ids_of(store: &Arc<dyn MetadataStore>, user: &str) -> Vec<String> {
    store
        .conversations_of(user)
        .await
        .expect("conversations_of must succeed")
}

/// A created conversation is stored with version 1, whatever version was passed
/// in, and reads back exactly as create returned it.
pub async fn create_conversation_stores_version_one(store: Arc<dyn MetadataStore>) {
    let id = unique_conversation_id("new");
    let (alice, bob) = (unique_username("alice"), unique_username("bob"));
    let mut input = group(&id, "launch", &[&alice, &bob]);
    input.version = 42;
    let created = store
        .create_conversation(input.clone())
        .await
        .expect("creating a fresh conversation must succeed");
    assert_eq!(created.version, 1, "a new conversation must have version 1");
    assert_eq!(
        ConversationRecord {
            version: 1,
            ..input
        },
        created,
        "create must store the given fields"
    );
    assert_eq!(
        stored(&store, &id).await,
        created,
        "get_conversation must return what create_conversation stored"
    );
}

/// A taken conversation id is `AlreadyExists`; the stored record and the member
/// index stay as the first create left them.
pub async fn create_conversation_with_taken_id_is_already_exists(store: Arc<dyn MetadataStore>) {
    let id = unique_conversation_id("dup");
    let (alice, mallory) = (unique_username("alice"), unique_username("mallory"));
    let first = store
        .create_conversation(group(&id, "first", &[&alice]))
        .await
        .expect("the first create must succeed");
    let err = store
        .create_conversation(group(&id, "second", &[&mallory]))
        .await
        .expect_err("a second create with a taken id must fail");
    assert!(
        matches!(err, StoreError::AlreadyExists(_)),
        "a taken conversation id must be AlreadyExists, got {err:?}"
    );
    assert_eq!(
        stored(&store, &id).await,
        first,
        "a rejected create must not change the conversation"
    );
    assert!(
        ids_of(&store, &mallory).await.is_empty(),
        "a rejected create must not index its members"
    );
}

/// Looking up a conversation id nobody created is `Ok(None)`.
pub async fn unknown_conversation_is_none(store: Arc<dyn MetadataStore>) {
    let id = unique_conversation_id("nowhere");
    let found = store
        .get_conversation(&id)
        .await
        .expect("looking up an unknown conversation must not fail");
    assert_eq!(found, None, "an unknown conversation must not be found");
}

/// Every field, including extreme values, all roles and both kinds, is stored exactly.
pub async fn conversation_fields_round_trip(store: Arc<dyn MetadataStore>) {
    let (a, b, c) = (
        unique_username("ra"),
        unique_username("rb"),
        unique_username("rc"),
    );
    let group_record = ConversationRecord {
        id: unique_conversation_id("grp"),
        kind: ConversationKind::Group,
        name: "Ünïcödé \"quoted\" \\ name 🚀".to_owned(),
        members: vec![
            member(&a, Role::Owner, i64::MIN),
            member(&b, Role::Admin, 0),
            member(&c, Role::Member, i64::MAX),
        ],
        created_at_ms: i64::MIN,
        updated_at_ms: i64::MAX,
        version: 1,
    };
    let direct = ConversationRecord {
        id: unique_conversation_id("dm"),
        kind: ConversationKind::Direct,
        name: String::new(),
        members: vec![member(&a, Role::Member, -1), member(&b, Role::Member, -1)],
        created_at_ms: -1,
        updated_at_ms: 0,
        version: 1,
    };
    for record in [group_record, direct] {
        let created = store
            .create_conversation(record.clone())
            .await
            .unwrap_or_else(|e| panic!("creating {:?} must succeed: {e:?}", record.id));
        assert_eq!(created, record, "create changed {:?}", record.id);
        assert_eq!(
            stored(&store, &record.id).await,
            record,
            "{:?} did not read back exactly",
            record.id
        );
    }
}

/// A compare-and-set update with the current version stores the new record with
/// the version incremented, ignoring the version field passed in.
pub async fn update_conversation_increments_version(store: Arc<dyn MetadataStore>) {
    let id = unique_conversation_id("upd");
    let alice = unique_username("alice");
    store
        .create_conversation(group(&id, "before", &[&alice]))
        .await
        .expect("create must succeed");

    let mut renamed = group(&id, "after", &[&alice]);
    renamed.updated_at_ms = 2_000;
    renamed.version = 99;
    let second = store
        .update_conversation(renamed.clone(), 1)
        .await
        .expect("an update with the current version must succeed");
    assert_eq!(second.version, 2, "the first update must store version 2");
    assert_eq!(
        second,
        ConversationRecord {
            version: 2,
            ..renamed
        },
        "update must store the given fields"
    );
    assert_eq!(stored(&store, &id).await, second, "update was not stored");

    let mut again = second.clone();
    again.name = "again".to_owned();
    let third = store
        .update_conversation(again, 2)
        .await
        .expect("an update with the new current version must succeed");
    assert_eq!(third.version, 3, "the second update must store version 3");
    assert_eq!(stored(&store, &id).await, third, "update was not stored");
}

/// An update whose expected version is not the stored one is `Conflict` and
/// changes nothing.
pub async fn stale_conversation_update_is_conflict(store: Arc<dyn MetadataStore>) {
    let id = unique_conversation_id("stale");
    let (alice, eve) = (unique_username("alice"), unique_username("eve"));
    store
        .create_conversation(group(&id, "v1", &[&alice]))
        .await
        .expect("create must succeed");
    let current = store
        .update_conversation(group(&id, "v2", &[&alice]), 1)
        .await
        .expect("the first update must succeed");

    for expected in [1, 3, 0] {
        let err = store
            .update_conversation(group(&id, "lost", &[&alice, &eve]), expected)
            .await
            .expect_err("an update with a stale version must fail");
        assert!(
            matches!(err, StoreError::Conflict(_)),
            "expected version {expected} against stored 2 must be Conflict, got {err:?}"
        );
    }
    assert_eq!(
        stored(&store, &id).await,
        current,
        "a conflicting update must not change the conversation"
    );
    assert!(
        ids_of(&store, &eve).await.is_empty(),
        "a conflicting update must not index its members"
    );
}

/// Updating a conversation that does not exist is `NotFound` and does not create it.
pub async fn update_of_unknown_conversation_is_not_found(store: Arc<dyn MetadataStore>) {
    let id = unique_conversation_id("ghost");
    let alice = unique_username("alice");
    let err = store
        .update_conversation(group(&id, "ghost", &[&alice]), 1)
        .await
        .expect_err("updating an unknown conversation must fail");
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "updating an unknown conversation must be NotFound, got {err:?}"
    );
    let found = store
        .get_conversation(&id)
        .await
        .expect("get_conversation must succeed");
    assert_eq!(
        found, None,
        "a failed update must not create the conversation"
    );
    assert!(
        ids_of(&store, &alice).await.is_empty(),
        "a failed update must not index its members"
    );
}

/// `conversations_of` lists exactly the conversations a user is currently in,
/// in id order, following members added and removed by updates.
pub async fn conversations_of_follows_membership(store: Arc<dyn MetadataStore>) {
    let (alice, bob, carol) = (
        unique_username("alice"),
        unique_username("bob"),
        unique_username("carol"),
    );
    // The tags fix the id order: "c_ma_..." < "c_mb_...".
    let (first, second) = (unique_conversation_id("ma"), unique_conversation_id("mb"));
    store
        .create_conversation(group(&second, "second", &[&alice]))
        .await
        .expect("create the second conversation");
    store
        .create_conversation(group(&first, "first", &[&alice, &bob]))
        .await
        .expect("create the first conversation");

    assert_eq!(
        ids_of(&store, &alice).await,
        vec![first.clone(), second.clone()],
        "alice is in both, listed in id order"
    );
    assert_eq!(ids_of(&store, &bob).await, vec![first.clone()]);
    assert!(ids_of(&store, &carol).await.is_empty(), "carol is in none");

    store
        .update_conversation(group(&first, "first", &[&alice, &carol]), 1)
        .await
        .expect("swap bob for carol");
    assert!(
        ids_of(&store, &bob).await.is_empty(),
        "a removed member must leave the index"
    );
    assert_eq!(
        ids_of(&store, &carol).await,
        vec![first.clone()],
        "an added member must enter the index"
    );
    assert_eq!(
        ids_of(&store, &alice).await,
        vec![first.clone(), second.clone()],
        "a member kept by an update must stay indexed"
    );

    store
        .update_conversation(group(&second, "second", &[&carol]), 1)
        .await
        .expect("replace alice by carol in the second conversation");
    assert_eq!(ids_of(&store, &alice).await, vec![first.clone()]);
    assert_eq!(ids_of(&store, &carol).await, vec![first, second]);
}

/// A user nobody has added to anything is in no conversation.
pub async fn conversations_of_unknown_user_is_empty(store: Arc<dyn MetadataStore>) {
    let nobody = unique_username("nobody");
    assert!(
        ids_of(&store, &nobody).await.is_empty(),
        "an unknown user must be in no conversation"
    );
}

/// Of many simultaneous updates from the same version exactly one wins, every
/// other is `Conflict`, and the stored record is the winner's.
pub async fn concurrent_conversation_updates_exactly_one_wins(store: Arc<dyn MetadataStore>) {
    let id = unique_conversation_id("race");
    let alice = unique_username("alice");
    store
        .create_conversation(group(&id, "start", &[&alice]))
        .await
        .expect("create must succeed");
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for racer in 0..RACERS {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        let record = group(&id, &format!("racer {racer}"), &[&alice]);
        racers.spawn(async move {
            start.wait().await;
            store.update_conversation(record, 1).await
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = racers.join_next().await {
        match joined.expect("a racing task must not panic") {
            Ok(record) => winners.push(record),
            Err(StoreError::Conflict(_)) => {}
            Err(other) => panic!("a losing update must be Conflict, got {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {RACERS} updates from version 1 must win, got {winners:?}"
    );
    assert_eq!(winners[0].version, 2, "the winner must store version 2");
    assert_eq!(
        stored(&store, &id).await,
        winners[0],
        "the stored conversation must be the winner's"
    );
}

/// A read cursor only moves forward; `mark_read` returns where it ended up.
pub async fn mark_read_never_moves_back(store: Arc<dyn MetadataStore>) {
    let id = unique_conversation_id("read");
    let alice = unique_username("alice");
    for (seq, expected) in [(5, 5), (3, 5), (5, 5), (9, 9), (0, 9), (u64::MAX, u64::MAX)] {
        let cursor = store
            .mark_read(&id, &alice, seq)
            .await
            .expect("mark_read must succeed");
        assert_eq!(
            cursor, expected,
            "marking {seq} read must leave the cursor at {expected}"
        );
    }
    let cursors = store
        .read_cursors(&id)
        .await
        .expect("read_cursors must succeed");
    assert_eq!(
        cursors,
        vec![ReadCursor {
            user: alice,
            read_up_to: u64::MAX
        }],
        "the cursor must read back at its highest mark"
    );
}

/// `read_cursors` lists each user who has read anything, in username order, and
/// only for the conversation asked about.
pub async fn read_cursors_list_each_reader(store: Arc<dyn MetadataStore>) {
    let (id, other) = (unique_conversation_id("rc"), unique_conversation_id("rc"));
    // The tags fix the username order.
    let (ra, rb, rc) = (
        unique_username("ra"),
        unique_username("rb"),
        unique_username("rc"),
    );
    assert!(
        store
            .read_cursors(&id)
            .await
            .expect("read_cursors must succeed")
            .is_empty(),
        "a conversation nobody read has no cursors"
    );
    store.mark_read(&id, &rb, 2).await.expect("mark rb");
    store.mark_read(&id, &ra, 4).await.expect("mark ra");
    let nothing = store.mark_read(&id, &rc, 0).await.expect("mark rc at 0");
    assert_eq!(nothing, 0, "marking 0 on a fresh cursor leaves it at 0");
    store
        .mark_read(&other, &ra, 7)
        .await
        .expect("mark elsewhere");

    let cursors = store
        .read_cursors(&id)
        .await
        .expect("read_cursors must succeed");
    assert_eq!(
        cursors,
        vec![
            ReadCursor {
                user: ra.clone(),
                read_up_to: 4
            },
            ReadCursor {
                user: rb,
                read_up_to: 2
            },
        ],
        "each reader once, in username order, without unread users or other conversations"
    );
    let elsewhere = store
        .read_cursors(&other)
        .await
        .expect("read_cursors must succeed");
    assert_eq!(
        elsewhere,
        vec![ReadCursor {
            user: ra,
            read_up_to: 7
        }],
        "cursors are per conversation"
    );
}

/// Simultaneous `mark_read`s leave the cursor at the highest of them, and none
/// returns a cursor below its own mark.
pub async fn concurrent_mark_read_keeps_the_highest(store: Arc<dyn MetadataStore>) {
    let id = unique_conversation_id("readrace");
    let alice = unique_username("alice");
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for seq in 1..=RACERS as u64 {
        let (store, start, id, alice) = (
            Arc::clone(&store),
            Arc::clone(&start),
            id.clone(),
            alice.clone(),
        );
        racers.spawn(async move {
            start.wait().await;
            (seq, store.mark_read(&id, &alice, seq).await)
        });
    }
    while let Some(joined) = racers.join_next().await {
        let (seq, cursor) = joined.expect("a racing task must not panic");
        let cursor = cursor.expect("mark_read must succeed");
        assert!(
            cursor >= seq,
            "marking {seq} returned a cursor below it: {cursor}"
        );
    }
    let cursors = store
        .read_cursors(&id)
        .await
        .expect("read_cursors must succeed");
    assert_eq!(
        cursors,
        vec![ReadCursor {
            user: alice,
            read_up_to: RACERS as u64
        }],
        "the cursor must end at the highest mark"
    );
}
