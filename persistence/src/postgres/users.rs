//! The `users` table: accounts, their password hashes and disabled flags.

use deadpool_postgres::Client;

use super::failure::{column, is_unique_violation, Context};
use crate::{NewUser, StoreError, UserRecord};

/// Inserts `user`, enabled; [`StoreError::AlreadyExists`] if the name is taken.
pub(super) async fn create(client: &Client, user: NewUser) -> Result<UserRecord, StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO users (username, password_hash, disabled, created_at_ms) \
             VALUES ($1, $2, FALSE, $3)",
        )
        .await
        .context("preparing the user insert")?;
    match client
        .execute(
            &statement,
            &[&user.username, &user.password_hash, &user.created_at_ms],
        )
        .await
    {
        Ok(_) => Ok(UserRecord {
            username: user.username,
            password_hash: user.password_hash,
            disabled: false,
            created_at_ms: user.created_at_ms,
        }),
        Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!(
            "user {:?}",
            user.username
        ))),
        Err(e) => Err(super::failure::db_error("creating a user", &e)),
    }
}

/// The account named exactly `username`, if any.
pub(super) async fn get(client: &Client, username: &str) -> Result<Option<UserRecord>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT username, password_hash, disabled, created_at_ms FROM users \
             WHERE username = $1",
        )
        .await
        .context("preparing the user lookup")?;
    let row = client
        .query_opt(&statement, &[&username])
        .await
        .context("looking a user up")?;
    row.map(|row| {
        Ok(UserRecord {
            username: column(&row, 0)?,
            password_hash: column(&row, 1)?,
            disabled: column(&row, 2)?,
            created_at_ms: column(&row, 3)?,
        })
    })
    .transpose()
}

/// Sets the disabled flag; [`StoreError::NotFound`] if there is no such user.
pub(super) async fn set_disabled(
    client: &Client,
    username: &str,
    disabled: bool,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("UPDATE users SET disabled = $2 WHERE username = $1")
        .await
        .context("preparing the user update")?;
    let changed = client
        .execute(&statement, &[&username, &disabled])
        .await
        .context("disabling or enabling a user")?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("user {username:?}")));
    }
    Ok(())
}
