//! The history writer's checks: each request of a batch is checked and given
//! its seq against what the database holds (a read snapshot) plus what the
//! writer has logged that the applier has not written yet
//! (`history_pending`), without writing to the database.
//!
//! A request sees every request before it, in its own batch and in earlier
//! ones, exactly as if each had been written to the database on its own:
//! seqs follow queue order per conversation, a retry of a stored message
//! (same conversation, sender and client message id) is answered from the
//! original, an amend reads its target, and a cursor only moves forward.
//! Whatever a request changes goes into the batch's log record and into the
//! batch's own pending rows ([`Sequencer::finish`]).

use redb::{Database, ReadOnlyTable, ReadTransaction, ReadableDatabase};

use super::cursor_table::CursorTable;
use super::history_log::{LogEntry, RecordBuilder};
use super::history_pending::PendingRows;
use super::history_recovery::position_in;
use super::message_codec::{self, MessageBody};
use super::messages::{CLIENT_MESSAGE_IDS, LAST_SEQS, MESSAGES};
use crate::{AppendRequest, Appended, StoreError, StoredMessage};

/// A cursor table open for reading.
type ReadCursorTable = ReadOnlyTable<(&'static str, &'static str), u64>;

/// The history tables and cursor tables as one read transaction sees them.
pub(super) struct Snapshot {
    tx: ReadTransaction,
    messages: ReadOnlyTable<(&'static str, u64), &'static [u8]>,
    last_seqs: ReadOnlyTable<&'static str, u64>,
    client_ids: ReadOnlyTable<(&'static str, &'static str, &'static str), u64>,
    /// Cursor tables, opened on first use.
    cursors: Vec<(String, ReadCursorTable)>,
    /// The history log position the snapshot holds every batch up to.
    position: u64,
}

impl Snapshot {
    /// A snapshot of the database as it is now.
    pub(super) fn open(db: &Database) -> Result<Snapshot, redb::Error> {
        let tx = db.begin_read()?;
        Ok(Snapshot {
            messages: tx.open_table(MESSAGES)?,
            last_seqs: tx.open_table(LAST_SEQS)?,
            client_ids: tx.open_table(CLIENT_MESSAGE_IDS)?,
            cursors: Vec::new(),
            position: position_in(&tx)?,
            tx,
        })
    }

    /// The history log position the snapshot holds every batch up to.
    pub(super) fn position(&self) -> u64 {
        self.position
    }

    fn cursor(&mut self, table: CursorTable, scope: &str, name: &str) -> Result<u64, redb::Error> {
        use redb::TableHandle;
        let index = match self.cursors.iter().position(|(n, _)| n == table.name()) {
            Some(index) => index,
            None => {
                let open = self.tx.open_table(table)?;
                self.cursors.push((table.name().to_owned(), open));
                self.cursors.len() - 1
            }
        };
        Ok(self.cursors[index]
            .1
            .get((scope, name))?
            .map_or(0, |v| v.value()))
    }
}

/// Checks the requests of one batch, in queue order.
pub(super) struct Sequencer<'a> {
    snapshot: &'a mut Snapshot,
    /// Earlier batches' rows the snapshot does not hold yet.
    earlier: &'a PendingRows,
    /// This batch's rows.
    batch: PendingRows,
    /// The encoding buffer, reused for every message of the batch.
    value: Vec<u8>,
}

impl<'a> Sequencer<'a> {
    /// Starts a batch of up to `requests` requests over `snapshot` and the
    /// rows of `earlier` batches.
    pub(super) fn new(
        snapshot: &'a mut Snapshot,
        earlier: &'a PendingRows,
        requests: usize,
    ) -> Sequencer<'a> {
        Sequencer {
            snapshot,
            earlier,
            batch: PendingRows::with_capacity(requests),
            value: Vec::new(),
        }
    }

    /// This batch's rows, to join the pending ones once its record is durable.
    pub(super) fn finish(self) -> PendingRows {
        self.batch
    }

    /// The highest seq of `conversation` as this request sees it.
    fn last_seq(&self, conversation: &str) -> Result<u64, redb::Error> {
        if let Some(seq) = self
            .batch
            .last_seq(conversation)
            .or_else(|| self.earlier.last_seq(conversation))
        {
            return Ok(seq);
        }
        Ok(self
            .snapshot
            .last_seqs
            .get(conversation)?
            .map_or(0, |v| v.value()))
    }

    /// The seq stored under this idempotency key, if any.
    fn client_seq(&self, key: (&str, &str, &str)) -> Result<Option<u64>, redb::Error> {
        let (conversation, sender, client_message_id) = key;
        if let Some(seq) = self
            .batch
            .client_seq(conversation, sender, client_message_id)
            .or_else(|| {
                self.earlier
                    .client_seq(conversation, sender, client_message_id)
            })
        {
            return Ok(Some(seq));
        }
        Ok(self.snapshot.client_ids.get(key)?.map(|v| v.value()))
    }

    /// Message `seq` of `conversation` as this request sees it.
    fn message(
        &self,
        conversation: &str,
        seq: u64,
    ) -> Result<Result<Option<StoredMessage>, StoreError>, redb::Error> {
        let pending = self
            .batch
            .message(conversation, seq)
            .or_else(|| self.earlier.message(conversation, seq));
        if let Some(value) = pending {
            return Ok(message_codec::decode(conversation, seq, value).map(Some));
        }
        let Some(value) = self.snapshot.messages.get((conversation, seq))? else {
            return Ok(Ok(None));
        };
        Ok(message_codec::decode(conversation, seq, value.value()).map(Some))
    }

    /// Checks one append and, if it is new, gives it the next seq of its
    /// conversation and adds its rows to `record` and to the batch.
    ///
    /// The outer error is a database failure: the batch must be abandoned.
    /// The inner result is this request's own outcome; when it is an error
    /// (an amend of a missing seq, a corrupt row), nothing was recorded for it.
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
        if let Some(seq) = self.client_seq(client_key)? {
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

        let body = MessageBody {
            message_id: request.message_id,
            server_time_ms: request.server_time_ms,
            sender: &request.sender,
            client_message_id: &request.client_message_id,
            payload: &request.payload,
        };
        message_codec::encode_into(&body, &mut self.value);
        keep(
            record,
            &mut self.batch,
            &LogEntry::Message {
                conversation,
                seq,
                sender: &request.sender,
                client_message_id: &request.client_message_id,
                value: &self.value,
            },
        );
        if let Some(target) = amended {
            message_codec::encode_into(&MessageBody::of(&target), &mut self.value);
            keep(
                record,
                &mut self.batch,
                &LogEntry::Rewritten {
                    conversation,
                    seq: target.seq,
                    value: &self.value,
                },
            );
        }
        Ok(Ok(Appended {
            seq,
            message_id: request.message_id,
            server_time_ms: request.server_time_ms,
            duplicate: false,
        }))
    }

    /// Moves a cursor up to `seq` unless it is already there or beyond;
    /// returns the cursor after the call.
    pub(super) fn advance_cursor(
        &mut self,
        table: CursorTable,
        scope: &str,
        name: &str,
        seq: u64,
        record: &mut RecordBuilder,
    ) -> Result<u64, redb::Error> {
        use redb::TableHandle;
        let current = match self
            .batch
            .cursor(table.name(), scope, name)
            .or_else(|| self.earlier.cursor(table.name(), scope, name))
        {
            Some(cursor) => cursor,
            None => self.snapshot.cursor(table, scope, name)?,
        };
        if seq <= current {
            return Ok(current);
        }
        keep(
            record,
            &mut self.batch,
            &LogEntry::Cursor {
                table: table.name(),
                scope,
                name,
                seq,
            },
        );
        Ok(seq)
    }
}

/// Adds a change to the batch's log record and to its pending rows.
fn keep(record: &mut RecordBuilder, batch: &mut PendingRows, entry: &LogEntry<'_>) {
    record.push(entry);
    batch.put(entry);
}
