//! `FetchMessages`: a page of a conversation's history by sequence number.

use chat_core::ids::{ConversationId, UserId};
use parley_proto::v1::{
    response::Result as Answer, Direction as WireDirection, FetchMessages, MessagePage,
};
use persistence::{Direction, PageRequest};

use crate::chat::convert::message_proto;
use crate::chat::{ChatError, ChatService};

impl ChatService {
    /// Messages with `after_seq < seq < before_seq` (0 = unbounded), at most
    /// `limit` (default 50, capped by config), ascending.
    pub(super) async fn fetch_messages(
        &self,
        user: &UserId,
        r: FetchMessages,
    ) -> Result<Answer, ChatError> {
        let conv = ConversationId::parse(&r.conversation_id)
            .map_err(|e| ChatError::invalid(format!("conversation_id: {e}")))?;
        self.member_conversation(user, &conv).await?;
        let limit = match r.limit {
            0 => 50,
            n => (n as usize).min(self.config.max_page),
        };
        let direction = match WireDirection::try_from(r.direction) {
            Ok(WireDirection::Backward) => Direction::Backward,
            _ => Direction::Forward,
        };
        let page = PageRequest {
            after_seq: r.after_seq,
            before_seq: if r.before_seq == 0 {
                u64::MAX
            } else {
                r.before_seq
            },
            limit: limit + 1,
            direction,
        };
        let mut stored = self.stores.history.fetch(conv.as_str(), page).await?;
        let has_more = stored.len() > limit;
        if has_more {
            match direction {
                Direction::Forward => {
                    stored.pop();
                }
                Direction::Backward => {
                    stored.remove(0);
                }
            }
        }
        let messages = stored.iter().map(message_proto).collect::<Result<_, _>>()?;
        Ok(Answer::Messages(MessagePage { messages, has_more }))
    }
}
