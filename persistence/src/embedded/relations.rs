//! The embedded relations table: `(user, other, relation code) -> at_ms`, so
//! a user's decisions are one range scan in other-user order.
//!
//! These are blocking functions over an open [`Database`]; the store calls them
//! on Tokio's blocking pool. Each write is one durable transaction.

use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};

use super::{begin_durable_write, Failure};
use crate::{Relation, RelationRecord, StoreError};

/// The relations table: key is `(user, other, relation code)`, value the time.
const RELATIONS: TableDefinition<(&str, &str, i16), i64> = TableDefinition::new("relations");

/// Creates the relations table if it does not exist yet.
pub(super) fn create_table(tx: &WriteTransaction) -> Result<(), Failure> {
    tx.open_table(RELATIONS)?;
    Ok(())
}

/// Stores `record`, replacing the time of the same decision.
pub(super) fn put(db: &Database, record: RelationRecord) -> Result<(), Failure> {
    let tx = begin_durable_write(db)?;
    {
        let mut table = tx.open_table(RELATIONS)?;
        table.insert(
            (
                record.user.as_str(),
                record.other.as_str(),
                record.relation.code(),
            ),
            record.at_ms,
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Every decision of `user`, by other user, then relation.
pub(super) fn of_user(db: &Database, user: &str) -> Result<Vec<RelationRecord>, Failure> {
    let tx = db.begin_read()?;
    let table = tx.open_table(RELATIONS)?;
    let mut found = Vec::new();
    for entry in table.range((user, "", i16::MIN)..)? {
        let (key, value) = entry?;
        let (entry_user, other, code) = key.value();
        if entry_user != user {
            break;
        }
        let relation = Relation::from_code(code)
            .ok_or_else(|| StoreError::Corrupt(format!("relation code {code} of user {user:?}")))?;
        found.push(RelationRecord {
            user: entry_user.to_owned(),
            other: other.to_owned(),
            relation,
            at_ms: value.value(),
        });
    }
    Ok(found)
}

/// Removes one decision ([`StoreError::NotFound`] if there is none).
pub(super) fn delete(
    db: &Database,
    user: &str,
    other: &str,
    relation: Relation,
) -> Result<(), Failure> {
    let tx = begin_durable_write(db)?;
    {
        let mut table = tx.open_table(RELATIONS)?;
        if table.remove((user, other, relation.code()))?.is_none() {
            return Err(StoreError::NotFound(format!(
                "{relation:?} of user {user:?} about {other:?}"
            ))
            .into());
        }
    }
    tx.commit()?;
    Ok(())
}
