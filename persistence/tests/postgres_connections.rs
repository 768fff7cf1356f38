//! The PostgreSQL store when the server ends its connections (an
//! administrator's `pg_terminate_backend`, a failover, an idle timeout):
//! calls fail with a clear [`StoreError::Unavailable`] at worst, and the pool
//! replaces the dead connections by itself.
//!
//! Needs `PARLEY_TEST_POSTGRES` (see `postgres_support`).

mod postgres_support;

use std::time::{Duration, Instant};

use persistence::postgres::PostgresStore;
use persistence::{AppendRequest, HistoryStore, StoreError};
use tokio::task::JoinSet;

/// Connections the store under test may open.
const POOL: usize = 4;

/// A plain message `client_message_id` to `conversation`.
fn message(conversation: &str, client_message_id: &str) -> AppendRequest {
    AppendRequest {
        conversation_id: conversation.to_owned(),
        sender: "alice".to_owned(),
        client_message_id: client_message_id.to_owned(),
        message_id: rand::random(),
        server_time_ms: 1,
        payload: b"x".to_vec(),
        amend: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_replaced() {
    let Some(config) = postgres_support::test_config().await else {
        return;
    };
    let application = persistence::conformance::unique_username("terminated");
    let store = PostgresStore::connect(
        config
            .clone()
            .application_name(&application)
            .max_connections(POOL),
    )
    .await
    .expect("connect the store");
    let conversation = persistence::conformance::unique_conversation_id("terminated");

    // Open every connection of the pool with simultaneous appends.
    let mut appends = JoinSet::new();
    for i in 0..POOL * 2 {
        let (store, conversation) = (store.clone(), conversation.clone());
        appends.spawn(async move { store.append(message(&conversation, &format!("m{i}"))).await });
    }
    while let Some(joined) = appends.join_next().await {
        joined
            .expect("an append task must not panic")
            .expect("append before the connections are ended");
    }

    let url = std::env::var(postgres_support::URL_VAR).expect("checked above");
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect as administrator");
    tokio::spawn(connection);
    let ended = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&application],
        )
        .await
        .expect("end the store's connections");
    assert!(
        !ended.is_empty(),
        "the store must have had connections to end"
    );

    // Each dead connection the pool hands out before noticing it may fail one
    // call; then the pool must have replaced it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failures = 0;
    let appended = loop {
        match store.append(message(&conversation, "after")).await {
            Ok(appended) => break appended,
            Err(StoreError::Unavailable(why)) => {
                eprintln!("append after the connections ended: {why}");
                assert!(
                    why.contains("PostgreSQL"),
                    "the error must say PostgreSQL is the problem: {why}"
                );
                failures += 1;
                assert!(
                    failures <= POOL && Instant::now() < deadline,
                    "the pool did not replace its dead connections ({failures} failures)"
                );
            }
            Err(other) => panic!("a dead connection must be Unavailable, got {other:?}"),
        }
    };
    assert_eq!(
        appended.seq,
        (POOL * 2 + 1) as u64,
        "failed appends must not use up seqs"
    );
    let reconnected: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&application],
        )
        .await
        .expect("count the store's connections")
        .get(0);
    assert!(
        reconnected >= 1,
        "the store must be connected again after the append"
    );
}
