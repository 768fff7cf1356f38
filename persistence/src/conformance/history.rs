//! The [`HistoryStore`] conformance suite: sequence numbers, idempotent retries,
//! amends, paging, and appends racing each other.
//!
//! Every check takes the store under test as an `Arc<dyn HistoryStore>` and panics
//! with a message naming the broken promise. A backend runs them all with
//! [`history_conformance_tests!`](crate::history_conformance_tests):
//!
//! ```
//! use std::sync::Arc;
//!
//! use persistence::embedded::EmbeddedStore;
//! use persistence::HistoryStore;
//!
//! persistence::history_conformance_tests!(async {
//!     let dir = tempfile::tempdir().expect("tempdir");
//!     let store = EmbeddedStore::open(dir.path()).expect("open");
//!     (Arc::new(store) as Arc<dyn HistoryStore>, dir)
//! });
//! # fn main() {}
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{unique_conversation_id, unique_username};
use crate::{
    Amend, AppendRequest, Appended, Direction, HistoryStore, PageRequest, StoreError, StoredMessage,
};

/// What a backend's fixture expression hands to
/// [`history_conformance_tests!`](crate::history_conformance_tests): the store
/// under test, optionally with a guard that must live until the check ends.
pub trait HistoryFixture {
    /// The store the check runs against.
    fn store(&self) -> Arc<dyn HistoryStore>;
}

impl HistoryFixture for Arc<dyn HistoryStore> {
    fn store(&self) -> Arc<dyn HistoryStore> {
        Arc::clone(self)
    }
}

/// A store plus a guard that is dropped after the store's handle.
impl<G> HistoryFixture for (Arc<dyn HistoryStore>, G) {
    fn store(&self) -> Arc<dyn HistoryStore> {
        Arc::clone(&self.0)
    }
}

/// How many tasks append at once in the concurrency checks.
const TASKS: usize = 8;
/// How many messages each of them appends.
const PER_TASK: usize = 50;
/// How many tasks race to store the same retry.
const RACERS: usize = 16;

/// A plain message (no amend) with a random message id and a time derived from it.
fn request(
    conversation: &str,
    sender: &str,
    client_message_id: &str,
    payload: &[u8],
) -> AppendRequest {
    let message_id = rand::random::<u64>();
    AppendRequest {
        conversation_id: conversation.to_owned(),
        sender: sender.to_owned(),
        client_message_id: client_message_id.to_owned(),
        message_id,
        server_time_ms: (message_id >> 24) as i64,
        payload: payload.to_vec(),
        amend: None,
    }
}

/// An edit entry whose append replaces the payload of `target_seq` by `new_payload`.
fn amend(
    conversation: &str,
    sender: &str,
    client_message_id: &str,
    target_seq: u64,
    new_payload: &[u8],
) -> AppendRequest {
    AppendRequest {
        amend: Some(Amend {
            target_seq,
            payload: new_payload.to_vec(),
        }),
        ..request(conversation, sender, client_message_id, b"edit entry")
    }
}

/// Appends `request`, which must succeed.
async fn append_ok(store: &Arc<dyn HistoryStore>, request: AppendRequest) -> Appended {
    let what = format!(
        "append of {:?} to {:?}",
        request.client_message_id, request.conversation_id
    );
    store
        .append(request)
        .await
        .unwrap_or_else(|e| panic!("{what} must succeed: {e:?}"))
}

/// Appends `count` plain messages `m1..` to `conversation` from `sender`.
async fn append_many(store: &Arc<dyn HistoryStore>, conversation: &str, sender: &str, count: u64) {
    for i in 1..=count {
        append_ok(
            store,
            request(conversation, sender, &format!("m{i}"), &[i as u8]),
        )
        .await;
    }
}

/// The stored message `seq`, which must exist.
async fn get_ok(store: &Arc<dyn HistoryStore>, conversation: &str, seq: u64) -> StoredMessage {
    store
        .get(conversation, seq)
        .await
        .expect("get must succeed")
        .unwrap_or_else(|| panic!("message {seq} of {conversation:?} must exist"))
}

/// The highest seq of `conversation`.
async fn last(store: &Arc<dyn HistoryStore>, conversation: &str) -> u64 {
    store
        .last_seq(conversation)
        .await
        .expect("last_seq must succeed")
}

/// The seqs of a page.
async fn page_seqs(
    store: &Arc<dyn HistoryStore>,
    conversation: &str,
    after_seq: u64,
    before_seq: u64,
    limit: usize,
    direction: Direction,
) -> Vec<u64> {
    let page = PageRequest {
        after_seq,
        before_seq,
        limit,
        direction,
    };
    store
        .fetch(conversation, page)
        .await
        .unwrap_or_else(|e| panic!("fetch {page:?} must succeed: {e:?}"))
        .iter()
        .map(|m| m.seq)
        .collect()
}

/// Every message of `conversation`, oldest first.
async fn everything(store: &Arc<dyn HistoryStore>, conversation: &str) -> Vec<StoredMessage> {
    let page = PageRequest {
        after_seq: 0,
        before_seq: u64::MAX,
        limit: usize::MAX,
        direction: Direction::Forward,
    };
    store
        .fetch(conversation, page)
        .await
        .expect("fetching everything must succeed")
}

/// Appends get seqs 1, 2, 3, ... and `Appended` echoes the request.
pub async fn append_assigns_consecutive_seqs_from_one(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("seq");
    let alice = unique_username("alice");
    assert_eq!(
        last(&store, &conversation).await,
        0,
        "a new conversation is empty"
    );
    for expected in 1..=3u64 {
        let req = request(&conversation, &alice, &format!("m{expected}"), b"hi");
        let appended = append_ok(&store, req.clone()).await;
        assert_eq!(
            appended,
            Appended {
                seq: expected,
                message_id: req.message_id,
                server_time_ms: req.server_time_ms,
                duplicate: false,
            },
            "append {expected} must get seq {expected} and echo the request"
        );
        assert_eq!(
            last(&store, &conversation).await,
            expected,
            "last_seq must follow appends"
        );
    }
}

/// A stored message reads back with every field as appended, extreme values included.
pub async fn appended_messages_read_back_exactly(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("exact");
    let sender = unique_username("sender");
    let cases = [
        (
            u64::MAX,
            i64::MIN,
            "ü-ñ-🚀".to_owned(),
            (0..=255u8).collect::<Vec<u8>>(),
        ),
        (0, i64::MAX, String::new(), Vec::new()),
        (1, -1, "x".repeat(300), vec![0xa5; 256 * 1024]),
    ];
    let mut expected = Vec::new();
    for (message_id, server_time_ms, client_message_id, payload) in cases {
        let req = AppendRequest {
            conversation_id: conversation.clone(),
            sender: sender.clone(),
            client_message_id: client_message_id.clone(),
            message_id,
            server_time_ms,
            payload: payload.clone(),
            amend: None,
        };
        let appended = append_ok(&store, req).await;
        let message = StoredMessage {
            conversation_id: conversation.clone(),
            seq: appended.seq,
            message_id,
            sender: sender.clone(),
            client_message_id,
            server_time_ms,
            payload,
        };
        assert_eq!(
            get_ok(&store, &conversation, appended.seq).await,
            message,
            "get must return message {} exactly as appended",
            appended.seq
        );
        expected.push(message);
    }
    assert_eq!(
        everything(&store, &conversation).await,
        expected,
        "fetch must return the messages exactly as appended"
    );
}

/// Each conversation numbers its messages on its own, and never shows another's.
pub async fn conversations_number_independently(store: Arc<dyn HistoryStore>) {
    let (first, second) = (unique_conversation_id("one"), unique_conversation_id("two"));
    let alice = unique_username("alice");
    let mut seqs = Vec::new();
    for i in 0..3 {
        for conversation in [&first, &second] {
            let appended = append_ok(
                &store,
                request(conversation, &alice, &format!("m{i}"), b"x"),
            )
            .await;
            seqs.push(appended.seq);
        }
    }
    assert_eq!(
        seqs,
        [1, 1, 2, 2, 3, 3],
        "interleaved conversations must each count from 1"
    );
    for conversation in [&first, &second] {
        let stored = everything(&store, conversation).await;
        assert_eq!(
            stored.len(),
            3,
            "{conversation:?} must hold exactly its own 3 messages"
        );
        assert!(
            stored.iter().all(|m| &m.conversation_id == conversation),
            "{conversation:?} returned another conversation's messages"
        );
    }
}

/// A retry (same conversation, sender and client message id) returns the original's
/// outcome marked as a duplicate and stores nothing, whatever else it carries.
pub async fn retry_returns_the_original_and_stores_nothing(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("retry");
    let alice = unique_username("alice");
    let original = request(&conversation, &alice, "once", b"original");
    let first = append_ok(&store, original.clone()).await;
    append_ok(&store, request(&conversation, &alice, "other", b"other")).await;

    let mut retry = request(&conversation, &alice, "once", b"changed on retry");
    retry.amend = Some(Amend {
        target_seq: 2,
        payload: b"must not apply".to_vec(),
    });
    let again = append_ok(&store, retry).await;
    assert_eq!(
        again,
        Appended {
            duplicate: true,
            ..first
        },
        "a retry must return the original's seq, message id and time, marked duplicate"
    );
    assert_eq!(
        last(&store, &conversation).await,
        2,
        "a retry must not append"
    );
    assert_eq!(
        get_ok(&store, &conversation, 1).await.payload,
        b"original",
        "a retry must not change the original"
    );
    assert_eq!(
        get_ok(&store, &conversation, 2).await.payload,
        b"other",
        "a retry's amend must not apply"
    );

    // Even an amend of a seq that does not exist: the retry is answered
    // before the amend is looked at (the broker probes for stored ids so).
    let mut probe = request(&conversation, &alice, "once", b"");
    probe.amend = Some(Amend {
        target_seq: 0,
        payload: Vec::new(),
    });
    let probed = store
        .append(probe)
        .await
        .expect("a retry with an amend of a missing seq must be a duplicate, not an error");
    assert_eq!(
        probed,
        Appended {
            duplicate: true,
            ..first
        },
        "a retry with an amend of a missing seq must return the original"
    );
}

/// Client message ids are scoped to their sender and conversation: the same id
/// from another sender, or in another conversation, is a new message.
pub async fn client_message_ids_are_scoped(store: Arc<dyn HistoryStore>) {
    let (here, there) = (
        unique_conversation_id("here"),
        unique_conversation_id("there"),
    );
    let (alice, bob) = (unique_username("alice"), unique_username("bob"));
    let a = append_ok(&store, request(&here, &alice, "same", b"a")).await;
    let b = append_ok(&store, request(&here, &bob, "same", b"b")).await;
    let c = append_ok(&store, request(&there, &alice, "same", b"c")).await;
    assert!(
        !a.duplicate && !b.duplicate && !c.duplicate,
        "none of these is a retry: {a:?} {b:?} {c:?}"
    );
    assert_eq!((a.seq, b.seq, c.seq), (1, 2, 1));
    assert_eq!(last(&store, &here).await, 2);
}

/// An append with an amend replaces the target's payload (and nothing else of it)
/// and is itself appended as the next message.
pub async fn amend_replaces_the_target_and_appends_the_edit(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("amend");
    let alice = unique_username("alice");
    append_ok(&store, request(&conversation, &alice, "m1", b"first")).await;
    append_ok(&store, request(&conversation, &alice, "m2", b"typo")).await;
    let before = get_ok(&store, &conversation, 2).await;

    let edit = amend(&conversation, &alice, "e1", 2, b"fixed");
    let appended = append_ok(&store, edit.clone()).await;
    assert_eq!(
        appended.seq, 3,
        "the edit entry must be appended as the next message"
    );
    assert!(!appended.duplicate);

    let after = get_ok(&store, &conversation, 2).await;
    assert_eq!(
        after,
        StoredMessage {
            payload: b"fixed".to_vec(),
            ..before
        },
        "the amend must replace the target's payload and nothing else"
    );
    let entry = get_ok(&store, &conversation, 3).await;
    assert_eq!(
        entry.payload, edit.payload,
        "the edit entry keeps its own payload"
    );
    assert_eq!(entry.client_message_id, "e1");
    assert_eq!(
        get_ok(&store, &conversation, 1).await.payload,
        b"first",
        "an amend must not touch other messages"
    );
}

/// An amend naming a seq that does not exist in the conversation is `NotFound`,
/// appends nothing and leaves the client message id unused.
pub async fn amend_of_missing_seq_is_not_found(store: Arc<dyn HistoryStore>) {
    let (conversation, elsewhere) = (
        unique_conversation_id("miss"),
        unique_conversation_id("else"),
    );
    let alice = unique_username("alice");
    append_ok(&store, request(&conversation, &alice, "m1", b"only")).await;
    append_many(&store, &elsewhere, &alice, 5).await;

    // 0 is never a seq, 2 is past the end, and 5 exists only in another conversation.
    for target in [0, 2, 5, u64::MAX] {
        let err = store
            .append(amend(&conversation, &alice, "bad", target, b"x"))
            .await
            .expect_err("an amend of a missing seq must fail");
        assert!(
            matches!(err, StoreError::NotFound(_)),
            "an amend of missing seq {target} must be NotFound, got {err:?}"
        );
    }
    assert_eq!(
        last(&store, &conversation).await,
        1,
        "a failed amend must append nothing"
    );
    assert_eq!(get_ok(&store, &conversation, 1).await.payload, b"only");

    let retry = append_ok(&store, amend(&conversation, &alice, "bad", 1, b"now valid")).await;
    assert!(
        !retry.duplicate,
        "a failed append must not claim its client message id"
    );
    assert_eq!(retry.seq, 2);
    assert_eq!(get_ok(&store, &conversation, 1).await.payload, b"now valid");
}

/// A retry of an amend is a duplicate: the second amend payload does not apply.
pub async fn retried_amend_applies_once(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("reamend");
    let alice = unique_username("alice");
    append_ok(&store, request(&conversation, &alice, "m1", b"v0")).await;
    let first = append_ok(&store, amend(&conversation, &alice, "e1", 1, b"v1")).await;
    let again = append_ok(&store, amend(&conversation, &alice, "e1", 1, b"v2")).await;
    assert_eq!(
        again,
        Appended {
            duplicate: true,
            ..first
        }
    );
    assert_eq!(get_ok(&store, &conversation, 1).await.payload, b"v1");
    assert_eq!(last(&store, &conversation).await, 2);
}

/// Forward pages are the lowest seqs above `after_seq`, ascending.
pub async fn fetch_forward_pages(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("fwd");
    append_many(&store, &conversation, &unique_username("a"), 10).await;
    let fwd = Direction::Forward;
    assert_eq!(
        page_seqs(&store, &conversation, 0, u64::MAX, 3, fwd).await,
        [1, 2, 3]
    );
    assert_eq!(
        page_seqs(&store, &conversation, 3, u64::MAX, 3, fwd).await,
        [4, 5, 6]
    );
    assert_eq!(
        page_seqs(&store, &conversation, 8, u64::MAX, 5, fwd).await,
        [9, 10]
    );
    assert!(page_seqs(&store, &conversation, 10, u64::MAX, 5, fwd)
        .await
        .is_empty());
}

/// Backward pages are the highest seqs below `before_seq`, returned ascending.
pub async fn fetch_backward_pages(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("back");
    append_many(&store, &conversation, &unique_username("a"), 10).await;
    let back = Direction::Backward;
    assert_eq!(
        page_seqs(&store, &conversation, 0, u64::MAX, 3, back).await,
        [8, 9, 10]
    );
    assert_eq!(
        page_seqs(&store, &conversation, 0, 8, 3, back).await,
        [5, 6, 7]
    );
    assert_eq!(
        page_seqs(&store, &conversation, 0, 3, 5, back).await,
        [1, 2]
    );
    assert!(page_seqs(&store, &conversation, 0, 1, 5, back)
        .await
        .is_empty());
}

/// Both bounds are exclusive and apply in both directions; empty or inverted
/// ranges give empty pages.
pub async fn fetch_respects_both_bounds(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("bounds");
    append_many(&store, &conversation, &unique_username("a"), 10).await;
    for direction in [Direction::Forward, Direction::Backward] {
        assert_eq!(
            page_seqs(&store, &conversation, 2, 6, 100, direction).await,
            [3, 4, 5],
            "{direction:?}: both bounds are exclusive"
        );
        for (after, before) in [
            (5, 6),
            (5, 5),
            (6, 5),
            (u64::MAX, u64::MAX),
            (u64::MAX - 1, u64::MAX),
        ] {
            assert!(
                page_seqs(&store, &conversation, after, before, 100, direction)
                    .await
                    .is_empty(),
                "{direction:?}: ({after}, {before}) holds no seq"
            );
        }
    }
    assert_eq!(
        page_seqs(&store, &conversation, 2, 6, 2, Direction::Forward).await,
        [3, 4]
    );
    assert_eq!(
        page_seqs(&store, &conversation, 2, 6, 2, Direction::Backward).await,
        [4, 5]
    );
}

/// A page with limit 0 is empty.
pub async fn fetch_with_limit_zero_is_empty(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("zero");
    append_many(&store, &conversation, &unique_username("a"), 3).await;
    for direction in [Direction::Forward, Direction::Backward] {
        assert!(
            page_seqs(&store, &conversation, 0, u64::MAX, 0, direction)
                .await
                .is_empty(),
            "{direction:?}: limit 0 must return nothing"
        );
    }
}

/// Missing things read as absent, not as errors.
pub async fn missing_messages_are_absent(store: Arc<dyn HistoryStore>) {
    let (empty, used) = (
        unique_conversation_id("empty"),
        unique_conversation_id("used"),
    );
    append_many(&store, &used, &unique_username("a"), 2).await;
    assert_eq!(
        last(&store, &empty).await,
        0,
        "an empty conversation's last seq is 0"
    );
    assert!(
        everything(&store, &empty).await.is_empty(),
        "an empty conversation has no messages"
    );
    for (conversation, seq) in [(&empty, 1), (&used, 0), (&used, 3), (&used, u64::MAX)] {
        let found = store
            .get(conversation, seq)
            .await
            .expect("get must succeed");
        assert_eq!(
            found, None,
            "message {seq} of {conversation:?} must not exist"
        );
    }
}

/// Appends racing into one conversation get exactly the seqs 1..=N, without gaps
/// or repeats, and each sender's messages keep its send order.
pub async fn concurrent_appends_are_gap_free_and_ordered(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("race");
    let start = Arc::new(Barrier::new(TASKS));
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let (store, start, conversation) =
            (Arc::clone(&store), Arc::clone(&start), conversation.clone());
        tasks.spawn(async move {
            let sender = format!("sender{task}");
            start.wait().await;
            let mut seqs = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                let req = request(
                    &conversation,
                    &sender,
                    &format!("m{i}"),
                    format!("{task}:{i}").as_bytes(),
                );
                let appended = store
                    .append(req)
                    .await
                    .expect("a concurrent append must succeed");
                assert!(!appended.duplicate, "a fresh message is not a duplicate");
                seqs.push(appended.seq);
            }
            (sender, seqs)
        });
    }
    let mut assigned = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (sender, seqs) = joined.expect("an appending task must not panic");
        assert!(
            seqs.windows(2).all(|pair| pair[0] < pair[1]),
            "{sender}'s messages must be stored in its send order, got seqs {seqs:?}"
        );
        for (i, seq) in seqs.into_iter().enumerate() {
            let previous = assigned.insert(seq, (sender.clone(), format!("m{i}")));
            assert_eq!(previous, None, "seq {seq} was assigned twice");
        }
    }
    let total = (TASKS * PER_TASK) as u64;
    assert_eq!(
        assigned.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "the seqs must be exactly 1..={total}"
    );
    assert_eq!(last(&store, &conversation).await, total);
    let stored = everything(&store, &conversation).await;
    assert_eq!(
        stored.len(),
        TASKS * PER_TASK,
        "every message must be stored once"
    );
    for message in stored {
        let (sender, client_message_id) = &assigned[&message.seq];
        assert_eq!(
            (&message.sender, &message.client_message_id),
            (sender, client_message_id),
            "seq {} holds another message than the one it was assigned to",
            message.seq
        );
    }
}

/// Appends racing into several conversations number each conversation gap-free.
pub async fn concurrent_appends_across_conversations(store: Arc<dyn HistoryStore>) {
    let conversations: Vec<String> = (0..4).map(|_| unique_conversation_id("multi")).collect();
    let start = Arc::new(Barrier::new(TASKS));
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        let conversation = conversations[task % conversations.len()].clone();
        tasks.spawn(async move {
            let sender = format!("sender{task}");
            start.wait().await;
            for i in 0..PER_TASK {
                let req = request(&conversation, &sender, &format!("m{i}"), b"x");
                store
                    .append(req)
                    .await
                    .expect("a concurrent append must succeed");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("an appending task must not panic");
    }
    let per_conversation = (TASKS / conversations.len() * PER_TASK) as u64;
    for conversation in &conversations {
        let seqs: Vec<u64> = everything(&store, conversation)
            .await
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(
            seqs,
            (1..=per_conversation).collect::<Vec<_>>(),
            "{conversation:?} must hold exactly seqs 1..={per_conversation}"
        );
    }
}

/// Of many simultaneous retries of one message exactly one stores it; every one
/// returns the stored message's seq, id and time.
pub async fn concurrent_retries_store_one(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("dupes");
    let alice = unique_username("alice");
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for _ in 0..RACERS {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        let req = request(&conversation, &alice, "retried", b"once");
        racers.spawn(async move {
            start.wait().await;
            store.append(req).await
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = racers.join_next().await {
        outcomes.push(
            joined
                .expect("a racing task must not panic")
                .expect("every retry must succeed"),
        );
    }
    let stored: Vec<&Appended> = outcomes.iter().filter(|o| !o.duplicate).collect();
    assert_eq!(
        stored.len(),
        1,
        "exactly one of {RACERS} retries must store, got {outcomes:?}"
    );
    let winner = *stored[0];
    assert!(
        outcomes.iter().all(|o| Appended {
            duplicate: false,
            ..*o
        } == winner),
        "every retry must return the stored message's outcome, got {outcomes:?}"
    );
    assert_eq!(winner.seq, 1);
    assert_eq!(
        last(&store, &conversation).await,
        1,
        "only one message may be stored"
    );
    assert_eq!(
        get_ok(&store, &conversation, 1).await.message_id,
        winner.message_id
    );
}

/// How many appends one caller queues before awaiting any of them.
const PIPELINED: usize = 100;

/// Appends queued with [`HistoryStore::enqueue`] before any is awaited get
/// their seqs in queue order, a retry queued behind its original is a
/// duplicate of it, and every outcome matches what `append` would answer.
pub async fn enqueued_appends_keep_their_order(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("pipelined");
    let other = unique_conversation_id("pipelined-other");
    let alice = unique_username("alice");
    let mut pending = Vec::with_capacity(PIPELINED + 2);
    for i in 0..PIPELINED {
        let req = request(&conversation, &alice, &format!("m{i}"), &[i as u8]);
        pending.push(store.enqueue(req).await);
        if i == PIPELINED / 2 {
            // Interleaved: a retry of the first message and another conversation.
            let retry = request(&conversation, &alice, "m0", b"retry");
            pending.push(store.enqueue(retry).await);
            pending.push(store.enqueue(request(&other, &alice, "m0", b"x")).await);
        }
    }
    let mut outcomes = Vec::with_capacity(pending.len());
    for answer in pending {
        outcomes.push(answer.await.expect("an enqueued append must succeed"));
    }
    let retry_at = PIPELINED / 2 + 1;
    let retry = outcomes.remove(retry_at);
    let elsewhere = outcomes.remove(retry_at);
    assert_eq!(
        (retry.seq, retry.duplicate),
        (1, true),
        "a retry queued behind its original must be its duplicate"
    );
    assert_eq!(
        (elsewhere.seq, elsewhere.duplicate),
        (1, false),
        "another conversation numbers on its own"
    );
    let seqs: Vec<u64> = outcomes.iter().map(|o| o.seq).collect();
    assert_eq!(
        seqs,
        (1..=PIPELINED as u64).collect::<Vec<_>>(),
        "enqueued appends must get seqs in queue order"
    );
    assert!(outcomes.iter().all(|o| !o.duplicate));
    for (i, message) in everything(&store, &conversation).await.iter().enumerate() {
        assert_eq!(
            (
                message.seq,
                message.client_message_id.as_str(),
                message.payload.as_slice()
            ),
            (i as u64 + 1, format!("m{i}").as_str(), [i as u8].as_slice()),
            "seq {} must hold the message queued in place {i}",
            message.seq
        );
    }
}

/// An enqueued append whose outcome is never awaited is stored all the same,
/// before anything enqueued after it.
pub async fn an_unawaited_enqueue_still_appends(store: Arc<dyn HistoryStore>) {
    let conversation = unique_conversation_id("dropped");
    let alice = unique_username("alice");
    drop(
        store
            .enqueue(request(&conversation, &alice, "dropped", b"first"))
            .await,
    );
    let next = append_ok(&store, request(&conversation, &alice, "next", b"second")).await;
    assert_eq!(next.seq, 2, "the unawaited append must have taken seq 1");
    let first = get_ok(&store, &conversation, 1).await;
    assert_eq!(first.client_message_id, "dropped");
}

/// Expands to one `#[tokio::test]` per [`HistoryStore`] conformance check (see
/// [`conformance::history`](crate::conformance::history)).
///
/// The argument is an expression whose `.await` yields a
/// [`HistoryFixture`](crate::conformance::history::HistoryFixture); it is
/// evaluated afresh for every check. The calling crate needs `tokio` (with the
/// `macros` and `rt-multi-thread` features) among its dev-dependencies.
#[macro_export]
macro_rules! history_conformance_tests {
    (@checks ($fixture:expr) $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture.await;
                let store = $crate::conformance::history::HistoryFixture::store(&fixture);
                $crate::conformance::history::$check(store).await;
            }
        )*
    };
    ($fixture:expr $(,)?) => {
        $crate::history_conformance_tests!(@checks ($fixture)
            append_assigns_consecutive_seqs_from_one,
            appended_messages_read_back_exactly,
            conversations_number_independently,
            retry_returns_the_original_and_stores_nothing,
            client_message_ids_are_scoped,
            amend_replaces_the_target_and_appends_the_edit,
            amend_of_missing_seq_is_not_found,
            retried_amend_applies_once,
            fetch_forward_pages,
            fetch_backward_pages,
            fetch_respects_both_bounds,
            fetch_with_limit_zero_is_empty,
            missing_messages_are_absent,
            concurrent_appends_are_gap_free_and_ordered,
            concurrent_appends_across_conversations,
            concurrent_retries_store_one,
            enqueued_appends_keep_their_order,
            an_unawaited_enqueue_still_appends,
        );
    };
}
