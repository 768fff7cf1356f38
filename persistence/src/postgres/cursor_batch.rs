//! One upsert for a batch of cursor moves, shared by the cursor tables
//! (`read_cursors`, `delivered_cursors`): the statement is the table's,
//! the columns it is given and the rows it returns are the same shape.

use std::collections::HashMap;

use deadpool_postgres::Client;

use super::codec::{cursor_from_db, cursor_to_db};
use super::failure::{column, Context};
use crate::StoreError;

/// A batch of cursor moves: each cursor's two key columns, in the table's
/// key order, and the seq to raise it to.
pub(super) type Marks<'a> = [((&'a str, &'a str), u64)];

/// Each cursor after a batch, by the same two key columns.
pub(super) type Cursors = HashMap<(String, String), u64>;

/// Runs `sql`, an upsert that takes the marks as three arrays (both key
/// columns, the seqs as text) and returns both key columns and the cursor
/// as text for every row it touched; `what` names the cursor in errors.
pub(super) async fn upsert(
    client: &Client,
    sql: &str,
    what: &str,
    marks: &Marks<'_>,
) -> Result<Cursors, StoreError> {
    let statement = client
        .prepare_cached(sql)
        .await
        .context(&format!("preparing the batched {what} update"))?;
    let mut first = Vec::with_capacity(marks.len());
    let mut second = Vec::with_capacity(marks.len());
    let mut seqs = Vec::with_capacity(marks.len());
    for &((a, b), seq) in marks {
        first.push(a);
        second.push(b);
        seqs.push(cursor_to_db(seq));
    }
    let rows = client
        .query(&statement, &[&first, &second, &seqs])
        .await
        .context(&format!("moving {what}s in a batch"))?;
    rows.iter()
        .map(|row| {
            let cursor = cursor_from_db(&column::<String>(row, 2)?, what)?;
            Ok(((column(row, 0)?, column(row, 1)?), cursor))
        })
        .collect()
}
