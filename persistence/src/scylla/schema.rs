//! The keyspace and its tables, created at start-up if missing, and the
//! check that an existing keyspace was laid out the way this build reads it.
//!
//! `docs/storage.md` explains the choices: partitions of [`BUCKET_SIZE`]
//! seqs per conversation, a claim table for idempotent retries, and a head
//! table whose cells are written with the seq as their timestamp, so the
//! highest seq always wins.

use scylla::client::session::Session;
use scylla::statement::{Consistency, SerialConsistency, Statement};

use super::buckets::BUCKET_SIZE;
use super::failure::Context;
use super::ScyllaConfig;
use crate::StoreError;

/// The layout version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// The tables, in creation order; `{ks}` is the keyspace.
const TABLES: &[&str] = &[
    // One partition per (conversation, bucket of BUCKET_SIZE seqs), rows by seq.
    "CREATE TABLE IF NOT EXISTS {ks}.messages (
        conversation_id text,
        bucket bigint,
        seq bigint,
        message_id bigint,
        sender text,
        client_message_id text,
        server_time_ms bigint,
        payload blob,
        PRIMARY KEY ((conversation_id, bucket), seq)
    ) WITH CLUSTERING ORDER BY (seq ASC)",
    // One partition per retry key: the first attempt's id and time, the slot
    // being written and, once stored, the seq.
    "CREATE TABLE IF NOT EXISTS {ks}.message_claims (
        conversation_id text,
        sender text,
        client_message_id text,
        message_id bigint,
        server_time_ms bigint,
        pending_seq bigint,
        seq bigint,
        PRIMARY KEY ((conversation_id, sender, client_message_id))
    )",
    // A hint where a conversation ends; written with USING TIMESTAMP = seq.
    "CREATE TABLE IF NOT EXISTS {ks}.conversation_heads (
        conversation_id text PRIMARY KEY,
        last_seq bigint
    )",
    // Facts about the layout that every node must agree on.
    "CREATE TABLE IF NOT EXISTS {ks}.schema_meta (
        name text PRIMARY KEY,
        value bigint
    )",
];

/// Creates the keyspace and tables if missing and checks the recorded layout.
///
/// # Errors
///
/// [`StoreError::Unavailable`] if a statement fails; [`StoreError::Corrupt`]
/// if the keyspace was laid out by a newer Parley or with another bucket size.
pub async fn apply(session: &Session, config: &ScyllaConfig) -> Result<(), StoreError> {
    let ks = &config.keyspace;
    let create_keyspace = format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {} AND durable_writes = true",
        config.replication_cql()
    );
    ddl(session, &create_keyspace).await?;
    for table in TABLES {
        ddl(session, &table.replace("{ks}", ks)).await?;
    }
    session
        .await_schema_agreement()
        .await
        .map_err(|e| StoreError::Unavailable(format!("waiting for schema agreement: {e}")))?;
    let version = record(session, ks, "schema_version", SCHEMA_VERSION).await?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "keyspace {ks} has layout version {version}; this Parley reads up to \
             {SCHEMA_VERSION}: upgrade Parley"
        )));
    }
    let bucket_size = record(session, ks, "bucket_size", BUCKET_SIZE as i64).await?;
    if bucket_size != BUCKET_SIZE as i64 {
        return Err(StoreError::Corrupt(format!(
            "keyspace {ks} stores {bucket_size} seqs per partition; this Parley uses \
             {BUCKET_SIZE}"
        )));
    }
    Ok(())
}

/// Runs one schema statement.
async fn ddl(session: &Session, cql: &str) -> Result<(), StoreError> {
    let mut statement = Statement::new(cql);
    statement.set_consistency(Consistency::All);
    session
        .query_unpaged(statement, ())
        .await
        .context(&format!("creating the schema ({})", first_words(cql)))?;
    Ok(())
}

/// Records `value` under `name` unless a value is recorded already, and
/// returns the recorded one.
async fn record(session: &Session, ks: &str, name: &str, value: i64) -> Result<i64, StoreError> {
    let mut insert = Statement::new(format!(
        "INSERT INTO {ks}.schema_meta (name, value) VALUES (?, ?) IF NOT EXISTS"
    ));
    insert.set_consistency(Consistency::Quorum);
    insert.set_serial_consistency(Some(SerialConsistency::Serial));
    session
        .query_unpaged(insert, (name, value))
        .await
        .context(&format!("recording {name}"))?;
    let mut select = Statement::new(format!("SELECT value FROM {ks}.schema_meta WHERE name = ?"));
    select.set_consistency(Consistency::Serial);
    let rows = session
        .query_unpaged(select, (name,))
        .await
        .context(&format!("reading {name}"))?
        .into_rows_result()
        .context(&format!("reading {name}"))?;
    let (recorded,): (i64,) = rows.single_row().decoded(&format!("reading {name}"))?;
    Ok(recorded)
}

/// The start of a statement, for error messages.
fn first_words(cql: &str) -> String {
    cql.split_whitespace().take(6).collect::<Vec<_>>().join(" ")
}
