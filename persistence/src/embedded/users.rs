//! The embedded users table: username -> encoded user record (see `user_codec`).
//!
//! These are blocking functions over an open [`Database`]; the store calls them
//! on Tokio's blocking pool. Each write is one durable transaction, and redb
//! admits one write transaction at a time, so a check-then-write inside it is atomic.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::{begin_durable_write, user_codec, Failure};
use crate::{NewUser, StoreError, UserRecord};

/// The users table: key is the username, value is [`user_codec`]'s encoding.
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");

/// Creates the users table if it does not exist yet.
pub(super) fn create_table(tx: &WriteTransaction) -> Result<(), Failure> {
    tx.open_table(USERS)?;
    Ok(())
}

/// Inserts `user` unless its username is taken ([`StoreError::AlreadyExists`]).
pub(super) fn create(db: &Database, user: NewUser) -> Result<UserRecord, Failure> {
    let record = UserRecord {
        username: user.username,
        password_hash: user.password_hash,
        disabled: false,
        created_at_ms: user.created_at_ms,
    };
    let tx = begin_durable_write(db)?;
    {
        let mut table = tx.open_table(USERS)?;
        if table.get(record.username.as_str())?.is_some() {
            return Err(already_exists(&record.username).into());
        }
        table.insert(
            record.username.as_str(),
            user_codec::encode(&record).as_slice(),
        )?;
    }
    tx.commit()?;
    Ok(record)
}

/// Looks `username` up.
pub(super) fn get(db: &Database, username: &str) -> Result<Option<UserRecord>, Failure> {
    let tx = db.begin_read()?;
    let table = tx.open_table(USERS)?;
    let Some(value) = table.get(username)? else {
        return Ok(None);
    };
    Ok(Some(user_codec::decode(username, value.value())?))
}

/// Sets the disabled flag of `username` ([`StoreError::NotFound`] if there is no such user).
pub(super) fn set_disabled(db: &Database, username: &str, disabled: bool) -> Result<(), Failure> {
    let tx = begin_durable_write(db)?;
    {
        let mut table = tx.open_table(USERS)?;
        let mut record = match table.get(username)? {
            Some(value) => user_codec::decode(username, value.value())?,
            None => return Err(not_found(username).into()),
        };
        if record.disabled == disabled {
            // Nothing to change; dropping the transaction leaves the file untouched.
            return Ok(());
        }
        record.disabled = disabled;
        table.insert(username, user_codec::encode(&record).as_slice())?;
    }
    tx.commit()?;
    Ok(())
}

/// The error for a username that is taken.
fn already_exists(username: &str) -> StoreError {
    StoreError::AlreadyExists(format!("user {username:?}"))
}

/// The error for a username with no account.
fn not_found(username: &str) -> StoreError {
    StoreError::NotFound(format!("user {username:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedStore;
    use crate::MetadataStore;

    /// Overwrites the stored value of `username` with `bytes`, bypassing the codec.
    fn write_raw(store: &EmbeddedStore, username: &str, bytes: &[u8]) {
        let db = &store.inner.db;
        let tx = begin_durable_write(db).expect("begin write");
        {
            let mut table = tx.open_table(USERS).expect("open users");
            table.insert(username, bytes).expect("insert raw");
        }
        tx.commit().expect("commit");
    }

    #[tokio::test]
    async fn undecodable_record_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        write_raw(&store, "mallory", &[1, b'{']);

        let err = store
            .get_user("mallory")
            .await
            .expect_err("must not decode");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("mallory")),
            "got {err:?}"
        );
        let err = store
            .set_user_disabled("mallory", true)
            .await
            .expect_err("must not decode");
        assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");
    }
}
