//! The PostgreSQL history writers batch queued appends into shared
//! transactions, with the outcome of appending them one at a time, in order.
//!
//! Needs `PARLEY_TEST_POSTGRES`; see `postgres_support`.

mod postgres_support;

use persistence::postgres::PostgresStore;
use persistence::{Amend, AppendRequest, Appended, HistoryStore, PendingAppend, StoreError};

fn request(conversation: &str, sender: &str, client_message_id: &str) -> AppendRequest {
    AppendRequest {
        conversation_id: conversation.to_owned(),
        sender: sender.to_owned(),
        client_message_id: client_message_id.to_owned(),
        message_id: rand::random(),
        server_time_ms: 1_700_000_000_000,
        payload: format!("{conversation}/{client_message_id}").into_bytes(),
        amend: None,
    }
}

async fn enqueue_all(store: &PostgresStore, requests: &[AppendRequest]) -> Vec<PendingAppend> {
    let mut pending = Vec::with_capacity(requests.len());
    for request in requests {
        pending.push(store.enqueue(request.clone()).await);
    }
    pending
}

async fn outcomes(pending: Vec<PendingAppend>) -> Vec<Result<Appended, StoreError>> {
    let mut outcomes = Vec::with_capacity(pending.len());
    for answer in pending {
        outcomes.push(answer.await);
    }
    outcomes
}

#[tokio::test]
async fn queued_appends_share_transactions_and_number_in_queue_order() {
    let Some(store) = postgres_support::store().await else {
        return;
    };
    // Already stored: retried below from inside a batch.
    let stored = request("batch-a", "alice", "early");
    let first = store.append(stored.clone()).await.expect("first append");
    assert_eq!(first.seq, 1);

    let mut requests = Vec::new();
    for i in 0..300 {
        requests.push(request(
            ["batch-a", "batch-b", "batch-c"][i % 3],
            "bob",
            &format!("m{i}"),
        ));
        if i == 100 {
            requests.push(stored.clone());
            // A retry of a request queued just before it, likely in its batch.
            requests.push(request("batch-b", "bob", "m97"));
        }
        if i == 200 {
            requests.push(AppendRequest {
                amend: Some(Amend {
                    target_seq: 2,
                    payload: b"edited".to_vec(),
                }),
                ..request("batch-a", "bob", "edit")
            });
        }
    }
    let results = outcomes(enqueue_all(&store, &requests).await).await;

    let mut expected_next = [2u64, 1, 1];
    for (request, outcome) in requests.iter().zip(&results) {
        let appended = outcome.as_ref().expect("every append succeeds");
        let lane = ["batch-a", "batch-b", "batch-c"]
            .iter()
            .position(|c| *c == request.conversation_id)
            .unwrap();
        if request.client_message_id == "early" {
            assert!(appended.duplicate, "a stored message retried in a batch");
            assert_eq!(
                (appended.seq, appended.message_id),
                (1, first.message_id),
                "answered from the original"
            );
            continue;
        }
        if request.client_message_id == "m97" && appended.duplicate {
            let original = requests
                .iter()
                .position(|r| r.client_message_id == "m97")
                .unwrap();
            let original = results[original].as_ref().unwrap();
            assert_eq!(
                (appended.seq, appended.message_id),
                (original.seq, original.message_id)
            );
            continue;
        }
        assert!(!appended.duplicate, "{request:?}");
        assert_eq!(
            appended.seq, expected_next[lane],
            "seqs follow queue order without gaps: {request:?}"
        );
        expected_next[lane] += 1;
    }
    let edited = store.get("batch-a", 2).await.expect("get").expect("seq 2");
    assert_eq!(edited.payload, b"edited");
    for (conversation, next) in ["batch-a", "batch-b", "batch-c"].iter().zip(expected_next) {
        assert_eq!(
            store.last_seq(conversation).await.expect("last seq"),
            next - 1
        );
    }

    let stats = store.append_batch_stats();
    assert!(
        stats.batches >= 1 && stats.requests > stats.batches,
        "queued appends must share transactions: {stats:?}"
    );
}

#[tokio::test]
async fn a_missing_amend_target_fails_alone_among_queued_appends() {
    let Some(store) = postgres_support::store().await else {
        return;
    };
    let requests = vec![
        request("batch-d", "alice", "m0"),
        AppendRequest {
            amend: Some(Amend {
                target_seq: 9,
                payload: b"nothing there".to_vec(),
            }),
            ..request("batch-d", "alice", "bad-edit")
        },
        request("batch-d", "alice", "m1"),
        request("batch-d", "alice", "bad-edit"),
    ];
    let results = outcomes(enqueue_all(&store, &requests).await).await;
    assert_eq!(results[0].as_ref().expect("m0").seq, 1);
    assert!(
        matches!(results[1], Err(StoreError::NotFound(_))),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2].as_ref().expect("m1").seq, 2);
    let reused = results[3].as_ref().expect("the refused id is free");
    assert_eq!((reused.seq, reused.duplicate), (3, false));
}
