//! Many plain appends (no amend) in one transaction: one statement per step
//! for the whole batch instead of one round trip and one commit per message.
//!
//! The steps, in one transaction:
//!
//! 1. lock the counters of every conversation in the batch (an upsert that
//!    creates a missing counter at 0 and otherwise takes its row lock,
//!    conversations in byte order so that two batches never wait for each
//!    other in a cycle) and read where they stand;
//! 2. read the entries that already exist under the batch's
//!    `(conversation, sender, client message id)` keys: retries. Any
//!    appender of those conversations needs the counter locks held now, so
//!    nothing can add such an entry until this transaction ends;
//! 3. number the requests in their order, each retry (of a stored entry or
//!    of an earlier request of the batch) answered from its original;
//! 4. insert every new entry with one `INSERT ... SELECT FROM unnest(...)`
//!    and move the counters to their new values with one `UPDATE`;
//! 5. commit (one WAL flush for the batch).
//!
//! Steps 1 and 2 go to the server together, and so do the two statements of
//! step 4 (the server runs a connection's statements in the order sent):
//! with `BEGIN` and `COMMIT`, four round trips per batch.
//!
//! The outcome of every request is exactly what appending them one at a
//! time, in order, would give. If the insert hits a unique key anyway (or the
//! server reports a deadlock), the transaction is rolled back and the caller
//! is told to append the requests one at a time instead.

use std::collections::HashMap;

use deadpool_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::codec::{message_id_from_db, message_id_to_db, seq_from_db};
use super::failure::{column, db_error, Context};
use crate::{AppendRequest, Appended, StoreError};

/// What became of a batch.
pub(super) enum BatchOutcome {
    /// Committed: each request's outcome, in request order.
    Applied(Vec<Appended>),
    /// Rolled back without effect: append the requests one at a time.
    OneByOne,
}

/// A retry's key: conversation, sender, client message id.
type RetryKey<'a> = (&'a str, &'a str, &'a str);

/// Appends `requests` (none with an amend) in one transaction, in order.
pub(super) async fn append_all(
    client: &mut Client,
    requests: &[&AppendRequest],
) -> Result<BatchOutcome, StoreError> {
    let tx = client
        .transaction()
        .await
        .context("starting a batch of appends")?;

    // 1. Lock the counters, in byte order.
    let mut conversations: Vec<&str> = requests
        .iter()
        .map(|r| r.conversation_id.as_str())
        .collect();
    conversations.sort_unstable();
    conversations.dedup();
    let lock = tx
        .prepare_cached(
            "INSERT INTO conversation_seqs (conversation_id, last_seq) \
             SELECT c, 0 FROM unnest($1::text[]) WITH ORDINALITY AS k(c, n) ORDER BY n \
             ON CONFLICT (conversation_id) DO UPDATE SET last_seq = conversation_seqs.last_seq \
             RETURNING conversation_id, last_seq",
        )
        .await
        .context("preparing the counter lock")?;

    // 2. Entries already stored under the batch's keys: sent right behind
    // the lock in the same round trip, so the server runs it once the locks
    // are held.
    let (keys_conversation, keys_sender, keys_id): (Vec<&str>, Vec<&str>, Vec<&str>) = requests
        .iter()
        .map(|r| {
            (
                r.conversation_id.as_str(),
                r.sender.as_str(),
                r.client_message_id.as_str(),
            )
        })
        .collect();
    let existing = tx
        .prepare_cached(
            "SELECT m.conversation_id, m.sender, m.client_message_id, \
                 m.seq, m.message_id, m.server_time_ms \
             FROM unnest($1::text[], $2::text[], $3::text[]) AS k(c, s, i) \
             JOIN messages m ON m.conversation_id = k.c COLLATE \"C\" \
                 AND m.sender = k.s COLLATE \"C\" AND m.client_message_id = k.i COLLATE \"C\"",
        )
        .await
        .context("preparing the retry lookup")?;
    let lock_params: [&(dyn ToSql + Sync); 1] = [&conversations];
    let existing_params: [&(dyn ToSql + Sync); 3] = [&keys_conversation, &keys_sender, &keys_id];
    let (locked, stored) = tokio::join!(
        tx.query(&lock, &lock_params),
        tx.query(&existing, &existing_params),
    );
    let rows = match locked {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) => {
            return Ok(BatchOutcome::OneByOne)
        }
        Err(e) => return Err(db_error("locking the seq counters", &e)),
    };
    let mut last: HashMap<String, i64> = HashMap::with_capacity(rows.len());
    for row in &rows {
        last.insert(column(row, 0)?, column(row, 1)?);
    }
    let stored = stored.context("looking up retries")?;
    let mut originals: HashMap<(String, String, String), Appended> =
        HashMap::with_capacity(stored.len());
    for row in &stored {
        originals.insert(
            (column(row, 0)?, column(row, 1)?, column(row, 2)?),
            Appended {
                seq: seq_from_db(column(row, 3)?, "messages.seq")?,
                message_id: message_id_from_db(column(row, 4)?),
                server_time_ms: column(row, 5)?,
                duplicate: true,
            },
        );
    }

    // 3. Number the batch in order.
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut new_in_batch: HashMap<RetryKey<'_>, Appended> = HashMap::new();
    let mut rows = NewRows::default();
    for request in requests {
        let key: RetryKey<'_> = (
            &request.conversation_id,
            &request.sender,
            &request.client_message_id,
        );
        let original = new_in_batch.get(&key).copied().or_else(|| {
            originals
                .get(&(key.0.to_owned(), key.1.to_owned(), key.2.to_owned()))
                .copied()
        });
        if let Some(original) = original {
            outcomes.push(Appended {
                duplicate: true,
                ..original
            });
            continue;
        }
        let counter = last.get_mut(key.0).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "conversation {:?}: its seq counter was not locked",
                key.0
            ))
        })?;
        *counter += 1;
        let appended = Appended {
            seq: seq_from_db(*counter, "conversation_seqs.last_seq")?,
            message_id: request.message_id,
            server_time_ms: request.server_time_ms,
            duplicate: false,
        };
        new_in_batch.insert(key, appended);
        rows.push(request, *counter);
        outcomes.push(appended);
    }
    if rows.seq.is_empty() {
        tx.rollback()
            .await
            .context("rolling back a batch of retries")?;
        return Ok(BatchOutcome::Applied(outcomes));
    }

    // 4. Insert the new entries and move the counters, in one round trip.
    let insert = tx
        .prepare_cached(
            "INSERT INTO messages (conversation_id, seq, message_id, sender, \
                 client_message_id, server_time_ms, payload) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], \
                 $5::text[], $6::bigint[], $7::bytea[])",
        )
        .await
        .context("preparing the batch insert")?;
    let update = tx
        .prepare_cached(
            "UPDATE conversation_seqs AS s SET last_seq = v.last \
             FROM unnest($1::text[], $2::bigint[]) AS v(c, last) \
             WHERE s.conversation_id = v.c COLLATE \"C\" AND s.last_seq < v.last",
        )
        .await
        .context("preparing the counter update")?;
    let (counter_ids, counter_values): (Vec<&str>, Vec<i64>) =
        last.iter().map(|(id, seq)| (id.as_str(), *seq)).unzip();
    let insert_params: [&(dyn ToSql + Sync); 7] = [
        &rows.conversation,
        &rows.seq,
        &rows.message_id,
        &rows.sender,
        &rows.client_message_id,
        &rows.server_time_ms,
        &rows.payload,
    ];
    let update_params: [&(dyn ToSql + Sync); 2] = [&counter_ids, &counter_values];
    let (inserted, moved) = tokio::join!(
        tx.execute(&insert, &insert_params),
        tx.execute(&update, &update_params),
    );
    match inserted {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.code(),
                Some(&SqlState::UNIQUE_VIOLATION) | Some(&SqlState::T_R_DEADLOCK_DETECTED)
            ) =>
        {
            // The update behind it failed too (the transaction is aborted).
            tx.rollback()
                .await
                .context("rolling back a batch of appends")?;
            return Ok(BatchOutcome::OneByOne);
        }
        Err(e) => return Err(db_error("inserting a batch of messages", &e)),
    }
    moved.context("moving the seq counters")?;

    // 5. One commit for the batch.
    tx.commit().await.context("committing a batch of appends")?;
    Ok(BatchOutcome::Applied(outcomes))
}

/// The columns of the entries a batch inserts, one vector per column.
#[derive(Default)]
struct NewRows<'a> {
    conversation: Vec<&'a str>,
    seq: Vec<i64>,
    message_id: Vec<i64>,
    sender: Vec<&'a str>,
    client_message_id: Vec<&'a str>,
    server_time_ms: Vec<i64>,
    payload: Vec<&'a [u8]>,
}

impl<'a> NewRows<'a> {
    /// Adds `request` as the entry `seq`.
    fn push(&mut self, request: &'a AppendRequest, seq: i64) {
        self.conversation.push(&request.conversation_id);
        self.seq.push(seq);
        self.message_id.push(message_id_to_db(request.message_id));
        self.sender.push(&request.sender);
        self.client_message_id.push(&request.client_message_id);
        self.server_time_ms.push(request.server_time_ms);
        self.payload.push(&request.payload);
    }
}
