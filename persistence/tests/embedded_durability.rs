//! Durability of the embedded store: acknowledged writes survive closing the
//! store and survive the process being killed with SIGKILL mid-write.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;

use persistence::embedded::{
    EmbeddedOptions, EmbeddedStore, HistoryCheckpoint, Recovery, HISTORY_LOG_DIR,
};
use persistence::{
    Amend, AppendRequest, ConversationKind, ConversationRecord, Direction, HistoryStore,
    MemberRecord, MetadataStore, NewUser, OfflineQueue, PageRequest, Role,
};
use support::{child_data_dir, ChildTest};

/// The role and test name of the child that writes until it is killed.
const WRITER_ROLE: &str = "crash-writer";
const WRITER_TEST: &str = "crash_writer_child";
/// What the child prints before each username whose creation has been acknowledged.
const CREATED: &str = "created ";
/// How many acknowledged sign-ups the parent waits for before killing the child.
const ACKED_BEFORE_KILL: usize = 50;
/// A bound on the child's writes, so a child whose parent vanished still ends.
const CHILD_WRITE_LIMIT: usize = 100_000;

/// The role and test name of the child that appends messages until it is killed.
const APPENDER_ROLE: &str = "crash-appender";
const APPENDER_TEST: &str = "crash_appender_child";
/// What the child prints before `<conversation> <seq> <client message id>` of each
/// append that has been acknowledged.
const APPENDED: &str = "appended ";
/// How many acknowledged appends the parent waits for before killing the child.
const APPENDS_BEFORE_KILL: usize = 300;
/// How many tasks of the child append at once, so that appends share commits.
const APPENDER_TASKS: usize = 8;
/// The conversations the child's tasks append to (task `t` uses `t % len`).
const APPENDER_CONVERSATIONS: [&str; 2] = ["crash_conv_a", "crash_conv_b"];

/// The role and test name of the child whose database checkpoint is left old.
const STALE_ROLE: &str = "stale-checkpoint";
const STALE_TEST: &str = "stale_checkpoint_child";
/// What that child prints once every write of its second phase is acknowledged.
const STALE_READY: &str = "acknowledged everything";
/// Its conversation.
const STALE_CONVERSATION: &str = "stale_conv";
/// Messages appended before its checkpoint, and after it.
const STALE_CHECKPOINTED: u64 = 3;
const STALE_LOGGED_ONLY: u64 = 17;

fn new_user(username: &str, created_at_ms: i64) -> NewUser {
    NewUser {
        username: username.to_owned(),
        password_hash: format!("pbkdf2-sha256$1000$c2FsdA${username}"),
        created_at_ms,
    }
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let created = {
        let store = EmbeddedStore::open(dir.path()).expect("first open");
        let mut created = Vec::new();
        for i in 0..10 {
            let user = store
                .create_user(new_user(&format!("keep_{i}"), i))
                .await
                .expect("create user");
            created.push(user);
        }
        store
            .set_user_disabled("keep_3", true)
            .await
            .expect("disable keep_3");
        created[3].disabled = true;
        store.flush().await.expect("flush");
        created
    };

    let reopened = EmbeddedStore::open(dir.path()).expect("reopen after close");
    for expected in &created {
        let found = reopened
            .get_user(&expected.username)
            .await
            .expect("get user")
            .unwrap_or_else(|| panic!("{} must survive reopening", expected.username));
        assert_eq!(
            &found, expected,
            "{} changed across reopening",
            expected.username
        );
    }
}

/// Kills a child process with SIGKILL while it is signing users up, then checks
/// that every sign-up the child saw acknowledged is in the reopened store.
#[tokio::test]
async fn acknowledged_users_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = ChildTest::spawn(WRITER_TEST, WRITER_ROLE, dir.path());

    let mut acknowledged = BTreeSet::new();
    while acknowledged.len() < ACKED_BEFORE_KILL {
        let name = child
            .next_line_after(CREATED)
            .await
            .expect("the child stopped before it was killed");
        acknowledged.insert(name);
    }
    child.process.kill().await.expect("kill the child");
    let status = child.process.wait().await.expect("reap the child");
    assert_eq!(
        status.signal(),
        Some(9),
        "the child must have died of SIGKILL, not exited ({status})"
    );
    // Whatever the child had already written to the pipe was acknowledged too.
    while let Some(name) = child.next_line_after(CREATED).await {
        acknowledged.insert(name);
    }

    let store = EmbeddedStore::open(dir.path()).expect("the store must reopen after a crash");
    for name in &acknowledged {
        let found = store.get_user(name).await.expect("get user");
        assert!(
            found.is_some(),
            "acknowledged user {name} was lost in the crash"
        );
    }
    assert!(acknowledged.len() >= ACKED_BEFORE_KILL);
}

/// The child side of [`acknowledged_users_survive_sigkill`]: signs users up one by
/// one, reporting each acknowledged sign-up on stdout, until it is killed.
#[tokio::test]
#[ignore = "child process of acknowledged_users_survive_sigkill; runs only when spawned by it"]
async fn crash_writer_child() {
    let Some(data_dir) = child_data_dir(WRITER_ROLE) else {
        return;
    };
    let store = EmbeddedStore::open(&data_dir).expect("child opens the store");
    let mut stdout = std::io::stdout();
    for i in 0..CHILD_WRITE_LIMIT {
        let name = format!("crash_{i}");
        store
            .create_user(new_user(&name, i as i64))
            .await
            .expect("child creates a user");
        writeln!(stdout, "{CREATED}{name}").expect("report to the parent");
        stdout.flush().expect("flush the report");
    }
}

/// Conversations, read and delivered cursors, and message history (including an
/// amend) are all still there after the store is closed and reopened.
#[tokio::test]
async fn chat_data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conversation, messages) = {
        let store = EmbeddedStore::open(dir.path()).expect("first open");
        let created = store
            .create_conversation(ConversationRecord {
                id: "g:keep".to_owned(),
                kind: ConversationKind::Group,
                name: "keep".to_owned(),
                members: vec![MemberRecord {
                    user: "alice".to_owned(),
                    role: Role::Owner,
                    joined_at_ms: 1,
                }],
                created_at_ms: 1,
                updated_at_ms: 1,
                version: 1,
            })
            .await
            .expect("create conversation");
        let mut renamed = created.clone();
        renamed.name = "kept".to_owned();
        let conversation = store
            .update_conversation(renamed, created.version)
            .await
            .expect("update conversation");
        for i in 1..=3u64 {
            store
                .append(message("g:keep", "alice", &format!("m{i}"), i))
                .await
                .expect("append");
        }
        let mut edit = message("g:keep", "alice", "edit", 4);
        edit.amend = Some(Amend {
            target_seq: 2,
            payload: b"edited".to_vec(),
        });
        store.append(edit).await.expect("append an edit");
        store
            .mark_read("g:keep", "alice", 3)
            .await
            .expect("mark read");
        store
            .mark_delivered("alice", "g:keep", 4)
            .await
            .expect("mark delivered");
        let messages = store.fetch("g:keep", everything()).await.expect("fetch");
        (conversation, messages)
    };

    let reopened = EmbeddedStore::open(dir.path()).expect("reopen after close");
    assert_eq!(
        reopened.get_conversation("g:keep").await.expect("get"),
        Some(conversation)
    );
    assert_eq!(
        reopened.conversations_of("alice").await.expect("index"),
        ["g:keep"]
    );
    assert_eq!(
        reopened.fetch("g:keep", everything()).await.expect("fetch"),
        messages
    );
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[1].payload, b"edited");
    let cursors = reopened.read_cursors("g:keep").await.expect("cursors");
    assert_eq!(cursors.len(), 1);
    assert_eq!(cursors[0].read_up_to, 3);
    assert_eq!(
        reopened
            .delivered("alice", "g:keep")
            .await
            .expect("delivered"),
        4
    );
}

/// A plain message whose message id is `message_id` and payload names it.
fn message(
    conversation: &str,
    sender: &str,
    client_message_id: &str,
    message_id: u64,
) -> AppendRequest {
    AppendRequest {
        conversation_id: conversation.to_owned(),
        sender: sender.to_owned(),
        client_message_id: client_message_id.to_owned(),
        message_id,
        server_time_ms: 1_700_000_000_000,
        payload: format!("payload of {client_message_id}").into_bytes(),
        amend: None,
    }
}

/// A page holding every message of a conversation.
fn everything() -> PageRequest {
    PageRequest {
        after_seq: 0,
        before_seq: u64::MAX,
        limit: usize::MAX,
        direction: Direction::Forward,
    }
}

/// One acknowledged append as the appender child reported it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reported {
    conversation: String,
    seq: u64,
    client_message_id: String,
}

impl Reported {
    /// Parses the rest of an `appended` line.
    fn parse(line: &str) -> Reported {
        let fields: Vec<&str> = line.split(' ').collect();
        let [conversation, seq, client_message_id] = fields[..] else {
            panic!("malformed report from the child: {line:?}");
        };
        Reported {
            conversation: conversation.to_owned(),
            seq: seq
                .parse()
                .unwrap_or_else(|e| panic!("bad seq in {line:?}: {e}")),
            client_message_id: client_message_id.to_owned(),
        }
    }
}

/// Kills a child process with SIGKILL while several of its tasks are appending
/// messages (so appends share group commits), then checks that every append the
/// child saw acknowledged is in the reopened store with the seq it was given,
/// and that every conversation's seqs are still gap-free.
#[tokio::test]
async fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = ChildTest::spawn(APPENDER_TEST, APPENDER_ROLE, dir.path());

    let mut reported = BTreeSet::new();
    while reported.len() < APPENDS_BEFORE_KILL {
        let line = child
            .next_line_after(APPENDED)
            .await
            .expect("the child stopped before it was killed");
        reported.insert(Reported::parse(&line));
    }
    child.process.kill().await.expect("kill the child");
    let status = child.process.wait().await.expect("reap the child");
    assert_eq!(
        status.signal(),
        Some(9),
        "the child must have died of SIGKILL, not exited ({status})"
    );
    // Whatever the child had already written to the pipe was acknowledged too.
    while let Some(line) = child.next_line_after(APPENDED).await {
        reported.insert(Reported::parse(&line));
    }

    let store = EmbeddedStore::open(dir.path()).expect("the store must reopen after a crash");
    for ack in &reported {
        let stored = store
            .get(&ack.conversation, ack.seq)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged append {ack:?} was lost in the crash"));
        assert_eq!(
            stored.client_message_id, ack.client_message_id,
            "seq {} of {} holds another message than the one acknowledged",
            ack.seq, ack.conversation
        );
    }
    let mut highest_reported = BTreeMap::new();
    for ack in &reported {
        let highest = highest_reported
            .entry(ack.conversation.as_str())
            .or_insert(0);
        *highest = ack.seq.max(*highest);
    }
    for conversation in APPENDER_CONVERSATIONS {
        let last = store.last_seq(conversation).await.expect("last_seq");
        let seqs: Vec<u64> = store
            .fetch(conversation, everything())
            .await
            .expect("fetch")
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(
            seqs,
            (1..=last).collect::<Vec<_>>(),
            "{conversation}: seqs must be gap-free up to last_seq {last}"
        );
        let highest = highest_reported.get(conversation).copied().unwrap_or(0);
        assert!(
            last >= highest,
            "{conversation}: last_seq {last} is below acknowledged seq {highest}"
        );
    }
    // The idempotency index survived too: retrying an acknowledged append is a duplicate.
    let ack = reported.first().expect("the child acknowledged appends");
    let sender = ack
        .client_message_id
        .split('-')
        .next()
        .expect("client message ids start with the sender");
    let retry = store
        .append(message(
            &ack.conversation,
            sender,
            &ack.client_message_id,
            0,
        ))
        .await
        .expect("retry an acknowledged append");
    assert!(
        retry.duplicate,
        "a retry after the crash must be a duplicate"
    );
    assert_eq!(retry.seq, ack.seq);
    assert!(reported.len() >= APPENDS_BEFORE_KILL);
}

/// The child side of [`acknowledged_appends_survive_sigkill`]: several tasks append
/// messages at once, each reporting its acknowledged appends on stdout, until the
/// process is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of acknowledged_appends_survive_sigkill; runs only when spawned by it"]
async fn crash_appender_child() {
    let Some(data_dir) = child_data_dir(APPENDER_ROLE) else {
        return;
    };
    let store = Arc::new(EmbeddedStore::open(&data_dir).expect("child opens the store"));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..APPENDER_TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let conversation = APPENDER_CONVERSATIONS[task % APPENDER_CONVERSATIONS.len()];
            let sender = format!("sender{task}");
            for i in 0..CHILD_WRITE_LIMIT {
                let client_message_id = format!("{sender}-{i}");
                let request = message(conversation, &sender, &client_message_id, i as u64);
                let appended = store.append(request).await.expect("child appends");
                // One locked write per line, so lines from different tasks never interleave.
                let mut stdout = std::io::stdout().lock();
                writeln!(
                    stdout,
                    "{APPENDED}{conversation} {} {client_message_id}",
                    appended.seq
                )
                .expect("report to the parent");
                stdout.flush().expect("flush the report");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("an appending task must not panic");
    }
}

/// Kills a child process whose last durable database commit (its checkpoint)
/// is older than many acknowledged history writes, which only the history log
/// holds: reopening replays them all, exactly.
#[tokio::test]
async fn writes_after_the_last_checkpoint_are_replayed_from_the_history_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = ChildTest::spawn(STALE_TEST, STALE_ROLE, dir.path());
    child
        .next_line_after(STALE_READY)
        .await
        .expect("the child stopped before acknowledging its writes");
    child.process.kill().await.expect("kill the child");
    let status = child.process.wait().await.expect("reap the child");
    assert_eq!(status.signal(), Some(9), "died of SIGKILL ({status})");

    let store = EmbeddedStore::open(dir.path()).expect("reopen after the crash");
    // Every write of the second phase was its own batch: the appends, the
    // amend and the two cursor moves.
    let logged_batches = STALE_LOGGED_ONLY + 1 + 2;
    assert_eq!(
        store.recovery(),
        Recovery {
            replayed_records: logged_batches,
            torn_bytes: 0,
            position: store.recovery().position,
        },
        "everything after the checkpoint comes from the log"
    );
    let messages = store
        .fetch(STALE_CONVERSATION, everything())
        .await
        .expect("fetch");
    let total = STALE_CHECKPOINTED + STALE_LOGGED_ONLY + 1;
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    for m in &messages[..(total - 1) as usize] {
        assert_eq!(m.client_message_id, format!("m{}", m.seq));
        let expected = if m.seq == 2 {
            b"edited".to_vec()
        } else {
            format!("payload of m{}", m.seq).into_bytes()
        };
        assert_eq!(m.payload, expected, "message {}", m.seq);
    }
    assert_eq!(
        store.last_seq(STALE_CONVERSATION).await.expect("last_seq"),
        total
    );
    let cursors = store
        .read_cursors(STALE_CONVERSATION)
        .await
        .expect("cursors");
    assert_eq!(cursors.len(), 1);
    assert_eq!(
        (cursors[0].user.as_str(), cursors[0].read_up_to),
        ("bob", 10)
    );
    assert_eq!(
        store
            .delivered("bob", STALE_CONVERSATION)
            .await
            .expect("delivered"),
        12
    );
    // The idempotency index was replayed too, and seqs go on from the last.
    let retry = store
        .append(message(STALE_CONVERSATION, "alice", "m15", 0))
        .await
        .expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.seq, 15);
    let next = store
        .append(message(STALE_CONVERSATION, "alice", "after", 0))
        .await
        .expect("append after recovery");
    assert_eq!(next.seq, total + 1);

    // Recovery made the database durable and emptied the log.
    let log_dir = dir.path().join(HISTORY_LOG_DIR);
    let left: Vec<_> = std::fs::read_dir(&log_dir)
        .expect("the log directory")
        .collect();
    assert!(
        left.len() <= 1,
        "only the segment of the last append: {left:?}"
    );
    drop(store);
    assert_eq!(
        std::fs::read_dir(&log_dir).expect("list").count(),
        0,
        "a clean close checkpoints and empties the log"
    );
    let reopened = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(reopened.recovery().replayed_records, 0);
    assert_eq!(
        reopened.last_seq(STALE_CONVERSATION).await.expect("last"),
        total + 1
    );
}

/// The child side of
/// [`writes_after_the_last_checkpoint_are_replayed_from_the_history_log`]:
/// appends a few messages and closes the store (a checkpoint), reopens it with
/// checkpoints put off for an hour, writes more, reports, and waits to be killed.
#[tokio::test]
#[ignore = "child process of writes_after_the_last_checkpoint_are_replayed_from_the_history_log"]
async fn stale_checkpoint_child() {
    let Some(data_dir) = child_data_dir(STALE_ROLE) else {
        return;
    };
    {
        let store = EmbeddedStore::open(&data_dir).expect("child opens the store");
        for seq in 1..=STALE_CHECKPOINTED {
            let id = format!("m{seq}");
            let appended = store
                .append(message(STALE_CONVERSATION, "alice", &id, seq))
                .await
                .expect("append");
            assert_eq!(appended.seq, seq);
        }
    }
    let no_checkpoint = EmbeddedOptions {
        history_checkpoint: HistoryCheckpoint {
            interval: std::time::Duration::from_secs(3600),
            bytes: u64::MAX,
        },
    };
    let store = EmbeddedStore::open_with(&data_dir, no_checkpoint).expect("child reopens");
    for seq in STALE_CHECKPOINTED + 1..=STALE_CHECKPOINTED + STALE_LOGGED_ONLY {
        let id = format!("m{seq}");
        let appended = store
            .append(message(STALE_CONVERSATION, "alice", &id, seq))
            .await
            .expect("append");
        assert_eq!(appended.seq, seq);
    }
    let mut edit = message(STALE_CONVERSATION, "alice", "edit", 99);
    edit.amend = Some(Amend {
        target_seq: 2,
        payload: b"edited".to_vec(),
    });
    store.append(edit).await.expect("amend");
    store
        .mark_read(STALE_CONVERSATION, "bob", 10)
        .await
        .expect("read");
    store
        .mark_delivered("bob", STALE_CONVERSATION, 12)
        .await
        .expect("delivered");
    assert_eq!(store.group_commit_stats().checkpoints, 0);
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{STALE_READY}").expect("report");
    stdout.flush().expect("flush");
    // Wait for the kill (or for the parent to go away and close stdin).
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await
        .expect("wait")
        .expect("read stdin");
}
