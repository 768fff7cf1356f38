//! The `read_cursors` table: how far each user has read in each conversation.

use deadpool_postgres::Client;

use super::codec::{cursor_from_db, cursor_to_db};
use super::cursor_batch::{self, Cursors, Marks};
use super::failure::{column, Context};
use crate::{ReadCursor, StoreError};

/// Raises the cursor to `seq` unless it is higher already; returns the cursor.
///
/// One upsert: concurrent marks serialise on the row and `GREATEST` keeps the highest.
pub(super) async fn mark(
    client: &Client,
    conversation_id: &str,
    user: &str,
    seq: u64,
) -> Result<u64, StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO read_cursors (conversation_id, username, read_up_to) \
             VALUES ($1, $2, $3::text::numeric) \
             ON CONFLICT (conversation_id, username) DO UPDATE \
             SET read_up_to = GREATEST(read_cursors.read_up_to, EXCLUDED.read_up_to) \
             RETURNING read_up_to::text",
        )
        .await
        .context("preparing the read cursor update")?;
    let row = client
        .query_one(&statement, &[&conversation_id, &user, &cursor_to_db(seq)])
        .await
        .context("marking messages read")?;
    cursor_from_db(&column::<String>(&row, 0)?, "a read cursor")
}

/// Raises each `(conversation, user)` cursor of `marks` to its seq unless it
/// is higher already, in one statement (one commit); returns every cursor
/// after it. The keys must be distinct (a statement cannot update a row
/// twice) and are locked in the order given: callers pass them sorted, so
/// that two batches never wait for each other in a cycle.
pub(super) async fn mark_many(client: &Client, marks: &Marks<'_>) -> Result<Cursors, StoreError> {
    cursor_batch::upsert(
        client,
        "INSERT INTO read_cursors (conversation_id, username, read_up_to) \
         SELECT c, u, s::numeric \
         FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS v(c, u, s, n) \
         ORDER BY n \
         ON CONFLICT (conversation_id, username) DO UPDATE \
         SET read_up_to = GREATEST(read_cursors.read_up_to, EXCLUDED.read_up_to) \
         RETURNING conversation_id, username, read_up_to::text",
        "read cursor",
        marks,
    )
    .await
}

/// Every cursor above 0 in the conversation, in username order.
pub(super) async fn list(
    client: &Client,
    conversation_id: &str,
) -> Result<Vec<ReadCursor>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT username, read_up_to::text FROM read_cursors \
             WHERE conversation_id = $1 AND read_up_to > 0 ORDER BY username",
        )
        .await
        .context("preparing the read cursor listing")?;
    let rows = client
        .query(&statement, &[&conversation_id])
        .await
        .context("listing read cursors")?;
    rows.iter()
        .map(|row| {
            Ok(ReadCursor {
                user: column(row, 0)?,
                read_up_to: cursor_from_db(&column::<String>(row, 1)?, "a read cursor")?,
            })
        })
        .collect()
}
