//! Hand-run measurements of the embedded store's group commit: many tasks
//! append at once and the test prints appends per second and the average
//! number of appends per durable commit; a single task appending alone gives
//! the one-commit-per-append baseline to compare with.
//!
//! Run it with
//! `cargo test -p persistence --release --test embedded_group_commit -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use persistence::embedded::EmbeddedStore;
use persistence::{AppendRequest, Direction, HistoryStore, PageRequest};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// How many tasks append at once.
const TASKS: usize = 64;
/// How many appends each task makes, one after the other.
const PER_TASK: usize = 200;
/// How many conversations the tasks spread over.
const CONVERSATIONS: usize = 8;
/// How many appends the lone task of the baseline makes.
const BASELINE_APPENDS: usize = 500;

/// A 200-byte message from `sender`.
fn request(conversation: &str, sender: &str, i: usize, message_id: u64) -> AppendRequest {
    AppendRequest {
        conversation_id: conversation.to_owned(),
        sender: sender.to_owned(),
        client_message_id: format!("m{i}"),
        message_id,
        server_time_ms: 1_700_000_000_000,
        payload: vec![0x5a; 200],
        amend: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement to run by hand; prints throughput"]
async fn sequential_append_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let began = Instant::now();
    for i in 0..BASELINE_APPENDS {
        let appended = store
            .append(request("baseline", "alone", i, i as u64))
            .await
            .expect("append");
        assert_eq!(appended.seq, i as u64 + 1);
    }
    let elapsed = began.elapsed();
    let stats = store.group_commit_stats();
    println!(
        "{BASELINE_APPENDS} appends from one task in {elapsed:.2?}: {:.0} appends/s, {} commits",
        BASELINE_APPENDS as f64 / elapsed.as_secs_f64(),
        stats.commits,
    );
    assert_eq!(
        stats.commits, BASELINE_APPENDS as u64,
        "one task alone gets one commit per append"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement to run by hand; prints throughput"]
async fn group_commit_throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
    let start = Arc::new(Barrier::new(TASKS + 1));
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        tasks.spawn(async move {
            let conversation = format!("bench_{}", task % CONVERSATIONS);
            start.wait().await;
            for i in 0..PER_TASK {
                let message_id = (task * PER_TASK + i) as u64;
                let request = request(&conversation, &format!("sender{task}"), i, message_id);
                store.append(request).await.expect("append");
            }
        });
    }
    start.wait().await;
    let began = Instant::now();
    while let Some(joined) = tasks.join_next().await {
        joined.expect("an appending task must not panic");
    }
    let elapsed = began.elapsed();

    let total = (TASKS * PER_TASK) as u64;
    let stats = store.group_commit_stats();
    println!(
        "{total} appends from {TASKS} tasks in {:.2?}: {:.0} appends/s, {} commits, {:.1} appends per commit",
        elapsed,
        total as f64 / elapsed.as_secs_f64(),
        stats.commits,
        stats.requests as f64 / stats.commits as f64,
    );
    assert_eq!(
        stats.requests, total,
        "every append must have been committed"
    );
    let everything = PageRequest {
        after_seq: 0,
        before_seq: u64::MAX,
        limit: usize::MAX,
        direction: Direction::Forward,
    };
    let per_conversation = total / CONVERSATIONS as u64;
    for c in 0..CONVERSATIONS {
        let conversation = format!("bench_{c}");
        let stored = store.fetch(&conversation, everything).await.expect("fetch");
        let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=per_conversation).collect::<Vec<_>>(),
            "{conversation}"
        );
    }
}
