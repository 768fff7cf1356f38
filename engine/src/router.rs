//! The engine's shared state: every session by client key, the subscription
//! tree and the retained store, safe to use from many threads at once.
//!
//! Connection tasks call in directly; there is no router thread. A publish
//! is routed on the publisher's own thread: the tree is read under a shared
//! lock, the matching sessions are collected, then each target's session is
//! locked alone, the delivery queued, and the target's connection woken. No
//! two session locks are ever held together, and the tree lock is never held
//! while a session is locked, so routing uses every core and one client can
//! only slow itself.
//!
//! Costs: a publish costs O(topic levels + matching subscriptions) under the
//! tree's read lock, then one uncontended mutex per target. A subscribe takes
//! the tree's write lock for O(filter levels).
//!
//! A connection owns an [`Attachment`] (session slot + generation). When
//! another connection takes the session over, the generation moves on, the
//! old attachment's [`Ready`] future resolves and every call with it is a
//! no-op, so a taken-over connection can never touch its successor's state.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::message::{Message, QoS, RetainHandling, SessionId, SubscriptionOptions};
use crate::persist::{Change, Journal, RestoredSession, SessionImage};
use crate::retained::{RetainError, RetainedLimits, RetainedStore};
use crate::session::{ConnectionParams, Delivery, Enqueued, Session, SessionLimits, SessionStats};
use crate::session_filters::SessionFilters;
use crate::topic::{parse_filter, ParsedFilter, TopicError};
use crate::trie::{Matches, SharedGroupId, SubscriptionTree};

/// Bounds of the whole engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterConfig {
    /// Bounds of each session.
    pub session: SessionLimits,
    /// Bounds of the retained store.
    pub retained: RetainedLimits,
    /// Subscriptions one session may hold.
    pub max_subscriptions_per_session: usize,
    /// Longest session expiry granted, in seconds (also applied to 3.1.1
    /// persistent sessions, which ask for "never").
    pub max_session_expiry_secs: u32,
    /// Longest will delay honoured, in seconds.
    pub max_will_delay_secs: u32,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            session: SessionLimits::default(),
            retained: RetainedLimits::default(),
            max_subscriptions_per_session: 1_000,
            max_session_expiry_secs: 7 * 24 * 3600,
            max_will_delay_secs: 24 * 3600,
        }
    }
}

/// A last will, as accepted at CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// The message to publish (its `origin` is set by the router).
    pub message: Message,
    /// MQTT 5 Will Delay Interval, in seconds.
    pub delay_secs: u32,
}

/// What a connection asks for at CONNECT.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The session key (Parley: user and client id).
    pub key: String,
    /// Whose namespace the session is in (Parley: the user); scopes shared
    /// groups and retained quotas.
    pub namespace: String,
    /// MQTT 5 Clean Start / 3.1.1 Clean Session: discard any existing session.
    pub clean_start: bool,
    /// How long the session outlives the connection, in seconds (0 = ends
    /// with it; `u32::MAX` = never, capped by the configuration).
    pub session_expiry_secs: u32,
    /// What the client can receive.
    pub params: ConnectionParams,
    /// The will, if any.
    pub will: Option<Will>,
}

/// The outcome of [`Router::connect`].
#[derive(Debug)]
pub struct Connected {
    /// The connection's hold on its session.
    pub attachment: Attachment,
    /// Whether an existing session was resumed (CONNACK Session Present).
    pub session_present: bool,
    /// The session expiry granted (capped by the configuration).
    pub session_expiry_secs: u32,
    /// Whether a live connection of the same session was taken over.
    pub took_over: bool,
}

/// How a connection ended, for [`Router::detach`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detach {
    /// Whether the will is published (abnormal end, or MQTT 5 reason 0x04).
    pub publish_will: bool,
    /// A new session expiry from an MQTT 5 DISCONNECT.
    pub session_expiry_secs: Option<u32>,
}

/// Why a subscription was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeRefusal {
    /// The filter is not valid (0x8F).
    #[error("invalid topic filter: {0}")]
    InvalidFilter(#[from] TopicError),
    /// The session holds its maximum number of subscriptions (0x97).
    #[error("too many subscriptions")]
    QuotaExceeded,
    /// No Local on a shared subscription is a protocol error (0x82).
    #[error("No Local on a shared subscription")]
    NoLocalOnShared,
}

/// What routing one publish did.
#[derive(Debug, Default)]
pub struct PublishReport {
    /// Sessions the message was queued for.
    pub delivered: usize,
    /// Sessions that dropped it because their queue was full, with the
    /// QoS it would have had (QoS 1/2 drops are losses).
    pub dropped: Vec<(Arc<str>, QoS)>,
    /// Live sessions whose queue is past half its bound: the publisher
    /// should wait for them ([`SessionSlot::drained`]) before reading more.
    pub congested: Vec<Arc<SessionSlot>>,
    /// The journal ticket the publish must see durable before it is
    /// acknowledged (0: it reached no persistent session).
    pub ticket: u64,
}

/// What [`Router::tick`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Sessions ended because their expiry passed.
    pub sessions_expired: usize,
    /// Delayed wills published.
    pub wills_published: usize,
    /// Retained messages dropped because they expired.
    pub retained_expired: usize,
}

/// Engine-wide counters, for metrics.
#[derive(Debug, Default)]
pub struct RouterCounters {
    /// Messages routed.
    pub published: AtomicU64,
    /// Deliveries queued.
    pub delivered: AtomicU64,
    /// QoS 0 deliveries dropped by full queues.
    pub dropped_qos0: AtomicU64,
    /// QoS 1/2 deliveries dropped by full queues.
    pub dropped_qos12: AtomicU64,
    /// Deliveries dropped because their message had expired.
    pub expired: AtomicU64,
    /// Retained messages refused by the per-user quota.
    pub retained_refused: AtomicU64,
    /// Subscriptions refused by the per-session quota.
    pub subscriptions_refused: AtomicU64,
    /// Sessions ended by their expiry.
    pub sessions_expired: AtomicU64,
    /// Sessions taken over by a new connection.
    pub sessions_taken_over: AtomicU64,
    /// Wills published.
    pub wills_published: AtomicU64,
}

struct PendingWill {
    will: Will,
    /// When it is due; `None` while the connection is live.
    due: Option<Instant>,
}

struct SlotState {
    session: Session,
    generation: u64,
    ended: bool,
    expiry_secs: u32,
    detached_at: Option<Instant>,
    /// Boxed: most sessions have no will, and an idle session should cost
    /// little more than its entry.
    will: Option<Box<PendingWill>>,
    subscriptions: SessionFilters,
    ready: Option<Waker>,
    drain_waiters: Vec<Waker>,
    /// A publisher already waited its whole pause for this session to drain:
    /// publishers are not slowed for it again until it drains.
    stalled: bool,
    /// The journal ticket of the session's latest change (see [`crate::persist`]).
    ticket: u64,
}

/// One session's place in the router, shared by the router and the
/// connection attached to it.
pub struct SessionSlot {
    id: SessionId,
    key: Arc<str>,
    namespace: Arc<str>,
    attached: AtomicBool,
    state: Mutex<SlotState>,
}

impl std::fmt::Debug for SessionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSlot")
            .field("id", &self.id)
            .field("key", &self.key)
            .finish()
    }
}

impl SessionSlot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // State is only mutated through methods that leave it consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session's id in the engine.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The session's key.
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// Resolves once the session's queue is drained below a quarter of its
    /// bound, or no connection is attached to read it any more.
    pub fn drained(self: &Arc<Self>) -> Drained {
        Drained { slot: self.clone() }
    }

    /// A publisher's pause for this session ran out before it drained: until
    /// it drains, publishes no longer report it congested (one subscriber
    /// that does not read must not slow its publishers for ever; its queue
    /// bound applies instead).
    pub fn pause_expired(&self) {
        let mut state = self.lock();
        if !state.session.is_drained() {
            state.stalled = true;
        }
    }

    fn wake_ready(&self, mut state: MutexGuard<'_, SlotState>) {
        let waker = state.ready.take();
        let waiters = if state.session.is_drained() || !state.session.is_attached() {
            std::mem::take(&mut state.drain_waiters)
        } else {
            Vec::new()
        };
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        waiters.into_iter().for_each(Waker::wake);
    }
}

/// A connection's hold on its session.
#[derive(Debug, Clone)]
pub struct Attachment {
    slot: Arc<SessionSlot>,
    generation: u64,
}

impl Attachment {
    /// The session slot.
    pub fn slot(&self) -> &Arc<SessionSlot> {
        &self.slot
    }

    /// Resolves when the session has something to transmit, or this
    /// attachment is no longer current (taken over or ended).
    pub fn ready(&self) -> Ready<'_> {
        Ready { attachment: self }
    }

    /// Whether this attachment still owns its session.
    pub fn is_current(&self) -> bool {
        let state = self.slot.lock();
        state.generation == self.generation && !state.ended
    }
}

/// See [`Attachment::ready`].
pub struct Ready<'a> {
    attachment: &'a Attachment,
}

impl Future for Ready<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.attachment.slot.lock();
        if state.generation != self.attachment.generation
            || state.ended
            || state.session.wants_transmit()
            || state.session.wants_page()
        {
            return Poll::Ready(());
        }
        state.ready = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// See [`SessionSlot::drained`].
pub struct Drained {
    slot: Arc<SessionSlot>,
}

impl Future for Drained {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.slot.lock();
        if state.ended || !state.session.is_attached() || state.session.is_drained() {
            return Poll::Ready(());
        }
        if !state.drain_waiters.iter().any(|w| w.will_wake(cx.waker())) {
            state.drain_waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The engine: sessions, subscriptions and retained messages of one node.
pub struct Router {
    config: RouterConfig,
    tree: RwLock<SubscriptionTree>,
    retained: RwLock<RetainedStore>,
    /// Sessions by key. An ordered map rather than a hash table: growing a
    /// hash table of ~14,000 sessions rehashed every key under this lock
    /// (9 ms on the benchmark machine), and every CONNECT waited for it.
    sessions: Mutex<BTreeMap<Arc<str>, Arc<SessionSlot>>>,
    by_id: RwLock<HashMap<SessionId, Arc<SessionSlot>>>,
    next_id: AtomicU64,
    counters: RouterCounters,
    journal: OnceLock<Arc<dyn Journal>>,
    /// Told of route changes and wills (a cluster), if installed.
    events: OnceLock<Arc<dyn RouterEvents>>,
    /// Sessions subscribed to each route, kept while `events` is installed;
    /// only touched with the tree's write lock held.
    route_counts: Mutex<HashMap<Route, usize>>,
}

/// A filter that at least one session of this engine subscribes to: what a
/// cluster's route table records per node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// The filter as subscribed (`$share/{group}/{filter}` for a shared one).
    pub filter: Arc<str>,
    /// The subscribers' namespace for a shared filter (it scopes the
    /// group); empty for a plain one, which every namespace shares.
    pub namespace: Arc<str>,
}

/// What the engine tells a cluster layer about itself. Called on the thread
/// that made the change, in the order of the changes, with the tree's write
/// lock held for route changes: implementations must be quick and must not
/// call back into the router.
pub trait RouterEvents: Send + Sync {
    /// `route` gained its first subscribing session.
    fn route_added(&self, route: &Route);
    /// `route` lost its last subscribing session.
    fn route_removed(&self, route: &Route);
    /// A will was published here, in `namespace`, as `message` (after
    /// routing it to this engine's sessions).
    fn will_published(&self, message: &Message, namespace: &str);
}

/// The namespace of the server's own publishes (exempt from retained quotas).
pub const SERVER_NAMESPACE: &str = "$server";

impl Router {
    /// An empty engine with `config`.
    pub fn new(config: RouterConfig) -> Router {
        Router {
            retained: RwLock::new(RetainedStore::new(config.retained)),
            config,
            tree: RwLock::new(SubscriptionTree::new()),
            sessions: Mutex::new(BTreeMap::new()),
            by_id: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            counters: RouterCounters::default(),
            journal: OnceLock::new(),
            events: OnceLock::new(),
            route_counts: Mutex::new(HashMap::new()),
        }
    }

    /// Installs the listener of route changes and wills (a cluster). Install
    /// it before the first subscription (persistent sessions restored
    /// included): routes made before are not reported. A second call is
    /// ignored.
    pub fn set_events(&self, events: Arc<dyn RouterEvents>) {
        let _ = self.events.set(events);
    }

    /// Every route of this engine, while events are installed.
    pub fn routes(&self) -> Vec<Route> {
        let _tree = read(&self.tree);
        let counts = self.route_counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.keys().cloned().collect()
    }

    /// Adds `slot`'s subscription to `raw` (parsed as `parsed`) to `tree`
    /// and reports a new route; true if the subscription is new.
    fn tree_subscribe(
        &self,
        tree: &mut SubscriptionTree,
        slot: &SessionSlot,
        raw: &str,
        parsed: &ParsedFilter<'_>,
        options: SubscriptionOptions,
    ) -> bool {
        let is_new = tree.subscribe(slot.id, &slot.namespace, parsed, options);
        if let (true, Some(events)) = (is_new, self.events.get()) {
            let route = route_of(raw, parsed, &slot.namespace);
            let mut counts = self.route_counts.lock().unwrap_or_else(|e| e.into_inner());
            let count = counts.entry(route.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                events.route_added(&route);
            }
        }
        is_new
    }

    /// Removes `slot`'s subscription to `raw` from `tree` and reports a
    /// route that lost its last session; true if it existed.
    fn tree_unsubscribe(
        &self,
        tree: &mut SubscriptionTree,
        slot: &SessionSlot,
        raw: &str,
        parsed: &ParsedFilter<'_>,
    ) -> bool {
        let removed = tree.unsubscribe(slot.id, &slot.namespace, parsed);
        if let (true, Some(events)) = (removed, self.events.get()) {
            let route = route_of(raw, parsed, &slot.namespace);
            let mut counts = self.route_counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = counts.get_mut(&route) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&route);
                    events.route_removed(&route);
                }
            }
        }
        removed
    }

    /// The configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Engine-wide counters.
    pub fn counters(&self) -> &RouterCounters {
        &self.counters
    }

    /// Sessions known (live or waiting for their client).
    pub fn session_count(&self) -> usize {
        self.lock_sessions().len()
    }

    /// Subscriptions in the tree.
    pub fn subscription_count(&self) -> usize {
        read(&self.tree).len()
    }

    /// Retained messages stored.
    pub fn retained_count(&self) -> usize {
        read(&self.retained).len()
    }

    /// Counters of the session with `key`, if it exists.
    pub fn session_stats(&self, key: &str) -> Option<SessionStats> {
        let slot = self.lock_sessions().get(key).cloned()?;
        let state = slot.lock();
        Some(state.session.stats())
    }

    /// Sessions that lost QoS 1/2 messages to their queue bound, with how
    /// many (for per-client loss metrics; only sessions with losses appear).
    pub fn sessions_with_losses(&self) -> Vec<(Arc<str>, u64)> {
        let slots: Vec<Arc<SessionSlot>> = self.lock_sessions().values().cloned().collect();
        slots
            .into_iter()
            .filter_map(|slot| {
                let lost = slot.lock().session.stats().dropped_qos12;
                (lost > 0).then(|| (slot.key.clone(), lost))
            })
            .collect()
    }

    fn lock_sessions(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, Arc<SessionSlot>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches a new connection to its session, creating, resuming or
    /// replacing it as `request` says, and writes any in-flight resends
    /// into `out`. A live connection of the same session is taken over.
    pub fn connect(&self, request: ConnectRequest, now: Instant, out: &mut BytesMut) -> Connected {
        let expiry = request
            .session_expiry_secs
            .min(self.config.max_session_expiry_secs);
        let will = request.will.map(|mut w| {
            w.delay_secs = w.delay_secs.min(self.config.max_will_delay_secs);
            Box::new(PendingWill { will: w, due: None })
        });
        let mut sessions = self.lock_sessions();
        let existing = sessions.get(request.key.as_str()).cloned();
        let mut took_over = false;
        if let Some(slot) = existing {
            let mut state = slot.lock();
            took_over = slot.attached.load(Ordering::Acquire) && !state.ended;
            if took_over {
                self.counters
                    .sessions_taken_over
                    .fetch_add(1, Ordering::Relaxed);
            }
            if !request.clean_start && !state.ended {
                // Resume: a will still waiting out its delay is cancelled.
                state.generation += 1;
                state.expiry_secs = expiry;
                state.detached_at = None;
                state.will = will;
                self.set_durability(&slot, &mut state);
                self.describe(&slot, &mut state, false);
                state.session.attach(request.params, out);
                slot.attached.store(true, Ordering::Release);
                let attachment = Attachment {
                    slot: slot.clone(),
                    generation: state.generation,
                };
                slot.wake_ready(state);
                return Connected {
                    attachment,
                    session_present: true,
                    session_expiry_secs: expiry,
                    took_over,
                };
            }
            // Clean start: the old session ends here.
            let pending = took_over || state.will_pending();
            let old_will = state.will.take().filter(|_| pending);
            drop(state);
            sessions.remove(request.key.as_str());
            drop(sessions);
            self.end_session(&slot);
            if let Some(w) = old_will {
                self.publish_will(&slot, w.will, now);
            }
            sessions = self.lock_sessions();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key: Arc<str> = Arc::from(request.key.as_str());
        let mut session = Session::new(self.config.session);
        session.attach(request.params, out);
        let slot = Arc::new(SessionSlot {
            id,
            key: key.clone(),
            namespace: Arc::from(request.namespace.as_str()),
            attached: AtomicBool::new(true),
            state: Mutex::new(SlotState {
                session,
                generation: 1,
                ended: false,
                expiry_secs: expiry,
                detached_at: None,
                will,
                subscriptions: SessionFilters::default(),
                ready: None,
                drain_waiters: Vec::new(),
                stalled: false,
                ticket: 0,
            }),
        });
        {
            let mut state = slot.lock();
            self.set_durability(&slot, &mut state);
            self.describe(&slot, &mut state, false);
        }
        sessions.insert(key, slot.clone());
        drop(sessions);
        write(&self.by_id).insert(id, slot.clone());
        Connected {
            attachment: Attachment {
                slot,
                generation: 1,
            },
            session_present: false,
            session_expiry_secs: expiry,
            took_over,
        }
    }

    /// Ends the connection of `attachment` (no-op if it was taken over):
    /// the will is published or scheduled, and a session with expiry 0 ends.
    pub fn detach(&self, attachment: &Attachment, how: Detach, now: Instant) {
        let slot = &attachment.slot;
        let mut state = slot.lock();
        if state.generation != attachment.generation || state.ended {
            return;
        }
        state.session.detach();
        slot.attached.store(false, Ordering::Release);
        if let Some(expiry) = how.session_expiry_secs {
            state.expiry_secs = expiry.min(self.config.max_session_expiry_secs);
        }
        let expiry = state.expiry_secs;
        let mut will_now = None;
        match state.will.take() {
            Some(pending) if how.publish_will => {
                let delay = pending.will.delay_secs.min(expiry);
                if delay == 0 {
                    will_now = Some(pending.will);
                } else {
                    state.will = Some(Box::new(PendingWill {
                        due: Some(now + Duration::from_secs(delay.into())),
                        will: pending.will,
                    }));
                }
            }
            _ => {}
        }
        let ends = expiry == 0;
        if !ends {
            state.detached_at = Some(now);
            self.describe(slot, &mut state, true);
            let dropped = state.session.page_out();
            self.counters
                .dropped_qos0
                .fetch_add(dropped as u64, Ordering::Relaxed);
            state.session.shrink();
        }
        slot.wake_ready(state);
        if ends {
            let mut sessions = self.lock_sessions();
            if sessions
                .get(&slot.key)
                .is_some_and(|s| Arc::ptr_eq(s, slot))
            {
                sessions.remove(&slot.key);
            }
            drop(sessions);
            self.end_session(slot);
        }
        if let Some(will) = will_now {
            self.publish_will(slot, will, now);
        }
    }

    /// Removes a session's subscriptions and state; it must already be out of `sessions`.
    fn end_session(&self, slot: &Arc<SessionSlot>) {
        self.drop_session(slot, true);
    }

    /// Drops session `key` from this router without reporting its end to
    /// the journal: its stored state stays as it is, for another node to
    /// load (a session moving between the nodes of a cluster). A connection
    /// attached to it is detached as if taken over (its will is not
    /// published); changes it had not reported yet are reported first.
    /// Returns the ticket of the session's last change (0 if there was no
    /// such session): once it is durable, the store holds the session's
    /// final state.
    pub fn release(&self, key: &str) -> Option<u64> {
        let slot = self.lock_sessions().remove(key)?;
        {
            let mut state = slot.lock();
            self.flush_changes(&slot, &mut state);
        }
        self.drop_session(&slot, false);
        let ticket = slot.lock().ticket;
        Some(ticket)
    }

    /// Removes a session's subscriptions and state (reporting its end to
    /// the journal if `record_end`); it must already be out of `sessions`.
    fn drop_session(&self, slot: &Arc<SessionSlot>, record_end: bool) {
        let mut state = slot.lock();
        if state.ended {
            return;
        }
        state.ended = true;
        state.generation += 1;
        if state.session.is_durable() {
            state.session.set_durable(false);
            if let Some(journal) = self.journal.get().filter(|_| record_end) {
                state.ticket = journal.record(&slot.key, Change::Ended);
            }
        }
        state.session.clear();
        let filters = std::mem::take(&mut state.subscriptions);
        slot.attached.store(false, Ordering::Release);
        slot.wake_ready(state);
        {
            let mut tree = write(&self.tree);
            for (filter, _) in filters.iter() {
                if let Ok(parsed) = parse_filter(filter) {
                    self.tree_unsubscribe(&mut tree, slot, filter, &parsed);
                }
            }
        }
        write(&self.by_id).remove(&slot.id);
    }

    fn publish_will(&self, slot: &SessionSlot, will: Will, now: Instant) {
        let mut message = will.message;
        message.origin = Some(slot.id);
        self.counters
            .wills_published
            .fetch_add(1, Ordering::Relaxed);
        // A will over the retained quota is still delivered, just not retained.
        if self.publish(message.clone(), &slot.namespace, now).is_err() {
            message.retain = false;
            let _ = self.publish(message.clone(), &slot.namespace, now);
        }
        if let Some(events) = self.events.get() {
            events.will_published(&message, &slot.namespace);
        }
    }

    /// Runs `f` on the attachment's session; `None` if the attachment is no
    /// longer current. Wakes publishers waiting for the queue to drain.
    pub fn with_session<R>(
        &self,
        attachment: &Attachment,
        f: impl FnOnce(&mut Session) -> R,
    ) -> Option<R> {
        let mut state = attachment.slot.lock();
        if state.generation != attachment.generation || state.ended {
            return None;
        }
        let result = f(&mut state.session);
        self.flush_changes(&attachment.slot, &mut state);
        if !state.drain_waiters.is_empty() && state.session.is_drained() {
            let waiters = std::mem::take(&mut state.drain_waiters);
            drop(state);
            waiters.into_iter().for_each(Waker::wake);
        }
        Some(result)
    }

    /// Routes `message`, published in `namespace` (the publisher's user, or
    /// [`SERVER_NAMESPACE`]), to every matching session, and stores or clears
    /// it as the topic's retained message if its RETAIN flag is set.
    pub fn publish(
        &self,
        message: Message,
        namespace: &str,
        now: Instant,
    ) -> Result<PublishReport, RetainError> {
        self.route_publish(message, Some(namespace), now, None)
    }

    /// Like [`Router::publish`] for a message another node of a cluster
    /// forwarded: shared groups deliver it only if `shared` says the group
    /// is this engine's to serve (each shared group of a cluster gets a
    /// message once, from one node), and its retained copy is kept only if
    /// `keep_retained` (see [`Router::keep_retained`]); subscribers see its
    /// RETAIN flag either way.
    pub fn publish_forwarded(
        &self,
        message: Message,
        now: Instant,
        shared: &dyn Fn(&SharedGroupId) -> bool,
    ) -> PublishReport {
        self.route_publish(message, None, now, Some(shared))
            .unwrap_or_default()
    }

    /// Stores `message` as the retained message of its topic (an empty
    /// payload deletes it) without routing it, charged to `namespace`'s
    /// quota; a message over the quota (another node accepted it, so the
    /// cluster's copies must agree) is kept uncharged instead. Returns
    /// false if it was over the quota.
    pub fn keep_retained(&self, message: Message, namespace: &str) -> bool {
        let message = Arc::new(message);
        let mut store = write(&self.retained);
        if namespace != SERVER_NAMESPACE && store.set(namespace, message.clone()).is_ok() {
            return true;
        }
        let _ = store.set_unbounded(message);
        namespace == SERVER_NAMESPACE
    }

    /// Routes `message`; with `namespace` (not for forwarded messages) a
    /// retained one is stored first.
    fn route_publish(
        &self,
        message: Message,
        namespace: Option<&str>,
        now: Instant,
        shared: Option<&dyn Fn(&SharedGroupId) -> bool>,
    ) -> Result<PublishReport, RetainError> {
        let message = Arc::new(message);
        if let (true, Some(namespace)) = (message.retain, namespace) {
            let owner = if namespace == SERVER_NAMESPACE {
                None
            } else {
                Some(namespace)
            };
            let stored = match owner {
                Some(owner) => write(&self.retained).set(owner, message.clone()),
                None => write(&self.retained).set_unbounded(message.clone()),
            };
            if let Err(e) = stored {
                self.counters
                    .retained_refused
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        }
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let mut matches = Matches::default();
        read(&self.tree).matches(&message.topic, &mut matches);
        if let Some(serves) = shared {
            matches.shared.retain(|pick| serves(&pick.group));
        }
        let targets = self.targets(&message, matches);
        let mut report = PublishReport::default();
        for (slot, options) in targets {
            let delivery = Delivery {
                message: message.clone(),
                qos: message.qos.min(options.qos),
                retain: options.retain_as_published && message.retain,
                subscription_ids: options.ids,
            };
            self.deliver(&slot, delivery, now, &mut report);
        }
        Ok(report)
    }

    /// Queues one delivery on `slot`, recording the outcome in `report`.
    fn deliver(
        &self,
        slot: &Arc<SessionSlot>,
        delivery: Delivery,
        now: Instant,
        report: &mut PublishReport,
    ) {
        let qos = delivery.qos;
        let mut state = slot.lock();
        if state.ended {
            return;
        }
        match state.session.enqueue(delivery, now) {
            Enqueued::Queued => {
                report.delivered += 1;
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Enqueued::DroppedQos0 => {
                self.counters.dropped_qos0.fetch_add(1, Ordering::Relaxed);
                report.dropped.push((slot.key.clone(), qos));
            }
            Enqueued::DroppedQos12 => {
                self.counters.dropped_qos12.fetch_add(1, Ordering::Relaxed);
                report.dropped.push((slot.key.clone(), qos));
            }
            Enqueued::Expired => {
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
            }
        }
        let before = state.ticket;
        self.flush_changes(slot, &mut state);
        if state.ticket != before {
            report.ticket = report.ticket.max(state.ticket);
        }
        if state.stalled && state.session.is_drained() {
            state.stalled = false;
        }
        let attached = state.session.is_attached();
        if attached && !state.stalled && state.session.is_congested() {
            report.congested.push(slot.clone());
        }
        if attached && state.session.wants_transmit() {
            slot.wake_ready(state);
        }
    }

    /// Resolves matches to one target per session: the highest granted QoS,
    /// Retain As Published if any matching subscription asks for it, every
    /// subscription identifier. No Local subscriptions skip the publisher;
    /// each shared group picks one member, preferring connected ones.
    fn targets(&self, message: &Message, matches: Matches) -> Vec<(Arc<SessionSlot>, Merged)> {
        let mut chosen: Vec<(SessionId, SubscriptionOptions)> = matches
            .direct
            .into_iter()
            .filter(|(id, o)| !(o.no_local && message.origin == Some(*id)))
            .collect();
        let by_id = read(&self.by_id);
        for pick in matches.shared {
            let n = pick.members.len();
            if n == 0 {
                continue;
            }
            let live = (0..n)
                .map(|i| &pick.members[(pick.start + i) % n])
                .find(|(id, _)| {
                    by_id
                        .get(id)
                        .is_some_and(|s| s.attached.load(Ordering::Acquire))
                });
            let member = live.unwrap_or(&pick.members[pick.start % n]);
            chosen.push(*member);
        }
        chosen.sort_unstable_by_key(|(id, _)| *id);
        let mut out: Vec<(Arc<SessionSlot>, Merged)> = Vec::with_capacity(chosen.len());
        let mut last: Option<SessionId> = None;
        for (id, options) in chosen {
            if last == Some(id) {
                if let Some((_, merged)) = out.last_mut() {
                    merged.add(&options);
                }
                continue;
            }
            let Some(slot) = by_id.get(&id) else {
                continue;
            };
            last = Some(id);
            let mut merged = Merged::default();
            merged.add(&options);
            out.push((slot.clone(), merged));
        }
        out
    }

    /// Subscribes the attachment's session to each `(filter, options)`, in
    /// order, and queues the retained messages the Retain Handling allows.
    /// The result is `None` if the attachment is no longer current.
    pub fn subscribe(
        &self,
        attachment: &Attachment,
        filters: &[(String, SubscriptionOptions)],
        now: Instant,
    ) -> Option<Vec<Result<QoS, SubscribeRefusal>>> {
        let slot = &attachment.slot;
        let mut results = Vec::with_capacity(filters.len());
        for (raw, options) in filters {
            let parsed = match parse_filter(raw) {
                Ok(p) => p,
                Err(e) => {
                    results.push(Err(SubscribeRefusal::InvalidFilter(e)));
                    continue;
                }
            };
            let shared = matches!(parsed, ParsedFilter::Shared { .. });
            if shared && options.no_local {
                results.push(Err(SubscribeRefusal::NoLocalOnShared));
                continue;
            }
            {
                let state = slot.lock();
                if state.generation != attachment.generation || state.ended {
                    return None;
                }
                if !state.subscriptions.contains(raw.as_str())
                    && state.subscriptions.len() >= self.config.max_subscriptions_per_session
                {
                    self.counters
                        .subscriptions_refused
                        .fetch_add(1, Ordering::Relaxed);
                    results.push(Err(SubscribeRefusal::QuotaExceeded));
                    continue;
                }
            }
            let is_new = self.tree_subscribe(&mut write(&self.tree), slot, raw, &parsed, *options);
            let mut retained = Vec::new();
            let send_retained = match options.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscribe => is_new,
                RetainHandling::Never => false,
            };
            if let (false, true, ParsedFilter::Plain(filter)) = (shared, send_retained, &parsed) {
                read(&self.retained).matching(filter, now, &mut retained);
            }
            let mut state = slot.lock();
            if state.generation != attachment.generation || state.ended {
                drop(state);
                self.tree_unsubscribe(&mut write(&self.tree), slot, raw, &parsed);
                return None;
            }
            state.subscriptions.insert(raw.as_str(), *options);
            for message in retained {
                let delivery = Delivery {
                    qos: message.qos.min(options.qos),
                    message,
                    retain: true,
                    subscription_ids: options.subscription_id.into_iter().collect(),
                };
                if state.session.enqueue(delivery, now) == Enqueued::DroppedQos12 {
                    self.counters.dropped_qos12.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.describe(slot, &mut state, false);
            drop(state);
            results.push(Ok(options.qos));
        }
        Some(results)
    }

    /// Removes the attachment's subscriptions to `filters`; `true` for each
    /// that existed. `None` if the attachment is no longer current.
    pub fn unsubscribe(&self, attachment: &Attachment, filters: &[String]) -> Option<Vec<bool>> {
        let slot = &attachment.slot;
        let mut results = Vec::with_capacity(filters.len());
        for raw in filters {
            let existed = {
                let mut state = slot.lock();
                if state.generation != attachment.generation || state.ended {
                    return None;
                }
                let existed = state.subscriptions.remove(raw.as_str());
                if existed {
                    self.describe(slot, &mut state, false);
                }
                existed
            };
            if existed {
                if let Ok(parsed) = parse_filter(raw) {
                    self.tree_unsubscribe(&mut write(&self.tree), slot, raw, &parsed);
                }
            }
            results.push(existed);
        }
        Some(results)
    }

    /// Installs the journal persistent sessions report their changes to
    /// (see [`crate::persist`]); without one, sessions live in memory only.
    /// Install it before the first connection; a second call is ignored.
    pub fn set_journal(&self, journal: Arc<dyn Journal>) {
        let _ = self.journal.set(journal);
    }

    /// The journal ticket of the latest change to the attachment's session:
    /// answers to its client wait until that ticket is durable.
    pub fn ticket(&self, attachment: &Attachment) -> u64 {
        attachment.slot.lock().ticket
    }

    /// Puts a stored persistent session back, detached, with its
    /// subscriptions and queue; `false` if a session with its key exists.
    /// Its expiry and will delay count from `now - restored.detached_for`: a
    /// session whose expiry passed meanwhile ends at the next [`Router::tick`]
    /// (counted as expired), and a will whose delay passed is published then.
    pub fn restore(&self, restored: RestoredSession, now: Instant) -> bool {
        let key: Arc<str> = Arc::from(restored.key.as_str());
        let mut sessions = self.lock_sessions();
        if sessions.contains_key(&key) {
            return false;
        }
        let image = restored.image;
        let expiry = image.expiry_secs.min(self.config.max_session_expiry_secs);
        let left = Duration::from_secs(expiry.into()).saturating_sub(restored.detached_for);
        let left_secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let will = image.will.map(|mut w| {
            w.delay_secs = w
                .delay_secs
                .min(self.config.max_will_delay_secs)
                .min(expiry);
            let due =
                Duration::from_secs(w.delay_secs.into()).saturating_sub(restored.detached_for);
            Box::new(PendingWill {
                will: w,
                due: Some(now + due),
            })
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(SessionSlot {
            id,
            key: key.clone(),
            namespace: image.namespace.clone(),
            attached: AtomicBool::new(false),
            state: Mutex::new(SlotState {
                session: Session::restore(
                    self.config.session,
                    restored.queue,
                    restored.released,
                    restored.incoming_qos2,
                ),
                generation: 1,
                ended: false,
                expiry_secs: left_secs.min(u64::from(u32::MAX)) as u32,
                detached_at: Some(now),
                will,
                subscriptions: SessionFilters::default(),
                ready: None,
                drain_waiters: Vec::new(),
                stalled: false,
                ticket: 0,
            }),
        });
        sessions.insert(key, slot.clone());
        drop(sessions);
        write(&self.by_id).insert(id, slot.clone());
        let mut kept = SessionFilters::default();
        for (filter, options) in image.subscriptions {
            if let Ok(parsed) = parse_filter(&filter) {
                self.tree_subscribe(&mut write(&self.tree), &slot, &filter, &parsed, options);
                kept.insert(&filter, options);
            }
        }
        slot.lock().subscriptions = kept;
        true
    }

    /// Makes the session report changes exactly while it is persistent and
    /// a journal is installed; one that stops being persistent is forgotten.
    fn set_durability(&self, slot: &SessionSlot, state: &mut SlotState) {
        let Some(journal) = self.journal.get() else {
            return;
        };
        // A session whose queue is still in the store stays durable until it
        // ends, so that queue is read back, not lost.
        let durable = state.expiry_secs > 0 || state.session.is_paged();
        if state.session.is_durable() && !durable {
            state.ticket = journal.record(&slot.key, Change::Ended);
        }
        state.session.set_durable(durable);
    }

    /// Hands the session's pending changes to the journal.
    fn flush_changes(&self, slot: &SessionSlot, state: &mut SlotState) {
        if !state.session.is_durable() {
            return;
        }
        if let Some(journal) = self.journal.get() {
            for change in state.session.take_changes() {
                state.ticket = journal.record(&slot.key, change);
            }
        }
    }

    /// Reports a persistent session's description (after its pending changes).
    fn describe(&self, slot: &SessionSlot, state: &mut SlotState, detached: bool) {
        if !state.session.is_durable() {
            return;
        }
        let Some(journal) = self.journal.get() else {
            return;
        };
        self.flush_changes(slot, state);
        let image = SessionImage {
            namespace: slot.namespace.clone(),
            expiry_secs: state.expiry_secs,
            detached,
            subscriptions: state
                .subscriptions
                .iter()
                .map(|(filter, options)| (filter.to_string(), *options))
                .collect(),
            will: state.will.as_ref().map(|w| w.will.clone()),
        };
        state.ticket = journal.record(&slot.key, Change::Described(Box::new(image)));
    }

    /// Ends sessions whose expiry passed, publishes wills whose delay
    /// passed, and drops expired retained messages. Call about once a second.
    pub fn tick(&self, now: Instant) -> TickReport {
        let mut report = TickReport {
            retained_expired: write(&self.retained).purge_expired(now),
            ..TickReport::default()
        };
        // Only detached sessions can expire or owe a will: attached ones are
        // skipped under the map's lock without touching their reference count.
        let slots: Vec<Arc<SessionSlot>> = self
            .lock_sessions()
            .values()
            .filter(|slot| !slot.attached.load(Ordering::Acquire))
            .cloned()
            .collect();
        for slot in slots {
            let mut state = slot.lock();
            if state.ended || slot.attached.load(Ordering::Acquire) {
                continue;
            }
            let expired = state
                .detached_at
                .is_some_and(|at| now >= at + Duration::from_secs(state.expiry_secs.into()));
            let will_due = state
                .will
                .as_ref()
                .and_then(|w| w.due)
                .is_some_and(|due| now >= due);
            let will = if expired || will_due {
                state.will.take()
            } else {
                None
            };
            drop(state);
            if expired {
                let mut sessions = self.lock_sessions();
                if sessions
                    .get(&slot.key)
                    .is_some_and(|s| Arc::ptr_eq(s, &slot))
                {
                    sessions.remove(&slot.key);
                }
                drop(sessions);
                self.end_session(&slot);
                report.sessions_expired += 1;
                self.counters
                    .sessions_expired
                    .fetch_add(1, Ordering::Relaxed);
            }
            if let Some(pending) = will.filter(|w| w.due.is_some()) {
                self.publish_will(&slot, pending.will, now);
                report.wills_published += 1;
            }
        }
        report
    }
}

impl SlotState {
    fn will_pending(&self) -> bool {
        self.will.as_ref().is_some_and(|w| w.due.is_some())
    }
}

/// The merged options of every subscription of one session matching a publish.
#[derive(Debug, Default)]
struct Merged {
    qos: QoS,
    retain_as_published: bool,
    ids: Vec<u32>,
}

impl Merged {
    fn add(&mut self, options: &SubscriptionOptions) {
        self.qos = self.qos.max(options.qos);
        self.retain_as_published |= options.retain_as_published;
        if let Some(id) = options.subscription_id {
            if !self.ids.contains(&id) {
                self.ids.push(id);
            }
        }
    }
}

/// The route a subscription to `raw` in `namespace` belongs to.
fn route_of(raw: &str, parsed: &ParsedFilter<'_>, namespace: &Arc<str>) -> Route {
    Route {
        filter: Arc::from(raw),
        namespace: match parsed {
            ParsedFilter::Plain(_) => Arc::from(""),
            ParsedFilter::Shared { .. } => namespace.clone(),
        },
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
