//! Where the database stands against the history log, and bringing it up to
//! date when the store opens.
//!
//! Every history batch's transaction also writes the log position after its
//! record to the `history_log_position` table. redb makes commits durable in
//! order (a non-durable commit becomes durable with the next durable one, of
//! any writer), so the durable database always holds exactly the batches up
//! to the position it records, whenever its last durable commit happened.
//!
//! On open, [`recover`] reads that position, replays every complete record
//! after it into one transaction, commits it durably, and only then deletes
//! the log's segments. Replaying is idempotent: a record holds the rows its
//! batch wrote (same keys, same seqs, same values), seq counters only move up
//! to a replayed seq and cursors only forward, so a record applied twice (a
//! crash during recovery) leaves the same state as once.

use std::path::Path;

use redb::{Database, ReadTransaction, ReadableDatabase, TableDefinition, WriteTransaction};

use super::cursor_table::{self, OpenCursorTables};
use super::group_commit::cursor_table_named;
use super::history_log::{self, HistoryLog, HistoryLogError, LogEntry};
use super::messages::HistoryTables;
use super::{begin_durable_write, Failure};
use crate::StoreError;

/// The database's position in the history log: key [`POSITION_KEY`].
const LOG_POSITION: TableDefinition<&str, u64> = TableDefinition::new("history_log_position");

/// The one key of [`LOG_POSITION`].
const POSITION_KEY: &str = "covered";

/// What opening found in the history log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records replayed into the database (batches whose redb commit was not
    /// yet durable when the store last stopped).
    pub replayed_records: u64,
    /// Bytes of a torn final write that were dropped (never acknowledged).
    pub torn_bytes: u64,
    /// The log position the database holds everything up to after opening.
    pub position: u64,
}

/// Creates the position table if it does not exist yet.
pub(super) fn create_table(tx: &WriteTransaction) -> Result<(), Failure> {
    tx.open_table(LOG_POSITION)?;
    Ok(())
}

/// Records in `tx` that it holds every history batch up to log position `end`.
pub(super) fn record_position(tx: &WriteTransaction, end: u64) -> Result<(), redb::Error> {
    tx.open_table(LOG_POSITION)?.insert(POSITION_KEY, end)?;
    Ok(())
}

/// The log position the durable database holds everything up to.
fn covered_position(db: &Database) -> Result<u64, Failure> {
    let tx = db.begin_read()?;
    Ok(position_in(&tx)?)
}

/// The log position the database holds every history batch up to, as `tx` sees it.
pub(super) fn position_in(tx: &ReadTransaction) -> Result<u64, redb::Error> {
    let table = tx.open_table(LOG_POSITION)?;
    Ok(table.get(POSITION_KEY)?.map_or(0, |v| v.value()))
}

/// Brings `db` up to date with the log in `log_dir` and opens the log for
/// appending after it.
///
/// # Errors
///
/// [`StoreError::Corrupt`] if the log is damaged other than by a torn final
/// write, or a record does not decode; [`StoreError::Unavailable`] if a file
/// or the database fails.
pub(super) fn recover(db: &Database, log_dir: &Path) -> Result<(HistoryLog, Recovery), StoreError> {
    let covered = covered_position(db)?;
    let tail = history_log::read_segments(log_dir, covered)?;
    let mut recovery = Recovery {
        replayed_records: tail.records.len() as u64,
        torn_bytes: tail.torn_bytes,
        position: covered,
    };
    if let Some((end, _)) = tail.records.last() {
        let end = *end;
        let tx = begin_durable_write(db)?;
        replay_records(
            &tx,
            tail.records.iter().map(|(_, payload)| payload.as_slice()),
            end,
        )?;
        tx.commit().map_err(Failure::from)?;
        recovery.position = end;
        tracing::info!(
            records = recovery.replayed_records,
            torn_bytes = recovery.torn_bytes,
            position = end,
            "replayed the history log into the database"
        );
    }
    let log = HistoryLog::start_after(log_dir, recovery.position)?;
    Ok((log, recovery))
}

/// Writes the entries of the record payloads `records` into `tx` and
/// records that it holds the log up to position `end` (the position after
/// the last of them). Recovery does it once on open; the history applier
/// does it for every commit.
///
/// The entries are written in key order ([`replay_order`]), not log order:
/// a commit of many records interleaves the conversations of every sender,
/// and inserting one conversation's rows one after another finds each
/// B-tree path in the CPU cache instead of walking a different one every
/// time. The result is the same: every entry has its own key except an
/// amend's rewrite of a row, which the stable sort keeps after the row's
/// earlier versions, and seq counters and cursors only move up.
pub(super) fn replay_records<'p>(
    tx: &WriteTransaction,
    records: impl IntoIterator<Item = &'p [u8]>,
    end: u64,
) -> Result<(), StoreError> {
    let mut entries = Vec::new();
    for payload in records {
        entries.extend(history_log::entries(payload)?);
    }
    entries.sort_by_key(replay_order);
    {
        let mut history = HistoryTables::open(tx).map_err(Failure::from)?;
        let mut cursors = OpenCursorTables::default();
        for entry in &entries {
            replay(tx, &mut history, &mut cursors, entry)?;
        }
        history.finish().map_err(Failure::from)?;
    }
    record_position(tx, end).map_err(Failure::from)?;
    Ok(())
}

/// Where an entry goes in a replay: message rows by `(conversation, seq)`,
/// then cursors by table and key.
fn replay_order<'p>(entry: &LogEntry<'p>) -> (u8, &'p str, u64, &'p str, &'p str) {
    match *entry {
        LogEntry::Message {
            conversation, seq, ..
        }
        | LogEntry::Rewritten {
            conversation, seq, ..
        } => (0, conversation, seq, "", ""),
        LogEntry::Cursor {
            table, scope, name, ..
        } => (1, table, 0, scope, name),
    }
}

/// Applies one logged change.
fn replay<'txn>(
    tx: &'txn WriteTransaction,
    history: &mut HistoryTables<'txn>,
    cursors: &mut OpenCursorTables<'txn>,
    entry: &LogEntry<'_>,
) -> Result<(), StoreError> {
    match *entry {
        LogEntry::Message {
            conversation,
            seq,
            sender,
            client_message_id,
            value,
        } => history
            .restore_message(conversation, seq, sender, client_message_id, value)
            .map_err(|e| Failure::from(e).into()),
        LogEntry::Rewritten {
            conversation,
            seq,
            value,
        } => history
            .restore_row(conversation, seq, value)
            .map_err(|e| Failure::from(e).into()),
        LogEntry::Cursor {
            table,
            scope,
            name,
            seq,
        } => {
            let definition = cursor_table_named(table).ok_or_else(|| {
                StoreError::from(HistoryLogError::Corrupt(format!(
                    "a record moves a cursor of unknown table {table:?}"
                )))
            })?;
            let open = cursors.open(tx, definition).map_err(Failure::from)?;
            cursor_table::advance_in(open, scope, name, seq).map_err(Failure::from)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::embedded::history_log::RecordBuilder;
    use crate::embedded::{create_tables, messages};

    /// Everything replay writes, read back: message rows, seq counters,
    /// idempotency entries, read cursors.
    fn snapshot(db: &Database) -> BTreeMap<String, String> {
        let mut seen = BTreeMap::new();
        for seq in 1..=3 {
            let message = messages::get(db, "c", seq).expect("get");
            seen.insert(format!("message {seq}"), format!("{message:?}"));
        }
        seen.insert(
            "last_seq".into(),
            messages::last_seq(db, "c").expect("last").to_string(),
        );
        let cursors = super::super::read_cursors::of_conversation(db, "c").expect("cursors");
        seen.insert("cursors".into(), format!("{cursors:?}"));
        seen.insert(
            "position".into(),
            covered_position(db).expect("position").to_string(),
        );
        seen
    }

    fn encoded(sender: &str, client_message_id: &str, payload: &[u8]) -> Vec<u8> {
        super::super::message_codec::encode(&super::super::message_codec::MessageBody {
            message_id: 7,
            server_time_ms: 1,
            sender,
            client_message_id,
            payload,
        })
    }

    #[test]
    fn replaying_the_same_records_twice_leaves_the_same_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_dir = dir.path().join("log");
        let db = Database::create(dir.path().join("db.redb")).expect("db");
        create_tables(&db).expect("tables");

        let (first, second) = (encoded("alice", "a1", b"hi"), encoded("bob", "b1", b"yo"));
        let amended = encoded("alice", "a1", b"hi (edited)");
        let mut log = HistoryLog::start_after(&log_dir, 0).expect("log");
        let mut record = RecordBuilder::default();
        record.push(&LogEntry::Message {
            conversation: "c",
            seq: 1,
            sender: "alice",
            client_message_id: "a1",
            value: &first,
        });
        record.push(&LogEntry::Message {
            conversation: "c",
            seq: 2,
            sender: "bob",
            client_message_id: "b1",
            value: &second,
        });
        log.append(&mut record).expect("append");
        record.clear();
        record.push(&LogEntry::Rewritten {
            conversation: "c",
            seq: 1,
            value: &amended,
        });
        record.push(&LogEntry::Cursor {
            table: "read_cursors",
            scope: "c",
            name: "bob",
            seq: 2,
        });
        let end = log.append(&mut record).expect("append");
        let segments: Vec<_> = std::fs::read_dir(&log_dir)
            .expect("list")
            .map(|e| {
                let path = e.expect("entry").path();
                let bytes = std::fs::read(&path).expect("read");
                (path, bytes)
            })
            .collect();

        let (_, recovery) = recover(&db, &log_dir).expect("recover");
        assert_eq!(
            recovery,
            Recovery {
                replayed_records: 2,
                torn_bytes: 0,
                position: end
            }
        );
        let once = snapshot(&db);
        let edited = format!("{:?}", b"hi (edited)".to_vec());
        assert!(once["message 1"].contains(&edited), "{once:?}");
        assert_eq!(once["last_seq"], "2");
        assert!(once["cursors"].contains("read_up_to: 2"), "{once:?}");
        assert!(
            std::fs::read_dir(&log_dir).expect("list").next().is_none(),
            "recovery empties the log once the database holds it durably"
        );

        // A crash after replaying but before the position was durable: the
        // same records come back and are applied again.
        let tx = begin_durable_write(&db).expect("tx");
        record_position(&tx, 0).expect("reset");
        tx.commit().expect("commit");
        for (path, bytes) in &segments {
            std::fs::write(path, bytes).expect("restore segment");
        }
        let (_, again) = recover(&db, &log_dir).expect("recover again");
        assert_eq!(again.replayed_records, 2);
        assert_eq!(snapshot(&db), once, "replaying twice changes nothing");

        // Nothing left to replay: a third open replays nothing.
        let (_, third) = recover(&db, &log_dir).expect("recover");
        assert_eq!(third.replayed_records, 0);
        assert_eq!(third.position, end);
    }

    /// Every row of the tables replay writes, as text.
    fn dump(db: &Database) -> Vec<String> {
        use redb::ReadableTable;
        let tx = db.begin_read().expect("read");
        let mut rows = Vec::new();
        for row in tx
            .open_table(messages::MESSAGES)
            .expect("messages")
            .iter()
            .expect("iter")
        {
            let (key, value) = row.expect("row");
            rows.push(format!("message {:?} = {:?}", key.value(), value.value()));
        }
        for row in tx
            .open_table(messages::LAST_SEQS)
            .expect("seqs")
            .iter()
            .expect("iter")
        {
            let (key, value) = row.expect("row");
            rows.push(format!("last seq {:?} = {}", key.value(), value.value()));
        }
        let ids = tx.open_table(messages::CLIENT_MESSAGE_IDS).expect("ids");
        for row in ids.iter().expect("iter") {
            let (key, value) = row.expect("row");
            rows.push(format!("client id {:?} = {}", key.value(), value.value()));
        }
        for table in ["read_cursors", "delivered_cursors"] {
            let definition = cursor_table_named(table).expect("cursor table");
            for row in tx
                .open_table(definition)
                .expect("cursors")
                .iter()
                .expect("iter")
            {
                let (key, value) = row.expect("row");
                rows.push(format!("{table} {:?} = {}", key.value(), value.value()));
            }
        }
        rows
    }

    #[test]
    fn replaying_in_key_order_leaves_what_log_order_leaves() {
        // Three records that interleave conversations, amend one row twice
        // (once in the record that adds it) and move cursors down as well as up.
        let value = |text: &str| encoded("u", text, text.as_bytes());
        let values: Vec<(&str, u64, Vec<u8>)> = [
            ("b", 1, "b1"),
            ("a", 1, "a1"),
            ("c", 1, "c1"),
            ("a", 2, "a2"),
            ("b", 2, "b2"),
            ("a", 3, "a3"),
        ]
        .into_iter()
        .map(|(conversation, seq, text)| (conversation, seq, value(text)))
        .collect();
        let (first_edit, second_edit) = (value("b1 edited"), value("b1 edited again"));
        let message = |i: usize| LogEntry::Message {
            conversation: values[i].0,
            seq: values[i].1,
            sender: "u",
            client_message_id: if i.is_multiple_of(2) { "even" } else { "odd" },
            value: &values[i].2,
        };
        let cursor = |table, scope, seq| LogEntry::Cursor {
            table,
            scope,
            name: "u",
            seq,
        };
        let records = [
            vec![
                message(0),
                message(1),
                LogEntry::Rewritten {
                    conversation: "b",
                    seq: 1,
                    value: &first_edit,
                },
                cursor("read_cursors", "a", 1),
            ],
            vec![
                message(2),
                cursor("delivered_cursors", "b", 1),
                message(3),
                cursor("read_cursors", "a", 2),
            ],
            vec![
                message(4),
                LogEntry::Rewritten {
                    conversation: "b",
                    seq: 1,
                    value: &second_edit,
                },
                cursor("read_cursors", "a", 1),
                message(5),
            ],
        ];
        let payloads: Vec<Vec<u8>> = records
            .iter()
            .map(|entries| {
                let mut record = RecordBuilder::default();
                for entry in entries {
                    record.push(entry);
                }
                record.payload().to_vec()
            })
            .collect();

        let dir = tempfile::tempdir().expect("tempdir");
        let sorted = Database::create(dir.path().join("sorted.redb")).expect("db");
        create_tables(&sorted).expect("tables");
        let tx = begin_durable_write(&sorted).expect("tx");
        replay_records(&tx, payloads.iter().map(Vec::as_slice), 99).expect("replay");
        tx.commit().expect("commit");

        let in_order = Database::create(dir.path().join("in_order.redb")).expect("db");
        create_tables(&in_order).expect("tables");
        let tx = begin_durable_write(&in_order).expect("tx");
        {
            let mut history = HistoryTables::open(&tx).expect("tables");
            let mut cursors = OpenCursorTables::default();
            for entry in records.iter().flatten() {
                replay(&tx, &mut history, &mut cursors, entry).expect("replay");
            }
            history.finish().expect("finish");
        }
        record_position(&tx, 99).expect("position");
        tx.commit().expect("commit");

        let rows = dump(&sorted);
        assert_eq!(rows, dump(&in_order));
        let edited = format!("{:?}", second_edit);
        assert!(
            rows.iter()
                .any(|row| row.starts_with("message (\"b\", 1)") && row.ends_with(&edited)),
            "the last amend wins: {rows:#?}"
        );
        assert!(
            rows.contains(&"read_cursors (\"a\", \"u\") = 2".to_owned()),
            "{rows:#?}"
        );
        assert!(rows.contains(&"last seq \"a\" = 3".to_owned()), "{rows:#?}");
        assert_eq!(covered_position(&sorted).expect("position"), 99);
    }

    #[test]
    fn a_record_for_an_unknown_cursor_table_is_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_dir = dir.path().join("log");
        let db = Database::create(dir.path().join("db.redb")).expect("db");
        create_tables(&db).expect("tables");
        let mut log = HistoryLog::start_after(&log_dir, 0).expect("log");
        let mut record = RecordBuilder::default();
        record.push(&LogEntry::Cursor {
            table: "no_such_table",
            scope: "c",
            name: "bob",
            seq: 2,
        });
        log.append(&mut record).expect("append");
        let error = recover(&db, &log_dir).err().expect("refused");
        assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
        assert_eq!(
            covered_position(&db).expect("position"),
            0,
            "nothing of a refused replay is committed"
        );
    }
}
