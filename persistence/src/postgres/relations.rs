//! The `user_relations` table: one row per decision of a user about another
//! (blocked, accepted a message request).

use deadpool_postgres::Client;

use super::failure::{column, Context};
use crate::{Relation, RelationRecord, StoreError};

/// Stores `record`, replacing the time of the same decision.
pub(super) async fn put(client: &Client, record: &RelationRecord) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO user_relations (username, other, relation, at_ms) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (username, other, relation) DO UPDATE SET at_ms = EXCLUDED.at_ms",
        )
        .await
        .context("preparing the relation upsert")?;
    client
        .execute(
            &statement,
            &[
                &record.user,
                &record.other,
                &record.relation.code(),
                &record.at_ms,
            ],
        )
        .await
        .context("storing a relation")?;
    Ok(())
}

/// Every decision of `user`, by other user, then relation.
pub(super) async fn list(client: &Client, user: &str) -> Result<Vec<RelationRecord>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT username, other, relation, at_ms FROM user_relations \
             WHERE username = $1 ORDER BY other, relation",
        )
        .await
        .context("preparing the relation listing")?;
    let rows = client
        .query(&statement, &[&user])
        .await
        .context("listing relations")?;
    rows.iter()
        .map(|row| {
            let code: i16 = column(row, 2)?;
            Ok(RelationRecord {
                user: column(row, 0)?,
                other: column(row, 1)?,
                relation: Relation::from_code(code).ok_or_else(|| {
                    StoreError::Corrupt(format!("relation code {code} of user {user:?}"))
                })?,
                at_ms: column(row, 3)?,
            })
        })
        .collect()
}

/// Removes one decision; [`StoreError::NotFound`] if there is none.
pub(super) async fn delete(
    client: &Client,
    user: &str,
    other: &str,
    relation: Relation,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "DELETE FROM user_relations WHERE username = $1 AND other = $2 AND relation = $3",
        )
        .await
        .context("preparing the relation delete")?;
    let removed = client
        .execute(&statement, &[&user, &other, &relation.code()])
        .await
        .context("deleting a relation")?;
    if removed == 0 {
        return Err(StoreError::NotFound(format!(
            "{relation:?} of user {user:?} about {other:?}"
        )));
    }
    Ok(())
}
