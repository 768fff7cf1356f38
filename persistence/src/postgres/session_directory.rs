//! [`SessionDirectory`] for [`PostgresStore`]: the `session_directory`
//! table, whose rows are live while their node's `node_leases` row is.
//!
//! A claim is one transaction: insert the key if it is missing (a
//! concurrent claim of a new key waits on the unique index), lock the row,
//! read what it held, and overwrite it with this node and a generation
//! above the old one. Claims of one key are therefore serialised on its row
//! and each learns exactly which entry it replaced.

use async_trait::async_trait;

use super::failure::{column, Context};
use super::PostgresStore;
use crate::{DirectoryEntry, SessionDirectory, StoreError};

/// The columns [`entry_from_row`] reads, in order.
const ENTRY_COLUMNS: &str = "user_id, client_id, node_id, generation";

/// Whether the lease of the node of row `d` is live.
const NODE_IS_LIVE: &str =
    "EXISTS (SELECT 1 FROM node_leases l WHERE l.node_id = d.node_id AND l.expires_at > now())";

fn entry_from_row(row: &tokio_postgres::Row) -> Result<DirectoryEntry, StoreError> {
    let node_id = column::<i32>(row, 2)?;
    Ok(DirectoryEntry {
        user: column(row, 0)?,
        client_id: column(row, 1)?,
        node_id: u16::try_from(node_id)
            .map_err(|_| StoreError::Corrupt(format!("directory entry on node id {node_id}")))?,
        generation: column(row, 3)?,
    })
}

fn entries(rows: &[tokio_postgres::Row]) -> Result<Vec<DirectoryEntry>, StoreError> {
    rows.iter().map(entry_from_row).collect()
}

#[async_trait]
impl SessionDirectory for PostgresStore {
    async fn claim(
        &self,
        user: &str,
        client_id: &str,
        node_id: u16,
    ) -> Result<(DirectoryEntry, Option<DirectoryEntry>), StoreError> {
        self.timed("claiming a session directory entry", async {
            let mut client = self.client().await?;
            let tx = client
                .transaction()
                .await
                .context("starting a directory claim")?;
            // Generation 0 marks a row this transaction just created.
            tx.execute(
                "INSERT INTO session_directory (user_id, client_id, node_id, generation) \
                 VALUES ($1, $2, $3, 0) ON CONFLICT (user_id, client_id) DO NOTHING",
                &[&user, &client_id, &i32::from(node_id)],
            )
            .await
            .context("inserting a directory entry")?;
            let previous = tx
                .query_one(
                    &format!(
                        "SELECT {ENTRY_COLUMNS}, {NODE_IS_LIVE} FROM session_directory d \
                         WHERE user_id = $1 AND client_id = $2 FOR UPDATE"
                    ),
                    &[&user, &client_id],
                )
                .await
                .context("locking a directory entry")?;
            let replaced = match column::<i64>(&previous, 3)? {
                0 => None,
                _ if !column::<bool>(&previous, 4)? => None,
                _ => Some(entry_from_row(&previous)?),
            };
            let row = tx
                .query_one(
                    "UPDATE session_directory SET node_id = $3, connected_at = now(), detached = false, \
                     generation = GREATEST(generation + 1, nextval('session_directory_generation')) \
                     WHERE user_id = $1 AND client_id = $2 RETURNING generation",
                    &[&user, &client_id, &i32::from(node_id)],
                )
                .await
                .context("claiming a directory entry")?;
            let generation = column::<i64>(&row, 0)?;
            tx.commit().await.context("committing a directory claim")?;
            Ok((
                DirectoryEntry {
                    user: user.to_owned(),
                    client_id: client_id.to_owned(),
                    node_id,
                    generation,
                },
                replaced,
            ))
        })
        .await
    }

    async fn remove(&self, entry: &DirectoryEntry) -> Result<bool, StoreError> {
        self.timed("removing a session directory entry", async {
            let removed = self
                .client()
                .await?
                .execute(
                    "DELETE FROM session_directory WHERE user_id = $1 AND client_id = $2 \
                     AND node_id = $3 AND generation = $4",
                    &[
                        &entry.user,
                        &entry.client_id,
                        &i32::from(entry.node_id),
                        &entry.generation,
                    ],
                )
                .await
                .context("removing a directory entry")?;
            Ok(removed > 0)
        })
        .await
    }

    async fn clear_node(&self, node_id: u16) -> Result<Vec<DirectoryEntry>, StoreError> {
        self.timed("clearing a node's session directory entries", async {
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "DELETE FROM session_directory WHERE node_id = $1 RETURNING {ENTRY_COLUMNS}"
                    ),
                    &[&i32::from(node_id)],
                )
                .await
                .context("clearing a node's directory entries")?;
            entries(&rows)
        })
        .await
    }

    async fn expire(&self) -> Result<Vec<DirectoryEntry>, StoreError> {
        self.timed("expiring dead nodes' session directory entries", async {
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "DELETE FROM session_directory d WHERE NOT {NODE_IS_LIVE} \
                         RETURNING {ENTRY_COLUMNS}"
                    ),
                    &[],
                )
                .await
                .context("expiring directory entries")?;
            entries(&rows)
        })
        .await
    }

    async fn detach(&self, entry: &DirectoryEntry) -> Result<bool, StoreError> {
        self.timed("detaching a session directory entry", async {
            let updated = self
                .client()
                .await?
                .execute(
                    "UPDATE session_directory SET detached = true WHERE user_id = $1 \
                     AND client_id = $2 AND node_id = $3 AND generation = $4",
                    &[
                        &entry.user,
                        &entry.client_id,
                        &i32::from(entry.node_id),
                        &entry.generation,
                    ],
                )
                .await
                .context("detaching a directory entry")?;
            Ok(updated > 0)
        })
        .await
    }

    async fn detached(&self) -> Result<Vec<DirectoryEntry>, StoreError> {
        self.timed("reading the detached session directory entries", async {
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM session_directory d \
                         WHERE detached AND {NODE_IS_LIVE}"
                    ),
                    &[],
                )
                .await
                .context("reading the detached directory entries")?;
            entries(&rows)
        })
        .await
    }

    async fn live(&self) -> Result<Vec<DirectoryEntry>, StoreError> {
        self.timed("reading the session directory", async {
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM session_directory d WHERE {NODE_IS_LIVE}"
                    ),
                    &[],
                )
                .await
                .context("reading the directory")?;
            entries(&rows)
        })
        .await
    }
}
