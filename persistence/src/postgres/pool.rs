//! Connection settings and the connection pool.
//!
//! The pool opens connections lazily, up to [`PostgresConfig::max_connections`].
//! A connection the server closed (a restart, a failover, an idle timeout) is
//! noticed when it goes back to the pool or is next handed out, and replaced
//! by a fresh one, so the store recovers on its own once the server is back.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::StoreError;

/// Where and how to connect to PostgreSQL.
#[derive(Clone)]
pub struct PostgresConfig {
    /// The parsed connection settings.
    pub(crate) pg: tokio_postgres::Config,
    /// Most connections the pool keeps open.
    pub(crate) max_connections: usize,
    /// Longest one store operation may take, connecting included.
    pub(crate) operation_timeout: Duration,
    /// Longest opening one connection may take.
    pub(crate) connect_timeout: Duration,
    /// How many history writers (group-commit lanes) append in parallel.
    pub(crate) history_writers: usize,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("PostgresConfig")
            .field("pg", &self.pg)
            .field("max_connections", &self.max_connections)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("history_writers", &self.history_writers)
            .finish()
    }
}

impl PostgresConfig {
    /// Default for [`PostgresConfig::max_connections`].
    pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
    /// Default for [`PostgresConfig::operation_timeout`].
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default for [`PostgresConfig::connect_timeout`].
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default for [`PostgresConfig::history_writers`].
    pub const DEFAULT_HISTORY_WRITERS: usize = 4;

    /// Parses a connection string, either a URL
    /// (`postgres://user:password@host:port/database`) or libpq's
    /// `key=value` form, with default pool settings.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the string is not a valid connection string.
    pub fn from_url(url: &str) -> Result<PostgresConfig, StoreError> {
        let pg = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::Unavailable(format!("invalid PostgreSQL connection string: {e}"))
        })?;
        Ok(PostgresConfig {
            pg,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            operation_timeout: Self::DEFAULT_OPERATION_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            history_writers: Self::DEFAULT_HISTORY_WRITERS,
        })
    }

    /// Uses database `name` instead of the one the connection string names.
    pub fn database(mut self, name: &str) -> PostgresConfig {
        self.pg.dbname(name);
        self
    }

    /// The database the store connects to, if the connection string names one
    /// (otherwise PostgreSQL uses the user name).
    pub fn database_name(&self) -> Option<&str> {
        self.pg.get_dbname()
    }

    /// Sets the name the connections report to the server (shown in
    /// `pg_stat_activity`); `parley` unless the connection string sets one.
    pub fn application_name(mut self, name: &str) -> PostgresConfig {
        self.pg.application_name(name);
        self
    }

    /// Sets the most connections the pool keeps open (at least 1).
    pub fn max_connections(mut self, max: usize) -> PostgresConfig {
        self.max_connections = max.max(1);
        self
    }

    /// Sets the longest one store operation may take before it fails with
    /// [`StoreError::Unavailable`].
    pub fn operation_timeout(mut self, timeout: Duration) -> PostgresConfig {
        self.operation_timeout = timeout;
        self
    }

    /// Sets how many history writers append in parallel. Each writes
    /// batches of queued appends, one transaction per batch, for its share
    /// of the conversations, and uses one pooled connection while it writes.
    /// 0 turns batching off: every append, and every read or delivered
    /// cursor move (otherwise batched by one cursor writer), is then its own
    /// transaction, run by its caller.
    pub fn history_writers(mut self, writers: usize) -> PostgresConfig {
        self.history_writers = writers;
        self
    }

    /// Sets the longest opening one connection may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> PostgresConfig {
        self.connect_timeout = timeout;
        self
    }
}

/// Builds the pool; no connection is opened yet.
pub(super) fn build(config: &PostgresConfig) -> Result<Pool, StoreError> {
    let mut pg = config.pg.clone();
    pg.connect_timeout(config.connect_timeout);
    // Notice a silently dead server (no FIN, no RST) on idle connections.
    pg.keepalives(true);
    pg.keepalives_idle(Duration::from_secs(30));
    if pg.get_application_name().is_none() {
        pg.application_name("parley");
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            // Checks `is_closed` on every hand-out: a connection whose server
            // went away is dropped and replaced, without a round trip.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.max_connections)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.operation_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| StoreError::Unavailable(format!("cannot build the PostgreSQL pool: {e}")))
}
