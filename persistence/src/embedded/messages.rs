//! The embedded history tables and the operations on them.
//!
//! - `messages`: `(conversation id, seq) -> ` encoded message (see `message_codec`).
//! - `last_seqs`: conversation id -> highest seq assigned.
//! - `client_message_ids`: `(conversation id, sender, client message id) -> seq`,
//!   the idempotency index.
//!
//! Appends go through [`HistoryTables`], which the group-commit writer opens once
//! per batch inside its write transaction; reads are blocking functions over an
//! open [`Database`] that the store runs on Tokio's blocking pool. Within a
//! batch the seqs assigned are kept in memory and `last_seqs` is written once
//! per conversation when the batch is finished ([`HistoryTables::finish`]),
//! not once per message.

use std::collections::HashMap;
use std::ops::Bound;

use redb::{
    AccessGuard, Database, ReadableDatabase, ReadableTable, StorageError, Table, TableDefinition,
    WriteTransaction,
};

use super::history_log::{LogEntry, RecordBuilder};
use super::message_codec::{self, MessageBody};
use super::Failure;
use crate::{AppendRequest, Appended, Direction, PageRequest, StoreError, StoredMessage};

/// The messages table: key is `(conversation id, seq)`.
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");

/// The highest seq assigned in each conversation: key is the conversation id.
const LAST_SEQS: TableDefinition<&str, u64> = TableDefinition::new("last_seqs");

/// The idempotency index: key is `(conversation id, sender, client message id)`.
const CLIENT_MESSAGE_IDS: TableDefinition<(&str, &str, &str), u64> =
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
    /// The encoding buffer, reused for every message of the batch.
    value: Vec<u8>,
}

impl<'txn> HistoryTables<'txn> {
    /// Opens the history tables in `tx`.
    pub(super) fn open(tx: &'txn WriteTransaction) -> Result<Self, redb::Error> {
        Ok(HistoryTables {
            messages: tx.open_table(MESSAGES)?,
            last_seqs: tx.open_table(LAST_SEQS)?,
            client_message_ids: tx.open_table(CLIENT_MESSAGE_IDS)?,
            assigned: HashMap::new(),
            value: Vec::new(),
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

    /// Applies one append inside the transaction, seeing every earlier append of
    /// the same transaction, exactly as if each had committed on its own.
    ///
    /// The outer error is a database failure: the transaction must be abandoned.
    /// The inner result is this request's own outcome; when it is an error
    /// (an amend of a missing seq, a corrupt record), nothing was written for it,
    /// because every check runs before the first insert.
    ///
    /// Every row it writes is also added to `record`, the batch's history log
    /// record.
    pub(super) fn append(
        &mut self,
        request: &AppendRequest,
        record: &mut RecordBuilder,
    ) -> Result<Result<Appended, StoreError>, redb::Error> {
        let conversation = request.conversation_id.as_str();
        let client_key = (
            conversation,
            request.sender.as_str(),
            request.client_message_id.as_str(),
        );
        if let Some(seq) = self.client_message_ids.get(client_key)?.map(|v| v.value()) {
            let original = match self.message(conversation, seq)? {
                Ok(Some(original)) => original,
                Ok(None) => {
                    return Ok(Err(StoreError::Corrupt(format!(
                        "client message id {:?} of {:?} in conversation {conversation:?} \
                         points at missing message {seq}",
                        request.client_message_id, request.sender
                    ))))
                }
                Err(corrupt) => return Ok(Err(corrupt)),
            };
            return Ok(Ok(Appended {
                seq,
                message_id: original.message_id,
                server_time_ms: original.server_time_ms,
                duplicate: true,
            }));
        }

        let amended = match &request.amend {
            None => None,
            Some(amend) => match self.message(conversation, amend.target_seq)? {
                Ok(Some(mut target)) => {
                    target.payload.clone_from(&amend.payload);
                    Some(target)
                }
                Ok(None) => {
                    return Ok(Err(StoreError::NotFound(format!(
                        "message {} of conversation {conversation:?}",
                        amend.target_seq
                    ))))
                }
                Err(corrupt) => return Ok(Err(corrupt)),
            },
        };
        let last = self.last_seq(conversation)?;
        let Some(seq) = last.checked_add(1) else {
            return Ok(Err(StoreError::Corrupt(format!(
                "conversation {conversation:?} has exhausted its sequence numbers"
            ))));
        };

        // Every check has passed: from here on only the database itself can fail.
        let body = MessageBody {
            message_id: request.message_id,
            server_time_ms: request.server_time_ms,
            sender: &request.sender,
            client_message_id: &request.client_message_id,
            payload: &request.payload,
        };
        message_codec::encode_into(&body, &mut self.value);
        self.messages
            .insert((conversation, seq), self.value.as_slice())?;
        match self.assigned.get_mut(conversation) {
            Some(assigned) => *assigned = seq,
            None => {
                self.assigned.insert(conversation.to_owned(), seq);
            }
        }
        self.client_message_ids.insert(client_key, seq)?;
        record.push(&LogEntry::Message {
            conversation,
            seq,
            sender: &request.sender,
            client_message_id: &request.client_message_id,
            value: &self.value,
        });
        if let Some(target) = amended {
            message_codec::encode_into(&MessageBody::of(&target), &mut self.value);
            self.messages
                .insert((conversation, target.seq), self.value.as_slice())?;
            record.push(&LogEntry::Rewritten {
                conversation,
                seq: target.seq,
                value: &self.value,
            });
        }
        Ok(Ok(Appended {
            seq,
            message_id: request.message_id,
            server_time_ms: request.server_time_ms,
            duplicate: false,
        }))
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

    /// Message `seq` of `conversation` as this transaction sees it.
    fn message(
        &self,
        conversation: &str,
        seq: u64,
    ) -> Result<Result<Option<StoredMessage>, StoreError>, redb::Error> {
        let Some(value) = self.messages.get((conversation, seq))? else {
            return Ok(Ok(None));
        };
        Ok(message_codec::decode(conversation, seq, value.value()).map(Some))
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
