//! The live MQTT sessions of this node: who is connected, over what, from
//! where and since when, and a way to end a connection from outside (the
//! admin API's kick, or disabling a user).
//!
//! Each connection registers once it passed CONNECT and holds a
//! [`SessionHandle`] until it ends; dropping the handle unregisters it. A
//! handle carries a cancellation token the connection waits on next to its
//! socket: cancelling it (a kick) makes the connection send MQTT 5 DISCONNECT
//! 0x98 (administrative action) and close. A takeover by a connection on
//! another node cancels it too, marked so that the connection says 0x8E
//! (session taken over) instead.
//!
//! The registry also reports each connection's lifecycle to the
//! [`SessionListener`]s it was built with (chat presence, for one):
//! registering is `opened`, dropping the handle `closed`, with
//! [`SessionEnd::Superseded`] when a newer connection of the same user and
//! client id had registered in the meantime (see [`crate::session_events`]).
//! A connection registers before its engine session is attached, so that
//! order holds across a take-over.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use parley_engine::codec::Version;

pub use crate::listeners::TransportKind;
use crate::session_events::{SessionEnd, SessionListener, SessionRef};

/// What the registry knows about one live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The authenticated user.
    pub user: String,
    /// The client id the client connected with.
    pub client_id: String,
    /// The transport.
    pub transport: TransportKind,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The MQTT version spoken.
    pub version: Version,
    /// When CONNECT was accepted, ms since the Unix epoch.
    pub connected_at_ms: i64,
}

/// One live connection, without the names (they are its key).
struct Entry {
    id: u64,
    transport: TransportKind,
    peer: SocketAddr,
    version: Version,
    connected_at_ms: i64,
    kick: CancellationToken,
    taken_over: Arc<AtomicBool>,
}

/// A connection's key: (user, client id), shared with its handle.
type Key = (Arc<str>, Arc<str>);

/// The live sessions of the node, by user and client id: one ordered map,
/// so an idle connection costs one compact entry and two shared names.
#[derive(Default)]
pub struct SessionRegistry {
    sessions: Mutex<BTreeMap<Key, Entry>>,
    next_id: AtomicU64,
    /// Told of every connection's opening and closing; fixed when built.
    listeners: Vec<Arc<dyn SessionListener>>,
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRegistry")
            .field("sessions", &self.len())
            .finish()
    }
}

impl SessionRegistry {
    /// An empty registry that reports to no one.
    pub fn new() -> SessionRegistry {
        SessionRegistry::default()
    }

    /// An empty registry reporting every connection's lifecycle to `listeners`.
    pub fn with_listeners(listeners: Vec<Arc<dyn SessionListener>>) -> SessionRegistry {
        SessionRegistry {
            listeners,
            ..SessionRegistry::default()
        }
    }

    /// Registers a connection that passed CONNECT, and reports it opened.
    /// Call it before the connection's engine session is attached. A
    /// connection with the same user and client id that is still listed is
    /// replaced (the router is taking its session over); its own handle then
    /// no longer unregisters anything and reports itself superseded.
    /// Its kick token is a child of `shutdown`, so one wait covers both.
    pub fn register(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
        info: SessionInfo,
    ) -> SessionHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kick = shutdown.child_token();
        let key: Key = (Arc::from(info.user), Arc::from(info.client_id));
        let taken_over = Arc::new(AtomicBool::new(false));
        self.lock().insert(
            key.clone(),
            Entry {
                id,
                transport: info.transport,
                peer: info.peer,
                version: info.version,
                connected_at_ms: info.connected_at_ms,
                kick: kick.clone(),
                taken_over: taken_over.clone(),
            },
        );
        let session = SessionRef {
            user: &key.0,
            client_id: &key.1,
        };
        self.listeners.iter().for_each(|l| l.opened(session));
        SessionHandle {
            registry: self.clone(),
            key,
            id,
            kick,
            taken_over,
        }
    }

    /// Every live session, ordered by user, then client id.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.lock()
            .iter()
            .map(|((user, client_id), e)| SessionInfo {
                user: user.to_string(),
                client_id: client_id.to_string(),
                transport: e.transport,
                peer: e.peer,
                version: e.version,
                connected_at_ms: e.connected_at_ms,
            })
            .collect()
    }

    /// Ends the session of `user` with `client_id`; `false` if there is none.
    pub fn kick(&self, user: &str, client_id: &str) -> bool {
        match self.lock().get(&(Arc::from(user), Arc::from(client_id))) {
            Some(entry) => {
                entry.kick.cancel();
                true
            }
            None => false,
        }
    }

    /// Ends connection `id` of `user` with `client_id`, because a connection
    /// elsewhere took its session over; `false` if it is not live any more.
    pub fn take_over(&self, user: &str, client_id: &str, id: u64) -> bool {
        match self.lock().get(&(Arc::from(user), Arc::from(client_id))) {
            Some(entry) if entry.id == id => {
                entry.taken_over.store(true, Ordering::Relaxed);
                entry.kick.cancel();
                true
            }
            _ => false,
        }
    }

    /// Ends every session of `user`; returns how many there were.
    pub fn kick_user(&self, user: &str) -> usize {
        let sessions = self.lock();
        let from: Key = (Arc::from(user), Arc::from(""));
        sessions
            .range(from..)
            .take_while(|((u, _), _)| &**u == user)
            .inspect(|(_, e)| e.kick.cancel())
            .count()
    }

    /// Whether `user` has a live connection on this node.
    pub fn has_user(&self, user: &str) -> bool {
        let sessions = self.lock();
        let from: Key = (Arc::from(user), Arc::from(""));
        sessions
            .range(from..)
            .next()
            .is_some_and(|((u, _), _)| &**u == user)
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live sessions per transport (every transport listed, with 0 if none).
    pub fn count_by_transport(&self) -> Vec<(TransportKind, usize)> {
        let sessions = self.lock();
        TransportKind::ALL
            .iter()
            .map(|&t| (t, sessions.values().filter(|e| e.transport == t).count()))
            .collect()
    }

    /// Unlists the connection `id` under `key` unless a newer one replaced
    /// it, then reports it closed.
    fn unregister(&self, key: &Key, id: u64) {
        let end = {
            let mut sessions = self.lock();
            if sessions.get(key).is_some_and(|e| e.id == id) {
                sessions.remove(key);
                SessionEnd::Ended
            } else {
                SessionEnd::Superseded
            }
        };
        let session = SessionRef {
            user: &key.0,
            client_id: &key.1,
        };
        self.listeners.iter().for_each(|l| l.closed(session, end));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Entry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's registration; unregisters it when dropped.
pub struct SessionHandle {
    registry: Arc<SessionRegistry>,
    key: Key,
    id: u64,
    kick: CancellationToken,
    taken_over: Arc<AtomicBool>,
}

impl SessionHandle {
    /// Completes when the session is kicked or the node shuts down.
    pub fn kicked(&self) -> WaitForCancellationFuture<'_> {
        self.kick.cancelled()
    }

    /// This connection's id in the registry (unique on the node).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the kick was a takeover by a connection on another node.
    pub fn was_taken_over(&self) -> bool {
        self.taken_over.load(Ordering::Relaxed)
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.registry.unregister(&self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn info(user: &str, client_id: &str, transport: TransportKind) -> SessionInfo {
        SessionInfo {
            user: user.into(),
            client_id: client_id.into(),
            transport,
            peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
            version: Version::V5,
            connected_at_ms: 1,
        }
    }

    #[test]
    fn lists_counts_and_unregisters_on_drop() {
        let registry = Arc::new(SessionRegistry::new());
        let b = registry.register(
            &CancellationToken::new(),
            info("bob", "phone", TransportKind::WebSocket),
        );
        let a = registry.register(
            &CancellationToken::new(),
            info("alice", "laptop", TransportKind::Tcp),
        );
        let listed: Vec<_> = registry
            .list()
            .into_iter()
            .map(|s| (s.user, s.client_id))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("alice".to_owned(), "laptop".to_owned()),
                ("bob".to_owned(), "phone".to_owned())
            ]
        );
        assert_eq!(
            registry.count_by_transport(),
            vec![
                (TransportKind::Tcp, 1),
                (TransportKind::Tls, 0),
                (TransportKind::WebSocket, 1)
            ]
        );
        drop(a);
        drop(b);
        assert!(registry.is_empty());
    }

    #[test]
    fn kick_reaches_only_the_named_session() {
        let registry = Arc::new(SessionRegistry::new());
        let phone = registry.register(
            &CancellationToken::new(),
            info("alice", "phone", TransportKind::Tcp),
        );
        let laptop = registry.register(
            &CancellationToken::new(),
            info("alice", "laptop", TransportKind::Tcp),
        );
        assert!(!registry.kick("alice", "tablet"));
        assert!(!registry.kick("bob", "phone"));
        assert!(registry.kick("alice", "phone"));
        assert!(phone.kicked().now_or_never().is_some());
        assert!(laptop.kicked().now_or_never().is_none());
        assert_eq!(registry.kick_user("alice"), 2);
        assert!(laptop.kicked().now_or_never().is_some());
        assert_eq!(registry.kick_user("nobody"), 0);
    }

    #[test]
    fn shutting_down_ends_every_session() {
        let registry = Arc::new(SessionRegistry::new());
        let shutdown = CancellationToken::new();
        let phone = registry.register(&shutdown, info("alice", "phone", TransportKind::Tcp));
        let other = registry.register(
            &CancellationToken::new(),
            info("bob", "pc", TransportKind::Tcp),
        );
        assert!(phone.kicked().now_or_never().is_none());
        shutdown.cancel();
        assert!(phone.kicked().now_or_never().is_some());
        assert!(other.kicked().now_or_never().is_none());
    }

    /// Writes down what it is told, in order.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl SessionListener for Recorder {
        fn opened(&self, s: SessionRef<'_>) {
            let event = format!("opened {}/{}", s.user, s.client_id);
            self.0.lock().unwrap().push(event);
        }

        fn closed(&self, s: SessionRef<'_>, end: SessionEnd) {
            let event = format!("closed {}/{} {end:?}", s.user, s.client_id);
            self.0.lock().unwrap().push(event);
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    #[test]
    fn listeners_are_told_of_every_open_and_close_in_order() {
        let recorder = Arc::new(Recorder::default());
        let second = Arc::new(Recorder::default());
        let registry = Arc::new(SessionRegistry::with_listeners(vec![
            recorder.clone(),
            second.clone(),
        ]));
        let shutdown = CancellationToken::new();
        let phone = registry.register(&shutdown, info("alice", "phone", TransportKind::Tcp));
        let laptop = registry.register(&shutdown, info("alice", "laptop", TransportKind::Tcp));
        assert_eq!(
            recorder.take(),
            ["opened alice/phone", "opened alice/laptop"]
        );
        // A kick does not close anything by itself: the connection does, by
        // dropping its handle.
        assert!(registry.kick("alice", "phone"));
        assert!(recorder.take().is_empty());
        drop(phone);
        drop(laptop);
        assert_eq!(
            recorder.take(),
            ["closed alice/phone Ended", "closed alice/laptop Ended"]
        );
        assert_eq!(second.take().len(), 4, "every listener is told everything");
    }

    #[test]
    fn a_take_over_opens_the_new_connection_before_the_old_one_closes() {
        let recorder = Arc::new(Recorder::default());
        let registry = Arc::new(SessionRegistry::with_listeners(vec![recorder.clone()]));
        let shutdown = CancellationToken::new();
        let old = registry.register(&shutdown, info("alice", "phone", TransportKind::Tcp));
        let new = registry.register(&shutdown, info("alice", "phone", TransportKind::Tls));
        drop(old);
        assert_eq!(
            recorder.take(),
            [
                "opened alice/phone",
                "opened alice/phone",
                "closed alice/phone Superseded"
            ]
        );
        drop(new);
        assert_eq!(recorder.take(), ["closed alice/phone Ended"]);
        assert!(registry.is_empty());
    }

    #[test]
    fn a_takeover_ends_only_the_connection_it_names() {
        let registry = Arc::new(SessionRegistry::new());
        let old = registry.register(
            &CancellationToken::new(),
            info("alice", "phone", TransportKind::Tcp),
        );
        assert!(!registry.take_over("alice", "phone", old.id() + 1));
        assert!(old.kicked().now_or_never().is_none());
        assert!(registry.take_over("alice", "phone", old.id()));
        assert!(old.kicked().now_or_never().is_some());
        assert!(old.was_taken_over());
        let other = registry.register(
            &CancellationToken::new(),
            info("bob", "phone", TransportKind::Tcp),
        );
        assert!(registry.kick("bob", "phone"));
        assert!(!other.was_taken_over(), "a kick is not a takeover");
    }

    #[test]
    fn a_taken_over_session_does_not_unregister_its_successor() {
        let registry = Arc::new(SessionRegistry::new());
        let old = registry.register(
            &CancellationToken::new(),
            info("alice", "phone", TransportKind::Tcp),
        );
        let new = registry.register(
            &CancellationToken::new(),
            info("alice", "phone", TransportKind::Tls),
        );
        drop(old);
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.list()[0].transport, TransportKind::Tls);
        assert!(registry.kick("alice", "phone"));
        assert!(new.kicked().now_or_never().is_some());
    }
}
