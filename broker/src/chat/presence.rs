//! Presence: a user is online while at least one of their sessions is
//! connected. Transitions are published, retained, on `p/{user}`; the topic
//! ACL lets only the user and those who share a conversation with them read it.
//! An abrupt disconnect (the case a last will covers) publishes OFFLINE too.
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
    pub fn connected(&self, user: &UserId) {
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
    pub fn disconnected(&self, user: &UserId) {
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
