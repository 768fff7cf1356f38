//! The embedded push targets table: `(user, device id) -> encoded target`
//! (see `push_target_codec`), so a user's targets are one range scan in
//! device id order.
//!
//! These are blocking functions over an open [`Database`]; the store calls them
//! on Tokio's blocking pool. Each write is one durable transaction.

use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};

use super::{begin_durable_write, push_target_codec, Failure};
use crate::{PushTarget, StoreError};

/// The push targets table: key is `(user, device id)`.
const PUSH_TARGETS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("push_targets");

/// Creates the push targets table if it does not exist yet.
pub(super) fn create_table(tx: &WriteTransaction) -> Result<(), Failure> {
    tx.open_table(PUSH_TARGETS)?;
    Ok(())
}

/// Stores `target` under `(user, device id)`, replacing what was there.
pub(super) fn put(db: &Database, target: PushTarget) -> Result<(), Failure> {
    let tx = begin_durable_write(db)?;
    {
        let mut table = tx.open_table(PUSH_TARGETS)?;
        table.insert(
            (target.user.as_str(), target.device_id.as_str()),
            push_target_codec::encode(&target).as_slice(),
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Every target of `user`, in device id order.
pub(super) fn of_user(db: &Database, user: &str) -> Result<Vec<PushTarget>, Failure> {
    let tx = db.begin_read()?;
    let table = tx.open_table(PUSH_TARGETS)?;
    let mut found = Vec::new();
    // (user, "") is the smallest key of the user; their entries follow in device order.
    for entry in table.range((user, "")..)? {
        let (key, value) = entry?;
        let (entry_user, device_id) = key.value();
        if entry_user != user {
            break;
        }
        found.push(push_target_codec::decode(
            entry_user,
            device_id,
            value.value(),
        )?);
    }
    Ok(found)
}

/// Removes the target of `(user, device_id)` ([`StoreError::NotFound`] if there is none).
pub(super) fn delete(db: &Database, user: &str, device_id: &str) -> Result<(), Failure> {
    let tx = begin_durable_write(db)?;
    {
        let mut table = tx.open_table(PUSH_TARGETS)?;
        if table.remove((user, device_id))?.is_none() {
            return Err(StoreError::NotFound(format!(
                "push target of user {user:?} device {device_id:?}"
            ))
            .into());
        }
    }
    tx.commit()?;
    Ok(())
}
