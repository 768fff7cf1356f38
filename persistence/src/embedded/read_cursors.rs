//! The embedded read cursors table: `(conversation id, user) -> highest seq read`,
//! kept monotonic by `cursor_table`.

use redb::{Database, WriteTransaction};

use super::cursor_table::{self, CursorTable};
use super::group_commit::CursorAdvance;
use super::Failure;
use crate::ReadCursor;

/// The read cursors table: key is `(conversation id, user)`.
pub(super) const READ_CURSORS: CursorTable = CursorTable::new("read_cursors");

/// Creates the read cursors table if it does not exist yet.
pub(super) fn create_table(tx: &WriteTransaction) -> Result<(), Failure> {
    cursor_table::create_table(tx, READ_CURSORS)
}

/// The advance of `user`'s read cursor in `conversation_id` to `seq`, for
/// the group-commit writer.
pub(super) fn mark_read(conversation_id: &str, user: &str, seq: u64) -> CursorAdvance {
    CursorAdvance {
        table: READ_CURSORS,
        scope: conversation_id.to_owned(),
        name: user.to_owned(),
        seq,
    }
}

/// Every non-zero read cursor of `conversation_id`, in user order.
pub(super) fn of_conversation(
    db: &Database,
    conversation_id: &str,
) -> Result<Vec<ReadCursor>, Failure> {
    let cursors = cursor_table::list(db, READ_CURSORS, conversation_id)?;
    Ok(cursors
        .into_iter()
        .map(|(user, read_up_to)| ReadCursor { user, read_up_to })
        .collect())
}
