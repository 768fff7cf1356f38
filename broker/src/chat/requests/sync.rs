//! `SyncConversations`: the user's conversations that changed since a time,
//! with unread counts, cursors and the last message, paged by conversation id.

use chat_core::ids::UserId;
use parley_proto::v1::{
    response::Result as Answer, ConversationList, ConversationSummary, SyncConversations,
};

use crate::chat::convert::{conversation_proto, message_proto};
use crate::chat::{ChatError, ChatService};

impl ChatService {
    /// Conversations of `user` with activity (membership change or message)
    /// after `changed_since_ms`; `page_token` is the last id of the previous page.
    pub(super) async fn sync_conversations(
        &self,
        user: &UserId,
        r: SyncConversations,
    ) -> Result<Answer, ChatError> {
        let limit = match r.limit {
            0 => 100,
            n => (n as usize).min(self.config.max_page),
        };
        let ids = self.stores.metadata.conversations_of(user.as_str()).await?;
        let mut items = Vec::new();
        let mut next_page_token = String::new();
        for id in ids
            .into_iter()
            .filter(|id| r.page_token.is_empty() || id.as_str() > r.page_token.as_str())
        {
            let Some(record) = self.conversations.get(&id).await? else {
                continue;
            };
            let last_seq = self.stores.history.last_seq(&id).await?;
            let last_message = match last_seq {
                0 => None,
                seq => match self.stores.history.get(&id, seq).await? {
                    Some(stored) => Some(message_proto(&stored)?),
                    None => None,
                },
            };
            let activity = last_message.as_ref().map_or(record.updated_at_ms, |m| {
                m.server_time_ms.max(record.updated_at_ms)
            });
            if activity <= r.changed_since_ms {
                continue;
            }
            if items.len() == limit {
                next_page_token = items
                    .last()
                    .and_then(|s: &ConversationSummary| s.conversation.as_ref())
                    .map(|c| c.id.clone())
                    .unwrap_or_default();
                break;
            }
            let read = self
                .stores
                .metadata
                .read_cursors(&id)
                .await?
                .into_iter()
                .find(|c| c.user == user.as_str())
                .map_or(0, |c| c.read_up_to)
                // What one sends counts as read by its sender: the cursor
                // may still be on its way to the store.
                .max(self.own_reads.pending(&id, user.as_str()))
                .max(match &last_message {
                    Some(m) if m.sender == user.as_str() => last_seq,
                    _ => 0,
                });
            let delivered = self.stores.offline.delivered(user.as_str(), &id).await?;
            items.push(ConversationSummary {
                conversation: Some(conversation_proto(&record, last_seq)),
                unread: last_seq.saturating_sub(read),
                read_up_to_seq: read,
                delivered_up_to_seq: delivered.max(read),
                last_message,
            });
        }
        Ok(Answer::Conversations(ConversationList {
            items,
            next_page_token,
        }))
    }
}
