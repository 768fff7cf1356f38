//! Who talks to whom in the `chat` scenario: users `{prefix}{i}` grouped into
//! 1:1 pairs or groups, the conversation each pair or group shares, and which
//! members send.
//!
//! Users take client indexes `0..N` in conversation order: pair `k` is users
//! `2k` and `2k+1`, group `k` is users `kG..(k+1)G`. The first `senders`
//! members of every conversation send; sender ids count up across
//! conversations and travel in every message's `client_message_id`.

use std::fmt;

use serde::Serialize;

/// Longest user id Parley accepts.
pub const USER_ID_MAX_LEN: usize = 32;

/// How users are grouped into conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `pairs` direct (1:1) conversations of two users each.
    Pairs {
        /// Number of pairs.
        pairs: usize,
    },
    /// `count` groups of `size` users each, created with `CreateGroup`.
    Groups {
        /// Members per group.
        size: usize,
        /// Number of groups.
        count: usize,
    },
}

impl Layout {
    /// Members of every conversation.
    pub fn conversation_size(&self) -> usize {
        match self {
            Layout::Pairs { .. } => 2,
            Layout::Groups { size, .. } => *size,
        }
    }

    /// Number of conversations.
    pub fn conversations(&self) -> usize {
        match self {
            Layout::Pairs { pairs } => *pairs,
            Layout::Groups { count, .. } => *count,
        }
    }

    /// Total users.
    pub fn users(&self) -> usize {
        self.conversation_size()
            .saturating_mul(self.conversations())
    }

    /// `pairs` or `groups`.
    pub fn kind(&self) -> LayoutKind {
        match self {
            Layout::Pairs { .. } => LayoutKind::Pairs,
            Layout::Groups { .. } => LayoutKind::Groups,
        }
    }
}

/// The kind of conversations a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// Direct 1:1 conversations.
    Pairs,
    /// Group conversations.
    Groups,
}

impl fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutKind::Pairs => "pairs",
            LayoutKind::Groups => "groups",
        })
    }
}

/// A conversation's id, or how it comes to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationKey {
    /// A direct conversation `{a}~{b}`, opened by its first member with
    /// `OpenDirect`.
    Direct(String),
    /// A group, created by a `CreateGroup` request of its first member; its id
    /// comes back in the answer.
    Group {
        /// The group's name.
        name: String,
    },
}

/// One conversation of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationPlan {
    /// Its id (direct) or how to create it (group).
    pub key: ConversationKey,
    /// Client indexes of the members; the first creates a group.
    pub members: Vec<usize>,
    /// Sender ids of the members who send (the first `senders` members).
    pub senders: Vec<u32>,
}

/// One user (one MQTT connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPlan {
    /// Client index (login, client id).
    pub index: usize,
    /// User id.
    pub name: String,
    /// Index of the user's conversation in [`ChatPlan::conversations`].
    pub conversation: usize,
    /// The user's sender id, if it sends.
    pub sender: Option<u32>,
    /// Whether it opens its conversation before the run starts: creates
    /// the group (`CreateGroup`), or opens the pair's direct conversation
    /// (`OpenDirect`), so that no timed message pays for creating it.
    pub opens: bool,
}

/// Every user and conversation of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPlan {
    /// Users in client-index order.
    pub users: Vec<UserPlan>,
    /// Conversations.
    pub conversations: Vec<ConversationPlan>,
    /// For each sender id, the client index of the sending user.
    pub sender_users: Vec<usize>,
}

/// A layout that can't be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// No conversations requested.
    #[error("the scenario needs at least one pair or group")]
    NoConversations,
    /// A group of fewer than two.
    #[error("a group needs at least 2 members, got {0}")]
    GroupTooSmall(usize),
    /// No senders, or more senders than members.
    #[error("senders per conversation must be between 1 and {members}, got {senders}")]
    BadSenders {
        /// Requested senders.
        senders: usize,
        /// Members per conversation.
        members: usize,
    },
    /// More users than the bench can number.
    #[error("{0} users is more than the bench supports")]
    TooManyUsers(usize),
    /// A generated user name is not a valid Parley user id.
    #[error(
        "user {0:?} is not a valid user id (1 to {USER_ID_MAX_LEN} bytes of a-z, 0-9, '_', '-', \
         '.', starting with a letter or digit); pick another --user-prefix"
    )]
    BadUserName(String),
}

/// Whether `s` is a valid Parley user id.
pub fn valid_user_id(s: &str) -> bool {
    let ok_byte = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b);
    let first_ok = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok && s.len() <= USER_ID_MAX_LEN && s.bytes().all(ok_byte)
}

/// The id of the direct conversation of `a` and `b`: both names in byte
/// order joined by `~`.
pub fn direct_id(a: &str, b: &str) -> String {
    if a.as_bytes() <= b.as_bytes() {
        format!("{a}~{b}")
    } else {
        format!("{b}~{a}")
    }
}

/// Plans the users `{prefix}{i}` of `layout` with `senders` senders per
/// conversation; groups are named `{group_name}-{k}`.
pub fn plan(
    layout: Layout,
    senders: usize,
    prefix: &str,
    group_name: &str,
) -> Result<ChatPlan, LayoutError> {
    if layout.conversations() == 0 {
        return Err(LayoutError::NoConversations);
    }
    if let Layout::Groups { size, .. } = layout {
        if size < 2 {
            return Err(LayoutError::GroupTooSmall(size));
        }
    }
    let size = layout.conversation_size();
    if senders == 0 || senders > size {
        return Err(LayoutError::BadSenders {
            senders,
            members: size,
        });
    }
    let total = layout.conversations().saturating_mul(size);
    if total > u32::MAX as usize {
        return Err(LayoutError::TooManyUsers(total));
    }
    let name = |i: usize| format!("{prefix}{i}");
    // The longest name is the last one; validate every name anyway (cheap).
    if let Some(bad) = (0..total).map(name).find(|n| !valid_user_id(n)) {
        return Err(LayoutError::BadUserName(bad));
    }

    let mut users = Vec::with_capacity(total);
    let mut conversations = Vec::with_capacity(layout.conversations());
    let mut sender_users = Vec::new();
    for c in 0..layout.conversations() {
        let members: Vec<usize> = (c * size..(c + 1) * size).collect();
        let key = match layout {
            Layout::Pairs { .. } => {
                ConversationKey::Direct(direct_id(&name(members[0]), &name(members[1])))
            }
            Layout::Groups { .. } => ConversationKey::Group {
                name: format!("{group_name}-{c}"),
            },
        };
        let mut conv_senders = Vec::with_capacity(senders);
        for (position, &index) in members.iter().enumerate() {
            let sender = (position < senders).then(|| {
                let id = sender_users.len() as u32;
                sender_users.push(index);
                conv_senders.push(id);
                id
            });
            users.push(UserPlan {
                index,
                name: name(index),
                conversation: c,
                sender,
                opens: position == 0,
            });
        }
        conversations.push(ConversationPlan {
            key,
            members,
            senders: conv_senders,
        });
    }
    Ok(ChatPlan {
        users,
        conversations,
        sender_users,
    })
}

impl ChatPlan {
    /// The conversation sender `id` sends to.
    pub fn conversation_of_sender(&self, id: u32) -> Option<&ConversationPlan> {
        let user = self.sender_users.get(id as usize)?;
        self.conversations.get(self.users.get(*user)?.conversation)
    }

    /// Deliveries expected when sender `id` had `accepted` messages stored:
    /// one per member of its conversation, the sender included.
    pub fn deliveries_of(&self, id: u32, accepted: u64) -> u64 {
        self.conversation_of_sender(id)
            .map_or(0, |c| accepted * c.members.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_use_direct_ids_in_byte_order() {
        let plan = plan(Layout::Pairs { pairs: 6 }, 1, "u", "g").unwrap();
        assert_eq!(plan.users.len(), 12);
        assert_eq!(
            plan.conversations[0].key,
            ConversationKey::Direct("u0~u1".into())
        );
        // "u10" sorts before "u11", and "u9" after "u10" byte-wise.
        assert_eq!(
            plan.conversations[5].key,
            ConversationKey::Direct("u10~u11".into())
        );
        assert_eq!(direct_id("u9", "u10"), "u10~u9");
        assert_eq!(direct_id("u10", "u9"), "u10~u9");
        assert_eq!(plan.conversations[5].members, [10, 11]);
        assert_eq!(plan.conversations[5].senders, [5]);
        assert_eq!(plan.sender_users[5], 10);
        assert_eq!(plan.users[10].sender, Some(5));
        assert_eq!(plan.users[11].sender, None);
        let openers: Vec<usize> = plan
            .users
            .iter()
            .filter(|u| u.opens)
            .map(|u| u.index)
            .collect();
        assert_eq!(openers, (0..12).step_by(2).collect::<Vec<_>>());
        assert_eq!(plan.deliveries_of(5, 7), 14);
    }

    #[test]
    fn groups_have_a_creator_and_several_senders() {
        let plan = plan(Layout::Groups { size: 4, count: 2 }, 3, "g-", "bench").unwrap();
        assert_eq!(plan.users.len(), 8);
        assert_eq!(
            plan.conversations[1].key,
            ConversationKey::Group {
                name: "bench-1".into()
            }
        );
        assert_eq!(plan.conversations[1].members, [4, 5, 6, 7]);
        assert_eq!(plan.conversations[1].senders, [3, 4, 5]);
        let creators: Vec<usize> = plan
            .users
            .iter()
            .filter(|u| u.opens)
            .map(|u| u.index)
            .collect();
        assert_eq!(creators, [0, 4]);
        assert_eq!(plan.users[7].sender, None);
        assert_eq!(plan.users[6].sender, Some(5));
        assert_eq!(plan.users[6].name, "g-6");
        assert_eq!(
            plan.conversation_of_sender(4).map(|c| c.members.len()),
            Some(4)
        );
        assert_eq!(plan.deliveries_of(4, 10), 40);
        assert_eq!(plan.deliveries_of(99, 10), 0);
    }

    #[test]
    fn rejects_impossible_layouts() {
        assert_eq!(
            plan(Layout::Pairs { pairs: 0 }, 1, "u", "g"),
            Err(LayoutError::NoConversations)
        );
        assert_eq!(
            plan(Layout::Groups { size: 1, count: 3 }, 1, "u", "g"),
            Err(LayoutError::GroupTooSmall(1))
        );
        assert_eq!(
            plan(Layout::Pairs { pairs: 1 }, 3, "u", "g"),
            Err(LayoutError::BadSenders {
                senders: 3,
                members: 2
            })
        );
        assert_eq!(
            plan(Layout::Pairs { pairs: 1 }, 1, "Bench", "g"),
            Err(LayoutError::BadUserName("Bench0".into()))
        );
        let long = "a".repeat(31);
        assert_eq!(
            plan(Layout::Pairs { pairs: 6 }, 1, &long, "g"),
            Err(LayoutError::BadUserName(format!("{long}10")))
        );
    }

    #[test]
    fn user_id_rules() {
        assert!(valid_user_id("bench-user-0"));
        assert!(valid_user_id("0a.b_c"));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("-a"));
        assert!(!valid_user_id("a~b"));
        assert!(!valid_user_id(&"a".repeat(33)));
    }
}
