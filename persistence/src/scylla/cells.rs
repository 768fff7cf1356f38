//! The append protocol's [`Cells`] on Scylla, plus the message reads that
//! history paging shares with it.
//!
//! Seqs and buckets are `bigint`; a seq above `i64::MAX` can never be stored,
//! so reads of one answer "absent". Message ids are `u64` kept bit for bit in
//! a `bigint`.

use async_trait::async_trait;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use super::append::{Cells, Claim, ClaimKey, Freshness};
use super::buckets::{bucket_of, last_seq as bucket_last_seq};
use super::failure::Context;
use super::ScyllaStore;
use crate::{StoreError, StoredMessage};

/// A message row as the statements return it (see `MESSAGE_COLUMNS`).
pub(crate) type MessageColumns = (i64, i64, String, String, i64, Vec<u8>);

/// A seq or bucket as stored, or `None` if no stored value can equal it.
pub(crate) fn to_db(value: u64) -> Option<i64> {
    i64::try_from(value).ok()
}

/// A stored seq, which must not be negative.
fn seq_from_db(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} holds seq {value}")))
}

/// A seq the protocol computed, as stored; past `i64::MAX` the conversation is full.
fn seq_to_db(seq: u64, conversation_id: &str) -> Result<i64, StoreError> {
    to_db(seq).ok_or_else(|| {
        StoreError::Unavailable(format!("conversation {conversation_id} has no seqs left"))
    })
}

/// Decodes a message row of `conversation_id`.
pub(crate) fn message_from_db(
    conversation_id: &str,
    (seq, message_id, sender, client_message_id, server_time_ms, payload): MessageColumns,
) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        conversation_id: conversation_id.to_owned(),
        seq: seq_from_db(seq, "a message row")?,
        message_id: message_id as u64,
        sender,
        client_message_id,
        server_time_ms,
        payload,
    })
}

/// Whether a compare-and-set took effect (its `[applied]` column).
fn applied(result: QueryResult, what: &str) -> Result<bool, StoreError> {
    let rows = result.into_rows_result().decoded(what)?;
    let Some((index, _)) = rows.column_specs().get_by_name("[applied]") else {
        return Err(StoreError::Corrupt(format!(
            "{what}: the reply has no [applied] column"
        )));
    };
    let row: Row = rows.first_row().decoded(what)?;
    match row.columns.get(index) {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        other => Err(StoreError::Corrupt(format!(
            "{what}: [applied] is {other:?}"
        ))),
    }
}

impl ScyllaStore {
    /// Runs `statement` and decodes its rows as `R`.
    pub(crate) async fn rows<R>(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        what: &str,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let result = self
            .session()
            .execute_unpaged(statement, values)
            .await
            .context(what)?
            .into_rows_result()
            .decoded(what)?;
        let rows = result.rows::<R>().decoded(what)?;
        rows.collect::<Result<Vec<R>, _>>().decoded(what)
    }

    /// Runs a compare-and-set; true if it took effect.
    async fn compare_and_set(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        what: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .session()
            .execute_unpaged(statement, values)
            .await
            .context(what)?;
        applied(result, what)
    }

    /// The highest seq stored in one bucket of a conversation.
    async fn bucket_last(
        &self,
        conversation_id: &str,
        bucket: u64,
    ) -> Result<Option<u64>, StoreError> {
        let Some(bucket) = to_db(bucket) else {
            return Ok(None);
        };
        let rows: Vec<(i64,)> = self
            .rows(
                &self.statements().bucket_last,
                (conversation_id, bucket),
                "finding where a conversation ends",
            )
            .await?;
        rows.first()
            .map(|(seq,)| seq_from_db(*seq, "a message row"))
            .transpose()
    }
}

#[async_trait]
impl Cells for ScyllaStore {
    async fn last_seq(&self, conversation_id: &str) -> Result<u64, StoreError> {
        let heads: Vec<(Option<i64>,)> = self
            .rows(
                &self.statements().read_head,
                (conversation_id,),
                "reading a conversation's head",
            )
            .await?;
        let hint = match heads.first() {
            Some((Some(seq),)) => seq_from_db(*seq, "a conversation head")?,
            _ => 0,
        };
        // The hint may lag; walk forward through full buckets to the end.
        let mut last = hint;
        let mut bucket = bucket_of(hint);
        while let Some(found) = self.bucket_last(conversation_id, bucket).await? {
            last = last.max(found);
            if found < bucket_last_seq(bucket) {
                break;
            }
            bucket += 1;
        }
        Ok(last)
    }

    async fn create_claim(
        &self,
        key: &ClaimKey,
        message_id: u64,
        server_time_ms: i64,
        pending_seq: u64,
    ) -> Result<Option<Claim>, StoreError> {
        let pending = seq_to_db(pending_seq, &key.conversation_id)?;
        let created = self
            .compare_and_set(
                &self.statements().create_claim,
                (
                    &key.conversation_id,
                    &key.sender,
                    &key.client_message_id,
                    message_id as i64,
                    server_time_ms,
                    pending,
                ),
                "claiming a client message id",
            )
            .await?;
        if created {
            return Ok(None);
        }
        self.read_claim(key).await?.map(Some).ok_or_else(|| {
            StoreError::Unavailable(format!(
                "the claim of message {:?} from {} was refused as taken but reads as absent",
                key.client_message_id, key.sender
            ))
        })
    }

    async fn read_claim(&self, key: &ClaimKey) -> Result<Option<Claim>, StoreError> {
        let rows: Vec<(i64, i64, Option<i64>, Option<i64>)> = self
            .rows(
                &self.statements().read_claim,
                (&key.conversation_id, &key.sender, &key.client_message_id),
                "reading a claim",
            )
            .await?;
        let Some(&(message_id, server_time_ms, pending, seq)) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(Claim {
            message_id: message_id as u64,
            server_time_ms,
            pending_seq: pending.map(|p| seq_from_db(p, "a claim")).transpose()?,
            seq: seq.map(|s| seq_from_db(s, "a claim")).transpose()?,
        }))
    }

    async fn move_pending(&self, key: &ClaimKey, from: u64, to: u64) -> Result<bool, StoreError> {
        let (Some(from), Some(to)) = (to_db(from), to_db(to)) else {
            return Err(StoreError::Unavailable(format!(
                "conversation {} has no seqs left",
                key.conversation_id
            )));
        };
        self.compare_and_set(
            &self.statements().move_pending,
            (
                to,
                &key.conversation_id,
                &key.sender,
                &key.client_message_id,
                from,
            ),
            "moving a claim to a free slot",
        )
        .await
    }

    async fn insert_message(&self, row: &StoredMessage) -> Result<bool, StoreError> {
        let seq = seq_to_db(row.seq, &row.conversation_id)?;
        self.compare_and_set(
            &self.statements().insert_message,
            (
                &row.conversation_id,
                bucket_of(row.seq) as i64,
                seq,
                row.message_id as i64,
                &row.sender,
                &row.client_message_id,
                row.server_time_ms,
                &row.payload,
            ),
            "storing a message",
        )
        .await
    }

    async fn message_at(
        &self,
        conversation_id: &str,
        seq: u64,
        freshness: Freshness,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let Some(db_seq) = to_db(seq).filter(|s| *s > 0) else {
            return Ok(None);
        };
        let statement = match freshness {
            Freshness::Acknowledged => &self.statements().read_message,
            Freshness::Linearizable => &self.statements().read_message_serial,
        };
        let rows: Vec<MessageColumns> = self
            .rows(
                statement,
                (conversation_id, bucket_of(seq) as i64, db_seq),
                "reading a message",
            )
            .await?;
        rows.into_iter()
            .next()
            .map(|columns| message_from_db(conversation_id, columns))
            .transpose()
    }

    async fn replace_payload(
        &self,
        conversation_id: &str,
        seq: u64,
        payload: &[u8],
    ) -> Result<bool, StoreError> {
        let Some(db_seq) = to_db(seq) else {
            return Ok(false);
        };
        self.compare_and_set(
            &self.statements().replace_payload,
            (payload, conversation_id, bucket_of(seq) as i64, db_seq),
            "amending a message",
        )
        .await
    }

    async fn commit(&self, key: &ClaimKey, seq: u64) -> Result<(), StoreError> {
        let db_seq = seq_to_db(seq, &key.conversation_id)?;
        self.session()
            .execute_unpaged(
                &self.statements().commit_claim,
                (
                    db_seq,
                    &key.conversation_id,
                    &key.sender,
                    &key.client_message_id,
                ),
            )
            .await
            .context("committing a claim")?;
        // The head is a hint: with the seq as the write timestamp, the highest wins.
        self.session()
            .execute_unpaged(
                &self.statements().write_head,
                (db_seq, db_seq, &key.conversation_id),
            )
            .await
            .context("advancing a conversation's head")?;
        Ok(())
    }
}
