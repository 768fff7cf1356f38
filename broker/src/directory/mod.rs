//! The session directory as a node uses it: which node each live MQTT
//! session of the cluster is on, so that a client connecting anywhere takes
//! its session over wherever the old connection is, and presence, push and
//! rate limits see a user's sessions on every node.
//!
//! - The **store** ([`persistence::SessionDirectory`], PostgreSQL) holds the
//!   truth: a connection claims its (user, client id) when it passes
//!   CONNECT and removes it when it ends; entries live as long as their
//!   node's lease, so a dead node's expire with it and a **sweeper** on
//!   every node removes them.
//! - Every change is announced on the cluster bus ([`events`], keyed by the
//!   user), and every node keeps a **cache** of the whole directory
//!   ([`cache`]) from a snapshot read at start and those changes.
//! - A claim that replaced a session on another node reaches that node as
//!   the change announcing the newer generation; it ends the older
//!   connection with DISCONNECT 0x8E (MQTT 5) or by closing it (3.1.1).
//! - A persistent session whose connection ended keeps its entry, marked
//!   detached, until it expires on its node: deliveries to its user still
//!   go there ([`crate::targeting`]), but presence, push and rate limits no
//!   longer count it.
//! - [`presence`] decides cluster-wide presence from the same changes.
//!
//! Only a cluster (a bus, on PostgreSQL) has a directory; a single node
//! costs nothing. `docs/cluster.md` ("Session directory") has the design.

pub mod cache;
pub mod events;
pub mod presence;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use chat_core::ids::UserId;
use chat_core::topics::presence_topic;
use parley_proto::v1::{envelope::Kind, Envelope, Presence, PresenceState};
use persistence::{DirectoryEntry, SessionDirectory, StoreError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::chat::UserNodes;
use crate::cluster::{Deliveries, Fanout};
use crate::mqtt::sessions::SessionRegistry;
use cache::DirectoryCache;
use events::{DirectoryEvent, DIRECTORY_TOPIC};
use presence::{Action, PresenceMachine};

/// One local connection's claim: its registry id and, once the store
/// answered, its entry.
struct LocalClaim {
    connection: u64,
    entry: Option<DirectoryEntry>,
}

/// What the directory guards with one lock.
struct State {
    cache: DirectoryCache,
    /// This node's connections by (user, client id).
    local: HashMap<(String, String), LocalClaim>,
    presence: PresenceMachine,
}

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct DirectoryCounts {
    /// Local connections ended because a connection on another node took
    /// their session over.
    pub taken_over: AtomicU64,
    /// Entries of dead nodes this node removed.
    pub expired: AtomicU64,
    /// Store operations that failed (the session then works on its node
    /// but is not known to the others).
    pub store_errors: AtomicU64,
}

/// A detached session kept longer than this (one that never expires) keeps
/// its directory entry until its node leaves.
const MAX_DETACHED: Duration = Duration::from_secs(366 * 24 * 3600);

/// How many locks serialise this node's claims (by a hash of the key).
const CLAIM_LOCKS: usize = 64;

/// A node's view of, and part in, the session directory.
pub struct ClusterDirectory {
    store: Arc<dyn SessionDirectory>,
    /// Claims of one key from this node run one at a time, so a quick
    /// reconnect's claim always commits after the one it replaces.
    claim_locks: Vec<tokio::sync::Mutex<()>>,
    node_id: u16,
    deliveries: Deliveries,
    sessions: Arc<SessionRegistry>,
    offline_delay: Duration,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    /// What the directory did, for `/metrics`.
    pub counts: DirectoryCounts,
    this: Weak<ClusterDirectory>,
}

impl ClusterDirectory {
    /// The directory of node `node_id`: claims go to `store`, changes and
    /// presence to `deliveries` (the bus), takeovers end connections of
    /// `sessions`, and a user is shown offline `offline_delay` after their
    /// last session anywhere ended. Call [`ClusterDirectory::start`] once
    /// the node consumes the bus.
    pub fn new(
        store: Arc<dyn SessionDirectory>,
        node_id: u16,
        deliveries: Deliveries,
        sessions: Arc<SessionRegistry>,
        offline_delay: Duration,
    ) -> Arc<ClusterDirectory> {
        let mut cache = DirectoryCache::new();
        cache.begin_loading();
        Arc::new_cyclic(|this| ClusterDirectory {
            store,
            claim_locks: (0..CLAIM_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            node_id,
            deliveries,
            sessions,
            offline_delay,
            state: Mutex::new(State {
                cache,
                local: HashMap::new(),
                presence: PresenceMachine::new(node_id),
            }),
            changed: watch::Sender::new(0),
            counts: DirectoryCounts::default(),
            this: this.clone(),
        })
    }

    /// Removes what an earlier run of this node id left in the store (a
    /// crash), loads every live entry into the cache, and starts the sweeper
    /// that removes dead nodes' entries every `sweep_every`, until
    /// `shutdown`. The node must already consume the bus, so no change is
    /// missed between the snapshot and the changes.
    ///
    /// # Errors
    ///
    /// If the store cannot be read.
    pub async fn start(
        &self,
        sweep_every: Duration,
        shutdown: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<(), StoreError> {
        let left_behind = self.store.clear_node(self.node_id).await?;
        if !left_behind.is_empty() {
            info!(
                sessions = left_behind.len(),
                "removed this node id's directory entries from an earlier run"
            );
        }
        for entry in left_behind {
            self.announce(DirectoryEvent::Left(entry));
        }
        let live = self.store.live().await?;
        let detached = self.store.detached().await?;
        let (sessions, users) = {
            let mut state = self.lock();
            state.cache.load(live, detached);
            state.cache.totals()
        };
        info!(sessions, users, "session directory loaded");
        self.changed.send_modify(|n| *n += 1);
        if let Some(this) = self.this.upgrade() {
            tasks.spawn(this.sweep(sweep_every, shutdown));
        }
        Ok(())
    }

    /// Removes this node's entries at shutdown (its connections are closed
    /// by then) and waits until the bus has the changes.
    pub async fn leave(&self) {
        match self.store.clear_node(self.node_id).await {
            Ok(entries) => {
                // Queued together (one bus batch), then awaited.
                let mut pending = Vec::with_capacity(entries.len());
                for entry in entries {
                    let event = DirectoryEvent::Left(entry);
                    let (outgoing, done) =
                        self.deliveries
                            .outgoing(&event.entry().user, 1, fanout(&event));
                    self.deliveries.send(outgoing);
                    pending.push(done);
                }
                for done in pending {
                    if let Err(e) = done.wait().await {
                        warn!(error = %e, "could not announce a session's end at shutdown");
                    }
                }
            }
            Err(e) => {
                self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "could not remove this node's directory entries; they expire with its lease");
            }
        }
    }

    /// Connection `connection` of `user` with `client_id` passed CONNECT on
    /// this node; [`ClusterDirectory::claim`] follows.
    pub fn connected(&self, user: &str, client_id: &str, connection: u64) {
        self.lock().local.insert(
            (user.to_owned(), client_id.to_owned()),
            LocalClaim {
                connection,
                entry: None,
            },
        );
    }

    /// Claims the session in the store and announces it. If a newer claim
    /// on another node is already known, the connection is ended at once.
    pub async fn claim(&self, user: &str, client_id: &str, connection: u64) {
        let _serialised = self.claim_lock(user, client_id).lock().await;
        let (entry, replaced) = match self.store.claim(user, client_id, self.node_id).await {
            Ok(claimed) => claimed,
            Err(e) => {
                self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(%user, %client_id, error = %e, "could not claim the session in the directory");
                return;
            }
        };
        if let Some(replaced) = &replaced {
            if replaced.node_id != self.node_id {
                info!(%user, %client_id, from_node = replaced.node_id, "session taken over from another node");
            }
        }
        let (mine, superseded) = {
            let mut state = self.lock();
            let key = (user.to_owned(), client_id.to_owned());
            let mine = match state.local.get_mut(&key) {
                Some(claim) if claim.connection == connection => {
                    claim.entry = Some(entry.clone());
                    true
                }
                _ => false,
            };
            let superseded =
                state
                    .cache
                    .current(user, client_id)
                    .is_some_and(|(node, generation)| {
                        node != self.node_id && generation > entry.generation
                    });
            (mine, superseded)
        };
        if !mine {
            // A newer connection of the key on this node replaced this one
            // while the claim was under way; its claim waits for this lock,
            // so this entry is still the current one: remove it, and the
            // newer claim starts from an empty row.
            if let Err(e) = self.store.remove(&entry).await {
                self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(%user, %client_id, error = %e, "could not remove a replaced claim");
            }
            return;
        }
        self.announce(DirectoryEvent::Joined(entry));
        if superseded && self.sessions.take_over(user, client_id, connection) {
            self.counts.taken_over.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connection `connection` of `user` with `client_id` ended: its entry
    /// is removed (unless taken over meanwhile) and its end announced. If
    /// its persistent session stays on this node for `kept_for`, the entry
    /// is marked detached instead, and removed once that much time passed
    /// without a newer claim.
    pub async fn disconnected(
        &self,
        user: &str,
        client_id: &str,
        connection: u64,
        kept_for: Option<Duration>,
    ) {
        let entry = {
            let mut state = self.lock();
            let key = (user.to_owned(), client_id.to_owned());
            match state.local.get(&key) {
                Some(claim) if claim.connection == connection => {
                    state.local.remove(&key).and_then(|claim| claim.entry)
                }
                _ => None,
            }
        };
        let Some(entry) = entry else {
            return;
        };
        if let Some(kept_for) = kept_for {
            match self.store.detach(&entry).await {
                Ok(true) => {
                    self.announce(DirectoryEvent::Detached(entry.clone()));
                    self.remove_after(entry, kept_for);
                    return;
                }
                // Taken over meanwhile: announce the end below.
                Ok(false) => {}
                Err(e) => {
                    self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(%user, %client_id, error = %e, "could not mark the session detached in the directory");
                }
            }
        }
        self.remove_and_announce(entry).await;
    }

    /// Removes the detached `entry` after `kept_for` (when its session
    /// expires on this node), unless a newer claim replaced it meanwhile.
    fn remove_after(&self, entry: DirectoryEntry, kept_for: Duration) {
        // Sessions that never expire keep their entry until the node leaves.
        if kept_for > MAX_DETACHED {
            return;
        }
        let this = self.this.clone();
        tokio::spawn(async move {
            tokio::time::sleep(kept_for).await;
            if let Some(this) = this.upgrade() {
                let current = this.lock().cache.current(&entry.user, &entry.client_id);
                if current == Some((entry.node_id, entry.generation)) {
                    this.remove_and_announce(entry).await;
                }
            }
        });
    }

    /// Removes `entry` from the store (if it is still current) and
    /// announces its end.
    async fn remove_and_announce(&self, entry: DirectoryEntry) {
        let (user, client_id) = (&entry.user, &entry.client_id);
        if let Err(e) = self.store.remove(&entry).await {
            self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
            warn!(%user, %client_id, error = %e, "could not remove the session from the directory");
        }
        // Announced even when a newer claim replaced it: the change only
        // removes this generation, which a late announcement may have left.
        self.announce(DirectoryEvent::Left(entry));
    }

    /// A directory change consumed from the bus, announced by `origin`.
    pub fn apply(&self, payload: &[u8], origin: u16) {
        let Some(event) = DirectoryEvent::decode(payload) else {
            warn!(
                origin,
                "skipping a session directory record this version cannot read"
            );
            return;
        };
        let changed_elsewhere;
        let (action, take_over) = {
            let mut state = self.lock();
            let changed = state.cache.apply(&event);
            changed_elsewhere = changed && event.entry().node_id != self.node_id;
            let e = event.entry();
            let sessions = state.cache.sessions_of(&e.user);
            match &event {
                // A late or repeated announcement: nothing for presence,
                // and no newer session to hand over to.
                _ if !changed => (None, None),
                // A detached session no longer counts as online.
                DirectoryEvent::Detached(_) => {
                    (state.presence.left(&e.user, origin, sessions), None)
                }
                DirectoryEvent::Joined(e) => {
                    let key = (e.user.clone(), e.client_id.clone());
                    let older_here = state.local.get(&key).and_then(|claim| {
                        let mine = claim.entry.as_ref()?;
                        (e.node_id != self.node_id && mine.generation < e.generation)
                            .then_some(claim.connection)
                    });
                    (
                        state.presence.joined(&e.user, e.node_id, sessions),
                        older_here,
                    )
                }
                DirectoryEvent::Left(_) => (state.presence.left(&e.user, origin, sessions), None),
            }
        };
        // A session on another node that this node did not know: what this
        // node sent its user meanwhile went elsewhere, so send it there too.
        if let (DirectoryEvent::Joined(e), true) = (&event, changed_elsewhere) {
            self.deliveries.replay_to(&e.user, e.node_id);
        }
        if let Some(connection) = take_over {
            let e = event.entry();
            if self.sessions.take_over(&e.user, &e.client_id, connection) {
                self.counts.taken_over.fetch_add(1, Ordering::Relaxed);
                info!(user = %e.user, client_id = %e.client_id, to_node = e.node_id, "session taken over by another node");
            }
        }
        self.act(action);
        self.changed.send_modify(|n| *n += 1);
    }

    /// A presence record consumed from the bus on `topic` (`p/{user}`).
    pub fn presence_seen(&self, topic: &str, payload: &[u8]) {
        let Some(user) = topic.strip_prefix("p/") else {
            return;
        };
        let online = match parley_proto::decode_envelope(payload) {
            Ok(Envelope {
                kind: Some(Kind::Presence(p)),
            }) => p.state == PresenceState::Online as i32,
            _ => return,
        };
        let action = {
            let mut state = self.lock();
            let sessions = state.cache.sessions_of(user);
            state.presence.shown(user, online, sessions)
        };
        self.act(action);
    }

    /// `user`'s live sessions, cluster-wide, as this node knows them.
    pub fn sessions_of(&self, user: &str) -> Vec<DirectoryEntry> {
        self.lock().cache.entries_of(user)
    }

    /// Live sessions and users in the cluster, as this node knows them.
    pub fn totals(&self) -> (usize, usize) {
        self.lock().cache.totals()
    }

    /// Waits until `done` holds for this directory, checking after every change.
    pub async fn wait_until(&self, done: impl Fn(&ClusterDirectory) -> bool) {
        let mut changes = self.changed.subscribe();
        while !done(self) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    fn act(&self, action: Option<Action>) {
        match action {
            None => {}
            Some(Action::Publish { user, online }) => self.publish_presence(&user, online),
            Some(Action::ArmOffline { user, epoch }) => {
                let (this, delay) = (self.this.clone(), self.offline_delay);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(this) = this.upgrade() {
                        let action = {
                            let mut state = this.lock();
                            let sessions = state.cache.sessions_of(&user);
                            state.presence.offline_due(&user, epoch, sessions)
                        };
                        this.act(action);
                    }
                });
            }
        }
    }

    fn publish_presence(&self, user: &str, online: bool) {
        let Ok(id) = UserId::parse(user) else {
            return;
        };
        let state = if online {
            PresenceState::Online
        } else {
            PresenceState::Offline
        };
        let envelope = Envelope::from(Presence {
            user: user.to_owned(),
            state: state as i32,
            last_seen_ms: crate::chat::now_ms(),
        });
        self.deliveries.send_and_forget(
            user,
            1,
            Fanout::retained(
                presence_topic(&id),
                parley_proto::encode_envelope(&envelope).into(),
            ),
        );
    }

    fn announce(&self, event: DirectoryEvent) {
        let key = event.entry().user.clone();
        self.deliveries.send_and_forget(&key, 1, fanout(&event));
    }

    /// Every `every`, removes the entries of nodes whose lease ran out and
    /// announces their end.
    async fn sweep(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.store.expire().await {
                Ok(expired) => {
                    if !expired.is_empty() {
                        info!(
                            sessions = expired.len(),
                            "removed the directory entries of dead nodes"
                        );
                    }
                    self.counts
                        .expired
                        .fetch_add(expired.len() as u64, Ordering::Relaxed);
                    for entry in expired {
                        self.announce(DirectoryEvent::Left(entry));
                    }
                }
                Err(e) => {
                    self.counts.store_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, "could not expire dead nodes' directory entries");
                }
            }
        }
    }

    fn claim_lock(&self, user: &str, client_id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (user, client_id).hash(&mut hasher);
        &self.claim_locks[hasher.finish() as usize % CLAIM_LOCKS]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl crate::targeting::RecipientNodes for ClusterDirectory {
    /// The nodes of `user`'s sessions in the directory (live or detached),
    /// and this node if `user` is connected here (a connection whose claim
    /// this node has not consumed yet still gets its deliveries).
    fn nodes_holding(&self, user: &str, into: &mut Vec<u16>) {
        self.lock().cache.nodes_holding(user, into);
        if self.sessions.has_user(user) {
            into.push(self.node_id);
        }
    }
}

impl UserNodes for ClusterDirectory {
    fn nodes_of(&self, user: &str) -> usize {
        self.lock().cache.nodes_of(user)
    }
}

/// The bus fan-out carrying `event`.
fn fanout(event: &DirectoryEvent) -> Fanout {
    Fanout::new(
        vec![DIRECTORY_TOPIC.to_owned()],
        Bytes::from(event.encode()),
    )
}
