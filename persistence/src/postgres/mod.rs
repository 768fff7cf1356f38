//! The PostgreSQL backend: Parley's metadata, history, delivered cursors and
//! key directory in one PostgreSQL database, shared by any number of broker
//! nodes.
//!
//! [`PostgresStore`] owns a connection pool (deadpool-postgres over
//! tokio-postgres) and is shared by cloning. It implements
//! [`MetadataStore`](crate::MetadataStore), [`HistoryStore`](crate::HistoryStore),
//! [`OfflineQueue`](crate::OfflineQueue) and [`KeyDirectory`](crate::KeyDirectory),
//! and passes the same conformance suites as the embedded backend; and, as the
//! store nodes share, [`NodeLeases`](crate::NodeLeases). Each node's durable
//! MQTT sessions are a [`PostgresSessions`] ([`PostgresStore::sessions`]).
//!
//! [`PostgresStore::connect`] applies the versioned SQL migrations of
//! `migrations/` before it returns (see `migrate`), so every node sees the
//! schema it expects. Each kind of data has its own module (`users`,
//! `conversations`, `read_cursors`, `push_targets`, `messages`, `delivered`,
//! `keys`, `node_leases`); the trait implementations in `metadata`, `history`,
//! `offline`, `key_directory` and `leases` only route to them. Every statement
//! is prepared once per connection (`prepare_cached`); every method that
//! changes more than one row runs in one transaction.
//!
//! A lost or refused connection is [`StoreError::Unavailable`](crate::StoreError),
//! and so is an operation that takes longer than
//! [`PostgresConfig::operation_timeout`]; the pool drops broken connections and
//! opens new ones once the server is back, so the store needs no rebuild.
//! `docs/storage.md` describes the schema and how sequence numbers are assigned.

mod append_queue;
mod batched_appends;
mod codec;
mod conversations;
mod cursor_batch;
mod cursor_queue;
mod delivered;
mod failure;
mod history;
mod key_directory;
mod keys;
mod leases;
mod messages;
mod metadata;
mod migrate;
mod mqtt_retained;
mod node_leases;
mod offline;
mod pool;
mod push_targets;
mod read_cursors;
mod relations;
mod session_directory;
mod sessions;
mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;

use cursor_queue::CursorKind;

use crate::StoreError;

pub use append_queue::{AppendBatchStats, MAX_BATCH as MAX_APPEND_BATCH};
pub use cursor_queue::CursorBatchStats;
pub use migrate::{versions as migration_versions, SCHEMA_VERSION};
pub use pool::PostgresConfig;
pub use sessions::PostgresSessions;

/// Parley's PostgreSQL store: a connection pool to a database whose schema
/// has been migrated to [`SCHEMA_VERSION`].
///
/// Cloning is cheap and every clone shares the same pool.
#[derive(Clone)]
pub struct PostgresStore {
    /// The connections, shared by every clone.
    pool: Pool,
    /// Longest one store call may take (see [`PostgresStore::timed`]).
    operation_timeout: Duration,
    /// The history's group-commit lanes, shared by every clone; `None` when
    /// configured off (each append is then its own transaction).
    appends: Option<Arc<append_queue::AppendQueue>>,
    /// The read and delivered cursor writer, shared by every clone; `None`
    /// when history batching is configured off (each cursor move is then its
    /// own transaction).
    cursors: Option<Arc<cursor_queue::CursorQueue>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("max_connections", &status.max_size)
            .field("open_connections", &status.size)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database `config` names and applies every migration it
    /// lacks (see [`SCHEMA_VERSION`]); safe to run from several nodes at once.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached or a
    /// migration fails; [`StoreError::Corrupt`] if the database's schema is newer
    /// than this version of Parley knows.
    pub async fn connect(config: PostgresConfig) -> Result<PostgresStore, StoreError> {
        let operation_timeout = config.operation_timeout;
        let pool = pool::build(&config)?;
        let appends = (config.history_writers > 0).then(|| {
            Arc::new(append_queue::AppendQueue::start(
                &pool,
                config.history_writers,
                operation_timeout,
            ))
        });
        let cursors = (config.history_writers > 0)
            .then(|| Arc::new(cursor_queue::CursorQueue::start(&pool, operation_timeout)));
        let store = PostgresStore {
            pool,
            operation_timeout,
            appends,
            cursors,
        };
        store
            .timed("applying migrations", async {
                let mut client = store.client().await?;
                migrate::apply(&mut client).await
            })
            .await?;
        tracing::info!(
            schema_version = SCHEMA_VERSION,
            "PostgreSQL store connected"
        );
        Ok(store)
    }

    /// The highest migration applied to the database.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached.
    pub async fn schema_version(&self) -> Result<i32, StoreError> {
        self.timed("reading the schema version", async {
            let client = self.client().await?;
            migrate::current_version(&client).await
        })
        .await
    }

    /// How many appends the history writers have applied in batches so far.
    pub fn append_batch_stats(&self) -> AppendBatchStats {
        self.appends
            .as_ref()
            .map(|appends| appends.stats())
            .unwrap_or_default()
    }

    /// How many cursor moves the cursor writer has made in batches so far.
    pub fn cursor_batch_stats(&self) -> CursorBatchStats {
        self.cursors
            .as_ref()
            .map(|cursors| cursors.stats())
            .unwrap_or_default()
    }

    /// Moves `user`'s `kind` cursor in `conversation_id` up to `seq`, through
    /// the cursor writer when there is one; returns the cursor after it.
    async fn mark_cursor(
        &self,
        kind: CursorKind,
        conversation_id: &str,
        user: &str,
        seq: u64,
    ) -> Result<u64, StoreError> {
        if let Some(cursors) = &self.cursors {
            return cursors.mark(kind, conversation_id, user, seq).await;
        }
        let client = self.client().await?;
        match kind {
            CursorKind::Read => read_cursors::mark(&client, conversation_id, user, seq).await,
            CursorKind::Delivered => delivered::mark(&client, user, conversation_id, seq).await,
        }
    }

    /// A connection from the pool (opening one if needed).
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(failure::pool_error)
    }

    /// Runs `operation`, failing with [`StoreError::Unavailable`] if it takes
    /// longer than the operation timeout. An abandoned transaction is rolled back.
    pub(crate) async fn timed<T>(
        &self,
        what: &str,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        failure::within(self.operation_timeout, what, operation).await
    }
}
