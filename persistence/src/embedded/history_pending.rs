//! Rows the history writer has made durable in the history log that the
//! history applier has not written into the database yet.
//!
//! The writer checks and numbers every request against the database as a
//! read snapshot shows it plus these rows, so a request sees everything
//! logged before it, exactly as if each request had been written to the
//! database the moment it was logged. Each row is tagged with the log
//! position where its batch's record starts; once the database records a
//! position beyond that tag (the applier committed the batch), the snapshot
//! holds the row and [`PendingRows::prune`] drops it.
//!
//! A batch's own rows are collected in a [`PendingRows`] of their own while
//! it is checked, and joined to the writer's with [`PendingRows::merge`]
//! only once its record is durable: a batch that fails before that leaves
//! nothing behind.
//!
//! The maps hash with foldhash (randomly seeded per process, so ids a
//! client picks cannot aim at one bucket) rather than SipHash: every message
//! puts three rows and looks up two on the writer's thread. A batch's maps
//! are sized for its requests up front ([`PendingRows::with_capacity`]).

use foldhash::HashMap;
use foldhash::HashMapExt;

use super::history_log::LogEntry;

/// A row with the log position of the record that wrote it.
struct Tagged<T> {
    value: T,
    /// Where the record that wrote it starts in the history log.
    since: u64,
}

impl<T> Tagged<T> {
    /// A row of a batch still being checked: [`PendingRows::merge`] tags it.
    fn untagged(value: T) -> Tagged<T> {
        Tagged { value, since: 0 }
    }
}

/// Pending rows of the history tables and cursor tables, by key.
#[derive(Default)]
pub(super) struct PendingRows {
    /// Conversation id -> highest seq assigned.
    last_seqs: HashMap<String, Tagged<u64>>,
    /// [`client_key`] -> seq.
    client_ids: HashMap<String, Tagged<u64>>,
    /// `(conversation, seq)` -> the message row's encoded value.
    messages: HashMap<(String, u64), Tagged<Vec<u8>>>,
    /// [`cursor_key`] -> cursor.
    cursors: HashMap<String, Tagged<u64>>,
}

/// The key of an idempotency entry: each part length-prefixed, so no two
/// different triples share a key whatever characters the ids hold.
fn client_key(conversation: &str, sender: &str, client_message_id: &str) -> String {
    joined_key([conversation, sender, client_message_id])
}

/// `parts` as one string: the decimal length of each part but the last,
/// each followed by `:`, then the parts themselves; no two different lists
/// of parts give the same string.
fn joined_key<const N: usize>(parts: [&str; N]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 21).sum());
    if let Some((_, prefixed)) = parts.split_last() {
        for part in prefixed {
            key.push_str(itoa::Buffer::new().format(part.len()));
            key.push(':');
        }
    }
    for part in parts {
        key.push_str(part);
    }
    key
}

/// The key of a cursor, built like [`client_key`].
fn cursor_key(table: &str, scope: &str, name: &str) -> String {
    joined_key([table, scope, name])
}

impl PendingRows {
    /// Empty, with room for the rows of `messages` new messages without
    /// growing.
    pub(super) fn with_capacity(messages: usize) -> PendingRows {
        PendingRows {
            last_seqs: HashMap::new(),
            client_ids: HashMap::with_capacity(messages),
            messages: HashMap::with_capacity(messages),
            cursors: HashMap::new(),
        }
    }

    /// Whether no row is pending.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.last_seqs.is_empty()
            && self.client_ids.is_empty()
            && self.messages.is_empty()
            && self.cursors.is_empty()
    }

    /// The highest seq assigned in `conversation`, if a pending row holds it.
    pub(super) fn last_seq(&self, conversation: &str) -> Option<u64> {
        self.last_seqs.get(conversation).map(|t| t.value)
    }

    /// The seq of the message with this idempotency key, if pending.
    pub(super) fn client_seq(
        &self,
        conversation: &str,
        sender: &str,
        client_message_id: &str,
    ) -> Option<u64> {
        self.client_ids
            .get(&client_key(conversation, sender, client_message_id))
            .map(|t| t.value)
    }

    /// Message `seq`'s encoded row, if pending.
    pub(super) fn message(&self, conversation: &str, seq: u64) -> Option<&[u8]> {
        self.messages
            .get(&(conversation.to_owned(), seq))
            .map(|t| t.value.as_slice())
    }

    /// A cursor, if pending.
    pub(super) fn cursor(&self, table: &str, scope: &str, name: &str) -> Option<u64> {
        self.cursors
            .get(&cursor_key(table, scope, name))
            .map(|t| t.value)
    }

    /// Records the rows `entry` changes: a new message's row, idempotency
    /// entry and seq counter; a rewritten row; a moved cursor.
    pub(super) fn put(&mut self, entry: &LogEntry<'_>) {
        match *entry {
            LogEntry::Message {
                conversation,
                seq,
                sender,
                client_message_id,
                value,
            } => {
                match self.last_seqs.get_mut(conversation) {
                    Some(last) => last.value = last.value.max(seq),
                    None => {
                        self.last_seqs
                            .insert(conversation.to_owned(), Tagged::untagged(seq));
                    }
                }
                self.client_ids.insert(
                    client_key(conversation, sender, client_message_id),
                    Tagged::untagged(seq),
                );
                self.put_row(conversation, seq, value);
            }
            LogEntry::Rewritten {
                conversation,
                seq,
                value,
            } => self.put_row(conversation, seq, value),
            LogEntry::Cursor {
                table,
                scope,
                name,
                seq,
            } => {
                self.cursors
                    .insert(cursor_key(table, scope, name), Tagged::untagged(seq));
            }
        }
    }

    /// Records message `seq`'s encoded row (new or rewritten).
    fn put_row(&mut self, conversation: &str, seq: u64, value: &[u8]) {
        self.messages.insert(
            (conversation.to_owned(), seq),
            Tagged::untagged(value.to_vec()),
        );
    }

    /// Adds every row of `batch`, whose record starts at log position
    /// `since` and is durable, replacing older rows of the same keys.
    pub(super) fn merge(&mut self, batch: PendingRows, since: u64) {
        fn join<K: std::hash::Hash + Eq, T>(
            into: &mut HashMap<K, Tagged<T>>,
            from: HashMap<K, Tagged<T>>,
            since: u64,
        ) {
            into.extend(
                from.into_iter()
                    .map(|(key, row)| (key, Tagged { since, ..row })),
            );
        }
        join(&mut self.last_seqs, batch.last_seqs, since);
        join(&mut self.client_ids, batch.client_ids, since);
        join(&mut self.messages, batch.messages, since);
        join(&mut self.cursors, batch.cursors, since);
    }

    /// Drops every row whose record the database holds: those of records
    /// starting before `applied`, the log position the database records.
    pub(super) fn prune(&mut self, applied: u64) {
        let keep = |since: u64| since >= applied;
        self.last_seqs.retain(|_, row| keep(row.since));
        self.client_ids.retain(|_, row| keep(row.since));
        self.messages.retain(|_, row| keep(row.since));
        self.cursors.retain(|_, row| keep(row.since));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new message of alice's.
    fn message<'a>(
        conversation: &'a str,
        seq: u64,
        client_message_id: &'a str,
        value: &'a [u8],
    ) -> LogEntry<'a> {
        LogEntry::Message {
            conversation,
            seq,
            sender: "alice",
            client_message_id,
            value,
        }
    }

    #[test]
    fn rows_are_found_until_the_database_holds_their_record() {
        let mut batch = PendingRows::default();
        batch.put(&message("c", 1, "m1", b"row"));
        batch.put(&LogEntry::Cursor {
            table: "read",
            scope: "c",
            name: "bob",
            seq: 1,
        });
        let mut pending = PendingRows::default();
        pending.merge(batch, 100);
        assert_eq!(pending.last_seq("c"), Some(1));
        assert_eq!(pending.client_seq("c", "alice", "m1"), Some(1));
        assert_eq!(
            pending.client_seq("c", "alic", "em1"),
            None,
            "keys do not run together"
        );
        assert_eq!(pending.message("c", 1), Some(&b"row"[..]));
        assert_eq!(pending.cursor("read", "c", "bob"), Some(1));

        let mut later = PendingRows::default();
        later.put(&message("c", 2, "m2", b"two"));
        pending.merge(later, 200);
        pending.prune(100);
        assert_eq!(
            pending.last_seq("c"),
            Some(2),
            "the record at 100 is not applied yet"
        );
        pending.prune(150);
        assert_eq!(pending.client_seq("c", "alice", "m1"), None);
        assert_eq!(pending.cursor("read", "c", "bob"), None);
        assert_eq!(
            pending.last_seq("c"),
            Some(2),
            "rewritten by the later record"
        );
        pending.prune(250);
        assert!(pending.is_empty());
    }

    #[test]
    fn joined_keys_tell_every_split_apart() {
        assert_eq!(joined_key(["ab", "c", "d"]), "2:1:abcd");
        assert_ne!(joined_key(["ab", "c", "d"]), joined_key(["a", "bc", "d"]));
        assert_ne!(joined_key(["1:", "", "x"]), joined_key(["", "1:", "x"]));
        assert_eq!(joined_key(["", "", ""]), "0:0:");
        let long = "x".repeat(1234);
        assert!(joined_key([long.as_str(), "", ""]).starts_with("1234:0:x"));
    }

    #[test]
    fn a_counter_only_moves_up() {
        let mut batch = PendingRows::default();
        batch.put(&message("c", 5, "m5", b"x"));
        batch.put(&message("c", 3, "m3", b"y"));
        assert_eq!(batch.last_seq("c"), Some(5));
    }
}
