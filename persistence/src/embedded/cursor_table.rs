//! Monotonic cursor tables: `(scope, name) -> u64` entries that only ever move
//! forward. Read cursors and delivered cursors are both kept this way.
//!
//! A cursor that was never advanced has no entry and reads as 0, so storing
//! one costs nothing until it first moves. These are blocking functions over
//! an open [`Database`]; the store calls them on Tokio's blocking pool.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::{begin_durable_write, Failure};

/// The layout every cursor table shares: key `(scope, name)`, value the cursor.
pub(super) type CursorTable = TableDefinition<'static, (&'static str, &'static str), u64>;

/// Creates `table` if it does not exist yet.
pub(super) fn create_table(tx: &WriteTransaction, table: CursorTable) -> Result<(), Failure> {
    tx.open_table(table)?;
    Ok(())
}

/// Moves the cursor at `(scope, name)` up to `seq`, leaving it alone if it is
/// already there or beyond; returns the cursor after the call.
///
/// Redb admits one write transaction at a time, so the read-compare-write is atomic.
pub(super) fn advance(
    db: &Database,
    table: CursorTable,
    scope: &str,
    name: &str,
    seq: u64,
) -> Result<u64, Failure> {
    let tx = begin_durable_write(db)?;
    {
        let mut cursors = tx.open_table(table)?;
        let current = cursors.get((scope, name))?.map_or(0, |v| v.value());
        if seq <= current {
            // Nothing to change; dropping the transaction leaves the file untouched.
            return Ok(current);
        }
        cursors.insert((scope, name), seq)?;
    }
    tx.commit()?;
    Ok(seq)
}

/// The cursor at `(scope, name)`; 0 if it was never advanced.
pub(super) fn get(
    db: &Database,
    table: CursorTable,
    scope: &str,
    name: &str,
) -> Result<u64, Failure> {
    let tx = db.begin_read()?;
    let cursors = tx.open_table(table)?;
    Ok(cursors.get((scope, name))?.map_or(0, |v| v.value()))
}

/// Every advanced cursor of `scope`, as `(name, cursor)` pairs in name order.
pub(super) fn list(
    db: &Database,
    table: CursorTable,
    scope: &str,
) -> Result<Vec<(String, u64)>, Failure> {
    let tx = db.begin_read()?;
    let cursors = tx.open_table(table)?;
    let mut found = Vec::new();
    // ("scope", "") is the smallest key of the scope; its entries follow in name order.
    for entry in cursors.range((scope, "")..)? {
        let (key, value) = entry?;
        let (entry_scope, name) = key.value();
        if entry_scope != scope {
            break;
        }
        found.push((name.to_owned(), value.value()));
    }
    Ok(found)
}
