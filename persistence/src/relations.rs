//! What one user decided about another: blocked them, or accepted their
//! message request (see `docs/topics.md`, "Message requests and blocking").

/// A decision of one user about another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Relation {
    /// The user accepted messages, presence, typing, receipts and key
    /// fetches from the other (by accepting a request, replying, or opening
    /// the direct conversation).
    Accepted,
    /// The user blocked the other.
    Blocked,
    /// The user wants to be added to groups only by users they accepted
    /// (stored with an empty `other`).
    GroupConsentRequired,
}

impl Relation {
    /// The stored code of the relation.
    pub fn code(self) -> i16 {
        match self {
            Relation::Accepted => 1,
            Relation::Blocked => 2,
            Relation::GroupConsentRequired => 3,
        }
    }

    /// The relation a stored code stands for, if any.
    pub fn from_code(code: i16) -> Option<Relation> {
        match code {
            1 => Some(Relation::Accepted),
            2 => Some(Relation::Blocked),
            3 => Some(Relation::GroupConsentRequired),
            _ => None,
        }
    }
}

/// One stored decision: `user` decided `relation` about `other` at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationRecord {
    /// Who decided.
    pub user: String,
    /// About whom.
    pub other: String,
    /// What.
    pub relation: Relation,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
}
