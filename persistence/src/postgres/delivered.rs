//! The `delivered_cursors` table: how far each user has been delivered in
//! each conversation.

use deadpool_postgres::Client;

use super::codec::{cursor_from_db, cursor_to_db};
use super::failure::{column, Context};
use crate::StoreError;

/// Raises the cursor to `seq` unless it is higher already; returns the cursor.
pub(super) async fn mark(
    client: &Client,
    user: &str,
    conversation_id: &str,
    seq: u64,
) -> Result<u64, StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO delivered_cursors (username, conversation_id, delivered_up_to) \
             VALUES ($1, $2, $3::text::numeric) \
             ON CONFLICT (username, conversation_id) DO UPDATE \
             SET delivered_up_to = \
                 GREATEST(delivered_cursors.delivered_up_to, EXCLUDED.delivered_up_to) \
             RETURNING delivered_up_to::text",
        )
        .await
        .context("preparing the delivered cursor update")?;
    let row = client
        .query_one(&statement, &[&user, &conversation_id, &cursor_to_db(seq)])
        .await
        .context("marking messages delivered")?;
    cursor_from_db(&column::<String>(&row, 0)?, "a delivered cursor")
}

/// The cursor (0 if nothing was delivered).
pub(super) async fn get(
    client: &Client,
    user: &str,
    conversation_id: &str,
) -> Result<u64, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT delivered_up_to::text FROM delivered_cursors \
             WHERE username = $1 AND conversation_id = $2",
        )
        .await
        .context("preparing the delivered cursor lookup")?;
    let row = client
        .query_opt(&statement, &[&user, &conversation_id])
        .await
        .context("reading a delivered cursor")?;
    match row {
        Some(row) => cursor_from_db(&column::<String>(&row, 0)?, "a delivered cursor"),
        None => Ok(0),
    }
}
