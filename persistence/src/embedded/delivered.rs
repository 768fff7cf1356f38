//! The embedded delivered cursors table: `(user, conversation id) -> highest seq
//! delivered`, kept monotonic by `cursor_table`.

use redb::{Database, WriteTransaction};

use super::cursor_table::{self, CursorTable};
use super::group_commit::CursorAdvance;
use super::Failure;

/// The delivered cursors table: key is `(user, conversation id)`.
pub(super) const DELIVERED: CursorTable = CursorTable::new("delivered_cursors");

/// Creates the delivered cursors table if it does not exist yet.
pub(super) fn create_table(tx: &WriteTransaction) -> Result<(), Failure> {
    cursor_table::create_table(tx, DELIVERED)
}

/// The advance of `user`'s delivered cursor in `conversation_id` to `seq`,
/// for the group-commit writer.
pub(super) fn mark(user: &str, conversation_id: &str, seq: u64) -> CursorAdvance {
    CursorAdvance {
        table: DELIVERED,
        scope: user.to_owned(),
        name: conversation_id.to_owned(),
        seq,
    }
}

/// `user`'s delivered cursor in `conversation_id` (0 if nothing was delivered).
pub(super) fn get(db: &Database, user: &str, conversation_id: &str) -> Result<u64, Failure> {
    cursor_table::get(db, DELIVERED, user, conversation_id)
}
