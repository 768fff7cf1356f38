//! Opening the embedded store: where the file goes, what a bad data directory
//! gives, and that only one store (in any process) may have a directory open.

mod support;

use persistence::embedded::{EmbeddedStore, DATABASE_FILE_NAME};
use persistence::{MetadataStore, NewUser, StoreError};
use support::{child_data_dir, ChildTest};

/// The role and test name of the child that holds a data directory open.
const HOLDER_ROLE: &str = "holder";
const HOLDER_TEST: &str = "holder_child";
/// What the holder prints once it has the store open.
const HOLDING: &str = "holding";
/// The user the holder creates, to show the parent reads the holder's data afterwards.
const HOLDER_USER: &str = "held_by_child";

/// Asserts that `result` is the "already in use" refusal.
fn assert_in_use(result: Result<EmbeddedStore, StoreError>) {
    match result {
        Err(StoreError::Unavailable(reason)) => assert!(
            reason.contains("already in use"),
            "the refusal must say the directory is in use, got {reason:?}"
        ),
        Err(other) => panic!("a second open must be Unavailable, got {other:?}"),
        Ok(store) => panic!("a second open of {:?} must fail", store.path()),
    }
}

#[test]
fn creates_missing_directories_and_the_database_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("nested").join("data");
    let store = EmbeddedStore::open(&data_dir).expect("open a missing directory");
    assert_eq!(store.path(), data_dir.join(DATABASE_FILE_NAME));
    assert!(
        data_dir.join(DATABASE_FILE_NAME).is_file(),
        "the database file must exist after opening"
    );
}

#[test]
fn data_dir_that_is_a_file_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write a plain file");
    let err = EmbeddedStore::open(&file).expect_err("a file is not a data directory");
    assert!(
        matches!(&err, StoreError::Unavailable(reason) if reason.contains("data directory")),
        "got {err:?}"
    );
}

#[test]
fn a_foreign_database_file_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(DATABASE_FILE_NAME),
        "this is not a redb database, just some text that is long enough".repeat(100),
    )
    .expect("write a foreign file");
    let err = EmbeddedStore::open(dir.path()).expect_err("a foreign file must not open");
    assert!(matches!(&err, StoreError::Corrupt(_)), "got {err:?}");
    assert!(
        err.to_string().contains(DATABASE_FILE_NAME),
        "the error must name the file, got {err}"
    );
}

#[test]
fn second_open_in_the_same_process_is_refused_until_every_clone_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = EmbeddedStore::open(dir.path()).expect("first open");
    let clone = first.clone();
    assert_in_use(EmbeddedStore::open(dir.path()));

    drop(first);
    // A live clone still holds the database open.
    assert_in_use(EmbeddedStore::open(dir.path()));

    drop(clone);
    EmbeddedStore::open(dir.path()).expect("reopen once every handle is dropped");
}

#[tokio::test]
async fn clones_share_one_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let clone = store.clone();
    let user = NewUser {
        username: "shared".to_owned(),
        password_hash: "h".to_owned(),
        created_at_ms: 1,
    };
    let created = store
        .create_user(user)
        .await
        .expect("create via one handle");
    let seen = clone
        .get_user("shared")
        .await
        .expect("get via the clone")
        .expect("the clone must see the write");
    assert_eq!(seen, created);
}

/// Another process holding the data directory open makes `open` fail; once it
/// exits, the directory opens and holds what it wrote.
#[tokio::test]
async fn open_is_refused_while_another_process_holds_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = ChildTest::spawn(HOLDER_TEST, HOLDER_ROLE, dir.path());
    child
        .next_line_after(HOLDING)
        .await
        .expect("the holder exited before opening the store");

    assert_in_use(EmbeddedStore::open(dir.path()));

    // Closing the holder's stdin tells it to close the store and exit.
    drop(child.process.stdin.take());
    let status = child.process.wait().await.expect("reap the holder");
    assert!(status.success(), "the holder must exit cleanly ({status})");

    let store = EmbeddedStore::open(dir.path()).expect("open after the holder exits");
    let held = store.get_user(HOLDER_USER).await.expect("get user");
    assert!(held.is_some(), "the holder's user must be in the store");
}

/// The child side of [`open_is_refused_while_another_process_holds_the_directory`]:
/// opens the store, reports it, and keeps it open until its stdin closes.
#[tokio::test]
#[ignore = "child process of open_is_refused_while_another_process_holds_the_directory"]
async fn holder_child() {
    let Some(data_dir) = child_data_dir(HOLDER_ROLE) else {
        return;
    };
    let store = EmbeddedStore::open(&data_dir).expect("holder opens the store");
    let user = NewUser {
        username: HOLDER_USER.to_owned(),
        password_hash: "h".to_owned(),
        created_at_ms: 1,
    };
    store
        .create_user(user)
        .await
        .expect("holder creates a user");
    println!("{HOLDING}");

    let mut stdin = tokio::io::stdin();
    let mut sink = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stdin, &mut sink)
        .await
        .expect("wait for stdin to close");
    drop(store);
}
