//! Runs the shared [`HistoryStore`] conformance suite against [`ScyllaStore`]
//! on a real Scylla (or Cassandra) cluster, plus the checks only a real
//! cluster can answer: the layout check at start-up and bucket edges.
//!
//! The cluster comes from `PARLEY_TEST_SCYLLA` (contact points, `host:port`,
//! comma-separated). No Scylla server can be installed on the build machines,
//! so without the variable every check prints why and passes, in CI too; with
//! `docker compose -f deploy/docker-compose.yml up -d scylla` it runs as
//! `PARLEY_TEST_SCYLLA=127.0.0.1:9042 cargo test -p persistence --test scylla_conformance`.
//! Every check uses keyspace `parley_test` (or `PARLEY_TEST_SCYLLA_KEYSPACE`)
//! with replication factor 1; the checks pick unique conversation ids, so they
//! share it safely.

use std::sync::Arc;

use persistence::scylla::{ScyllaConfig, ScyllaStore, BUCKET_SIZE};
use persistence::{AppendRequest, Direction, HistoryStore, PageRequest};
use tokio::sync::OnceCell;

/// The variable naming the test cluster.
const NODES_VAR: &str = "PARLEY_TEST_SCYLLA";

/// The test cluster's settings; `None` (after printing why) if the tests should skip.
fn config() -> Option<ScyllaConfig> {
    let nodes = match std::env::var(NODES_VAR) {
        Ok(nodes) if !nodes.trim().is_empty() => nodes,
        _ => {
            eprintln!(
                "skipping a Scylla test: {NODES_VAR} is not set (no Scylla server can be \
                 installed here; start one with `docker compose -f deploy/docker-compose.yml \
                 up -d scylla` and set {NODES_VAR}=127.0.0.1:9042)"
            );
            return None;
        }
    };
    let keyspace =
        std::env::var("PARLEY_TEST_SCYLLA_KEYSPACE").unwrap_or_else(|_| "parley_test".into());
    let config = ScyllaConfig::new(nodes.split(',').map(str::trim))
        .expect("PARLEY_TEST_SCYLLA names no node")
        .keyspace(&keyspace)
        .expect("PARLEY_TEST_SCYLLA_KEYSPACE must be a valid keyspace name")
        .replication_factor(1);
    Some(config)
}

/// One store per test binary run (creating the schema once).
static STORE: OnceCell<ScyllaStore> = OnceCell::const_new();

/// The shared store, or `None` to skip.
async fn store() -> Option<ScyllaStore> {
    let config = config()?;
    let store = STORE
        .get_or_init(|| async move {
            ScyllaStore::connect(config)
                .await
                .unwrap_or_else(|e| panic!("connect to {NODES_VAR}: {e}"))
        })
        .await;
    Some(store.clone())
}

/// [`persistence::HistoryStore`]: the message log.
mod history {
    use std::sync::Arc;

    use persistence::HistoryStore;

    persistence::history_conformance_tests!({
        let Some(store) = crate::store().await else {
            return;
        };
        std::future::ready(Arc::new(store) as Arc<dyn HistoryStore>)
    });
}

/// A plain message numbered `n` from `sender`.
fn message(conversation: &str, sender: &str, n: u64) -> AppendRequest {
    AppendRequest {
        conversation_id: conversation.into(),
        sender: sender.into(),
        client_message_id: format!("m{n}"),
        message_id: rand::random(),
        server_time_ms: n as i64,
        payload: n.to_be_bytes().to_vec(),
        amend: None,
    }
}

/// A conversation crossing a partition edge numbers, pages and ends correctly
/// on both sides of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_cross_partition_edges() {
    let Some(store) = store().await else {
        return;
    };
    let store: Arc<dyn HistoryStore> = Arc::new(store);
    let conversation = persistence::conformance::unique_conversation_id("edge");
    let total = BUCKET_SIZE + 10;
    let mut tasks = Vec::new();
    for lane in 0..8u64 {
        let store = store.clone();
        let conversation = conversation.clone();
        tasks.push(tokio::spawn(async move {
            for n in (lane..total).step_by(8) {
                store
                    .append(message(&conversation, &format!("s{lane}"), n))
                    .await
                    .expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("appender");
    }
    assert_eq!(store.last_seq(&conversation).await.unwrap(), total);
    let across = |after_seq, direction| PageRequest {
        after_seq,
        before_seq: u64::MAX,
        limit: 20,
        direction,
    };
    let forward = store
        .fetch(&conversation, across(BUCKET_SIZE - 10, Direction::Forward))
        .await
        .unwrap();
    let seqs: Vec<u64> = forward.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (BUCKET_SIZE - 9..=BUCKET_SIZE + 10).collect::<Vec<_>>()
    );
    let backward = store
        .fetch(&conversation, across(0, Direction::Backward))
        .await
        .unwrap();
    let seqs: Vec<u64> = backward.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (BUCKET_SIZE - 9..=BUCKET_SIZE + 10).collect::<Vec<_>>()
    );
    let past_the_end = store
        .fetch(&conversation, across(total, Direction::Forward))
        .await
        .unwrap();
    assert!(past_the_end.is_empty());
}

/// A second store (another node) on the same keyspace accepts the recorded
/// layout and continues the first one's conversations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_shares_the_keyspace() {
    let Some(config) = config() else {
        return;
    };
    let first = store().await.expect("configured");
    let conversation = persistence::conformance::unique_conversation_id("nodes");
    first.append(message(&conversation, "a", 1)).await.unwrap();
    let second = ScyllaStore::connect(config).await.expect("second connect");
    assert_eq!(second.keyspace(), first.keyspace());
    let appended = second.append(message(&conversation, "b", 2)).await.unwrap();
    assert_eq!(appended.seq, 2);
    let retried = second.append(message(&conversation, "a", 1)).await.unwrap();
    assert!(retried.duplicate);
    assert_eq!(retried.seq, 1);
}
