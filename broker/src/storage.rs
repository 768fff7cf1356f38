//! Opening the store a node is configured with (`[storage]`): the embedded
//! one in `data_dir`, or a PostgreSQL database that several nodes share, and
//! optionally a Scylla cluster for history (`history = "scylla"`).
//!
//! Either way the node gets the same four trait objects, so nothing above
//! this module knows which backend it runs on; a store that several nodes
//! share also hands out node leases.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use persistence::embedded::EmbeddedStore;
use persistence::postgres::{PostgresConfig, PostgresStore};
use persistence::scylla::ScyllaStore;
use persistence::{
    ClusterMqttStore, HistoryStore, KeyDirectory, MetadataStore, NodeLeases, OfflineQueue,
    SessionDirectory, SessionHandover, SessionStore,
};

use crate::config::{Config, HistoryBackend, PostgresStorageConfig, StorageBackend};

/// One node's handles on its store; every field is the same store behind a
/// different trait.
#[derive(Clone)]
pub struct Stores {
    /// Users, conversations, read cursors, push targets.
    pub metadata: Arc<dyn MetadataStore>,
    /// The message log.
    pub history: Arc<dyn HistoryStore>,
    /// Delivered cursors.
    pub offline: Arc<dyn OfflineQueue>,
    /// End-to-end encryption keys.
    pub keys: Arc<dyn KeyDirectory>,
    /// Leases on node ids, if the store is shared by several nodes
    /// (PostgreSQL); `None` for the embedded store, which one process at a
    /// time can open.
    pub leases: Option<Arc<dyn NodeLeases>>,
    /// Which node holds each live MQTT session, if the store is shared by
    /// several nodes (PostgreSQL); used with a cluster bus.
    pub directory: Option<Arc<dyn SessionDirectory>>,
    /// The cluster's retained plain MQTT messages and live nodes, if the
    /// store is shared by several nodes (PostgreSQL); used with a cluster bus.
    pub cluster_mqtt: Option<Arc<dyn ClusterMqttStore>>,
    /// Persistent MQTT sessions, if the backend keeps them (embedded, and
    /// PostgreSQL for this node's sessions); `None` keeps them in memory only.
    pub sessions: Option<Arc<dyn SessionStore>>,
    /// Moving persistent sessions between the nodes sharing the store
    /// (PostgreSQL); `None` for the embedded store.
    pub handover: Option<Arc<dyn SessionHandover>>,
    /// The embedded store itself, for its history writer's counters; `None`
    /// on the other backends.
    pub embedded: Option<Arc<EmbeddedStore>>,
}

/// Opens the backend `config.storage` names. PostgreSQL is migrated to the
/// schema this build expects before this returns.
pub async fn open(config: &Config) -> anyhow::Result<Stores> {
    let mut stores = open_backend(config).await?;
    if config.storage.history == HistoryBackend::Scylla {
        let settings = config.storage.scylla.driver_config()?;
        let store = ScyllaStore::connect(settings).await.with_context(|| {
            format!(
                "opening the Scylla history store at {}, keyspace {}",
                config.storage.scylla.nodes, config.storage.scylla.keyspace
            )
        })?;
        stores.history = Arc::new(store);
    }
    Ok(stores)
}

/// Opens `storage.backend`, which holds everything unless history is elsewhere.
async fn open_backend(config: &Config) -> anyhow::Result<Stores> {
    match config.storage.backend {
        StorageBackend::Embedded => {
            let options = config.storage.embedded_options();
            let store = EmbeddedStore::open_with(&config.data_dir, options).with_context(|| {
                format!(
                    "opening the embedded store in {}",
                    config.data_dir.display()
                )
            })?;
            let store = Arc::new(store);
            Ok(Stores {
                sessions: Some(store.clone()),
                embedded: Some(store.clone()),
                ..Stores::all(store)
            })
        }
        StorageBackend::Postgres => {
            let settings = postgres_config(&config.storage.postgres)?;
            let database = settings
                .database_name()
                .unwrap_or("(the user's)")
                .to_owned();
            let store =
                Arc::new(PostgresStore::connect(settings).await.with_context(|| {
                    format!("opening the PostgreSQL store, database {database}")
                })?);
            let sessions = Arc::new(store.sessions(config.node_id));
            Ok(Stores {
                leases: Some(store.clone()),
                directory: Some(store.clone()),
                cluster_mqtt: Some(store.clone()),
                sessions: Some(sessions.clone()),
                handover: Some(sessions),
                ..Stores::all(store)
            })
        }
    }
}

/// The pool settings of `[storage.postgres]`.
pub fn postgres_config(pg: &PostgresStorageConfig) -> anyhow::Result<PostgresConfig> {
    Ok(PostgresConfig::from_url(&pg.url)
        .context("storage.postgres.url")?
        .max_connections(pg.max_connections)
        .history_writers(pg.history_writers)
        .connect_timeout(Duration::from_millis(pg.connect_timeout_ms))
        .operation_timeout(Duration::from_millis(pg.operation_timeout_ms)))
}

impl Stores {
    /// Every handle on one store implementing all four traits, without leases.
    fn all<S>(store: Arc<S>) -> Stores
    where
        S: MetadataStore + HistoryStore + OfflineQueue + KeyDirectory,
    {
        Stores {
            metadata: store.clone(),
            history: store.clone(),
            offline: store.clone(),
            keys: store,
            leases: None,
            directory: None,
            cluster_mqtt: None,
            sessions: None,
            handover: None,
            embedded: None,
        }
    }
}
