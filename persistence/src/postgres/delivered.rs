//! The `delivered_cursors` table: how far each user has been delivered in
//! each conversation.

use deadpool_postgres::Client;

use super::codec::{cursor_from_db, cursor_to_db};
use super::cursor_batch::{self, Cursors, Marks};
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

/// Raises each `(user, conversation)` cursor of `marks` to its seq unless it
/// is higher already, in one statement (one commit); returns every cursor
/// after it. The keys must be distinct (a statement cannot update a row
/// twice) and are locked in the order given: callers pass them sorted, so
/// that two batches never wait for each other in a cycle.
pub(super) async fn mark_many(client: &Client, marks: &Marks<'_>) -> Result<Cursors, StoreError> {
    cursor_batch::upsert(
        client,
        "INSERT INTO delivered_cursors (username, conversation_id, delivered_up_to) \
         SELECT u, c, s::numeric \
         FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS v(u, c, s, n) \
         ORDER BY n \
         ON CONFLICT (username, conversation_id) DO UPDATE \
         SET delivered_up_to = \
             GREATEST(delivered_cursors.delivered_up_to, EXCLUDED.delivered_up_to) \
         RETURNING username, conversation_id, delivered_up_to::text",
        "delivered cursor",
        marks,
    )
    .await
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
