//! [`ClusterMqttStore`] for [`PostgresStore`]: the `mqtt_retained` table
//! (schema version 6), versioned by one sequence, the `mqtt_wills` of live
//! connections, and the live rows of `node_leases`.

use async_trait::async_trait;

use super::failure::{column, Context};
use super::PostgresStore;
use crate::{ClusterMqttStore, OrphanedWill, RetainedRow, StoreError};

#[async_trait]
impl ClusterMqttStore for PostgresStore {
    async fn write_retained(
        &self,
        topic: &str,
        message: Option<&[u8]>,
        expires_in_secs: Option<u32>,
    ) -> Result<u64, StoreError> {
        self.timed("writing a retained MQTT message", async {
            let client = self.client().await?;
            let expires = expires_in_secs.map(i64::from);
            let row = client
                .query_one(
                    "INSERT INTO mqtt_retained AS r (topic, version, message, expires_at) \
                     VALUES ($1, nextval('mqtt_retained_version'), $2, \
                             now() + $3::BIGINT * interval '1 second') \
                     ON CONFLICT (topic) DO UPDATE SET version = EXCLUDED.version, \
                         message = EXCLUDED.message, expires_at = EXCLUDED.expires_at, \
                         updated_at = now() \
                     RETURNING version",
                    &[&topic, &message, &expires],
                )
                .await
                .context("writing a retained MQTT message")?;
            Ok(column::<i64>(&row, 0)?.max(0) as u64)
        })
        .await
    }

    async fn retained(&self) -> Result<Vec<RetainedRow>, StoreError> {
        self.timed("reading the retained MQTT messages", async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT topic, version, \
                            CASE WHEN expires_at IS NULL OR expires_at > now() \
                                 THEN message END, \
                            (EXTRACT(EPOCH FROM expires_at - now()) * 1000)::BIGINT \
                     FROM mqtt_retained",
                    &[],
                )
                .await
                .context("reading the retained MQTT messages")?;
            rows.iter()
                .map(|row| {
                    Ok(RetainedRow {
                        topic: column(row, 0)?,
                        version: column::<i64>(row, 1)?.max(0) as u64,
                        message: column(row, 2)?,
                        expires_in_ms: column::<Option<i64>>(row, 3)?.map(|ms| ms.max(0) as u64),
                    })
                })
                .collect()
        })
        .await
    }

    async fn live_nodes(&self) -> Result<Vec<u16>, StoreError> {
        self.timed("reading the live nodes", async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT node_id FROM node_leases WHERE expires_at > now() ORDER BY node_id",
                    &[],
                )
                .await
                .context("reading the live nodes")?;
            rows.iter()
                .map(|row| {
                    let id = column::<i32>(row, 0)?;
                    u16::try_from(id)
                        .map_err(|_| StoreError::Corrupt(format!("a lease on node id {id}")))
                })
                .collect()
        })
        .await
    }

    async fn guard_will(
        &self,
        user: &str,
        client_id: &str,
        node_id: u16,
        connection: u64,
        will: &[u8],
        delay_secs: u32,
    ) -> Result<(), StoreError> {
        self.timed("guarding a will", async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO mqtt_wills (user_id, client_id, node_id, connection, will, delay_secs) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (user_id, client_id) DO UPDATE SET node_id = EXCLUDED.node_id, \
                         connection = EXCLUDED.connection, will = EXCLUDED.will, \
                         delay_secs = EXCLUDED.delay_secs",
                    &[
                        &user,
                        &client_id,
                        &i32::from(node_id),
                        &(connection as i64),
                        &will,
                        &i64::from(delay_secs),
                    ],
                )
                .await
                .context("guarding a will")?;
            Ok(())
        })
        .await
    }

    async fn drop_will(
        &self,
        user: &str,
        client_id: &str,
        node_id: u16,
        connection: u64,
    ) -> Result<(), StoreError> {
        self.timed("dropping a guarded will", async {
            let client = self.client().await?;
            client
                .execute(
                    "DELETE FROM mqtt_wills WHERE user_id = $1 AND client_id = $2 \
                     AND node_id = $3 AND connection = $4",
                    &[&user, &client_id, &i32::from(node_id), &(connection as i64)],
                )
                .await
                .context("dropping a guarded will")?;
            Ok(())
        })
        .await
    }

    async fn take_orphaned_wills(
        &self,
        own_node: Option<u16>,
    ) -> Result<Vec<OrphanedWill>, StoreError> {
        self.timed("taking the wills of dead nodes", async {
            let client = self.client().await?;
            let own = own_node.map(i32::from);
            let rows = client
                .query(
                    "DELETE FROM mqtt_wills w WHERE w.node_id = $1 OR NOT EXISTS \
                         (SELECT 1 FROM node_leases l WHERE l.node_id = w.node_id AND l.expires_at > now()) \
                     RETURNING user_id, client_id, will, delay_secs",
                    &[&own],
                )
                .await
                .context("taking the wills of dead nodes")?;
            rows.iter()
                .map(|row| {
                    Ok(OrphanedWill {
                        user: column(row, 0)?,
                        client_id: column(row, 1)?,
                        will: column(row, 2)?,
                        delay_secs: u32::try_from(column::<i64>(row, 3)?.max(0)).unwrap_or(u32::MAX),
                    })
                })
                .collect()
        })
        .await
    }
}
