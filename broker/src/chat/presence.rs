//! Presence: a user is online while at least one of their sessions is
//! connected. Transitions are published, retained, on `p/{user}`; the topic
//! ACL lets only the user and those who share a conversation with them read it.
//! An abrupt disconnect (the case a last will covers) publishes OFFLINE too.
//!
//! The tracker follows the node's connections as a [`SessionListener`]
//! (registered where the server is wired): it counts each user's open
//! connections, so a take-over, whose new connection opens before the old
//! one closes, never shows the user offline.
//!
//! In a cluster with a session directory the tracker only counts this
//! node's sessions; the directory's cluster presence publishes (see
//! `crate::directory::presence`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chat_core::ids::UserId;
use chat_core::topics::presence_topic;
use parley_proto::v1::{Envelope, Presence, PresenceState};

use super::now_ms;
use crate::cluster::{Deliveries, Fanout};
use crate::session_events::{SessionEnd, SessionListener, SessionRef};

/// Counts live sessions per user and publishes presence changes.
pub struct PresenceTracker {
    publisher: Deliveries,
    sessions: Mutex<HashMap<UserId, usize>>,
    /// Set when the cluster's presence publishes instead.
    counting_only: AtomicBool,
}

impl PresenceTracker {
    /// A tracker publishing through `publisher` (keyed by user on a cluster bus).
    pub fn new(publisher: Deliveries) -> PresenceTracker {
        PresenceTracker {
            publisher,
            sessions: Mutex::default(),
            counting_only: AtomicBool::new(false),
        }
    }

    /// Stops publishing: from now on the cluster's presence, which sees
    /// every node's sessions, publishes `p/{user}`; this tracker only counts.
    pub fn leave_publishing_to_cluster(&self) {
        self.counting_only.store(true, Ordering::Relaxed);
    }

    /// A session of `user` connected.
    fn connected(&self, user: &UserId) {
        let first = {
            let mut sessions = self.lock();
            let n = sessions.entry(user.clone()).or_insert(0);
            *n += 1;
            *n == 1
        };
        if first {
            self.publish(user, PresenceState::Online);
        }
    }

    /// A session of `user` ended.
    fn disconnected(&self, user: &UserId) {
        let last = {
            let mut sessions = self.lock();
            match sessions.get_mut(user) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    sessions.remove(user);
                    true
                }
                None => false,
            }
        };
        if last {
            self.publish(user, PresenceState::Offline);
        }
    }

    /// Whether `user` has a live session on this node.
    pub fn is_online(&self, user: &UserId) -> bool {
        self.lock().contains_key(user)
    }

    /// How many users have a live session on this node.
    pub fn online_users(&self) -> usize {
        self.lock().len()
    }

    fn publish(&self, user: &UserId, state: PresenceState) {
        if self.counting_only.load(Ordering::Relaxed) {
            return;
        }
        let envelope = Envelope::from(Presence {
            user: user.to_string(),
            state: state as i32,
            last_seen_ms: now_ms(),
        });
        self.publisher.send_and_forget(
            user.as_str(),
            1,
            Fanout::retained(
                presence_topic(user),
                parley_proto::encode_envelope(&envelope).into(),
            ),
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, usize>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every connection counts, a superseded one included: its successor opened
/// before it closed, so the count never passes through zero in a take-over.
impl SessionListener for PresenceTracker {
    fn opened(&self, session: SessionRef<'_>) {
        // Connections are of authenticated users, whose ids are valid.
        if let Ok(user) = UserId::parse(session.user) {
            self.connected(&user);
        }
    }

    fn closed(&self, session: SessionRef<'_>, _end: SessionEnd) {
        if let Ok(user) = UserId::parse(session.user) {
            self.disconnected(&user);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use bytes::BytesMut;
    use parley_engine::codec::{Codec, Version};
    use parley_engine::message::SubscriptionOptions;
    use parley_engine::router::{Attachment, ConnectRequest, Router, RouterConfig};
    use parley_engine::session::ConnectionParams;
    use parley_proto::v1::envelope::Kind;
    use rumqttd::protocol::Packet;

    use super::*;
    use crate::publisher::ServerPublisher;

    /// A tracker publishing into a real engine, told of alice's connections
    /// as the session registry tells its listeners; and a session of bob's
    /// subscribed to alice's presence topic.
    struct Node {
        router: Arc<Router>,
        tracker: PresenceTracker,
        watcher: Attachment,
    }

    fn node() -> Node {
        let router = Arc::new(Router::new(RouterConfig::default()));
        let publisher = ServerPublisher::new(router.clone());
        let tracker = PresenceTracker::new(Deliveries::Local(publisher));
        let watcher = router
            .connect(
                ConnectRequest {
                    key: "bob~watcher".into(),
                    namespace: "bob".into(),
                    clean_start: true,
                    session_expiry_secs: 0,
                    params: ConnectionParams::defaults(Codec::new(Version::V4, 1 << 20)),
                    will: None,
                },
                Instant::now(),
                &mut BytesMut::new(),
            )
            .attachment;
        let filters = [("p/alice".to_owned(), SubscriptionOptions::default())];
        let granted = router.subscribe(&watcher, &filters, Instant::now());
        assert!(granted.is_some_and(|g| g.iter().all(Result::is_ok)));
        Node {
            router,
            tracker,
            watcher,
        }
    }

    impl Node {
        fn alice(client_id: &str) -> SessionRef<'_> {
            SessionRef {
                user: "alice",
                client_id,
            }
        }

        fn opened(&self, client_id: &str) {
            self.tracker.opened(Node::alice(client_id));
        }

        fn closed(&self, client_id: &str, end: SessionEnd) {
            self.tracker.closed(Node::alice(client_id), end);
        }

        /// The presence states published for alice since the last call.
        fn published(&self) -> Vec<PresenceState> {
            let mut out = BytesMut::new();
            self.router.with_session(&self.watcher, |session| {
                while session.wants_transmit() {
                    session.poll_transmit(Instant::now(), &mut out, |_| {});
                }
            });
            let codec = Codec::new(Version::V4, 1 << 20);
            let mut states = Vec::new();
            while let Some(incoming) = codec.decode(&mut out).expect("a PUBLISH") {
                let Packet::Publish(publish, _) = incoming.packet else {
                    panic!("not a PUBLISH: {:?}", incoming.packet);
                };
                assert_eq!(&publish.topic[..], b"p/alice");
                match parley_proto::decode_envelope(&publish.payload)
                    .unwrap()
                    .kind
                {
                    Some(Kind::Presence(p)) => states.push(p.state()),
                    other => panic!("not a presence: {other:?}"),
                }
            }
            states
        }
    }

    #[test]
    fn the_first_connection_shows_the_user_online_and_the_last_offline() {
        let node = node();
        let alice = UserId::parse("alice").unwrap();
        node.opened("phone");
        assert_eq!(node.published(), [PresenceState::Online]);
        assert!(node.tracker.is_online(&alice));
        node.opened("laptop");
        node.closed("phone", SessionEnd::Ended);
        assert!(node.published().is_empty(), "still online on her laptop");
        node.closed("laptop", SessionEnd::Ended);
        assert_eq!(node.published(), [PresenceState::Offline]);
        assert!(!node.tracker.is_online(&alice));
        assert_eq!(node.tracker.online_users(), 0);
    }

    #[test]
    fn a_take_over_does_not_flap() {
        let node = node();
        node.opened("phone");
        assert_eq!(node.published(), [PresenceState::Online]);
        // The same client id again, in the registry's order: the new
        // connection opens before the old one closes, superseded.
        node.opened("phone");
        node.closed("phone", SessionEnd::Superseded);
        assert!(node.published().is_empty(), "no OFFLINE, no second ONLINE");
        assert_eq!(node.tracker.online_users(), 1);
        node.closed("phone", SessionEnd::Ended);
        assert_eq!(node.published(), [PresenceState::Offline]);
    }

    #[test]
    fn a_close_without_an_open_changes_nothing() {
        let node = node();
        node.closed("phone", SessionEnd::Ended);
        assert!(node.published().is_empty());
        assert_eq!(node.tracker.online_users(), 0);
    }
}
