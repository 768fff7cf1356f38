//! Message requests and blocking: who may reach whom, as pure decisions
//! over what each user decided about the other (see `docs/topics.md`,
//! "Message requests and blocking").
//!
//! A user *consents* to another by accepting their message request, by
//! replying in their direct conversation, or by opening it (`OpenDirect`, or
//! sending the first message). Sharing a group counts as consent too. A
//! block overrides everything.

/// What one user decided about another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stance {
    /// Accepted them (a request, a reply, or opening the direct conversation).
    pub accepted: bool,
    /// Blocked them.
    pub blocked: bool,
}

/// What happens to a message in a direct conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectSend {
    /// Delivered as any message.
    Deliver,
    /// Delivered as a message request: stored and put on the recipient's
    /// inbox, but the sender gets none of the recipient's presence, typing,
    /// receipts or keys, and the recipient is pushed only for the first one.
    Request,
    /// Refused: the recipient blocked the sender.
    Refuse,
}

/// A message from a sender to a recipient in their direct conversation,
/// given the recipient's stance on the sender and whether they share a group.
pub fn direct_send(recipient_on_sender: Stance, share_group: bool) -> DirectSend {
    if recipient_on_sender.blocked {
        DirectSend::Refuse
    } else if recipient_on_sender.accepted || share_group {
        DirectSend::Deliver
    } else {
        DirectSend::Request
    }
}

/// Whether a viewer may see an owner's presence and fetch the owner's keys,
/// given the owner's stance on the viewer and what they share.
pub fn may_observe(owner_on_viewer: Stance, share_group: bool, share_direct: bool) -> bool {
    !owner_on_viewer.blocked && (share_group || (share_direct && owner_on_viewer.accepted))
}

/// Whether typing indicators and receipts flow between the two users of a
/// direct conversation: only once each consents to the other (a pending
/// request carries neither, either way).
pub fn direct_activity(a_on_b: Stance, b_on_a: Stance) -> bool {
    a_on_b.accepted && b_on_a.accepted && !a_on_b.blocked && !b_on_a.blocked
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Stance = Stance {
        accepted: false,
        blocked: false,
    };
    const ACCEPTED: Stance = Stance {
        accepted: true,
        blocked: false,
    };
    const BLOCKED: Stance = Stance {
        accepted: true,
        blocked: true,
    };

    #[test]
    fn a_stranger_opens_a_request_and_a_block_refuses() {
        assert_eq!(direct_send(NONE, false), DirectSend::Request);
        assert_eq!(
            direct_send(NONE, true),
            DirectSend::Deliver,
            "a shared group"
        );
        assert_eq!(direct_send(ACCEPTED, false), DirectSend::Deliver);
        assert_eq!(direct_send(BLOCKED, true), DirectSend::Refuse);
    }

    #[test]
    fn observing_needs_consent_or_a_group_and_no_block() {
        assert!(!may_observe(NONE, false, true), "a pending request");
        assert!(may_observe(ACCEPTED, false, true));
        assert!(!may_observe(ACCEPTED, false, false), "nothing shared");
        assert!(may_observe(NONE, true, false));
        assert!(!may_observe(BLOCKED, true, true));
    }

    #[test]
    fn activity_needs_both_sides() {
        assert!(!direct_activity(ACCEPTED, NONE));
        assert!(!direct_activity(NONE, ACCEPTED));
        assert!(direct_activity(ACCEPTED, ACCEPTED));
        assert!(!direct_activity(BLOCKED, ACCEPTED));
    }
}
