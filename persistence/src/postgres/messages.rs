//! The `messages` and `conversation_seqs` tables: the per-conversation log
//! and the counter that numbers it.
//!
//! Every append increments its conversation's `conversation_seqs` row (an
//! upsert, which creates it at 1 or takes its row lock and adds 1) and
//! inserts the message with the new value, atomically. The row lock is held
//! until commit, so appends to one conversation run one at a time across
//! every connection and every node, in seq order; and an append that fails
//! (a retry, a bad amend, a lost connection) rolls its increment back with
//! it: seqs stay gap-free. Appends to different conversations never wait for
//! each other.
//!
//! A plain append is one statement (one round trip, the lock held only for
//! it and its commit); a retry shows as the statement failing on the
//! `(conversation, sender, client message id)` unique key, after which the
//! original is read. An append with an amend needs more than one statement
//! and runs in an explicit transaction.

use deadpool_postgres::{Client, GenericClient, Transaction};
use tokio_postgres::Row;

use super::codec::{message_id_from_db, message_id_to_db, seq_from_db, seq_to_db};
use super::failure::{column, db_error, is_unique_violation, Context};
use crate::{AppendRequest, Appended, Direction, PageRequest, StoreError, StoredMessage};

/// The name PostgreSQL gives the `(conversation_id, sender, client_message_id)`
/// unique constraint of `messages`.
const RETRY_KEY: &str = "messages_conversation_id_sender_client_message_id_key";

/// Appends `request` (see [`HistoryStore::append`](crate::HistoryStore::append)).
pub(super) async fn append(
    client: &mut Client,
    request: AppendRequest,
) -> Result<Appended, StoreError> {
    if request.amend.is_none() {
        append_plain(client, request).await
    } else {
        append_with_amend(client, request).await
    }
}

/// Appends a message without an amend in one statement.
async fn append_plain(client: &Client, request: AppendRequest) -> Result<Appended, StoreError> {
    let statement = client
        .prepare_cached(
            "WITH next AS ( \
                 INSERT INTO conversation_seqs (conversation_id, last_seq) VALUES ($1, 1) \
                 ON CONFLICT (conversation_id) DO UPDATE \
                 SET last_seq = conversation_seqs.last_seq + 1 \
                 RETURNING last_seq) \
             INSERT INTO messages (conversation_id, seq, message_id, sender, \
                 client_message_id, server_time_ms, payload) \
             SELECT $1, next.last_seq, $2, $3, $4, $5, $6 FROM next \
             RETURNING seq",
        )
        .await
        .context("preparing the append")?;
    let inserted = client
        .query_one(
            &statement,
            &[
                &request.conversation_id,
                &message_id_to_db(request.message_id),
                &request.sender,
                &request.client_message_id,
                &request.server_time_ms,
                &request.payload,
            ],
        )
        .await;
    match inserted {
        Ok(row) => Ok(Appended {
            seq: seq_from_db(column(&row, 0)?, "messages.seq")?,
            message_id: request.message_id,
            server_time_ms: request.server_time_ms,
            duplicate: false,
        }),
        Err(e) if is_unique_violation(&e) => {
            let constraint = e.as_db_error().and_then(|db| db.constraint());
            if constraint != Some(RETRY_KEY) {
                return Err(StoreError::Corrupt(format!(
                    "conversation {:?}: its seq counter is behind its messages ({})",
                    request.conversation_id,
                    db_error("appending a message", &e)
                )));
            }
            // A retry; the statement (and its increment) rolled back. The
            // original is committed: an uncommitted one would have made us wait.
            original(client, &request).await
        }
        Err(e) => Err(db_error("appending a message", &e)),
    }
}

/// Appends a message with an amend: allocate, insert, amend, in one transaction.
async fn append_with_amend(
    client: &mut Client,
    request: AppendRequest,
) -> Result<Appended, StoreError> {
    let tx = client.transaction().await.context("starting an append")?;
    let next = next_seq(&tx, &request.conversation_id).await?;

    let statement = tx
        .prepare_cached(
            "INSERT INTO messages (conversation_id, seq, message_id, sender, \
                 client_message_id, server_time_ms, payload) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (conversation_id, sender, client_message_id) DO NOTHING \
             RETURNING seq",
        )
        .await
        .context("preparing the message insert")?;
    let inserted = tx
        .query_opt(
            &statement,
            &[
                &request.conversation_id,
                &next,
                &message_id_to_db(request.message_id),
                &request.sender,
                &request.client_message_id,
                &request.server_time_ms,
                &request.payload,
            ],
        )
        .await
        .context("inserting a message")?;
    if inserted.is_none() {
        // A retry: the original is committed (it held the counter lock we hold now).
        let original = original(&tx, &request).await?;
        tx.rollback().await.context("rolling a retry back")?;
        return Ok(original);
    }

    if let Some(amend) = &request.amend {
        // Only messages before this one may be amended; seq 0 and seqs past
        // BIGINT never exist.
        let target = seq_to_db(amend.target_seq).filter(|seq| (1..next).contains(seq));
        let changed = match target {
            Some(target) => {
                let statement = tx
                    .prepare_cached(
                        "UPDATE messages SET payload = $3 \
                         WHERE conversation_id = $1 AND seq = $2",
                    )
                    .await
                    .context("preparing the amend")?;
                tx.execute(
                    &statement,
                    &[&request.conversation_id, &target, &amend.payload],
                )
                .await
                .context("amending a message")?
            }
            None => 0,
        };
        if changed == 0 {
            tx.rollback().await.context("rolling a failed amend back")?;
            return Err(StoreError::NotFound(format!(
                "message {} of conversation {:?} (the amend's target)",
                amend.target_seq, request.conversation_id
            )));
        }
    }

    tx.commit().await.context("committing an append")?;
    Ok(Appended {
        seq: seq_from_db(next, "conversation_seqs.last_seq")?,
        message_id: request.message_id,
        server_time_ms: request.server_time_ms,
        duplicate: false,
    })
}

/// Increments the conversation's counter (creating it at 1) and returns the
/// new value; the counter row stays locked until the transaction ends.
async fn next_seq(tx: &Transaction<'_>, conversation_id: &str) -> Result<i64, StoreError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO conversation_seqs (conversation_id, last_seq) VALUES ($1, 1) \
             ON CONFLICT (conversation_id) DO UPDATE \
             SET last_seq = conversation_seqs.last_seq + 1 \
             RETURNING last_seq",
        )
        .await
        .context("preparing the seq allocation")?;
    let row = tx
        .query_one(&statement, &[&conversation_id])
        .await
        .context("allocating a seq")?;
    column(&row, 0)
}

/// The stored outcome of the message `request` retries.
async fn original(
    tx: &impl GenericClient,
    request: &AppendRequest,
) -> Result<Appended, StoreError> {
    let statement = tx
        .prepare_cached(
            "SELECT seq, message_id, server_time_ms FROM messages \
             WHERE conversation_id = $1 AND sender = $2 AND client_message_id = $3",
        )
        .await
        .context("preparing the retry lookup")?;
    let row = tx
        .query_opt(
            &statement,
            &[
                &request.conversation_id,
                &request.sender,
                &request.client_message_id,
            ],
        )
        .await
        .context("reading the original of a retry")?
        .ok_or_else(|| {
            StoreError::Unavailable(format!(
                "the original of retry {:?} in {:?} vanished; retry",
                request.client_message_id, request.conversation_id
            ))
        })?;
    Ok(Appended {
        seq: seq_from_db(column(&row, 0)?, "messages.seq")?,
        message_id: message_id_from_db(column(&row, 1)?),
        server_time_ms: column(&row, 2)?,
        duplicate: true,
    })
}

/// The columns every message read selects, in [`message_from_row`]'s order.
const MESSAGE_COLUMNS: &str =
    "conversation_id, seq, message_id, sender, client_message_id, server_time_ms, payload";

/// Decodes a row selected with [`MESSAGE_COLUMNS`].
fn message_from_row(row: &Row) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        conversation_id: column(row, 0)?,
        seq: seq_from_db(column(row, 1)?, "messages.seq")?,
        message_id: message_id_from_db(column(row, 2)?),
        sender: column(row, 3)?,
        client_message_id: column(row, 4)?,
        server_time_ms: column(row, 5)?,
        payload: column(row, 6)?,
    })
}

/// A page of messages, ascending (see [`HistoryStore::fetch`](crate::HistoryStore::fetch)).
pub(super) async fn fetch(
    client: &Client,
    conversation_id: &str,
    page: PageRequest,
) -> Result<Vec<StoredMessage>, StoreError> {
    // Inclusive bounds within BIGINT; stored seqs are 1..=i64::MAX.
    let Some(low) = page.after_seq.checked_add(1).and_then(seq_to_db) else {
        return Ok(Vec::new());
    };
    let Some(high) = page.before_seq.checked_sub(1) else {
        return Ok(Vec::new());
    };
    let high = seq_to_db(high).unwrap_or(i64::MAX);
    if page.limit == 0 || low > high {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
    let sql = match page.direction {
        Direction::Forward => format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages \
             WHERE conversation_id = $1 AND seq BETWEEN $2 AND $3 \
             ORDER BY seq LIMIT $4"
        ),
        Direction::Backward => format!(
            "SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM messages \
                 WHERE conversation_id = $1 AND seq BETWEEN $2 AND $3 \
                 ORDER BY seq DESC LIMIT $4) AS newest \
             ORDER BY seq"
        ),
    };
    let statement = client
        .prepare_cached(&sql)
        .await
        .context("preparing a history page")?;
    let rows = client
        .query(&statement, &[&conversation_id, &low, &high, &limit])
        .await
        .context("fetching a history page")?;
    rows.iter().map(message_from_row).collect()
}

/// One message by seq, if it exists.
pub(super) async fn get(
    client: &Client,
    conversation_id: &str,
    seq: u64,
) -> Result<Option<StoredMessage>, StoreError> {
    let Some(seq) = seq_to_db(seq) else {
        return Ok(None);
    };
    let statement = client
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND seq = $2"
        ))
        .await
        .context("preparing the message lookup")?;
    let row = client
        .query_opt(&statement, &[&conversation_id, &seq])
        .await
        .context("reading a message")?;
    row.as_ref().map(message_from_row).transpose()
}

/// The conversation's highest seq (0 if it has none).
pub(super) async fn last_seq(client: &Client, conversation_id: &str) -> Result<u64, StoreError> {
    let statement = client
        .prepare_cached("SELECT last_seq FROM conversation_seqs WHERE conversation_id = $1")
        .await
        .context("preparing the last seq lookup")?;
    let row = client
        .query_opt(&statement, &[&conversation_id])
        .await
        .context("reading the last seq")?;
    match row {
        Some(row) => seq_from_db(column(&row, 0)?, "conversation_seqs.last_seq"),
        None => Ok(0),
    }
}
