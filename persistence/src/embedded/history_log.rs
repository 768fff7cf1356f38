//! The history log: the append-only file where a history batch becomes durable.
//!
//! The history writer (see `group_commit`) appends one record per batch and
//! syncs it with `fdatasync` before the batch's redb transaction commits
//! (non-durably); redb is made durable only now and then, at a checkpoint.
//! This module owns the files and their format; what a record means and when
//! it is replayed live in `group_commit` and `history_recovery`.
//!
//! **Files.** Segments in `{data_dir}/history-log/`, each named after the log
//! position of its first byte (`history-{position:020}.log`). A position is a
//! byte offset into the log as a whole, so segments follow one another: a
//! segment starts where the one before it ended. The writer only appends to
//! the newest segment; after a checkpoint every segment is obsolete, so they
//! are all deleted and the next record opens a new segment.
//!
//! **Framing.** A record is `len: u32`, `crc: u32` (CRC-32 of the payload),
//! then `len` payload bytes, integers little-endian. A payload is a version
//! byte ([`RECORD_VERSION`]) followed by entries, each a tag byte and its
//! fields (strings and byte strings as `u32` length + bytes, seqs as `u64`):
//!
//! | tag | entry | fields |
//! |-----|-------|--------|
//! | `1` | [`LogEntry::Message`] | conversation, seq, sender, client message id, encoded message |
//! | `2` | [`LogEntry::Rewritten`] | conversation, seq, encoded message |
//! | `3` | [`LogEntry::Cursor`] | cursor table name, scope, name, seq |
//!
//! **Reading back.** [`read_segments`] checks every record. A record that is
//! short or fails its checksum at the very end of the newest segment is a torn
//! write that was never acknowledged (its batch was not answered before the
//! sync returned), so reading stops there. The same damage anywhere else, or
//! a gap between segments, is [`HistoryLogError::Corrupt`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The name of the log's directory inside the data directory.
pub const HISTORY_LOG_DIR: &str = "history-log";

/// The version byte every record payload starts with.
const RECORD_VERSION: u8 = 1;

/// Bytes before a record's payload: its length and its checksum.
const HEADER_LEN: usize = 8;

/// The largest payload a record may have (a batch is bounded far below it).
const MAX_PAYLOAD: usize = u32::MAX as usize;

/// Entry tag of [`LogEntry::Message`].
const TAG_MESSAGE: u8 = 1;
/// Entry tag of [`LogEntry::Rewritten`].
const TAG_REWRITTEN: u8 = 2;
/// Entry tag of [`LogEntry::Cursor`].
const TAG_CURSOR: u8 = 3;

/// Why the history log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryLogError {
    /// A file operation failed.
    #[error("history log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The log holds damage that is not a torn final write, or does not
    /// continue where the database's checkpoint says it should.
    #[error("history log is corrupt: {0}")]
    Corrupt(String),
}

impl From<HistoryLogError> for crate::StoreError {
    fn from(error: HistoryLogError) -> Self {
        match error {
            HistoryLogError::Io { .. } => crate::StoreError::Unavailable(error.to_string()),
            HistoryLogError::Corrupt(_) => crate::StoreError::Corrupt(error.to_string()),
        }
    }
}

/// One change a history batch made, as its record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LogEntry<'a> {
    /// A new message: its row, its idempotency entry and its seq counter.
    Message {
        /// The conversation.
        conversation: &'a str,
        /// The seq it was given.
        seq: u64,
        /// The sender (part of the idempotency key).
        sender: &'a str,
        /// The sender's client message id (part of the idempotency key).
        client_message_id: &'a str,
        /// The message row's encoded value.
        value: &'a [u8],
    },
    /// An existing message row written again (an amend's target).
    Rewritten {
        /// The conversation.
        conversation: &'a str,
        /// The message's seq.
        seq: u64,
        /// The message row's new encoded value.
        value: &'a [u8],
    },
    /// A cursor moved forward.
    Cursor {
        /// The cursor table's name.
        table: &'a str,
        /// The first part of the cursor's key.
        scope: &'a str,
        /// The second part of the cursor's key.
        name: &'a str,
        /// Where it moved to.
        seq: u64,
    },
}

/// Builds one batch's record; reused from batch to batch.
pub(super) struct RecordBuilder {
    bytes: Vec<u8>,
    entries: usize,
}

impl Default for RecordBuilder {
    fn default() -> Self {
        let mut builder = RecordBuilder {
            bytes: Vec::new(),
            entries: 0,
        };
        builder.clear();
        builder
    }
}

impl RecordBuilder {
    /// Starts a new, empty record.
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.bytes.extend_from_slice(&[0; HEADER_LEN]);
        self.bytes.push(RECORD_VERSION);
        self.entries = 0;
    }

    /// How many entries the record holds.
    pub(super) fn entries(&self) -> usize {
        self.entries
    }

    /// Adds `entry`.
    pub(super) fn push(&mut self, entry: &LogEntry<'_>) {
        self.entries += 1;
        match entry {
            LogEntry::Message {
                conversation,
                seq,
                sender,
                client_message_id,
                value,
            } => {
                self.bytes.push(TAG_MESSAGE);
                self.put_bytes(conversation.as_bytes());
                self.bytes.extend_from_slice(&seq.to_le_bytes());
                self.put_bytes(sender.as_bytes());
                self.put_bytes(client_message_id.as_bytes());
                self.put_bytes(value);
            }
            LogEntry::Rewritten {
                conversation,
                seq,
                value,
            } => {
                self.bytes.push(TAG_REWRITTEN);
                self.put_bytes(conversation.as_bytes());
                self.bytes.extend_from_slice(&seq.to_le_bytes());
                self.put_bytes(value);
            }
            LogEntry::Cursor {
                table,
                scope,
                name,
                seq,
            } => {
                self.bytes.push(TAG_CURSOR);
                self.put_bytes(table.as_bytes());
                self.put_bytes(scope.as_bytes());
                self.put_bytes(name.as_bytes());
                self.bytes.extend_from_slice(&seq.to_le_bytes());
            }
        }
    }

    fn put_bytes(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("a field of a history record fits in u32");
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(bytes);
    }

    /// The record's payload (its entries), as [`entries`] decodes it.
    pub(super) fn payload(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// The framed record: header filled in, ready to append.
    fn framed(&mut self) -> &[u8] {
        let payload_len = self.bytes.len() - HEADER_LEN;
        assert!(payload_len <= MAX_PAYLOAD, "a history record fits in u32");
        let crc = crc32fast::hash(&self.bytes[HEADER_LEN..]);
        self.bytes[..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        self.bytes[4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        &self.bytes
    }
}

/// Decodes a record's payload into its entries.
pub(super) fn entries(payload: &[u8]) -> Result<Vec<LogEntry<'_>>, HistoryLogError> {
    let mut reader = Reader { rest: payload };
    match reader.byte()? {
        RECORD_VERSION => {}
        other => {
            return Err(HistoryLogError::Corrupt(format!(
                "unknown record version {other}"
            )))
        }
    }
    let mut entries = Vec::new();
    while !reader.rest.is_empty() {
        let entry = match reader.byte()? {
            TAG_MESSAGE => LogEntry::Message {
                conversation: reader.str()?,
                seq: reader.u64()?,
                sender: reader.str()?,
                client_message_id: reader.str()?,
                value: reader.bytes()?,
            },
            TAG_REWRITTEN => LogEntry::Rewritten {
                conversation: reader.str()?,
                seq: reader.u64()?,
                value: reader.bytes()?,
            },
            TAG_CURSOR => LogEntry::Cursor {
                table: reader.str()?,
                scope: reader.str()?,
                name: reader.str()?,
                seq: reader.u64()?,
            },
            other => {
                return Err(HistoryLogError::Corrupt(format!(
                    "unknown record entry tag {other}"
                )))
            }
        };
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads the fields of a payload in order.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], HistoryLogError> {
        if self.rest.len() < len {
            return Err(HistoryLogError::Corrupt(
                "a record entry ends early".to_owned(),
            ));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, HistoryLogError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, HistoryLogError> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self) -> Result<&'a [u8], HistoryLogError> {
        let len = self.take(4)?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'a str, HistoryLogError> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| HistoryLogError::Corrupt("a record string is not UTF-8".to_owned()))
    }
}

/// The open log, appended to by the history writer alone.
pub(super) struct HistoryLog {
    dir: PathBuf,
    /// The newest segment, once a record has been appended since the last
    /// checkpoint (or since opening).
    segment: Option<File>,
    /// The log position after the last record.
    end: u64,
}

impl HistoryLog {
    /// Opens the log in `dir` to append after position `end`, deleting every
    /// segment there: the caller has made everything they held durable in the
    /// database (replaying them first if needed).
    pub(super) fn start_after(dir: &Path, end: u64) -> Result<HistoryLog, HistoryLogError> {
        let mut log = HistoryLog {
            dir: dir.to_owned(),
            segment: None,
            end,
        };
        log.checkpointed()?;
        Ok(log)
    }

    /// The log position after the last record.
    pub(super) fn end(&self) -> u64 {
        self.end
    }

    /// Appends `record` and syncs it to disk; returns the log position after it.
    ///
    /// After an error the log's tail is unknown: the caller must append nothing more.
    pub(super) fn append(&mut self, record: &mut RecordBuilder) -> Result<u64, HistoryLogError> {
        let framed = record.framed();
        if self.segment.is_none() {
            let path = self.dir.join(segment_name(self.end));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|source| HistoryLogError::Io { path, source })?;
            // The new file's name must be durable before anything in it counts.
            sync_dir(&self.dir)?;
            self.segment = Some(file);
        }
        let file = self.segment.as_mut().expect("opened above");
        let io = |source| HistoryLogError::Io {
            path: self.dir.join(segment_name(self.end)),
            source,
        };
        file.write_all(framed).map_err(io)?;
        file.sync_data().map_err(io)?;
        self.end += framed.len() as u64;
        Ok(self.end)
    }

    /// Marks the log up to `position` as durable in the database: if that is
    /// all of it, see [`HistoryLog::checkpointed`]; otherwise every segment
    /// that ends at or before `position` is deleted, and the next record
    /// starts a new segment, so the one being written can go at a later
    /// checkpoint.
    pub(super) fn checkpointed_up_to(&mut self, position: u64) -> Result<(), HistoryLogError> {
        if position >= self.end {
            return self.checkpointed();
        }
        self.segment = None;
        let segments = list_segments(&self.dir)?;
        let mut deleted = false;
        for pair in segments.windows(2) {
            if pair[1].start <= position {
                fs::remove_file(&pair[0].path).map_err(|source| HistoryLogError::Io {
                    path: pair[0].path.clone(),
                    source,
                })?;
                deleted = true;
            }
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Marks everything appended so far as durable in the database: every
    /// segment is deleted and the next record starts a new one.
    pub(super) fn checkpointed(&mut self) -> Result<(), HistoryLogError> {
        self.segment = None;
        for segment in list_segments(&self.dir)? {
            fs::remove_file(&segment.path).map_err(|source| HistoryLogError::Io {
                path: segment.path.clone(),
                source,
            })?;
        }
        sync_dir(&self.dir)
    }
}

/// The file name of the segment starting at log position `start`.
fn segment_name(start: u64) -> String {
    format!("history-{start:020}.log")
}

/// One segment file.
#[derive(Debug)]
struct SegmentFile {
    start: u64,
    path: PathBuf,
}

/// The segments in `dir` in log order, creating `dir` if it is missing.
fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, HistoryLogError> {
    let io = |source| HistoryLogError::Io {
        path: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(start) = name
            .to_str()
            .and_then(|n| n.strip_prefix("history-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        segments.push(SegmentFile {
            start,
            path: entry.path(),
        });
    }
    segments.sort_by_key(|s| s.start);
    Ok(segments)
}

/// Syncs `dir` so that files created or removed in it stay so after a crash.
fn sync_dir(dir: &Path) -> Result<(), HistoryLogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| HistoryLogError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// What [`read_segments`] found after the covered position.
#[derive(Debug, Default)]
pub(super) struct LogTail {
    /// Complete records after the covered position, in order, each with the
    /// log position after it.
    pub(super) records: Vec<(u64, Vec<u8>)>,
    /// Bytes of a torn final write that were dropped.
    pub(super) torn_bytes: u64,
}

/// Reads the log in `dir` for every complete record that ends after
/// `covered`, the position the database is known to hold everything up to.
///
/// Segments wholly before `covered` are skipped; bytes a segment holds past
/// the start of the next one are a torn write that an earlier recovery left
/// behind, and are ignored.
pub(super) fn read_segments(dir: &Path, covered: u64) -> Result<LogTail, HistoryLogError> {
    let segments = list_segments(dir)?;
    // The segment holding `covered`: the last one starting at or before it.
    let first = segments.iter().rposition(|s| s.start <= covered);
    let relevant = match first {
        Some(first) => &segments[first..],
        None => match segments.first() {
            Some(segment) => {
                return Err(HistoryLogError::Corrupt(format!(
                    "the database holds the history up to log position {covered}, \
                     but the log starts later, at {} ({})",
                    segment.start,
                    segment.path.display()
                )))
            }
            None => &[],
        },
    };
    let mut tail = LogTail::default();
    for (index, segment) in relevant.iter().enumerate() {
        let next_start = relevant.get(index + 1).map(|next| next.start);
        let bytes = fs::read(&segment.path).map_err(|source| HistoryLogError::Io {
            path: segment.path.clone(),
            source,
        })?;
        let limit = match next_start {
            Some(next) => {
                let len = next.checked_sub(segment.start).ok_or_else(|| {
                    HistoryLogError::Corrupt(format!("{} overlaps", segment.path.display()))
                })?;
                usize::try_from(len).unwrap_or(usize::MAX).min(bytes.len())
            }
            None => bytes.len(),
        };
        let mut offset = 0usize;
        while offset < limit {
            let position = segment.start + offset as u64;
            let frame = match frame_at(&bytes[..limit], offset) {
                Ok(frame) => frame,
                Err(damage) => {
                    let is_tail = next_start.is_none() && damage.reaches_end;
                    if is_tail {
                        tail.torn_bytes = (limit - offset) as u64;
                        tracing::warn!(
                            segment = %segment.path.display(),
                            position,
                            bytes = tail.torn_bytes,
                            "dropping a torn write at the end of the history log"
                        );
                        break;
                    }
                    return Err(HistoryLogError::Corrupt(format!(
                        "{} at log position {position} ({}): {}",
                        damage.reason,
                        segment.path.display(),
                        if next_start.is_some() {
                            "not the newest segment"
                        } else {
                            "more records follow"
                        }
                    )));
                }
            };
            offset = frame.end;
            let end = segment.start + offset as u64;
            if end > covered {
                if position < covered {
                    return Err(HistoryLogError::Corrupt(format!(
                        "the database's log position {covered} falls inside the record \
                         at {position} ({})",
                        segment.path.display()
                    )));
                }
                tail.records.push((end, frame.payload.to_vec()));
            }
        }
        if let Some(next) = next_start {
            if segment.start + (offset as u64) < next {
                return Err(HistoryLogError::Corrupt(format!(
                    "{} ends at log position {}, but the next segment starts at {next}",
                    segment.path.display(),
                    segment.start + offset as u64
                )));
            }
        }
    }
    Ok(tail)
}

/// A checked record in a segment.
struct Frame<'a> {
    payload: &'a [u8],
    /// The offset after the record.
    end: usize,
}

/// Why the bytes at an offset are not a record.
struct Damage {
    reason: String,
    /// Whether the damage could be a write cut short: the record it claims
    /// to be reaches the end of the segment (or beyond).
    reaches_end: bool,
}

/// The record at `offset` of `bytes`, checked.
fn frame_at(bytes: &[u8], offset: usize) -> Result<Frame<'_>, Damage> {
    let rest = &bytes[offset..];
    if rest.len() < HEADER_LEN {
        return Err(Damage {
            reason: "a record header is cut short".to_owned(),
            reaches_end: true,
        });
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..HEADER_LEN].try_into().expect("4 bytes"));
    let end = HEADER_LEN.saturating_add(len);
    if rest.len() < end {
        return Err(Damage {
            reason: format!("a record of {len} bytes is cut short"),
            reaches_end: true,
        });
    }
    let payload = &rest[HEADER_LEN..end];
    if crc32fast::hash(payload) != crc {
        return Err(Damage {
            reason: "a record fails its checksum".to_owned(),
            reaches_end: rest.len() == end,
        });
    }
    Ok(Frame {
        payload,
        end: offset + end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> LogEntry<'static> {
        LogEntry::Message {
            conversation: "c",
            seq,
            sender: "alice",
            client_message_id: "m",
            value: b"encoded",
        }
    }

    /// Appends one record per entry list; returns each record's end.
    fn append_records(log: &mut HistoryLog, records: &[Vec<LogEntry<'_>>]) -> Vec<u64> {
        let mut builder = RecordBuilder::default();
        records
            .iter()
            .map(|entries| {
                builder.clear();
                for entry in entries {
                    builder.push(entry);
                }
                log.append(&mut builder).expect("append")
            })
            .collect()
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let segments = list_segments(dir).expect("list");
        assert_eq!(segments.len(), 1, "{segments:?}");
        segments[0].path.clone()
    }

    #[test]
    fn records_read_back_with_their_entries_and_positions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = HistoryLog::start_after(dir.path(), 100).expect("open");
        let all = vec![
            message(1),
            LogEntry::Rewritten {
                conversation: "c",
                seq: 1,
                value: b"amended",
            },
            LogEntry::Cursor {
                table: "read_cursors",
                scope: "c",
                name: "bob",
                seq: 1,
            },
        ];
        let ends = append_records(&mut log, &[all.clone(), vec![message(2)]]);
        assert_eq!(log.end(), ends[1]);

        let tail = read_segments(dir.path(), 100).expect("read");
        assert_eq!(tail.torn_bytes, 0);
        assert_eq!(
            tail.records.iter().map(|(end, _)| *end).collect::<Vec<_>>(),
            ends
        );
        assert_eq!(entries(&tail.records[0].1).expect("decode"), all);
        assert_eq!(
            entries(&tail.records[1].1).expect("decode"),
            vec![message(2)]
        );

        // Records the database already covers are not handed back.
        let tail = read_segments(dir.path(), ends[0]).expect("read");
        assert_eq!(tail.records.len(), 1);
        assert_eq!(tail.records[0].0, ends[1]);
        assert!(read_segments(dir.path(), ends[1])
            .expect("read")
            .records
            .is_empty());
    }

    #[test]
    fn a_torn_final_write_is_dropped() {
        for cut in [3usize, HEADER_LEN, HEADER_LEN + 4] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut log = HistoryLog::start_after(dir.path(), 0).expect("open");
            let ends = append_records(&mut log, &[vec![message(1)], vec![message(2)]]);
            let path = only_segment(dir.path());
            let file = OpenOptions::new().write(true).open(&path).expect("open");
            file.set_len(ends[1] - cut as u64).expect("truncate");

            let tail = read_segments(dir.path(), 0).expect("a torn tail is not an error");
            assert_eq!(tail.records.len(), 1, "cut {cut}");
            assert_eq!(tail.records[0].0, ends[0]);
            assert_eq!(tail.torn_bytes, ends[1] - ends[0] - cut as u64);
        }
    }

    #[test]
    fn a_final_record_with_a_bad_checksum_is_a_torn_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = HistoryLog::start_after(dir.path(), 0).expect("open");
        let ends = append_records(&mut log, &[vec![message(1)], vec![message(2)]]);
        let path = only_segment(dir.path());
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).expect("write");
        let tail = read_segments(dir.path(), 0).expect("read");
        assert_eq!(tail.records.len(), 1);
        assert_eq!(tail.torn_bytes, ends[1] - ends[0]);
    }

    #[test]
    fn damage_before_the_last_record_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = HistoryLog::start_after(dir.path(), 0).expect("open");
        let ends = append_records(
            &mut log,
            &[vec![message(1)], vec![message(2)], vec![message(3)]],
        );
        let path = only_segment(dir.path());
        let mut bytes = fs::read(&path).expect("read");
        // A byte in the payload of the second record.
        bytes[ends[0] as usize + HEADER_LEN + 2] ^= 0xff;
        fs::write(&path, &bytes).expect("write");
        let error = read_segments(dir.path(), 0).expect_err("corruption in the middle");
        assert!(
            matches!(&error, HistoryLogError::Corrupt(why) if why.contains("checksum")),
            "{error}"
        );
        assert!(matches!(
            crate::StoreError::from(error),
            crate::StoreError::Corrupt(_)
        ));
        // Even when the database covers the damaged record, a damaged log is not trusted.
        assert!(read_segments(dir.path(), ends[1]).is_err());
    }

    #[test]
    fn a_log_that_starts_after_the_checkpoint_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = HistoryLog::start_after(dir.path(), 500).expect("open");
        append_records(&mut log, &[vec![message(1)]]);
        let error = read_segments(dir.path(), 400).expect_err("a gap");
        assert!(matches!(error, HistoryLogError::Corrupt(_)), "{error}");
    }

    #[test]
    fn a_checkpoint_deletes_the_segments_and_the_next_record_starts_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = HistoryLog::start_after(dir.path(), 0).expect("open");
        let first = append_records(&mut log, &[vec![message(1)]])[0];
        log.checkpointed().expect("checkpoint");
        assert!(list_segments(dir.path()).expect("list").is_empty());
        let second = append_records(&mut log, &[vec![message(2)]])[0];
        let segments = list_segments(dir.path()).expect("list");
        assert_eq!(segments.len(), 1);
        assert_eq!(
            segments[0].start, first,
            "positions continue across segments"
        );
        let tail = read_segments(dir.path(), first).expect("read");
        assert_eq!(tail.records.len(), 1);
        assert_eq!(tail.records[0].0, second);
    }

    #[test]
    fn a_partial_checkpoint_keeps_the_segment_it_falls_in_and_rolls_to_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = HistoryLog::start_after(dir.path(), 0).expect("open");
        let ends = append_records(&mut log, &[vec![message(1)], vec![message(2)]]);
        log.checkpointed_up_to(ends[0])
            .expect("checkpoint inside the segment");
        assert_eq!(
            list_segments(dir.path()).expect("list").len(),
            1,
            "still needed"
        );
        let third = append_records(&mut log, &[vec![message(3)]])[0];
        let segments = list_segments(dir.path()).expect("list");
        assert_eq!(segments.len(), 2, "the next record starts a new segment");
        assert_eq!(segments[1].start, ends[1]);
        let tail = read_segments(dir.path(), ends[0]).expect("read");
        let positions: Vec<u64> = tail.records.iter().map(|(end, _)| *end).collect();
        assert_eq!(positions, vec![ends[1], third], "recovery still finds both");

        log.checkpointed_up_to(ends[1])
            .expect("checkpoint at the segment's end");
        let segments = list_segments(dir.path()).expect("list");
        assert_eq!(
            segments.len(),
            1,
            "the first segment is covered and deleted"
        );
        assert_eq!(segments[0].start, ends[1]);
        log.checkpointed_up_to(third)
            .expect("checkpoint of everything");
        assert!(list_segments(dir.path()).expect("list").is_empty());
    }

    #[test]
    fn a_torn_segment_left_behind_by_a_recovery_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = HistoryLog::start_after(dir.path(), 0).expect("open");
        let ends = append_records(&mut log, &[vec![message(1)]]);
        // A torn write after the first record, then a newer segment starting
        // at the first record's end (as a recovery that crashed before
        // deleting the old segment would leave it).
        let old = only_segment(dir.path());
        let mut file = OpenOptions::new().append(true).open(&old).expect("open");
        file.write_all(&[7, 0, 0]).expect("torn bytes");
        drop(log);
        let mut log = HistoryLog {
            dir: dir.path().to_owned(),
            segment: None,
            end: ends[0],
        };
        let second = append_records(&mut log, &[vec![message(2)]])[0];
        let tail = read_segments(dir.path(), 0).expect("read");
        assert_eq!(
            tail.records.iter().map(|(end, _)| *end).collect::<Vec<_>>(),
            vec![ends[0], second]
        );
    }

    #[test]
    fn payloads_that_do_not_decode_are_corrupt() {
        assert!(entries(&[]).is_err());
        assert!(entries(&[9]).is_err(), "unknown version");
        assert!(entries(&[RECORD_VERSION, 42]).is_err(), "unknown tag");
        assert!(
            entries(&[RECORD_VERSION, TAG_CURSOR, 5, 0, 0, 0, b'a']).is_err(),
            "short field"
        );
        assert_eq!(entries(&[RECORD_VERSION]).expect("empty record"), vec![]);
    }
}
