//! The embedded history tables and the operations on them.
//!
//! - `messages`: `(conversation id, seq) -> ` encoded message (see `message_codec`).
//! - `last_seqs`: conversation id -> highest seq assigned.
//! - `client_message_ids`: `(conversation id, sender, client message id) -> seq`,
//!   the idempotency index.
//!
//! Appends are checked and numbered by the group-commit writer
//! (`history_sequencer`) and written as their log records hold them through
//! [`HistoryTables`], which the history applier (and recovery) opens once per
//! commit inside its write transaction; reads are blocking functions over an
//! open [`Database`] that the store runs on Tokio's blocking pool. Within a
//! commit the seqs written are kept in memory and `last_seqs` is written once
//! per conversation when it is finished ([`HistoryTables::finish`]), not once
//! per message.

use std::collections::HashMap;
use std::ops::Bound;

use redb::{
    AccessGuard, Database, ReadableDatabase, ReadableTable, StorageError, Table, TableDefinition,
    WriteTransaction,
};

use super::message_codec;
use super::Failure;
use crate::{Direction, PageRequest, StoredMessage};

/// The messages table: key is `(conversation id, seq)`.
pub(super) const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");

/// The highest seq assigned in each conversation: key is the conversation id.
pub(super) const LAST_SEQS: TableDefinition<&str, u64> = TableDefinition::new("last_seqs");

/// The idempotency index: key is `(conversation id, sender, client message id)`.
pub(super) const CLIENT_MESSAGE_IDS: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("client_message_ids");

/// One entry of a range over the messages table.
type EntryResult<'a> = Result<
    (
        AccessGuard<'a, (&'static str, u64)>,
        AccessGuard<'a, &'static [u8]>,
    ),
    StorageError,
>;

/// Creates the history tables if they do not exist yet.
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), Failure> {
    tx.open_table(MESSAGES)?;
    tx.open_table(LAST_SEQS)?;
    tx.open_table(CLIENT_MESSAGE_IDS)?;
    Ok(())
}

/// The history tables, open in one write transaction.
pub(super) struct HistoryTables<'txn> {
    messages: Table<'txn, (&'static str, u64), &'static [u8]>,
    last_seqs: Table<'txn, &'static str, u64>,
    client_message_ids: Table<'txn, (&'static str, &'static str, &'static str), u64>,
    /// The highest seq this batch assigned in each conversation it appended
    /// to; written to `last_seqs` by [`HistoryTables::finish`].
    assigned: HashMap<String, u64>,
}

impl<'txn> HistoryTables<'txn> {
    /// Opens the history tables in `tx`.
    pub(super) fn open(tx: &'txn WriteTransaction) -> Result<Self, redb::Error> {
        Ok(HistoryTables {
            messages: tx.open_table(MESSAGES)?,
            last_seqs: tx.open_table(LAST_SEQS)?,
            client_message_ids: tx.open_table(CLIENT_MESSAGE_IDS)?,
            assigned: HashMap::new(),
        })
    }

    /// Writes the seq counters the batch moved. Must run before the
    /// transaction commits; until then `last_seqs` may lag behind the
    /// messages this batch appended (appends of the batch see the new seqs).
    pub(super) fn finish(mut self) -> Result<(), redb::Error> {
        for (conversation, seq) in &self.assigned {
            self.last_seqs.insert(conversation.as_str(), *seq)?;
        }
        Ok(())
    }

    /// The highest seq of `conversation` as this batch sees it.
    fn last_seq(&self, conversation: &str) -> Result<u64, redb::Error> {
        if let Some(&seq) = self.assigned.get(conversation) {
            return Ok(seq);
        }
        Ok(self.last_seqs.get(conversation)?.map_or(0, |v| v.value()))
    }

    /// Writes a message exactly as a history log record holds it: its row,
    /// its idempotency entry, and its conversation's seq counter if `seq` is
    /// beyond it. Writing the same message again changes nothing.
    pub(super) fn restore_message(
        &mut self,
        conversation: &str,
        seq: u64,
        sender: &str,
        client_message_id: &str,
        value: &[u8],
    ) -> Result<(), redb::Error> {
        self.messages.insert((conversation, seq), value)?;
        self.client_message_ids
            .insert((conversation, sender, client_message_id), seq)?;
        if seq > self.last_seq(conversation)? {
            self.assigned.insert(conversation.to_owned(), seq);
        }
        Ok(())
    }

    /// Writes a message row exactly as a history log record holds it.
    pub(super) fn restore_row(
        &mut self,
        conversation: &str,
        seq: u64,
        value: &[u8],
    ) -> Result<(), redb::Error> {
        self.messages.insert((conversation, seq), value)?;
        Ok(())
    }
}

/// A page of `conversation`'s messages with `after_seq < seq < before_seq`, in
/// ascending seq order: the lowest `limit` going forward, the highest `limit`
/// going backward.
pub(super) fn fetch(
    db: &Database,
    conversation: &str,
    page: PageRequest,
) -> Result<Vec<StoredMessage>, Failure> {
    if page.limit == 0 || page.before_seq <= page.after_seq.saturating_add(1) {
        return Ok(Vec::new());
    }
    let tx = db.begin_read()?;
    let messages = tx.open_table(MESSAGES)?;
    let range = messages.range::<(&str, u64)>((
        Bound::Excluded((conversation, page.after_seq)),
        Bound::Excluded((conversation, page.before_seq)),
    ))?;
    let decode = |entry: EntryResult<'_>| -> Result<StoredMessage, Failure> {
        let (key, value) = entry?;
        let (_, seq) = key.value();
        Ok(message_codec::decode(conversation, seq, value.value())?)
    };
    match page.direction {
        Direction::Forward => range.take(page.limit).map(decode).collect(),
        Direction::Backward => {
            let mut newest_first = range
                .rev()
                .take(page.limit)
                .map(decode)
                .collect::<Result<Vec<_>, _>>()?;
            newest_first.reverse();
            Ok(newest_first)
        }
    }
}

/// Message `seq` of `conversation`.
pub(super) fn get(
    db: &Database,
    conversation: &str,
    seq: u64,
) -> Result<Option<StoredMessage>, Failure> {
    let tx = db.begin_read()?;
    let messages = tx.open_table(MESSAGES)?;
    let Some(value) = messages.get((conversation, seq))? else {
        return Ok(None);
    };
    Ok(Some(message_codec::decode(
        conversation,
        seq,
        value.value(),
    )?))
}

/// The highest seq of `conversation` (0 if it has no messages).
pub(super) fn last_seq(db: &Database, conversation: &str) -> Result<u64, Failure> {
    let tx = db.begin_read()?;
    let last_seqs = tx.open_table(LAST_SEQS)?;
    Ok(last_seqs.get(conversation)?.map_or(0, |v| v.value()))
}
