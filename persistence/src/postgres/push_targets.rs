//! The `push_targets` table: one push registration per (user, device).

use deadpool_postgres::Client;

use super::failure::{column, Context};
use crate::{PushTarget, StoreError};

/// Stores `target`, replacing the device's previous one.
pub(super) async fn put(client: &Client, target: &PushTarget) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO push_targets (username, device_id, kind, target, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (username, device_id) DO UPDATE \
             SET kind = EXCLUDED.kind, target = EXCLUDED.target, \
                 updated_at_ms = EXCLUDED.updated_at_ms",
        )
        .await
        .context("preparing the push target upsert")?;
    client
        .execute(
            &statement,
            &[
                &target.user,
                &target.device_id,
                &target.kind,
                &target.target,
                &target.updated_at_ms,
            ],
        )
        .await
        .context("storing a push target")?;
    Ok(())
}

/// The user's targets in device id order.
pub(super) async fn list(client: &Client, user: &str) -> Result<Vec<PushTarget>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT username, device_id, kind, target, updated_at_ms FROM push_targets \
             WHERE username = $1 ORDER BY device_id",
        )
        .await
        .context("preparing the push target listing")?;
    let rows = client
        .query(&statement, &[&user])
        .await
        .context("listing push targets")?;
    rows.iter()
        .map(|row| {
            Ok(PushTarget {
                user: column(row, 0)?,
                device_id: column(row, 1)?,
                kind: column(row, 2)?,
                target: column(row, 3)?,
                updated_at_ms: column(row, 4)?,
            })
        })
        .collect()
}

/// Removes one device's target; [`StoreError::NotFound`] if it has none.
pub(super) async fn delete(client: &Client, user: &str, device_id: &str) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("DELETE FROM push_targets WHERE username = $1 AND device_id = $2")
        .await
        .context("preparing the push target delete")?;
    let removed = client
        .execute(&statement, &[&user, &device_id])
        .await
        .context("deleting a push target")?;
    if removed == 0 {
        return Err(StoreError::NotFound(format!(
            "push target of {user:?} device {device_id:?}"
        )));
    }
    Ok(())
}
