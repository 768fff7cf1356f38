//! The PostgreSQL cursor writer moves queued read and delivered cursors in
//! shared statements, with the outcome of moving them one at a time.
//!
//! Needs `PARLEY_TEST_POSTGRES`; see `postgres_support`.

mod postgres_support;

use futures::future::join_all;
use persistence::postgres::PostgresStore;
use persistence::{MetadataStore, OfflineQueue};

/// One queued mark: which cursor, whose, where, and how far.
#[derive(Debug, Clone, Copy)]
struct Mark {
    read: bool,
    user: usize,
    conversation: usize,
    seq: u64,
}

/// A spread of marks over both tables, three users and two conversations,
/// with repeated keys, seqs going down as well as up, 0 and `u64::MAX`.
fn marks() -> Vec<Mark> {
    (0..240u64)
        .map(|i| Mark {
            read: i % 2 == 0,
            user: (i % 3) as usize,
            conversation: ((i / 3) % 2) as usize,
            seq: match i {
                7 => u64::MAX,
                11 => 0,
                _ => (i * 37) % 101,
            },
        })
        .collect()
}

#[tokio::test]
async fn queued_cursor_moves_share_statements_and_keep_the_highest() {
    let Some(store) = postgres_support::store().await else {
        return;
    };
    let tag: u32 = rand::random();
    let users: Vec<String> = (0..3)
        .map(|i| format!("cursor-user-{tag:08x}-{i}"))
        .collect();
    let conversations: Vec<String> = (0..2)
        .map(|i| format!("cursor-conv-{tag:08x}-{i}"))
        .collect();
    // Already further than every mark below: a batch must not move it back.
    store
        .mark_delivered(&users[2], &conversations[1], 500)
        .await
        .expect("an early mark");
    let before = store.cursor_batch_stats();

    let marks = marks();
    // Every mark is queued in the first poll, before the writer task runs on
    // this single-threaded runtime, so they all go in one batch.
    let outcomes = join_all(marks.iter().map(|mark| {
        let store: &PostgresStore = &store;
        let (user, conversation) = (&users[mark.user], &conversations[mark.conversation]);
        async move {
            if mark.read {
                store.mark_read(conversation, user, mark.seq).await
            } else {
                store.mark_delivered(user, conversation, mark.seq).await
            }
        }
    }))
    .await;

    let after = store.cursor_batch_stats();
    assert_eq!(
        (after.batches - before.batches, after.marks - before.marks),
        (1, marks.len() as u64),
        "marks queued together must be written in one batch"
    );
    for read in [true, false] {
        for (u, user) in users.iter().enumerate() {
            for (c, conversation) in conversations.iter().enumerate() {
                let same =
                    |mark: &&Mark| mark.read == read && mark.user == u && mark.conversation == c;
                let early = if !read && u == 2 && c == 1 { 500 } else { 0 };
                let highest = marks
                    .iter()
                    .filter(same)
                    .map(|mark| mark.seq)
                    .max()
                    .unwrap_or(0)
                    .max(early);
                for (mark, outcome) in marks.iter().zip(&outcomes).filter(|(mark, _)| same(mark)) {
                    let cursor = outcome.as_ref().expect("every mark succeeds");
                    assert_eq!(
                        *cursor, highest,
                        "{mark:?} must answer with the cursor after its batch"
                    );
                }
                let stored = if read {
                    store
                        .read_cursors(conversation)
                        .await
                        .expect("read cursors")
                        .into_iter()
                        .find(|cursor| &cursor.user == user)
                        .map_or(0, |cursor| cursor.read_up_to)
                } else {
                    store
                        .delivered(user, conversation)
                        .await
                        .expect("delivered")
                };
                assert_eq!(stored, highest, "user {u}, conversation {c}, read {read}");
            }
        }
    }
}
