//! Durable MQTT sessions in PostgreSQL ([`PostgresSessions`]): the
//! [`SessionStore`] of one node of a cluster, and the [`SessionHandover`]
//! that moves sessions between nodes.
//!
//! Tables (migration 5): `mqtt_sessions` (one row per session: its owner
//! node, a pending handover, its encoded description), `mqtt_queue` (queued
//! messages by `(session, seq)` with their in-flight stage) and
//! `mqtt_incoming_qos2`. Values use the embedded store's encodings.
//!
//! **Group commit.** [`SessionStore::apply`] queues its ops for one writer
//! task, which takes every call queued at that moment and applies them in
//! one transaction (one WAL flush), then answers each caller. Within the
//! transaction, consecutive ops of one kind become one statement over
//! arrays (`unnest`), so a fan-out of a message to a thousand sessions is
//! one `INSERT`.
//!
//! **Ownership.** Each transaction first locks (`FOR SHARE`) the rows of
//! the sessions it touches and drops the ops of sessions another node owns
//! (counted in [`SessionHandover::ignored_ops`]): once a session was handed
//! over or taken from a dead node, its former owner cannot change it any
//! more, and a handover (an `UPDATE` of the row) waits for a commit that
//! touches the session to end.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::failure::{self, column, Context};
use super::PostgresStore;
use crate::embedded::session_codec;
use crate::sessions::{
    Inflight, InflightStage, SessionHandover, SessionOp, SessionOwner, SessionStore, StoredQueued,
    StoredSession, StoredSessionIndex,
};
use crate::StoreError;

/// Most `apply` calls one transaction takes.
const MAX_CALLS: usize = 256;

/// Whether the lease of the node in column `s.owner_node` is live.
const OWNER_IS_LIVE: &str = "EXISTS (SELECT 1 FROM node_leases l \
     WHERE l.node_id = s.owner_node AND l.expires_at > now())";

/// The index columns of a session `s`, in the order [`index_from_row`] reads them.
const INDEX_SELECT: &str = "SELECT s.session_key, s.record, q.messages, q.bytes, q.first_seq, \
     q.last_seq, q.released, i.pkids FROM mqtt_sessions s \
     LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE stage IS DISTINCT FROM 3) AS messages, \
         COALESCE(sum(length(message)) FILTER (WHERE stage IS DISTINCT FROM 3), 0)::bigint AS bytes, \
         min(seq) AS first_seq, max(seq) AS last_seq, \
         COALESCE(array_agg(seq ORDER BY seq) FILTER (WHERE stage = 3), '{}') AS released \
         FROM mqtt_queue WHERE session_key = s.session_key) q ON true \
     LEFT JOIN LATERAL (SELECT COALESCE(array_agg(pkid ORDER BY pkid), '{}') AS pkids \
         FROM mqtt_incoming_qos2 WHERE session_key = s.session_key) i ON true";

/// One queued `apply` call and where its answer goes.
struct Job {
    ops: Vec<SessionOp>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// The persistent MQTT sessions of node `node_id` in a PostgreSQL store
/// shared by a cluster. Cheap to clone; clones share the writer.
#[derive(Clone)]
pub struct PostgresSessions {
    store: PostgresStore,
    node_id: u16,
    jobs: mpsc::UnboundedSender<Job>,
    ignored: Arc<AtomicU64>,
    /// Sessions whose changes were dropped, not yet taken.
    foreign: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for PostgresSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSessions")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// The persistent MQTT sessions of node `node_id`: changes through a
    /// group-commit writer task (started on the current Tokio runtime, ended
    /// when the last clone is dropped), loads of the sessions it owns.
    pub fn sessions(&self, node_id: u16) -> PostgresSessions {
        let (jobs, queue) = mpsc::unbounded_channel();
        let ignored = Arc::new(AtomicU64::new(0));
        let foreign = Arc::new(Mutex::new(BTreeSet::new()));
        let writer = Writer {
            pool: self.pool.clone(),
            timeout: self.operation_timeout,
            node: i32::from(node_id),
            ignored: ignored.clone(),
            foreign: foreign.clone(),
        };
        tokio::spawn(writer.run(queue));
        PostgresSessions {
            store: self.clone(),
            node_id,
            jobs,
            ignored,
            foreign,
        }
    }
}

impl PostgresSessions {
    fn node(&self) -> i32 {
        i32::from(self.node_id)
    }

    /// The index of the sessions matched by `condition` (on `s`, with `$1`).
    async fn index_where(
        &self,
        condition: &str,
        param: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<Vec<StoredSessionIndex>, StoreError> {
        let client = self.store.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "{INDEX_SELECT} WHERE {condition} ORDER BY s.session_key"
            ))
            .await
            .context("preparing the MQTT session index")?;
        let rows = client
            .query(&statement, &[param])
            .await
            .context("reading the MQTT session index")?;
        rows.iter().map(index_from_row).collect()
    }
}

#[async_trait]
impl SessionStore for PostgresSessions {
    async fn apply(&self, ops: Vec<SessionOp>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { ops, reply })
            .map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }

    async fn load(&self) -> Result<Vec<StoredSession>, StoreError> {
        self.store
            .timed("loading MQTT sessions", async {
                let client = self.store.client().await?;
                let sessions = client
                    .query(
                        "SELECT s.session_key, s.record, COALESCE((SELECT array_agg(pkid ORDER BY pkid) \
                         FROM mqtt_incoming_qos2 i WHERE i.session_key = s.session_key), '{}') \
                         FROM mqtt_sessions s WHERE owner_node = $1 ORDER BY session_key",
                        &[&self.node()],
                    )
                    .await
                    .context("reading MQTT sessions")?;
                let queued = client
                    .query(
                        "SELECT q.session_key, q.seq, q.message, q.pkid, q.stage FROM mqtt_queue q \
                         JOIN mqtt_sessions s ON s.session_key = q.session_key \
                         WHERE s.owner_node = $1 ORDER BY q.session_key, q.seq",
                        &[&self.node()],
                    )
                    .await
                    .context("reading MQTT session queues")?;
                let mut by_key: HashMap<String, Vec<StoredQueued>> = HashMap::new();
                for row in &queued {
                    let key: String = column(row, 0)?;
                    let message = queued_from_row(&key, row, 1)?;
                    by_key.entry(key).or_default().push(message);
                }
                sessions
                    .iter()
                    .map(|row| {
                        let key: String = column(row, 0)?;
                        let record = session_codec::decode_record(&key, column(row, 1)?)?;
                        Ok(StoredSession {
                            queued: by_key.remove(&key).unwrap_or_default(),
                            incoming_qos2: pkids(column(row, 2)?)?,
                            record,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn load_index(&self) -> Result<Vec<StoredSessionIndex>, StoreError> {
        self.store
            .timed(
                "loading the MQTT session index",
                self.index_where("s.owner_node = $1", &self.node()),
            )
            .await
    }

    async fn load_queue(
        &self,
        key: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredQueued>, StoreError> {
        let Ok(from) = i64::try_from(from_seq) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.store
            .timed("reading a page of an MQTT session queue", async {
                let client = self.store.client().await?;
                let statement = client
                    .prepare_cached(
                        "SELECT seq, message, pkid, stage FROM mqtt_queue \
                         WHERE session_key = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                    )
                    .await
                    .context("preparing a queue page")?;
                let rows = client
                    .query(&statement, &[&key, &from, &limit])
                    .await
                    .context("reading a queue page")?;
                rows.iter()
                    .map(|row| queued_from_row(key, row, 0))
                    .collect()
            })
            .await
    }
}

#[async_trait]
impl SessionHandover for PostgresSessions {
    fn node_id(&self) -> u16 {
        self.node_id
    }

    fn ignored_ops(&self) -> u64 {
        self.ignored.load(Ordering::Relaxed)
    }

    fn take_foreign(&self) -> Vec<String> {
        let mut foreign = self.foreign.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *foreign).into_iter().collect()
    }

    async fn owner(&self, key: &str) -> Result<Option<SessionOwner>, StoreError> {
        self.store
            .timed("reading an MQTT session's owner", async {
                let client = self.store.client().await?;
                let statement = client
                    .prepare_cached(&format!(
                        "SELECT s.owner_node, s.handover_to, {OWNER_IS_LIVE} \
                         FROM mqtt_sessions s WHERE s.session_key = $1"
                    ))
                    .await
                    .context("preparing the owner query")?;
                let Some(row) = client
                    .query_opt(&statement, &[&key])
                    .await
                    .context("reading an MQTT session's owner")?
                else {
                    return Ok(None);
                };
                Ok(Some(SessionOwner {
                    node_id: node_from_db(column(&row, 0)?)?,
                    handover_to: column::<Option<i32>>(&row, 1)?
                        .map(node_from_db)
                        .transpose()?,
                    live: column(&row, 2)?,
                }))
            })
            .await
    }

    async fn take_from_dead(&self, key: &str, from: u16) -> Result<bool, StoreError> {
        self.update_one(
            "taking an MQTT session from a dead node",
            &format!(
                "UPDATE mqtt_sessions s SET owner_node = $3, handover_to = NULL \
                 WHERE s.session_key = $1 AND s.owner_node = $2 AND NOT {OWNER_IS_LIVE}"
            ),
            key,
            from,
        )
        .await
    }

    async fn request_handover(&self, key: &str, from: u16) -> Result<bool, StoreError> {
        self.update_one(
            "asking for an MQTT session",
            "UPDATE mqtt_sessions SET handover_to = $3 \
             WHERE session_key = $1 AND owner_node = $2",
            key,
            from,
        )
        .await
    }

    async fn cancel_handover(&self, key: &str) -> Result<(), StoreError> {
        self.store
            .timed("withdrawing an MQTT session handover", async {
                let client = self.store.client().await?;
                client
                    .execute(
                        "UPDATE mqtt_sessions SET handover_to = NULL \
                         WHERE session_key = $1 AND handover_to IS NOT NULL \
                         AND (owner_node = $2 OR handover_to = $2)",
                        &[&key, &self.node()],
                    )
                    .await
                    .context("withdrawing an MQTT session handover")?;
                Ok(())
            })
            .await
    }

    async fn handovers_requested(&self) -> Result<Vec<(String, u16)>, StoreError> {
        self.store
            .timed("reading requested MQTT session handovers", async {
                let client = self.store.client().await?;
                let statement = client
                    .prepare_cached(
                        "SELECT session_key, handover_to FROM mqtt_sessions \
                         WHERE owner_node = $1 AND handover_to IS NOT NULL",
                    )
                    .await
                    .context("preparing the handover query")?;
                let rows = client
                    .query(&statement, &[&self.node()])
                    .await
                    .context("reading requested handovers")?;
                rows.iter()
                    .map(|row| Ok((column(row, 0)?, node_from_db(column(row, 1)?)?)))
                    .collect()
            })
            .await
    }

    async fn hand_over(&self, key: &str, to: u16) -> Result<bool, StoreError> {
        self.store
            .timed("handing an MQTT session over", async {
                let client = self.store.client().await?;
                let changed = client
                    .execute(
                        "UPDATE mqtt_sessions SET owner_node = $3, handover_to = NULL \
                         WHERE session_key = $1 AND owner_node = $2 AND handover_to = $3",
                        &[&key, &self.node(), &i32::from(to)],
                    )
                    .await
                    .context("handing an MQTT session over")?;
                Ok(changed > 0)
            })
            .await
    }

    async fn load_one(&self, key: &str) -> Result<Option<StoredSessionIndex>, StoreError> {
        let key = key.to_owned();
        // The node id is a number, not client input.
        let mine = format!("s.session_key = $1 AND s.owner_node = {}", self.node());
        let found = self
            .store
            .timed("loading an MQTT session", self.index_where(&mine, &key))
            .await?;
        Ok(found.into_iter().next())
    }

    async fn adopt_orphans(&self) -> Result<Vec<StoredSessionIndex>, StoreError> {
        let keys: Vec<String> = self
            .store
            .timed("adopting the MQTT sessions of dead nodes", async {
                let client = self.store.client().await?;
                let rows = client
                    .query(
                        &format!(
                            "UPDATE mqtt_sessions s SET owner_node = $1, handover_to = NULL \
                             WHERE s.owner_node <> $1 AND NOT {OWNER_IS_LIVE} \
                             RETURNING s.session_key"
                        ),
                        &[&self.node()],
                    )
                    .await
                    .context("adopting the MQTT sessions of dead nodes")?;
                rows.iter().map(|row| column(row, 0)).collect()
            })
            .await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let adopted = self
            .store
            .timed(
                "loading adopted MQTT sessions",
                self.index_where("s.session_key = ANY($1)", &keys),
            )
            .await;
        adopted
    }
}

impl PostgresSessions {
    /// Runs `sql` (`$1` key, `$2` node `other`, `$3` this node); `true` if
    /// it changed a row.
    async fn update_one(
        &self,
        what: &str,
        sql: &str,
        key: &str,
        other: u16,
    ) -> Result<bool, StoreError> {
        self.store
            .timed(what, async {
                let client = self.store.client().await?;
                let changed = client
                    .execute(sql, &[&key, &i32::from(other), &self.node()])
                    .await
                    .context(what)?;
                Ok(changed > 0)
            })
            .await
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the PostgreSQL MQTT session writer has stopped".to_owned())
}

/// The writer task of one node's session changes.
struct Writer {
    pool: Pool,
    timeout: Duration,
    node: i32,
    ignored: Arc<AtomicU64>,
    foreign: Arc<Mutex<BTreeSet<String>>>,
}

impl Writer {
    /// One transaction per batch of queued calls, until every sender is gone.
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_CALLS);
        while queue.recv_many(&mut jobs, MAX_CALLS).await > 0 {
            let ops: Vec<&SessionOp> = jobs.iter().flat_map(|job| job.ops.iter()).collect();
            let outcome = match tokio::time::timeout(self.timeout, self.commit(&ops)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(StoreError::Unavailable(format!(
                    "storing MQTT session changes: PostgreSQL did not answer within {:?}",
                    self.timeout
                ))),
            };
            match &outcome {
                Ok((ignored, keys)) if *ignored > 0 => {
                    self.ignored.fetch_add(*ignored, Ordering::Relaxed);
                    tracing::warn!(
                        ops = ignored,
                        sessions = keys.len(),
                        "MQTT session changes ignored: their sessions are owned by another node"
                    );
                    self.foreign
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(keys.iter().cloned());
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, calls = jobs.len(), "MQTT session batch failed");
                }
            }
            for job in jobs.drain(..) {
                let answer = match &outcome {
                    Ok(_) => Ok(()),
                    Err(error) => Err(StoreError::Unavailable(error.to_string())),
                };
                // The caller may have stopped waiting; the batch stands regardless.
                let _ = job.reply.send(answer);
            }
        }
    }

    /// Applies `ops` in order in one transaction; returns how many were
    /// dropped because another node owns their session, and those sessions.
    async fn commit(&self, ops: &[&SessionOp]) -> Result<(u64, Vec<String>), StoreError> {
        let mut client = self.pool.get().await.map_err(failure::pool_error)?;
        let tx = client
            .transaction()
            .await
            .context("starting an MQTT session batch")?;
        let keys: Vec<&str> = ops
            .iter()
            .map(|op| key_of(op))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let locked = tx
            .query(
                "SELECT session_key, owner_node FROM mqtt_sessions \
                 WHERE session_key = ANY($1) ORDER BY session_key FOR SHARE",
                &[&keys],
            )
            .await
            .context("locking MQTT sessions")?;
        let mut foreign: HashSet<String> = HashSet::new();
        for row in &locked {
            if column::<i32>(row, 1)? != self.node {
                foreign.insert(column(row, 0)?);
            }
        }
        let mut ignored = 0u64;
        let mut dropped: BTreeSet<String> = BTreeSet::new();
        let mut start = 0;
        while start < ops.len() {
            let kind = std::mem::discriminant(ops[start]);
            let end = ops[start..]
                .iter()
                .position(|op| std::mem::discriminant(*op) != kind)
                .map_or(ops.len(), |n| start + n);
            let mut run: Vec<&SessionOp> = Vec::with_capacity(end - start);
            for op in &ops[start..end] {
                if foreign.contains(key_of(op)) {
                    dropped.insert(key_of(op).to_owned());
                } else {
                    run.push(op);
                }
            }
            ignored += (end - start - run.len()) as u64;
            if !run.is_empty() {
                apply_run(&tx, self.node, &run, &mut foreign).await?;
            }
            start = end;
        }
        tx.commit()
            .await
            .context("committing an MQTT session batch")?;
        Ok((ignored, dropped.into_iter().collect()))
    }
}

fn key_of(op: &SessionOp) -> &str {
    match op {
        SessionOp::Put(record) => &record.key,
        SessionOp::Delete { key }
        | SessionOp::Enqueue { key, .. }
        | SessionOp::SetInflight { key, .. }
        | SessionOp::Remove { key, .. }
        | SessionOp::IncomingQos2 { key, .. } => key,
    }
}

fn seq_to_db(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq)
        .map_err(|_| StoreError::Unavailable(format!("MQTT session seq {seq} is out of range")))
}

/// Applies a run of ops of one kind (none of a foreign session) as one
/// statement per table; a Put that finds the session owned by another node
/// adds it to `foreign`.
async fn apply_run(
    tx: &Transaction<'_>,
    node: i32,
    run: &[&SessionOp],
    foreign: &mut HashSet<String>,
) -> Result<(), StoreError> {
    match run[0] {
        SessionOp::Put(_) => {
            let mut latest: HashMap<&str, Vec<u8>> = HashMap::new();
            for op in run {
                if let SessionOp::Put(record) = op {
                    latest.insert(&record.key, session_codec::encode_record(record));
                }
            }
            let (keys, records): (Vec<&str>, Vec<Vec<u8>>) = latest.into_iter().unzip();
            let rows = tx
                .query(
                    "INSERT INTO mqtt_sessions (session_key, owner_node, record) \
                     SELECT k, $2, r FROM unnest($1::text[], $3::bytea[]) AS u(k, r) \
                     ON CONFLICT (session_key) DO UPDATE SET record = EXCLUDED.record \
                     WHERE mqtt_sessions.owner_node = EXCLUDED.owner_node \
                     RETURNING session_key",
                    &[&keys, &node, &records],
                )
                .await
                .context("storing MQTT session descriptions")?;
            let stored: HashSet<String> = rows
                .iter()
                .map(|row| column(row, 0))
                .collect::<Result<_, _>>()?;
            foreign.extend(
                keys.iter()
                    .filter(|k| !stored.contains(**k))
                    .map(|k| (*k).to_owned()),
            );
        }
        SessionOp::Delete { .. } => {
            let keys: Vec<&str> = run.iter().map(|op| key_of(op)).collect();
            tx.execute(
                "DELETE FROM mqtt_queue WHERE session_key = ANY($1)",
                &[&keys],
            )
            .await
            .context("deleting MQTT session queues")?;
            tx.execute(
                "DELETE FROM mqtt_incoming_qos2 WHERE session_key = ANY($1)",
                &[&keys],
            )
            .await
            .context("deleting MQTT session QoS 2 ids")?;
            tx.execute(
                "DELETE FROM mqtt_sessions WHERE session_key = ANY($1) AND owner_node = $2",
                &[&keys, &node],
            )
            .await
            .context("deleting MQTT sessions")?;
        }
        SessionOp::Enqueue { .. } => {
            let mut latest: HashMap<(&str, u64), Vec<u8>> = HashMap::new();
            for op in run {
                if let SessionOp::Enqueue { key, seq, message } = op {
                    latest.insert((key, *seq), session_codec::encode_message(message));
                }
            }
            let mut keys = Vec::with_capacity(latest.len());
            let mut seqs = Vec::with_capacity(latest.len());
            let mut messages = Vec::with_capacity(latest.len());
            for ((key, seq), message) in latest {
                keys.push(key);
                seqs.push(seq_to_db(seq)?);
                messages.push(message);
            }
            tx.execute(
                "INSERT INTO mqtt_queue (session_key, seq, message) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[]) \
                 ON CONFLICT (session_key, seq) DO UPDATE SET message = EXCLUDED.message",
                &[&keys, &seqs, &messages],
            )
            .await
            .context("queueing MQTT messages")?;
        }
        SessionOp::SetInflight { .. } => {
            let mut latest: HashMap<(&str, u64), Inflight> = HashMap::new();
            for op in run {
                if let SessionOp::SetInflight { key, seq, inflight } = op {
                    latest.insert((key, *seq), *inflight);
                }
            }
            let mut keys = Vec::with_capacity(latest.len());
            let mut seqs = Vec::with_capacity(latest.len());
            let mut pkids = Vec::with_capacity(latest.len());
            let mut stages = Vec::with_capacity(latest.len());
            for ((key, seq), inflight) in latest {
                keys.push(key);
                seqs.push(seq_to_db(seq)?);
                pkids.push(i32::from(inflight.pkid));
                stages.push(stage_code(inflight.stage));
            }
            tx.execute(
                "UPDATE mqtt_queue q SET pkid = u.p, stage = u.st \
                 FROM unnest($1::text[], $2::bigint[], $3::int[], $4::smallint[]) AS u(k, s, p, st) \
                 WHERE q.session_key = u.k AND q.seq = u.s",
                &[&keys, &seqs, &pkids, &stages],
            )
            .await
            .context("recording MQTT in-flight states")?;
        }
        SessionOp::Remove { .. } => {
            let mut keys = Vec::with_capacity(run.len());
            let mut seqs = Vec::with_capacity(run.len());
            for op in run {
                if let SessionOp::Remove { key, seq } = op {
                    keys.push(key.as_str());
                    seqs.push(seq_to_db(*seq).unwrap_or(i64::MAX));
                }
            }
            tx.execute(
                "DELETE FROM mqtt_queue q USING unnest($1::text[], $2::bigint[]) AS u(k, s) \
                 WHERE q.session_key = u.k AND q.seq = u.s",
                &[&keys, &seqs],
            )
            .await
            .context("removing delivered MQTT messages")?;
        }
        SessionOp::IncomingQos2 { .. } => {
            let mut latest: HashMap<(&str, u16), bool> = HashMap::new();
            for op in run {
                if let SessionOp::IncomingQos2 { key, pkid, pending } = op {
                    latest.insert((key, *pkid), *pending);
                }
            }
            let (mut add_keys, mut add_ids, mut drop_keys, mut drop_ids) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((key, pkid), pending) in latest {
                if pending {
                    add_keys.push(key);
                    add_ids.push(i32::from(pkid));
                } else {
                    drop_keys.push(key);
                    drop_ids.push(i32::from(pkid));
                }
            }
            tx.execute(
                "INSERT INTO mqtt_incoming_qos2 (session_key, pkid) \
                 SELECT * FROM unnest($1::text[], $2::int[]) ON CONFLICT DO NOTHING",
                &[&add_keys, &add_ids],
            )
            .await
            .context("recording QoS 2 packet ids")?;
            tx.execute(
                "DELETE FROM mqtt_incoming_qos2 i USING unnest($1::text[], $2::int[]) AS u(k, p) \
                 WHERE i.session_key = u.k AND i.pkid = u.p",
                &[&drop_keys, &drop_ids],
            )
            .await
            .context("releasing QoS 2 packet ids")?;
        }
    }
    Ok(())
}

fn stage_code(stage: InflightStage) -> i16 {
    match stage {
        InflightStage::AwaitingPuback => 1,
        InflightStage::AwaitingPubrec => 2,
        InflightStage::AwaitingPubcomp => 3,
    }
}

fn stage_of(code: i16) -> Option<InflightStage> {
    match code {
        1 => Some(InflightStage::AwaitingPuback),
        2 => Some(InflightStage::AwaitingPubrec),
        3 => Some(InflightStage::AwaitingPubcomp),
        _ => None,
    }
}

fn node_from_db(node: i32) -> Result<u16, StoreError> {
    u16::try_from(node).map_err(|_| StoreError::Corrupt(format!("MQTT session on node id {node}")))
}

fn seq_from_db(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("MQTT session seq {seq}")))
}

fn pkids(stored: Vec<i32>) -> Result<Vec<u16>, StoreError> {
    stored
        .into_iter()
        .map(|p| u16::try_from(p).map_err(|_| StoreError::Corrupt(format!("packet id {p}"))))
        .collect()
}

/// A queued message from columns `first..first + 4` (seq, message, pkid, stage).
fn queued_from_row(
    key: &str,
    row: &tokio_postgres::Row,
    first: usize,
) -> Result<StoredQueued, StoreError> {
    let seq = seq_from_db(column(row, first)?)?;
    let message = session_codec::decode_message(key, seq, column(row, first + 1)?)?;
    let pkid: Option<i32> = column(row, first + 2)?;
    let stage: Option<i16> = column(row, first + 3)?;
    let inflight = match (pkid, stage.and_then(stage_of)) {
        (Some(pkid), Some(stage)) => Some(Inflight {
            pkid: u16::try_from(pkid)
                .map_err(|_| StoreError::Corrupt(format!("packet id {pkid}")))?,
            stage,
        }),
        _ => None,
    };
    Ok(StoredQueued {
        seq,
        message,
        inflight,
    })
}

/// A session index from a row of [`INDEX_SELECT`].
fn index_from_row(row: &tokio_postgres::Row) -> Result<StoredSessionIndex, StoreError> {
    let key: String = column(row, 0)?;
    let record = session_codec::decode_record(&key, column(row, 1)?)?;
    let messages: i64 = column(row, 2)?;
    let bytes: i64 = column(row, 3)?;
    let first: Option<i64> = column(row, 4)?;
    let last: Option<i64> = column(row, 5)?;
    let released: Vec<i64> = column(row, 6)?;
    Ok(StoredSessionIndex {
        record,
        queued_messages: u64::try_from(messages).unwrap_or(0),
        queued_bytes: u64::try_from(bytes).unwrap_or(0),
        first_seq: first.map(seq_from_db).transpose()?.unwrap_or(0),
        next_seq: last.map(seq_from_db).transpose()?.map_or(0, |s| s + 1),
        released: released
            .into_iter()
            .map(seq_from_db)
            .collect::<Result<_, _>>()?,
        incoming_qos2: pkids(column(row, 7)?)?,
    })
}
