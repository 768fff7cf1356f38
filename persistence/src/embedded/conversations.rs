//! The embedded conversations table and its member index.
//!
//! - `conversations`: conversation id -> encoded record (see `conversation_codec`).
//! - `conversation_members`: `(user, conversation id) -> ()`, one entry per current
//!   member, so "which conversations is this user in" is one range scan.
//!
//! Every write changes the record and the index in the same durable transaction,
//! so they never disagree, and redb admits one write transaction at a time, so
//! the version check of [`update`] and the write it guards are atomic.

use std::collections::BTreeSet;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::{begin_durable_write, conversation_codec, Failure};
use crate::{ConversationRecord, StoreError};

/// The conversations table: key is the conversation id.
const CONVERSATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("conversations");

/// The member index: key is `(user, conversation id)`.
const MEMBERS: TableDefinition<(&str, &str), ()> = TableDefinition::new("conversation_members");

/// Creates the conversation tables if they do not exist yet.
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), Failure> {
    tx.open_table(CONVERSATIONS)?;
    tx.open_table(MEMBERS)?;
    Ok(())
}

/// Inserts `record` with version 1 and indexes its members, unless the id is taken
/// ([`StoreError::AlreadyExists`]).
pub(super) fn create(
    db: &Database,
    mut record: ConversationRecord,
) -> Result<ConversationRecord, Failure> {
    record.version = 1;
    let tx = begin_durable_write(db)?;
    {
        let mut conversations = tx.open_table(CONVERSATIONS)?;
        if conversations.get(record.id.as_str())?.is_some() {
            return Err(StoreError::AlreadyExists(format!("conversation {:?}", record.id)).into());
        }
        conversations.insert(
            record.id.as_str(),
            conversation_codec::encode(&record).as_slice(),
        )?;
        let mut members = tx.open_table(MEMBERS)?;
        for member in &record.members {
            members.insert((member.user.as_str(), record.id.as_str()), ())?;
        }
    }
    tx.commit()?;
    Ok(record)
}

/// Looks conversation `id` up.
pub(super) fn get(db: &Database, id: &str) -> Result<Option<ConversationRecord>, Failure> {
    let tx = db.begin_read()?;
    let conversations = tx.open_table(CONVERSATIONS)?;
    let Some(value) = conversations.get(id)? else {
        return Ok(None);
    };
    Ok(Some(conversation_codec::decode(id, value.value())?))
}

/// Replaces the stored record of `record.id` if its version is `expected_version`,
/// storing `expected_version + 1`, and moves the member index from the old member
/// list to the new one.
pub(super) fn update(
    db: &Database,
    mut record: ConversationRecord,
    expected_version: u64,
) -> Result<ConversationRecord, Failure> {
    let tx = begin_durable_write(db)?;
    {
        let mut conversations = tx.open_table(CONVERSATIONS)?;
        let stored = match conversations.get(record.id.as_str())? {
            Some(value) => conversation_codec::decode(&record.id, value.value())?,
            None => {
                return Err(StoreError::NotFound(format!("conversation {:?}", record.id)).into())
            }
        };
        if stored.version != expected_version {
            return Err(StoreError::Conflict(format!(
                "conversation {:?} (expected version {expected_version}, stored {})",
                record.id, stored.version
            ))
            .into());
        }
        record.version = expected_version.checked_add(1).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "conversation {:?} has exhausted its version counter",
                record.id
            ))
        })?;
        conversations.insert(
            record.id.as_str(),
            conversation_codec::encode(&record).as_slice(),
        )?;

        let before: BTreeSet<&str> = stored.members.iter().map(|m| m.user.as_str()).collect();
        let after: BTreeSet<&str> = record.members.iter().map(|m| m.user.as_str()).collect();
        let mut members = tx.open_table(MEMBERS)?;
        for removed in before.difference(&after) {
            members.remove((*removed, record.id.as_str()))?;
        }
        for added in after.difference(&before) {
            members.insert((*added, record.id.as_str()), ())?;
        }
    }
    tx.commit()?;
    Ok(record)
}

/// Ids of the conversations `user` is a member of, in id order.
pub(super) fn of_user(db: &Database, user: &str) -> Result<Vec<String>, Failure> {
    let tx = db.begin_read()?;
    let members = tx.open_table(MEMBERS)?;
    let mut ids = Vec::new();
    // (user, "") is the smallest key of the user; their entries follow in id order.
    for entry in members.range((user, "")..)? {
        let (key, _) = entry?;
        let (member, conversation_id) = key.value();
        if member != user {
            break;
        }
        ids.push(conversation_id.to_owned());
    }
    Ok(ids)
}
