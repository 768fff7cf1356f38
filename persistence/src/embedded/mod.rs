//! The embedded backend: all of Parley's single-node data in one crash-safe
//! [redb](https://docs.rs/redb) file, `{data_dir}/parley.redb`.
//!
//! [`EmbeddedStore`] owns the open database and is shared by cloning (an [`Arc`] inside).
//! It implements [`MetadataStore`](crate::MetadataStore),
//! [`HistoryStore`](crate::HistoryStore), [`OfflineQueue`](crate::OfflineQueue)
//! [`KeyDirectory`](crate::KeyDirectory) and [`SessionStore`](crate::SessionStore).
//! Each kind of data lives in its own table module (`users`, `conversations`,
//! `read_cursors`, `messages`, `delivered`, `key_tables`, `push_targets`), each
//! value with a versioned codec, and `create_tables` creates every table when the
//! store opens, so reads never meet a missing table.
//!
//! redb is a blocking library, so every operation runs on Tokio's blocking pool
//! (see `EmbeddedStore::run_blocking`), except history appends, which a dedicated
//! writer thread batches into group commits (see `group_commit`), and MQTT
//! session changes, which a second writer batches the same way (`session_writer`). Once a write
//! method returns `Ok`, the write survives a crash or `kill -9` of the process: every write
//! transaction commits with [`redb::Durability::Immediate`], except the history applier's
//! (`history_applier`): history batches are made durable by the history log
//! (`{data_dir}/history-log/`, see `history_log`) before they are answered, and written to
//! redb behind that, non-durably between checkpoints; opening the store replays the log
//! (`history_recovery`).
//!
//! Only one [`EmbeddedStore`] may have a data directory open at a time, in this
//! process or any other; a second [`EmbeddedStore::open`] fails with
//! [`StoreError::Unavailable`].

mod conversation_codec;
mod conversations;
mod cursor_table;
mod delivered;
mod failure;
mod group_commit;
mod history;
mod history_applier;
mod history_handoff;
mod history_log;
mod history_pending;
mod history_recovery;
mod history_sequencer;
mod key_codec;
mod key_tables;
mod keys;
mod message_codec;
mod messages;
mod metadata;
mod offline;
mod push_target_codec;
mod push_targets;
mod read_cursors;
mod relations;
pub(crate) mod session_codec;
mod session_tables;
mod session_writer;
mod sessions;
mod user_codec;
mod users;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, DatabaseError, Durability, WriteTransaction};

use crate::StoreError;

pub(crate) use failure::Failure;
pub use group_commit::{GroupCommitStats, HistoryCheckpoint, MAX_BATCH};
pub use history_log::{HistoryLogError, HISTORY_LOG_DIR};
pub use history_recovery::Recovery;

use group_commit::GroupCommitter;
use session_writer::SessionWriter;

/// The name of the database file inside the data directory.
pub const DATABASE_FILE_NAME: &str = "parley.redb";

/// Parley's embedded store: one redb database file holding every embedded table.
///
/// Cloning is cheap and every clone shares the same open database; the file is
/// closed (and its lock released) when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

/// What every clone of an [`EmbeddedStore`] shares.
///
/// Dropping it stops the history writer, which holds the other handle to the
/// database, so the file is closed once the drop returns.
struct Inner {
    db: Arc<Database>,
    path: PathBuf,
    committer: GroupCommitter,
    sessions: SessionWriter,
    recovery: Recovery,
}

/// Settings of an [`EmbeddedStore`]; [`Default`] gives safe ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// When the history writer makes the database durable and empties the
    /// history log.
    pub history_checkpoint: HistoryCheckpoint,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir` with the default
    /// [`EmbeddedOptions`]; see [`EmbeddedStore::open_with`].
    ///
    /// # Errors
    ///
    /// As [`EmbeddedStore::open_with`].
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with(data_dir, EmbeddedOptions::default())
    }

    /// Opens (creating if needed) the store in `data_dir`: creates the directory,
    /// opens or initialises `{data_dir}/parley.redb`, creates any missing tables
    /// and replays the history log into the database (see [`Recovery`]).
    ///
    /// This blocks on file IO (and, after a crash, on redb's recovery of the file),
    /// so call it at startup or from a blocking context.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the directory cannot be created, the file cannot
    /// be opened, or the data directory is already in use by another open store (in
    /// this process or another); [`StoreError::Corrupt`] if the file is not a valid
    /// Parley database or the history log is damaged other than by a torn
    /// final write ([`HistoryLogError::Corrupt`]).
    pub fn open_with(
        data_dir: &Path,
        options: EmbeddedOptions,
    ) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(DATABASE_FILE_NAME);
        let db = Database::create(&path).map_err(|e| open_error(&path, e))?;
        create_tables(&db).map_err(StoreError::from)?;
        let (log, recovery) =
            history_recovery::recover(&db, &data_dir.join(history_log::HISTORY_LOG_DIR))?;
        let db = Arc::new(db);
        let committer = GroupCommitter::start(Arc::clone(&db), log, options.history_checkpoint)?;
        let sessions = SessionWriter::start(Arc::clone(&db))?;
        let store = EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                path,
                committer,
                sessions,
                recovery,
            }),
        };
        tracing::info!(path = %store.path().display(), "embedded store opened");
        Ok(store)
    }

    /// The path of the open database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// What opening the store replayed from the history log.
    pub fn recovery(&self) -> Recovery {
        self.inner.recovery
    }

    /// Counters of the history writer's group commits since the store opened
    /// (shared by every clone); see [`GroupCommitStats`].
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.inner.committer.stats()
    }

    /// Runs `job` against the database on Tokio's blocking pool and maps its
    /// failure to a [`StoreError`].
    ///
    /// A job that panics is reported as [`StoreError::Unavailable`]; redb rolls
    /// back any write transaction it had open.
    pub(crate) async fn run_blocking<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, Failure> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || job(&inner.db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("embedded store task failed: {e}")))?
            .map_err(StoreError::from)
    }

    /// [`EmbeddedStore::run_blocking`] for a read of the history or cursor
    /// tables: it first waits until the history applier has written every
    /// batch acknowledged before it began, so whatever was acknowledged is in
    /// what it reads (see `history_applier`). Other tables do not wait.
    pub(crate) async fn run_history_read<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, Failure> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            inner.committer.wait_applied()?;
            job(&inner.db).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("embedded store task failed: {e}")))?
    }
}

impl EmbeddedStore {
    /// Runs a point read (one key of one table) on the calling thread: it
    /// takes microseconds, less than handing it to the blocking pool and
    /// back, which every CONNECT would otherwise pay. Long reads (scans,
    /// pages) and every write stay on [`EmbeddedStore::run_blocking`].
    ///
    /// A job that panics is reported as [`StoreError::Unavailable`].
    pub(crate) fn run_point_read<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Database) -> Result<T, Failure>,
    {
        let db = &self.inner.db;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(db)))
            .map_err(|_| StoreError::Unavailable("embedded store read failed".into()))?
            .map_err(StoreError::from)
    }
}

/// Creates every missing table in one durable transaction.
fn create_tables(db: &Database) -> Result<(), Failure> {
    let tx = begin_durable_write(db)?;
    users::create_table(&tx)?;
    conversations::create_tables(&tx)?;
    read_cursors::create_table(&tx)?;
    delivered::create_table(&tx)?;
    messages::create_tables(&tx)?;
    history_recovery::create_table(&tx)?;
    push_targets::create_table(&tx)?;
    relations::create_table(&tx)?;
    keys::create_tables(&tx)?;
    session_tables::create_tables(&tx)?;
    tx.commit()?;
    Ok(())
}

/// Begins a write transaction whose commit is durable once `commit` returns.
pub(crate) fn begin_durable_write(db: &Database) -> Result<WriteTransaction, Failure> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    Ok(tx)
}

/// Explains why the database file at `path` could not be opened.
fn open_error(path: &Path, error: DatabaseError) -> StoreError {
    match error {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::Unavailable(format!(
                "{} is already in use by another open Parley store \
                 (in this process or another); only one may open a data directory at a time",
                path.display()
            ))
        }
        other => {
            let mapped = StoreError::from(Failure::from(other));
            match mapped {
                StoreError::Unavailable(reason) => {
                    StoreError::Unavailable(format!("cannot open {}: {reason}", path.display()))
                }
                StoreError::Corrupt(reason) => {
                    StoreError::Corrupt(format!("{}: {reason}", path.display()))
                }
                other => other,
            }
        }
    }
}
