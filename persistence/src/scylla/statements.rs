//! Every CQL statement the store runs, prepared once per store.
//!
//! Prepared statements let the driver route each request to a replica of its
//! partition (token-aware, and shard-aware on Scylla) and skip parsing on the
//! server. Reads and plain writes are `LOCAL_QUORUM`; compare-and-sets use
//! Paxos at `LOCAL_SERIAL`, and the reads that must see them in flight read at
//! `LOCAL_SERIAL` too. Statements that are safe to repeat are marked
//! idempotent so the driver may retry them; the compare-and-sets are marked
//! too, because the append protocol re-reads what they did (a retried insert
//! that finds its own row is a success there).

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};

use super::failure::Context;
use crate::StoreError;

/// The columns of a message, in the order every message read returns them.
pub(crate) const MESSAGE_COLUMNS: &str =
    "seq, message_id, sender, client_message_id, server_time_ms, payload";

/// The prepared statements of one keyspace.
pub(crate) struct Statements {
    /// `(conversation_id) -> last_seq`.
    pub read_head: PreparedStatement,
    /// `(last_seq, timestamp = last_seq, conversation_id)`.
    pub write_head: PreparedStatement,
    /// `(conversation_id, bucket) -> seq`: the bucket's highest seq.
    pub bucket_last: PreparedStatement,
    /// `(conversation_id, sender, client_message_id, message_id, server_time_ms,
    /// pending_seq)`, if absent.
    pub create_claim: PreparedStatement,
    /// `(conversation_id, sender, client_message_id) -> (message_id,
    /// server_time_ms, pending_seq, seq)`, linearizable.
    pub read_claim: PreparedStatement,
    /// `(pending_seq, key..., expected pending_seq)`.
    pub move_pending: PreparedStatement,
    /// `(seq, key...)`.
    pub commit_claim: PreparedStatement,
    /// A whole message row, if its slot is empty.
    pub insert_message: PreparedStatement,
    /// `(conversation_id, bucket, seq) -> message`, quorum.
    pub read_message: PreparedStatement,
    /// The same, linearizable.
    pub read_message_serial: PreparedStatement,
    /// `(payload, conversation_id, bucket, seq)`, if the row exists.
    pub replace_payload: PreparedStatement,
    /// `(conversation_id, bucket, low, high, limit) -> messages`, ascending.
    pub page_ascending: PreparedStatement,
    /// The same, descending.
    pub page_descending: PreparedStatement,
}

impl Statements {
    /// Prepares every statement against keyspace `ks`.
    pub(crate) async fn prepare(session: &Session, ks: &str) -> Result<Statements, StoreError> {
        let cols = MESSAGE_COLUMNS;
        let claim_key = "conversation_id = ? AND sender = ? AND client_message_id = ?";
        let message_key = "conversation_id = ? AND bucket = ? AND seq = ?";
        Ok(Statements {
            read_head: read(
                session,
                format!("SELECT last_seq FROM {ks}.conversation_heads WHERE conversation_id = ?"),
            )
            .await?,
            write_head: write(
                session,
                format!(
                    "UPDATE {ks}.conversation_heads USING TIMESTAMP ? SET last_seq = ? \
                     WHERE conversation_id = ?"
                ),
            )
            .await?,
            bucket_last: read(
                session,
                format!(
                    "SELECT seq FROM {ks}.messages WHERE conversation_id = ? AND bucket = ? \
                     ORDER BY seq DESC LIMIT 1"
                ),
            )
            .await?,
            create_claim: compare_and_set(
                session,
                format!(
                    "INSERT INTO {ks}.message_claims (conversation_id, sender, \
                     client_message_id, message_id, server_time_ms, pending_seq) \
                     VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS"
                ),
            )
            .await?,
            read_claim: serial_read(
                session,
                format!(
                    "SELECT message_id, server_time_ms, pending_seq, seq \
                     FROM {ks}.message_claims WHERE {claim_key}"
                ),
            )
            .await?,
            move_pending: compare_and_set(
                session,
                format!(
                    "UPDATE {ks}.message_claims SET pending_seq = ? WHERE {claim_key} \
                     IF pending_seq = ?"
                ),
            )
            .await?,
            commit_claim: write(
                session,
                format!("UPDATE {ks}.message_claims SET seq = ? WHERE {claim_key}"),
            )
            .await?,
            insert_message: compare_and_set(
                session,
                format!(
                    "INSERT INTO {ks}.messages (conversation_id, bucket, {cols}) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
                ),
            )
            .await?,
            read_message: read(
                session,
                format!("SELECT {cols} FROM {ks}.messages WHERE {message_key}"),
            )
            .await?,
            read_message_serial: serial_read(
                session,
                format!("SELECT {cols} FROM {ks}.messages WHERE {message_key}"),
            )
            .await?,
            replace_payload: compare_and_set(
                session,
                format!("UPDATE {ks}.messages SET payload = ? WHERE {message_key} IF EXISTS"),
            )
            .await?,
            page_ascending: read(
                session,
                format!(
                    "SELECT {cols} FROM {ks}.messages WHERE conversation_id = ? AND bucket = ? \
                     AND seq >= ? AND seq <= ? ORDER BY seq ASC LIMIT ?"
                ),
            )
            .await?,
            page_descending: read(
                session,
                format!(
                    "SELECT {cols} FROM {ks}.messages WHERE conversation_id = ? AND bucket = ? \
                     AND seq >= ? AND seq <= ? ORDER BY seq DESC LIMIT ?"
                ),
            )
            .await?,
        })
    }
}

/// Prepares `cql` with the given consistency settings.
async fn prepared(
    session: &Session,
    cql: String,
    consistency: Consistency,
    serial: Option<SerialConsistency>,
) -> Result<PreparedStatement, StoreError> {
    let mut statement = session
        .prepare(cql.as_str())
        .await
        .context(&format!("preparing {cql:?}"))?;
    statement.set_consistency(consistency);
    statement.set_serial_consistency(serial);
    statement.set_is_idempotent(true);
    Ok(statement)
}

/// A quorum read.
async fn read(session: &Session, cql: String) -> Result<PreparedStatement, StoreError> {
    prepared(session, cql, Consistency::LocalQuorum, None).await
}

/// A read that also sees (and completes) compare-and-sets in flight.
async fn serial_read(session: &Session, cql: String) -> Result<PreparedStatement, StoreError> {
    prepared(session, cql, Consistency::LocalSerial, None).await
}

/// A plain quorum write.
async fn write(session: &Session, cql: String) -> Result<PreparedStatement, StoreError> {
    prepared(session, cql, Consistency::LocalQuorum, None).await
}

/// A compare-and-set (lightweight transaction).
async fn compare_and_set(session: &Session, cql: String) -> Result<PreparedStatement, StoreError> {
    prepared(
        session,
        cql,
        Consistency::LocalQuorum,
        Some(SerialConsistency::LocalSerial),
    )
    .await
}
