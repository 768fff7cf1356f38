//! The PostgreSQL store across a server restart: while the server is down,
//! operations fail promptly with [`StoreError::Unavailable`] (no panic, no
//! hang); once it is back, the same store works again, seqs continuing
//! without a gap.
//!
//! The test stops and starts a PostgreSQL cluster of its own, created in a
//! temporary directory with the server binaries `PARLEY_TEST_POSTGRES_BIN`
//! names (`.ci/postgres.sh` exports it) or, failing that, the newest under
//! `/usr/lib/postgresql/*/bin`; so it never disturbs the server other tests
//! use. Without server binaries it prints why and passes, except when `CI` is
//! set, where it fails.

mod postgres_support;

use std::time::{Duration, Instant};

use persistence::postgres::{PostgresConfig, PostgresStore};
use persistence::{AppendRequest, HistoryStore, StoreError};
use postgres_support::cluster::{server_bin_dir_or_skip, PgCluster};

/// Longest an operation against a stopped server may take to fail.
const FAILURE_DEADLINE: Duration = Duration::from_secs(10);
/// Longest the store may take to work again after the server is back.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

/// A plain message `client_message_id` to `conversation`.
fn message(conversation: &str, client_message_id: &str) -> AppendRequest {
    AppendRequest {
        conversation_id: conversation.to_owned(),
        sender: "alice".to_owned(),
        client_message_id: client_message_id.to_owned(),
        message_id: rand::random(),
        server_time_ms: 1_700_000_000_000,
        payload: client_message_id.as_bytes().to_vec(),
        amend: None,
    }
}

/// Asserts that `outcome` is a prompt, clear [`StoreError::Unavailable`].
fn assert_unavailable<T: std::fmt::Debug>(what: &str, outcome: Result<T, StoreError>) {
    match outcome {
        Err(StoreError::Unavailable(why)) => {
            eprintln!("{what} while PostgreSQL is down: {why}");
            assert!(
                why.contains("PostgreSQL"),
                "{what}: the error must say PostgreSQL is the problem: {why}"
            );
        }
        other => panic!("{what} while PostgreSQL is down must be Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_fails_cleanly_while_postgres_is_down_and_recovers_after() {
    let Some(bin) = server_bin_dir_or_skip() else {
        return;
    };
    let cluster = tokio::task::spawn_blocking(move || PgCluster::start(&bin))
        .await
        .expect("start the throwaway cluster");
    let config = PostgresConfig::from_url(&cluster.url())
        .expect("a valid URL")
        .connect_timeout(Duration::from_secs(2))
        .operation_timeout(FAILURE_DEADLINE);
    let store = PostgresStore::connect(config)
        .await
        .expect("connect to the throwaway cluster");
    let conversation = "c_restart";
    for (i, expected) in (1..=3u64).enumerate() {
        let appended = store
            .append(message(conversation, &format!("before{i}")))
            .await
            .expect("append while the server is up");
        assert_eq!(appended.seq, expected);
    }

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.pg_ctl_stop("fast");
        cluster
    })
    .await
    .expect("stop the cluster");

    let started = Instant::now();
    let outcome = tokio::time::timeout(
        FAILURE_DEADLINE * 2,
        store.append(message(conversation, "during")),
    )
    .await
    .expect("an append while PostgreSQL is down must fail, not hang");
    assert_unavailable("an append", outcome);
    let outcome = tokio::time::timeout(FAILURE_DEADLINE * 2, store.last_seq(conversation))
        .await
        .expect("a read while PostgreSQL is down must fail, not hang");
    assert_unavailable("a read", outcome);
    assert!(
        started.elapsed() < FAILURE_DEADLINE,
        "failing took {:?}",
        started.elapsed()
    );

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.pg_ctl_start();
        cluster
    })
    .await
    .expect("restart the cluster");

    // The server accepts connections again (pg_ctl -w); the pool must notice
    // its dead connections and open new ones. Poll until it does, with a deadline.
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    let mut attempts = 0;
    let appended = loop {
        attempts += 1;
        match store.append(message(conversation, "after")).await {
            Ok(appended) => break appended,
            Err(e) if Instant::now() < deadline => {
                eprintln!("append attempt {attempts} after the restart failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not recover within {RECOVERY_DEADLINE:?}: {e}"),
        }
    };
    eprintln!("the store worked again after {attempts} attempt(s)");
    assert!(!appended.duplicate);
    assert_eq!(
        appended.seq, 4,
        "the failed append must not have used up a seq: seqs continue gap-free"
    );
    assert_eq!(
        store.last_seq(conversation).await.expect("last_seq"),
        4,
        "reads work again too"
    );
    drop(store);
    drop(cluster);
}
