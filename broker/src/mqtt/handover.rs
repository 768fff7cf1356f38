//! Persistent sessions that move between the nodes of a cluster sharing a
//! PostgreSQL store ([`SessionMoves`]).
//!
//! Each stored session is owned by one node: the one whose router holds it
//! and whose journal writes it. Before a CONNECT attaches to the router,
//! [`SessionMoves::acquire`] makes this node the owner of the client's
//! session:
//!
//! - not stored, or stored as this node's: nothing to do (the session is
//!   loaded into the router if it is not there yet);
//! - owned by a node whose lease is not live: taken over in one `UPDATE`
//!   and loaded (description and queue summary; the queue is read back in
//!   pages once the client attached);
//! - owned by a live node: asked for (the row's `handover_to`); that node
//!   ([`SessionMoves::run`], every `session_handover_poll_ms`) drops the
//!   session from its router (a connection attached there is ended as taken
//!   over), waits until everything its journal recorded is committed, and
//!   then hands the row over; this node sees it its own and loads it. Past
//!   `session_handover_timeout_ms` the CONNECT is refused with Server
//!   Unavailable ([`MoveRefused`]).
//!
//! The same task adopts the sessions of dead nodes (every sweep interval):
//! they are loaded as disconnected sessions into this node's router, so new
//! messages that match them are queued again. `docs/sessions.md` ("Sessions
//! in a cluster") states the rules and what a move can miss.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parley_engine::router::Router;
use persistence::{SessionHandover, StoreError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::durable::{self, DurableSessions};

/// What moved, for `/metrics`.
#[derive(Debug, Default)]
pub struct MoveCounts {
    /// Sessions this node took from a live node that handed them over.
    pub handed_in: AtomicU64,
    /// Sessions this node handed to another node that asked for them.
    pub handed_out: AtomicU64,
    /// Sessions this node took from a dead node for a connecting client.
    pub taken_from_dead: AtomicU64,
    /// Sessions of dead nodes this node adopted while their clients were away.
    pub adopted: AtomicU64,
    /// CONNECTs refused because the session's node did not hand it over in time.
    pub refused: AtomicU64,
    /// Store operations of moves that failed.
    pub store_errors: AtomicU64,
}

/// Why a connection could not get its session onto this node.
#[derive(Debug, thiserror::Error)]
pub enum MoveRefused {
    /// The node holding the session did not hand it over in time.
    #[error("node {node} did not hand the session over within {waited:?}")]
    TimedOut {
        /// The node holding the session.
        node: u16,
        /// How long the connection waited.
        waited: Duration,
    },
    /// The store failed.
    #[error("the session store failed: {0}")]
    Store(#[from] StoreError),
}

/// This node's part in moving sessions between nodes.
pub struct SessionMoves {
    store: Arc<dyn SessionHandover>,
    router: Arc<Router>,
    durable: Arc<DurableSessions>,
    wait: Duration,
    poll: Duration,
    /// What moved.
    pub counts: MoveCounts,
}

impl std::fmt::Debug for SessionMoves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionMoves")
            .field("node_id", &self.store.node_id())
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl SessionMoves {
    /// Moves through `store` for `router`, whose journal is `durable`; a
    /// connection waits at most `wait` for a live node's handover, and
    /// requests are looked for every `poll`.
    pub fn new(
        store: Arc<dyn SessionHandover>,
        router: Arc<Router>,
        durable: Arc<DurableSessions>,
        wait: Duration,
        poll: Duration,
    ) -> Arc<SessionMoves> {
        Arc::new(SessionMoves {
            store,
            router,
            durable,
            wait,
            poll,
            counts: MoveCounts::default(),
        })
    }

    /// Makes this node the owner of session `key` and loads it into the
    /// router if it is stored, before a CONNECT of it attaches.
    ///
    /// # Errors
    ///
    /// [`MoveRefused`] if the session's live node did not hand it over
    /// within the bound, or the store failed.
    pub async fn acquire(&self, key: &str) -> Result<(), MoveRefused> {
        let me = self.store.node_id();
        let started = Instant::now();
        let mut asked_from = None;
        loop {
            let owner = match self.store.owner(key).await {
                Ok(owner) => owner,
                Err(e) => return Err(self.store_failed(e)),
            };
            match owner {
                None => return Ok(()),
                Some(owner) if owner.node_id == me => {
                    if owner.handover_to.is_some() {
                        // An older connection elsewhere asked for it; this
                        // one is newer and keeps it here.
                        if let Err(e) = self.store.cancel_handover(key).await {
                            return Err(self.store_failed(e));
                        }
                    }
                    if asked_from.is_some() {
                        self.counts.handed_in.fetch_add(1, Ordering::Relaxed);
                        info!(session = %key, from_node = ?asked_from, "session handed over by its node");
                    }
                    return self.load(key).await;
                }
                Some(owner) if !owner.live => {
                    match self.store.take_from_dead(key, owner.node_id).await {
                        Ok(true) => {
                            self.counts.taken_from_dead.fetch_add(1, Ordering::Relaxed);
                            info!(session = %key, from_node = owner.node_id, "session taken from a dead node");
                            return self.load(key).await;
                        }
                        // Someone else moved it meanwhile: look again.
                        Ok(false) => continue,
                        Err(e) => return Err(self.store_failed(e)),
                    }
                }
                Some(owner) => {
                    if owner.handover_to != Some(me) {
                        if let Err(e) = self.store.request_handover(key, owner.node_id).await {
                            return Err(self.store_failed(e));
                        }
                    }
                    asked_from = Some(owner.node_id);
                    let waited = started.elapsed();
                    if waited >= self.wait {
                        // Withdrawn, then looked at once more: a handover
                        // that landed just before the withdrawal is kept.
                        if let Err(e) = self.store.cancel_handover(key).await {
                            return Err(self.store_failed(e));
                        }
                        if let Ok(Some(now)) = self.store.owner(key).await {
                            if now.node_id == me {
                                self.counts.handed_in.fetch_add(1, Ordering::Relaxed);
                                return self.load(key).await;
                            }
                        }
                        self.counts.refused.fetch_add(1, Ordering::Relaxed);
                        return Err(MoveRefused::TimedOut {
                            node: owner.node_id,
                            waited,
                        });
                    }
                    tokio::time::sleep(self.poll.min(self.wait - waited)).await;
                }
            }
        }
    }

    /// Loads stored session `key` (now this node's) into the router unless
    /// it is there already.
    async fn load(&self, key: &str) -> Result<(), MoveRefused> {
        if self.router.session_stats(key).is_some() {
            return Ok(());
        }
        match self.store.load_one(key).await {
            Ok(Some(session)) => {
                durable::restore(&self.router, session);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(self.store_failed(e)),
        }
    }

    /// Changes of this node the store dropped because another node owned
    /// their session.
    pub fn ignored_ops(&self) -> u64 {
        self.store.ignored_ops()
    }

    fn store_failed(&self, error: StoreError) -> MoveRefused {
        self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
        MoveRefused::Store(error)
    }

    /// Hands over the sessions other nodes ask for, every `poll`, and
    /// adopts the sessions of dead nodes every `adopt_every`, until `shutdown`.
    pub async fn run(self: Arc<Self>, adopt_every: Duration, shutdown: CancellationToken) {
        let mut requests = tokio::time::interval(self.poll);
        requests.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut adoptions = tokio::time::interval(adopt_every);
        adoptions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = requests.tick() => {
                    self.drop_foreign();
                    self.hand_over_requested().await;
                }
                _ = adoptions.tick() => self.adopt_orphans().await,
            }
        }
    }

    /// Drops from the router the sessions the store found owned by another
    /// node (this node was cut off or paused past its lease while they were
    /// taken), so nothing more is acknowledged for them here.
    pub fn drop_foreign(&self) {
        for key in self.store.take_foreign() {
            if self.router.release(&key).is_some() {
                warn!(session = %key, "dropped a session another node owns now");
            }
        }
    }

    /// Hands every session another node asked for to that node.
    pub async fn hand_over_requested(&self) {
        let requested = match self.store.handovers_requested().await {
            Ok(requested) => requested,
            Err(e) => {
                self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "could not read the sessions other nodes ask for");
                return;
            }
        };
        for (key, to) in requested {
            // From here on nothing on this node changes the session (a
            // connection attached to it is ended as taken over), and once
            // what the journal recorded so far is durable the store holds
            // the session's final state.
            self.router.release(&key);
            self.durable.wait(self.durable.latest()).await;
            match self.store.hand_over(&key, to).await {
                Ok(true) => {
                    self.counts.handed_out.fetch_add(1, Ordering::Relaxed);
                    info!(session = %key, to_node = to, "session handed over to another node");
                }
                Ok(false) => {}
                Err(e) => {
                    self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(session = %key, to_node = to, error = %e, "could not hand a session over; trying again");
                }
            }
        }
    }

    /// Takes the sessions of nodes whose lease expired into this node.
    pub async fn adopt_orphans(&self) {
        match self.store.adopt_orphans().await {
            Ok(adopted) if adopted.is_empty() => {}
            Ok(adopted) => {
                let count = adopted.len();
                for session in adopted {
                    durable::restore(&self.router, session);
                }
                self.counts
                    .adopted
                    .fetch_add(count as u64, Ordering::Relaxed);
                info!(
                    sessions = count,
                    "adopted the persistent sessions of dead nodes"
                );
            }
            Err(e) => {
                self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "could not adopt the sessions of dead nodes");
            }
        }
    }
}
