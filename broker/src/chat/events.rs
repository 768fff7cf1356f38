//! Conversation events: a change of a group's name or members is stored as
//! an entry of the conversation (a `ChatMessage` with an event body, sent by
//! the user who made the change) and delivered like a message, to the
//! members and to whoever the change removed. chat-core's `events` module
//! decides what the event says and who gets it.

use bytes::Bytes;
use chat_core::ids::UserId;
use chat_core::topics::inbox_topic;
use parley_proto::v1::{chat_message::Body, ChatMessage, ConversationEvent, MessageAction};
use parley_proto::{encode_envelope, prost::Message};
use persistence::AppendRequest;

use super::{now_ms, ChatError, ChatService};
use crate::cluster::Fanout;

impl ChatService {
    /// Stores `event`, made by `actor`, as the next entry of `conversation`
    /// and delivers it to the inboxes of `recipients` in its seq's turn. The
    /// actor has read it. Returns its seq.
    pub(super) async fn record_event(
        &self,
        conversation: &str,
        actor: &UserId,
        event: ConversationEvent,
        recipients: &[UserId],
    ) -> Result<u64, ChatError> {
        let message_id = self.next_message_id();
        let server_time_ms = now_ms();
        let client_message_id = format!("event-{message_id}");
        let mut message = ChatMessage {
            message_id,
            conversation_id: conversation.to_owned(),
            sender: actor.to_string(),
            client_message_id: client_message_id.clone(),
            server_time_ms,
            body: Some(Body::Event(event)),
            action: MessageAction::New as i32,
            ..ChatMessage::default()
        };
        let ticket = self.delivery.begin(conversation);
        let appended = self
            .stores
            .history
            .append(AppendRequest {
                conversation_id: conversation.to_owned(),
                sender: actor.to_string(),
                client_message_id,
                message_id,
                server_time_ms,
                payload: message.encode_to_vec(),
                amend: None,
            })
            .await?;
        message.seq = appended.seq;
        let topics = recipients.iter().map(inbox_topic).collect();
        let fanout = Fanout::new(topics, Bytes::from(encode_envelope(&message.into())));
        let (outgoing, pending) = self.deliveries.outgoing(conversation, 1, fanout);
        ticket.stored(appended.seq, outgoing);
        self.mark_own_entry_read(conversation, actor, appended.seq);
        pending.wait().await?;
        Ok(appended.seq)
    }

    /// `user` wrote the entry `seq` of `conversation`: what one sends counts
    /// as read by its sender (written in the background, see `own_reads`).
    pub(super) fn mark_own_entry_read(&self, conversation: &str, user: &UserId, seq: u64) {
        self.own_reads
            .record(&self.stores, conversation, user.as_str(), seq);
    }
}
