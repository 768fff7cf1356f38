//! The `conversations` and `conversation_members` tables: conversation
//! records with their compare-and-set version, and the member lists (kept in
//! their given order by `position`, and indexed by user).

use deadpool_postgres::{Client, Transaction};

use super::codec::{kind_from_db, kind_to_db, role_from_db, role_to_db};
use super::failure::{column, db_error, is_unique_violation, Context};
use crate::{ConversationRecord, MemberRecord, StoreError};

/// Inserts `record` with version 1 and its members, in one transaction;
/// [`StoreError::AlreadyExists`] if the id is taken.
pub(super) async fn create(
    client: &mut Client,
    record: ConversationRecord,
) -> Result<ConversationRecord, StoreError> {
    let record = ConversationRecord {
        version: 1,
        ..record
    };
    let tx = client
        .transaction()
        .await
        .context("starting a conversation create")?;
    let statement = tx
        .prepare_cached(
            "INSERT INTO conversations (id, kind, name, created_at_ms, updated_at_ms, version) \
             VALUES ($1, $2, $3, $4, $5, 1)",
        )
        .await
        .context("preparing the conversation insert")?;
    let inserted = tx
        .execute(
            &statement,
            &[
                &record.id,
                &kind_to_db(record.kind),
                &record.name,
                &record.created_at_ms,
                &record.updated_at_ms,
            ],
        )
        .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::AlreadyExists(format!(
                "conversation {:?}",
                record.id
            )))
        }
        Err(e) => return Err(db_error("creating a conversation", &e)),
    }
    insert_members(&tx, &record).await?;
    tx.commit()
        .await
        .context("committing a conversation create")?;
    Ok(record)
}

/// Replaces the record and member list if the stored version is
/// `expected_version`, storing `expected_version + 1`.
pub(super) async fn update(
    client: &mut Client,
    record: ConversationRecord,
    expected_version: u64,
) -> Result<ConversationRecord, StoreError> {
    let tx = client
        .transaction()
        .await
        .context("starting a conversation update")?;
    // A version beyond BIGINT can never be the stored one.
    let changed = match i64::try_from(expected_version) {
        Ok(expected) => {
            let statement = tx
                .prepare_cached(
                    "UPDATE conversations \
                     SET kind = $3, name = $4, created_at_ms = $5, updated_at_ms = $6, \
                         version = version + 1 \
                     WHERE id = $1 AND version = $2 RETURNING version",
                )
                .await
                .context("preparing the conversation update")?;
            // Concurrent updates queue on the row lock; under READ COMMITTED the
            // losers re-check `version = $2` against the winner's row and match nothing.
            tx.query_opt(
                &statement,
                &[
                    &record.id,
                    &expected,
                    &kind_to_db(record.kind),
                    &record.name,
                    &record.created_at_ms,
                    &record.updated_at_ms,
                ],
            )
            .await
            .context("updating a conversation")?
        }
        Err(_) => None,
    };
    let Some(row) = changed else {
        let statement = tx
            .prepare_cached("SELECT version FROM conversations WHERE id = $1")
            .await
            .context("preparing the conversation version lookup")?;
        let exists = tx
            .query_opt(&statement, &[&record.id])
            .await
            .context("reading a conversation's version")?;
        return Err(match exists {
            Some(_) => StoreError::Conflict(format!("conversation {:?}", record.id)),
            None => StoreError::NotFound(format!("conversation {:?}", record.id)),
        });
    };
    let version: i64 = column(&row, 0)?;
    let statement = tx
        .prepare_cached("DELETE FROM conversation_members WHERE conversation_id = $1")
        .await
        .context("preparing the member delete")?;
    tx.execute(&statement, &[&record.id])
        .await
        .context("replacing conversation members")?;
    let record = ConversationRecord {
        version: super::codec::seq_from_db(version, "conversations.version")?,
        ..record
    };
    insert_members(&tx, &record).await?;
    tx.commit()
        .await
        .context("committing a conversation update")?;
    Ok(record)
}

/// Inserts every member of `record` in one statement.
async fn insert_members(
    tx: &Transaction<'_>,
    record: &ConversationRecord,
) -> Result<(), StoreError> {
    if record.members.is_empty() {
        return Ok(());
    }
    let positions: Vec<i32> = (0..record.members.len())
        .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
        .collect();
    let users: Vec<&str> = record.members.iter().map(|m| m.user.as_str()).collect();
    let roles: Vec<i16> = record.members.iter().map(|m| role_to_db(m.role)).collect();
    let joined: Vec<i64> = record.members.iter().map(|m| m.joined_at_ms).collect();
    let statement = tx
        .prepare_cached(
            "INSERT INTO conversation_members \
                 (conversation_id, position, username, role, joined_at_ms) \
             SELECT $1, m.position, m.username, m.role, m.joined_at_ms \
             FROM UNNEST($2::int4[], $3::text[], $4::int2[], $5::int8[]) \
                 AS m(position, username, role, joined_at_ms)",
        )
        .await
        .context("preparing the member insert")?;
    tx.execute(
        &statement,
        &[&record.id, &positions, &users, &roles, &joined],
    )
    .await
    .context("storing conversation members")?;
    Ok(())
}

/// The conversation `id` with its members, read in one statement (one snapshot).
pub(super) async fn get(
    client: &Client,
    id: &str,
) -> Result<Option<ConversationRecord>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT c.kind, c.name, c.created_at_ms, c.updated_at_ms, c.version, \
                    m.username, m.role, m.joined_at_ms \
             FROM conversations c \
             LEFT JOIN conversation_members m ON m.conversation_id = c.id \
             WHERE c.id = $1 ORDER BY m.position",
        )
        .await
        .context("preparing the conversation lookup")?;
    let rows = client
        .query(&statement, &[&id])
        .await
        .context("looking a conversation up")?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let version: i64 = column(first, 4)?;
    let mut record = ConversationRecord {
        id: id.to_owned(),
        kind: kind_from_db(column(first, 0)?)?,
        name: column(first, 1)?,
        created_at_ms: column(first, 2)?,
        updated_at_ms: column(first, 3)?,
        version: super::codec::seq_from_db(version, "conversations.version")?,
        members: Vec::with_capacity(rows.len()),
    };
    for row in &rows {
        // A conversation without members comes back as one row of NULLs.
        let Some(user) = column::<Option<String>>(row, 5)? else {
            continue;
        };
        record.members.push(MemberRecord {
            user,
            role: role_from_db(column(row, 6)?)?,
            joined_at_ms: column(row, 7)?,
        });
    }
    Ok(Some(record))
}

/// Ids of the conversations `user` is a member of, in id order.
pub(super) async fn of_user(client: &Client, user: &str) -> Result<Vec<String>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT DISTINCT conversation_id FROM conversation_members \
             WHERE username = $1 ORDER BY conversation_id",
        )
        .await
        .context("preparing the membership lookup")?;
    let rows = client
        .query(&statement, &[&user])
        .await
        .context("listing a user's conversations")?;
    rows.iter().map(|row| column(row, 0)).collect()
}
