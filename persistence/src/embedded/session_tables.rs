//! The embedded MQTT session tables and the operations on them.
//!
//! - `mqtt_sessions`: session key -> encoded [`SessionRecord`] (see `session_codec`).
//! - `mqtt_queue`: `(session key, seq)` -> encoded queued message.
//! - `mqtt_inflight`: `(session key, seq)` -> `(packet id, stage)`.
//! - `mqtt_incoming_qos2`: `(session key, packet id)` -> `0`.
//!
//! Writes go through [`apply`] inside the session writer's transaction; a
//! load (everything, the index without messages, or one page of a queue) is
//! one read transaction.

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::session_codec;
use super::Failure;
use crate::sessions::{
    Inflight, InflightStage, SessionOp, StoredQueued, StoredSession, StoredSessionIndex,
};

/// Session descriptions by key.
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("mqtt_sessions");

/// Queued messages by `(key, seq)`.
const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("mqtt_queue");

/// In-flight state by `(key, seq)`: `(packet id, stage)`.
const INFLIGHT: TableDefinition<(&str, u64), (u16, u8)> = TableDefinition::new("mqtt_inflight");

/// QoS 2 packet ids awaiting PUBREL by `(key, packet id)`.
const INCOMING: TableDefinition<(&str, u16), u8> = TableDefinition::new("mqtt_incoming_qos2");

/// Creates the session tables if they do not exist yet.
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), Failure> {
    tx.open_table(SESSIONS)?;
    tx.open_table(QUEUE)?;
    tx.open_table(INFLIGHT)?;
    tx.open_table(INCOMING)?;
    Ok(())
}

fn stage_code(stage: InflightStage) -> u8 {
    match stage {
        InflightStage::AwaitingPuback => 1,
        InflightStage::AwaitingPubrec => 2,
        InflightStage::AwaitingPubcomp => 3,
    }
}

fn stage_of(code: u8) -> Option<InflightStage> {
    match code {
        1 => Some(InflightStage::AwaitingPuback),
        2 => Some(InflightStage::AwaitingPubrec),
        3 => Some(InflightStage::AwaitingPubcomp),
        _ => None,
    }
}

/// Applies `ops` in order inside `tx` (which the caller commits).
pub(super) fn apply(tx: &WriteTransaction, ops: &[SessionOp]) -> Result<(), Failure> {
    let mut sessions = tx.open_table(SESSIONS)?;
    let mut queue = tx.open_table(QUEUE)?;
    let mut inflight = tx.open_table(INFLIGHT)?;
    let mut incoming = tx.open_table(INCOMING)?;
    for op in ops {
        match op {
            SessionOp::Put(record) => {
                sessions.insert(
                    record.key.as_str(),
                    session_codec::encode_record(record).as_slice(),
                )?;
            }
            SessionOp::Delete { key } => {
                sessions.remove(key.as_str())?;
                remove_range(&mut queue, key)?;
                remove_range(&mut inflight, key)?;
                let pkids: Vec<u16> = incoming
                    .range((key.as_str(), 0)..=(key.as_str(), u16::MAX))?
                    .map(|entry| entry.map(|(k, _)| k.value().1))
                    .collect::<Result<_, _>>()?;
                for pkid in pkids {
                    incoming.remove((key.as_str(), pkid))?;
                }
            }
            SessionOp::Enqueue { key, seq, message } => {
                queue.insert(
                    (key.as_str(), *seq),
                    session_codec::encode_message(message).as_slice(),
                )?;
            }
            SessionOp::SetInflight {
                key,
                seq,
                inflight: state,
            } => {
                inflight.insert((key.as_str(), *seq), (state.pkid, stage_code(state.stage)))?;
            }
            SessionOp::Remove { key, seq } => {
                queue.remove((key.as_str(), *seq))?;
                inflight.remove((key.as_str(), *seq))?;
            }
            SessionOp::IncomingQos2 { key, pkid, pending } => {
                if *pending {
                    incoming.insert((key.as_str(), *pkid), 0)?;
                } else {
                    incoming.remove((key.as_str(), *pkid))?;
                }
            }
        }
    }
    Ok(())
}

/// Removes every `(key, seq)` entry of `key` from `table`.
fn remove_range<V: redb::Value + 'static>(
    table: &mut Table<'_, (&'static str, u64), V>,
    key: &str,
) -> Result<(), Failure> {
    let seqs: Vec<u64> = table
        .range((key, 0)..=(key, u64::MAX))?
        .map(|entry| entry.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for seq in seqs {
        table.remove((key, seq))?;
    }
    Ok(())
}

/// Every stored session, ordered by key.
pub(super) fn load(db: &Database) -> Result<Vec<StoredSession>, Failure> {
    let tx = db.begin_read()?;
    let sessions = tx.open_table(SESSIONS)?;
    let queue = tx.open_table(QUEUE)?;
    let inflight = tx.open_table(INFLIGHT)?;
    let incoming = tx.open_table(INCOMING)?;
    let mut out = Vec::new();
    for entry in sessions.iter()? {
        let (key, value) = entry?;
        let key = key.value();
        let record = session_codec::decode_record(key, value.value())?;
        let mut queued = Vec::new();
        for entry in queue.range((key, 0)..=(key, u64::MAX))? {
            let (k, v) = entry?;
            let seq = k.value().1;
            let state = match inflight.get((key, seq))? {
                Some(guard) => {
                    let (pkid, code) = guard.value();
                    stage_of(code).map(|stage| Inflight { pkid, stage })
                }
                None => None,
            };
            queued.push(StoredQueued {
                seq,
                message: session_codec::decode_message(key, seq, v.value())?,
                inflight: state,
            });
        }
        let incoming_qos2 = incoming
            .range((key, 0)..=(key, u16::MAX))?
            .map(|entry| entry.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        out.push(StoredSession {
            record,
            queued,
            incoming_qos2,
        });
    }
    Ok(out)
}

/// The in-flight state of `(key, seq)`, if it has one.
fn inflight_of(
    inflight: &redb::ReadOnlyTable<(&'static str, u64), (u16, u8)>,
    key: &str,
    seq: u64,
) -> Result<Option<Inflight>, Failure> {
    Ok(match inflight.get((key, seq))? {
        Some(guard) => {
            let (pkid, code) = guard.value();
            stage_of(code).map(|stage| Inflight { pkid, stage })
        }
        None => None,
    })
}

/// Every stored session without its messages, ordered by key.
pub(super) fn load_index(db: &Database) -> Result<Vec<StoredSessionIndex>, Failure> {
    let tx = db.begin_read()?;
    let sessions = tx.open_table(SESSIONS)?;
    let queue = tx.open_table(QUEUE)?;
    let inflight = tx.open_table(INFLIGHT)?;
    let incoming = tx.open_table(INCOMING)?;
    let mut out = Vec::new();
    for entry in sessions.iter()? {
        let (key, value) = entry?;
        let key = key.value();
        let mut index = StoredSessionIndex {
            record: session_codec::decode_record(key, value.value())?,
            queued_messages: 0,
            queued_bytes: 0,
            first_seq: 0,
            next_seq: 0,
            released: Vec::new(),
            incoming_qos2: Vec::new(),
        };
        for entry in queue.range((key, 0)..=(key, u64::MAX))? {
            let (k, v) = entry?;
            let seq = k.value().1;
            if index.next_seq == 0 {
                index.first_seq = seq;
            }
            index.next_seq = seq + 1;
            let released = inflight_of(&inflight, key, seq)?
                .is_some_and(|i| i.stage == InflightStage::AwaitingPubcomp);
            if released {
                index.released.push(seq);
            } else {
                index.queued_messages += 1;
                index.queued_bytes += v.value().len() as u64;
            }
        }
        index.incoming_qos2 = incoming
            .range((key, 0)..=(key, u16::MAX))?
            .map(|entry| entry.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        out.push(index);
    }
    Ok(out)
}

/// Up to `limit` queued messages of `key` from `from_seq` on, ascending.
pub(super) fn load_queue(
    db: &Database,
    key: &str,
    from_seq: u64,
    limit: usize,
) -> Result<Vec<StoredQueued>, Failure> {
    let tx = db.begin_read()?;
    let queue = tx.open_table(QUEUE)?;
    let inflight = tx.open_table(INFLIGHT)?;
    let mut out = Vec::new();
    for entry in queue.range((key, from_seq)..=(key, u64::MAX))?.take(limit) {
        let (k, v) = entry?;
        let seq = k.value().1;
        out.push(StoredQueued {
            seq,
            message: session_codec::decode_message(key, seq, v.value())?,
            inflight: inflight_of(&inflight, key, seq)?,
        });
    }
    Ok(out)
}
