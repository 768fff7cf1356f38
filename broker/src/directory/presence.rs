//! Cluster-wide presence: a user is online while they have a live session
//! on any node, and offline once the last one is gone for
//! `cluster.presence_offline_delay_ms` (so a radio that drops and comes
//! back within that time does not flap their contacts' view).
//!
//! Pure: the directory feeds it the changes it consumes from the bus and the
//! presence records it sees there (both keyed by the user, so every node sees
//! one user's in one order), and carries out the [`Action`]s it returns. Of
//! all nodes, only one acts on a change:
//!
//! - **online**: the node whose session is the user's first anywhere
//!   publishes ONLINE, unless the last presence record it saw already says
//!   so (a reconnect within the delay publishes nothing); a session joining
//!   a user last shown offline publishes it too;
//! - **offline**: the node whose session left last (or that removed a dead
//!   node's sessions) arms a timer; when it fires with the user still
//!   without sessions and shown online, it publishes OFFLINE. Any session
//!   joining meanwhile cancels it (a new epoch);
//! - **correction**: a record that contradicts the directory (an OFFLINE
//!   that crossed a new session on the bus) is answered by the node of the
//!   user's last joined session (ONLINE again) or of the last left one (a
//!   new timer).

use std::collections::HashMap;

/// What the directory must do for presence after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Publish `p/{user}` (retained) with this state.
    Publish {
        /// The user.
        user: String,
        /// ONLINE or OFFLINE.
        online: bool,
    },
    /// Call [`PresenceMachine::offline_due`] with `epoch` after the delay.
    ArmOffline {
        /// The user.
        user: String,
        /// Identifies the timer; a newer change cancels it.
        epoch: u64,
    },
}

/// What this node knows about one user's presence.
#[derive(Debug, Default)]
struct UserPresence {
    /// The state of the last presence record seen on the bus.
    shown: Option<bool>,
    /// The node of the session that joined last.
    last_joined_by: Option<u16>,
    /// The node that announced the last departure.
    last_left_by: Option<u16>,
    /// Grows with every change; a timer of an older epoch is void.
    epoch: u64,
    /// Whether this node has a timer running for the current epoch.
    armed: bool,
}

/// The presence decisions of node `node_id`.
#[derive(Debug)]
pub struct PresenceMachine {
    node_id: u16,
    users: HashMap<String, UserPresence>,
}

impl PresenceMachine {
    /// The machine of node `node_id`.
    pub fn new(node_id: u16) -> PresenceMachine {
        PresenceMachine {
            node_id,
            users: HashMap::new(),
        }
    }

    /// A session of `user` joined (announced by node `by`); they now have
    /// `sessions` live sessions.
    pub fn joined(&mut self, user: &str, by: u16, sessions: usize) -> Option<Action> {
        let me = self.node_id;
        let state = self.users.entry(user.to_owned()).or_default();
        state.epoch += 1;
        state.armed = false;
        state.last_joined_by = Some(by);
        // The first session anywhere, or one joining a user shown offline.
        let news = (sessions == 1 && state.shown != Some(true)) || state.shown == Some(false);
        (by == me && sessions > 0 && news).then(|| Action::Publish {
            user: user.to_owned(),
            online: true,
        })
    }

    /// A session of `user` left (announced by node `by`); `sessions` remain.
    pub fn left(&mut self, user: &str, by: u16, sessions: usize) -> Option<Action> {
        let me = self.node_id;
        let state = self.users.entry(user.to_owned()).or_default();
        state.last_left_by = Some(by);
        if sessions > 0 {
            return None;
        }
        state.epoch += 1;
        state.armed = by == me;
        state.armed.then(|| Action::ArmOffline {
            user: user.to_owned(),
            epoch: state.epoch,
        })
    }

    /// The timer of `epoch` fired; `user` has `sessions` live sessions now.
    pub fn offline_due(&mut self, user: &str, epoch: u64, sessions: usize) -> Option<Action> {
        let state = self.users.get_mut(user)?;
        if state.epoch != epoch || !state.armed {
            return None;
        }
        state.armed = false;
        (sessions == 0 && state.shown != Some(false)).then(|| Action::Publish {
            user: user.to_owned(),
            online: false,
        })
    }

    /// A presence record of `user` saying `online` went by on the bus;
    /// `user` has `sessions` live sessions now.
    pub fn shown(&mut self, user: &str, online: bool, sessions: usize) -> Option<Action> {
        let me = self.node_id;
        let state = self.users.entry(user.to_owned()).or_default();
        state.shown = Some(online);
        if !online && sessions > 0 && state.last_joined_by == Some(me) {
            return Some(Action::Publish {
                user: user.to_owned(),
                online: true,
            });
        }
        if online && sessions == 0 && state.last_left_by == Some(me) && !state.armed {
            state.epoch += 1;
            state.armed = true;
            return Some(Action::ArmOffline {
                user: user.to_owned(),
                epoch: state.epoch,
            });
        }
        if !online && sessions == 0 && !state.armed {
            // Nothing left to decide for this user: forget them.
            self.users.remove(user);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(user: &str, online: bool) -> Option<Action> {
        Some(Action::Publish {
            user: user.into(),
            online,
        })
    }

    #[test]
    fn online_once_offline_after_the_last_session_and_the_delay() {
        let (mut one, mut two) = (PresenceMachine::new(1), PresenceMachine::new(2));
        // Alice connects on node 1, then on node 2.
        assert_eq!(one.joined("alice", 1, 1), publish("alice", true));
        assert_eq!(
            two.joined("alice", 1, 1),
            None,
            "only the joining node publishes"
        );
        assert_eq!(one.shown("alice", true, 1), None);
        assert_eq!(two.shown("alice", true, 1), None);
        assert_eq!(one.joined("alice", 2, 2), None);
        assert_eq!(two.joined("alice", 2, 2), None, "already shown online");
        // She leaves node 1: still online.
        assert_eq!(one.left("alice", 1, 1), None);
        assert_eq!(two.left("alice", 1, 1), None);
        // She leaves node 2: node 2 arms the timer, and publishes when it fires.
        assert_eq!(one.left("alice", 2, 0), None);
        let Some(Action::ArmOffline { epoch, .. }) = two.left("alice", 2, 0) else {
            panic!("node 2 arms the offline timer");
        };
        assert_eq!(two.offline_due("alice", epoch, 0), publish("alice", false));
        assert_eq!(two.offline_due("alice", epoch, 0), None, "once");
    }

    #[test]
    fn a_second_session_publishes_nothing_before_the_first_online_is_seen() {
        let mut two = PresenceMachine::new(2);
        assert_eq!(two.joined("dave", 1, 1), None, "node 1 publishes");
        assert_eq!(two.joined("dave", 2, 2), None, "not the first session");
        assert_eq!(two.shown("dave", false, 2), publish("dave", true));
    }

    #[test]
    fn a_reconnect_within_the_delay_publishes_nothing() {
        let mut one = PresenceMachine::new(1);
        one.joined("bob", 1, 1);
        one.shown("bob", true, 1);
        let Some(Action::ArmOffline { epoch, .. }) = one.left("bob", 1, 0) else {
            panic!("armed");
        };
        assert_eq!(one.joined("bob", 1, 1), None, "still shown online");
        assert_eq!(one.offline_due("bob", epoch, 1), None, "the timer is void");
    }

    #[test]
    fn an_offline_that_crossed_a_new_session_is_corrected() {
        let (mut one, mut two) = (PresenceMachine::new(1), PresenceMachine::new(2));
        for m in [&mut one, &mut two] {
            m.joined("carol", 1, 1);
            m.shown("carol", true, 1);
            m.left("carol", 1, 0);
            m.joined("carol", 2, 1);
        }
        // Node 1's OFFLINE went out before it saw node 2's session.
        assert_eq!(one.shown("carol", false, 1), None);
        assert_eq!(two.shown("carol", false, 1), publish("carol", true));
    }
}
