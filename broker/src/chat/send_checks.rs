//! One connection's memo of the checks its messages passed before they were
//! stored: the conversation's record (membership) and the consent verdict
//! (delivered or a request), by conversation.
//!
//! Every message of a direct conversation is checked against the
//! conversation cache, the recipient's and the sender's relations and what
//! the two share: four lookups in caches that every connection of the node
//! shares, each behind a lock. A connection sending steadily to the same
//! conversations asks them again only when something may have changed:
//!
//! - a conversation changed on this node or another (the conversation
//!   cache's generation moved);
//! - someone's relations changed on this node (the relation cache's
//!   version moved);
//! - a cached answer it was drawn from turned `REFRESH_AFTER` old (a change
//!   made on another node of a cluster, seen only by re-reading, so the
//!   delay for those stays the caches' own `CACHE_TTL`).
//!
//! A refused message is never kept: it is checked again every time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use persistence::ConversationRecord;

/// Most conversations remembered per connection; past it the memo starts over.
const MAX_CONVERSATIONS: usize = 16;

/// What the shared caches were at when a check was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Versions {
    /// The conversation cache's generation.
    pub conversations: u64,
    /// The relation cache's version.
    pub relations: u64,
}

/// A conversation's checks as they were passed.
#[derive(Debug, Clone)]
pub(super) struct Passed {
    /// The conversation, with the sender a member.
    pub record: Arc<ConversationRecord>,
    /// Whether a message is a request (a stranger's direct message).
    pub request: bool,
}

/// A kept check, while `versions` hold and until `fresh_until`.
struct Kept {
    passed: Passed,
    versions: Versions,
    fresh_until: Instant,
}

/// A connection's kept checks, by conversation id. Empty (and unallocated)
/// until the connection sends a message.
#[derive(Default)]
pub struct SendChecks {
    by_conversation: HashMap<String, Kept>,
}

impl SendChecks {
    /// No checks kept.
    pub fn new() -> SendChecks {
        SendChecks::default()
    }

    /// The checks of `conversation` if they were passed at `versions` and
    /// are still fresh at `now`.
    pub(super) fn get(
        &self,
        conversation: &str,
        versions: Versions,
        now: Instant,
    ) -> Option<&Passed> {
        let kept = self.by_conversation.get(conversation)?;
        (kept.versions == versions && now < kept.fresh_until).then_some(&kept.passed)
    }

    /// Keeps `passed` for `conversation`, made at `versions` (read before
    /// the checks began) and fresh until `fresh_until`.
    pub(super) fn keep(
        &mut self,
        conversation: &str,
        passed: Passed,
        versions: Versions,
        fresh_until: Instant,
    ) {
        let kept = Kept {
            passed,
            versions,
            fresh_until,
        };
        if let Some(slot) = self.by_conversation.get_mut(conversation) {
            *slot = kept;
            return;
        }
        if self.by_conversation.len() >= MAX_CONVERSATIONS {
            self.by_conversation.clear();
        }
        self.by_conversation.insert(conversation.to_owned(), kept);
    }

    /// How many conversations' checks are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_conversation.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use persistence::ConversationKind;

    use super::*;

    fn passed(id: &str) -> Passed {
        Passed {
            record: Arc::new(ConversationRecord {
                id: id.to_owned(),
                kind: ConversationKind::Group,
                name: String::new(),
                members: Vec::new(),
                created_at_ms: 0,
                updated_at_ms: 0,
                version: 1,
            }),
            request: true,
        }
    }

    const AT: Versions = Versions {
        conversations: 3,
        relations: 7,
    };

    #[test]
    fn a_check_is_kept_while_the_versions_hold_and_it_is_fresh() {
        let now = Instant::now();
        let mut checks = SendChecks::new();
        checks.keep("d:a:b", passed("d:a:b"), AT, now + Duration::from_secs(1));
        let kept = checks.get("d:a:b", AT, now).expect("kept");
        assert_eq!((kept.record.id.as_str(), kept.request), ("d:a:b", true));
        assert!(
            checks.get("d:a:c", AT, now).is_none(),
            "another conversation"
        );
    }

    #[test]
    fn a_moved_version_or_a_stale_answer_drops_the_check() {
        let now = Instant::now();
        let fresh_until = now + Duration::from_secs(1);
        let mut checks = SendChecks::new();
        checks.keep("d:a:b", passed("d:a:b"), AT, fresh_until);
        let conversations_moved = Versions {
            conversations: 4,
            ..AT
        };
        let relations_moved = Versions { relations: 8, ..AT };
        assert!(checks.get("d:a:b", conversations_moved, now).is_none());
        assert!(checks.get("d:a:b", relations_moved, now).is_none());
        assert!(checks.get("d:a:b", AT, fresh_until).is_none());
    }

    #[test]
    fn the_memo_is_bounded() {
        let now = Instant::now() + Duration::from_secs(1);
        let mut checks = SendChecks::new();
        for i in 0..MAX_CONVERSATIONS {
            let id = format!("g:{i}");
            checks.keep(&id, passed(&id), AT, now);
        }
        assert_eq!(checks.len(), MAX_CONVERSATIONS);
        // A kept conversation is replaced in place.
        checks.keep("g:0", passed("g:0"), AT, now);
        assert_eq!(checks.len(), MAX_CONVERSATIONS);
        // One more starts over.
        checks.keep("g:new", passed("g:new"), AT, now);
        assert_eq!(checks.len(), 1);
    }
}
