//! New messages handed to push notifications (see [`crate::push`]) for the
//! members without a live session on this node or, in a cluster, on any node.

use chat_core::ids::UserId;
use parley_proto::v1::ChatMessage;
use persistence::ConversationRecord;

use super::ChatService;
use crate::push::PushService;

impl ChatService {
    /// This service, notifying members without a live session through `push`
    /// (no notifications with `None`).
    pub fn with_push(mut self, push: Option<PushService>) -> ChatService {
        self.push = push;
        self
    }

    /// Hands the newly stored `message` of `record` to push notifications,
    /// for every member but its sender that has no live session on this
    /// node nor, in a cluster, on any other. Only queues: it never waits, and drops (counting) when full.
    pub(super) fn notify_offline(&self, record: &ConversationRecord, message: &ChatMessage) {
        let Some(push) = &self.push else {
            return;
        };
        let recipients: Vec<String> = record
            .members
            .iter()
            .filter(|m| m.user != message.sender)
            .filter(|m| UserId::parse(&m.user).is_ok_and(|u| !self.is_online_anywhere(&u)))
            .map(|m| m.user.clone())
            .collect();
        push.message_stored(message, recipients);
    }
}
