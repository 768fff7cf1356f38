//! Monotonic cursor tables: `(scope, name) -> u64` entries that only ever move
//! forward. Read cursors and delivered cursors are both kept this way.
//!
//! A cursor that was never advanced has no entry and reads as 0, so storing
//! one costs nothing until it first moves. Advances are applied by the
//! group-commit writer inside its transactions ([`advance_in`]); reads are
//! blocking functions over an open [`Database`], which the store calls on
//! Tokio's blocking pool.

use redb::{
    Database, ReadableDatabase, ReadableTable, Table, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::Failure;

/// The layout every cursor table shares: key `(scope, name)`, value the cursor.
pub(super) type CursorTable = TableDefinition<'static, (&'static str, &'static str), u64>;

/// Creates `table` if it does not exist yet.
pub(super) fn create_table(tx: &WriteTransaction, table: CursorTable) -> Result<(), Failure> {
    tx.open_table(table)?;
    Ok(())
}

/// One cursor table open in a write transaction.
pub(super) type OpenCursorTable<'txn> = Table<'txn, (&'static str, &'static str), u64>;

/// The cursor tables a write transaction has opened so far (redb lets a
/// transaction hold each table open once).
#[derive(Default)]
pub(super) struct OpenCursorTables<'txn> {
    open: Vec<(String, OpenCursorTable<'txn>)>,
}

impl<'txn> OpenCursorTables<'txn> {
    /// `table`, opened in `tx` on first use.
    pub(super) fn open(
        &mut self,
        tx: &'txn WriteTransaction,
        table: CursorTable,
    ) -> Result<&mut OpenCursorTable<'txn>, redb::Error> {
        let index = match self.open.iter().position(|(open, _)| open == table.name()) {
            Some(index) => index,
            None => {
                self.open
                    .push((table.name().to_owned(), tx.open_table(table)?));
                self.open.len() - 1
            }
        };
        Ok(&mut self.open[index].1)
    }
}

/// Moves the cursor at `(scope, name)` of an open table up to `seq`, leaving
/// it alone if it is already there or beyond; returns the cursor after the
/// call and whether it moved.
///
/// Inside one write transaction, so the read-compare-write is atomic.
pub(super) fn advance_in(
    cursors: &mut OpenCursorTable<'_>,
    scope: &str,
    name: &str,
    seq: u64,
) -> Result<(u64, bool), redb::Error> {
    let current = cursors.get((scope, name))?.map_or(0, |v| v.value());
    if seq <= current {
        return Ok((current, false));
    }
    cursors.insert((scope, name), seq)?;
    Ok((seq, true))
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
