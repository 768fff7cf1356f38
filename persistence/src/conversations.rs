//! Conversation metadata: records, members and roles, and per-member read
//! cursors. Part of [`MetadataStore`](crate::MetadataStore).
//!
//! The store is deliberately dumb: `chat_core` decides what a valid change
//! is (who may add members, group size limits, ...) and the broker writes the
//! resulting record with a compare-and-set on [`ConversationRecord::version`].

/// Direct (two users) or group conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    /// Between exactly two users; the id is derived from the pair.
    Direct,
    /// A named group with roles.
    Group,
}

/// A member's role in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// May read and write.
    Member,
    /// May also change membership and the name.
    Admin,
    /// The creator; may also change roles.
    Owner,
}

/// One member of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// The member's username.
    pub user: String,
    /// The member's role.
    pub role: Role,
    /// When the member joined, ms since the Unix epoch.
    pub joined_at_ms: i64,
}

/// A conversation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRecord {
    /// The conversation id (see `chat_core::ids::ConversationId`).
    pub id: String,
    /// Direct or group.
    pub kind: ConversationKind,
    /// Group name (empty for direct conversations).
    pub name: String,
    /// Current members, each user at most once.
    pub members: Vec<MemberRecord>,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// Last change of name or membership, ms since the Unix epoch.
    pub updated_at_ms: i64,
    /// Starts at 1 on create; every successful update increments it.
    pub version: u64,
}

impl ConversationRecord {
    /// The member entry of `user`, if a member.
    pub fn member(&self, user: &str) -> Option<&MemberRecord> {
        self.members.iter().find(|m| m.user == user)
    }
}

/// A member's read position in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadCursor {
    /// The member.
    pub user: String,
    /// Highest sequence number the member has read (0 = none).
    pub read_up_to: u64,
}
