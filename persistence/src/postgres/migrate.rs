//! Versioned schema migrations, applied when a store connects.
//!
//! Each migration is a `.sql` file under `migrations/`, compiled into the
//! binary. The `schema_migrations` table records which versions a database
//! has. [`apply`] runs, in one transaction, every migration the database
//! lacks, in version order, after taking a transaction-scoped advisory lock:
//! nodes starting at the same time queue on the lock, and each finds the work
//! done by the one before it. A failing migration rolls back whole, leaving
//! the database at the version it had.
//!
//! Migrations are append-only: a released file is never edited; a schema
//! change is a new file with the next version.

use deadpool_postgres::Client;

use super::failure::{column, Context};
use crate::StoreError;

/// One schema change.
struct Migration {
    /// Its version; versions ascend (1, 2, 3, ...).
    version: i32,
    /// A short name, recorded with the version.
    name: &'static str,
    /// The SQL, run as one batch.
    sql: &'static str,
}

/// Every migration, oldest first.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "node_leases",
        sql: include_str!("migrations/0002_node_leases.sql"),
    },
    Migration {
        version: 3,
        name: "user_relations",
        sql: include_str!("migrations/0003_user_relations.sql"),
    },
    Migration {
        version: 4,
        name: "session_directory",
        sql: include_str!("migrations/0004_session_directory.sql"),
    },
    Migration {
        version: 5,
        name: "mqtt_sessions",
        sql: include_str!("migrations/0005_mqtt_sessions.sql"),
    },
    Migration {
        version: 6,
        name: "mqtt_retained",
        sql: include_str!("migrations/0006_mqtt_retained.sql"),
    },
    Migration {
        version: 7,
        name: "session_directory_detached",
        sql: include_str!("migrations/0007_session_directory_detached.sql"),
    },
];

/// The schema version this version of Parley expects: its newest migration.
pub const SCHEMA_VERSION: i32 = 7;

/// The version of every migration this version of Parley has, oldest first.
pub fn versions() -> Vec<i32> {
    MIGRATIONS.iter().map(|m| m.version).collect()
}

/// The advisory lock that serialises migrations (`"parley"` in ASCII, then 1).
const MIGRATION_LOCK: i64 = 0x7061_726c_6579_0001;

/// Creates `schema_migrations` if needed and applies every missing migration.
pub(super) async fn apply(client: &mut Client) -> Result<(), StoreError> {
    let tx = client
        .transaction()
        .await
        .context("starting the migration transaction")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("taking the migration lock")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .context("creating schema_migrations")?;
    let rows = tx
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .context("reading schema_migrations")?;
    let mut applied = Vec::with_capacity(rows.len());
    for row in &rows {
        applied.push(column::<i32>(row, 0)?);
    }
    if let Some(&newest) = applied.last() {
        if newest > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "the database schema is at version {newest}, newer than version \
                 {SCHEMA_VERSION} this version of Parley knows; upgrade Parley"
            )));
        }
    }
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        let what = format!(
            "applying migration {} ({})",
            migration.version, migration.name
        );
        tx.batch_execute(migration.sql).await.context(&what)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .context(&what)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied PostgreSQL migration"
        );
    }
    tx.commit().await.context("committing migrations")
}

/// The highest version recorded in `schema_migrations` (0 if none).
pub(super) async fn current_version(client: &Client) -> Result<i32, StoreError> {
    let row = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .context("reading the schema version")?;
    column(&row, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_end_at_the_schema_version() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                migration.version,
                index as i32 + 1,
                "migration {} is out of order",
                migration.name
            );
            assert!(
                !migration.sql.trim().is_empty(),
                "migration {} is empty",
                migration.name
            );
        }
        assert_eq!(
            MIGRATIONS.last().map(|m| m.version),
            Some(SCHEMA_VERSION),
            "SCHEMA_VERSION must be the newest migration"
        );
    }
}
