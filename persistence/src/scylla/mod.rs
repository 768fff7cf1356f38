//! The Scylla backend: Parley's message history in a Scylla (or Cassandra)
//! cluster, for deployments whose history outgrows one PostgreSQL server.
//!
//! [`ScyllaStore`] implements [`HistoryStore`](crate::HistoryStore) only;
//! metadata, delivered cursors and keys stay in PostgreSQL (or the embedded
//! store). It holds one driver session (token-aware and shard-aware routing,
//! prepared statements) and is shared by cloning.
//!
//! - `config`: contact points, keyspace, replication, timeouts.
//! - `schema`: the tables, created at start-up, and the layout check.
//! - `buckets`: which partition holds which seqs, and page planning.
//! - `append`: the protocol that keeps seqs gap-free and retries idempotent
//!   with per-partition compare-and-sets, checked against an in-memory model.
//! - `statements` and `cells`: the protocol's operations in CQL.
//! - `history`: the trait implementation.
//!
//! `docs/storage.md` explains the schema and its costs. The conformance suite
//! runs against a real cluster when `PARLEY_TEST_SCYLLA` names a node.

mod append;
mod buckets;
mod cells;
mod config;
mod failure;
mod history;
mod schema;
mod statements;

use std::sync::Arc;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::{Consistency, SerialConsistency};

use crate::StoreError;
use failure::Context;
use statements::Statements;

pub use buckets::BUCKET_SIZE;
pub use config::ScyllaConfig;
pub use schema::SCHEMA_VERSION;

/// Parley's history in a Scylla keyspace. Cloning is cheap; clones share the
/// session and its connections.
#[derive(Clone)]
pub struct ScyllaStore {
    /// The session and statements, shared by every clone.
    inner: Arc<Inner>,
}

/// What clones share.
struct Inner {
    /// The driver session.
    session: Session,
    /// The prepared statements.
    statements: Statements,
    /// The keyspace in use.
    keyspace: String,
    /// Longest one CQL request may take.
    request_timeout: std::time::Duration,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("keyspace", &self.inner.keyspace)
            .finish_non_exhaustive()
    }
}

impl ScyllaStore {
    /// Connects to the cluster, creates the keyspace and tables if missing,
    /// checks their layout and prepares every statement.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the cluster cannot be reached or refuses
    /// a statement; [`StoreError::Corrupt`] if the keyspace was laid out by a
    /// newer Parley or with another bucket size.
    pub async fn connect(config: ScyllaConfig) -> Result<ScyllaStore, StoreError> {
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(dc) = &config.datacenter {
            policy = policy.prefer_datacenter(dc.clone());
        }
        let profile = ExecutionProfile::builder()
            .load_balancing_policy(policy.build())
            .consistency(Consistency::LocalQuorum)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .request_timeout(Some(config.request_timeout))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(config.connect_timeout)
            .default_execution_profile_handle(profile.into_handle());
        if let Some((user, password)) = &config.credentials {
            builder = builder.user(user, password);
        }
        let session = builder
            .build()
            .await
            .context(&format!("connecting to {}", config.nodes.join(", ")))?;
        schema::apply(&session, &config).await?;
        let statements = Statements::prepare(&session, &config.keyspace).await?;
        tracing::info!(
            keyspace = %config.keyspace,
            schema_version = SCHEMA_VERSION,
            "Scylla history store connected"
        );
        Ok(ScyllaStore {
            inner: Arc::new(Inner {
                session,
                statements,
                keyspace: config.keyspace,
                request_timeout: config.request_timeout,
            }),
        })
    }

    /// The keyspace the store uses.
    pub fn keyspace(&self) -> &str {
        &self.inner.keyspace
    }

    /// The driver session.
    pub(crate) fn session(&self) -> &Session {
        &self.inner.session
    }

    /// The prepared statements.
    pub(crate) fn statements(&self) -> &Statements {
        &self.inner.statements
    }

    /// Longest one CQL request may take.
    pub(crate) fn request_timeout(&self) -> std::time::Duration {
        self.inner.request_timeout
    }
}
