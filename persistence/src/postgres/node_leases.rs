//! The `node_leases` table: which holder runs each node id, and until when.
//!
//! Taking a lease is one upsert that only overwrites a row that is expired or
//! already the caller's (`ON CONFLICT ... DO UPDATE ... WHERE`), so of two
//! holders racing for a free or expired id exactly one gets it: the other's
//! statement waits for the winner's row lock and then finds a live lease of
//! someone else. Every time is the server's `now()`.

use std::time::Duration;

use deadpool_postgres::Client;

use super::failure::{column, Context};
use crate::{Lease, LeaseHolder, StoreError};

/// The columns every statement returns, in the order [`lease_from_row`] reads
/// them: times as ms since the Unix epoch, and the time left rounded up, so
/// that 0 means expired.
macro_rules! lease_columns {
    () => {
        "node_id, holder, description, \
         (extract(epoch FROM acquired_at) * 1000)::bigint, \
         (extract(epoch FROM renewed_at) * 1000)::bigint, \
         (extract(epoch FROM expires_at) * 1000)::bigint, \
         GREATEST(0, ceil(extract(epoch FROM expires_at - now()) * 1000))::bigint"
    };
}

/// How often a refused take is tried again when the lease in the way has
/// vanished or expired by the time it is read (a release or an expiry racing
/// with the take).
const ATTEMPTS: usize = 3;

/// Takes or renews `holder`'s lease on `node_id` for `ttl`;
/// [`StoreError::AlreadyExists`] if another holder's lease is live.
pub(super) async fn acquire(
    client: &Client,
    node_id: u16,
    holder: &LeaseHolder,
    ttl: Duration,
) -> Result<Lease, StoreError> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
    let upsert = client
        .prepare_cached(concat!(
            "INSERT INTO node_leases AS l \
                 (node_id, holder, description, acquired_at, renewed_at, expires_at) \
             VALUES ($1, $2, $3, now(), now(), now() + $4::bigint * interval '1 millisecond') \
             ON CONFLICT (node_id) DO UPDATE \
             SET holder = EXCLUDED.holder, \
                 description = EXCLUDED.description, \
                 acquired_at = CASE WHEN l.holder = EXCLUDED.holder \
                                    THEN l.acquired_at ELSE now() END, \
                 renewed_at = now(), \
                 expires_at = EXCLUDED.expires_at \
             WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now() \
             RETURNING ",
            lease_columns!()
        ))
        .await
        .context("preparing the node lease upsert")?;
    let node = i32::from(node_id);
    for _ in 0..ATTEMPTS {
        let taken = client
            .query_opt(&upsert, &[&node, &holder.id, &holder.description, &ttl_ms])
            .await
            .context("taking a node lease")?;
        if let Some(row) = taken {
            return lease_from_row(&row);
        }
        // Refused: someone else's lease was live when the upsert looked. Read
        // it to say whose; if it has gone or expired since, try again.
        match get(client, node_id).await? {
            Some(other) if other.holder != holder.id && !other.valid_for.is_zero() => {
                return Err(StoreError::AlreadyExists(format!(
                    "a live lease on node id {node_id} ({})",
                    other.describe()
                )));
            }
            _ => continue,
        }
    }
    Err(StoreError::Conflict(format!(
        "the lease on node id {node_id} ({ATTEMPTS} attempts to take it)"
    )))
}

/// Deletes `holder_id`'s lease on `node_id`; whether there was one.
pub(super) async fn release(
    client: &Client,
    node_id: u16,
    holder_id: &str,
) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached("DELETE FROM node_leases WHERE node_id = $1 AND holder = $2")
        .await
        .context("preparing the node lease release")?;
    let removed = client
        .execute(&statement, &[&i32::from(node_id), &holder_id])
        .await
        .context("releasing a node lease")?;
    Ok(removed > 0)
}

/// The lease on `node_id`, live or expired.
pub(super) async fn get(client: &Client, node_id: u16) -> Result<Option<Lease>, StoreError> {
    let statement = client
        .prepare_cached(concat!(
            "SELECT ",
            lease_columns!(),
            " FROM node_leases WHERE node_id = $1"
        ))
        .await
        .context("preparing the node lease lookup")?;
    let row = client
        .query_opt(&statement, &[&i32::from(node_id)])
        .await
        .context("reading a node lease")?;
    row.as_ref().map(lease_from_row).transpose()
}

/// Decodes the columns of [`lease_columns!`].
fn lease_from_row(row: &tokio_postgres::Row) -> Result<Lease, StoreError> {
    let node_id = column::<i32>(row, 0)?;
    let valid_for_ms = column::<i64>(row, 6)?;
    Ok(Lease {
        node_id: u16::try_from(node_id)
            .map_err(|_| StoreError::Corrupt(format!("node lease for node id {node_id}")))?,
        holder: column(row, 1)?,
        description: column(row, 2)?,
        acquired_at_ms: column(row, 3)?,
        renewed_at_ms: column(row, 4)?,
        expires_at_ms: column(row, 5)?,
        valid_for: Duration::from_millis(u64::try_from(valid_for_ms).unwrap_or(0)),
    })
}
