//! `t/{conv}`: typing indicators. Relayed at QoS 0 to the other members'
//! `u/{user}/t`, rate limited, never stored. An indicator is ephemeral: one
//! over the typing rate limit is dropped (and counted), not refused, so it is
//! acknowledged like any other on 3.1.1 and MQTT 5 alike.

use chat_core::ids::{ConversationId, UserId};
use chat_core::topics::typing_feed_topic;
use parley_proto::v1::{envelope::Kind, Typing};
use parley_proto::{decode_envelope, encode_envelope};

use super::{ChatError, ChatService};
use crate::cluster::Fanout;

impl ChatService {
    /// Handles a typing indicator published to `t/{conv}` by `user`.
    pub(super) async fn typing(
        &self,
        user: &UserId,
        conv: &ConversationId,
        payload: &[u8],
    ) -> Result<(), ChatError> {
        let envelope = decode_envelope(payload).map_err(|e| ChatError::malformed(e.to_string()))?;
        let Some(Kind::Typing(typing)) = envelope.kind else {
            return Err(ChatError::malformed(
                "t/{conversation} carries Typing envelopes only",
            ));
        };
        if !self.rates.typing(user.as_str()) {
            // Dropped, counted by the limiter; acknowledged as handled.
            tracing::debug!(%user, conversation = %conv, "typing indicator over the rate limit dropped");
            return Ok(());
        }
        let record = self.member_conversation(user, conv).await?;
        if !self.activity_flows(user, &record).await? {
            // A pending message request (or a block): nobody is told.
            return Ok(());
        }
        let relay = bytes::Bytes::from(encode_envelope(
            &Typing {
                conversation_id: conv.to_string(),
                user: user.to_string(),
                active: typing.active,
            }
            .into(),
        ));
        let feeds = record
            .members
            .iter()
            .filter(|m| m.user != user.as_str())
            .filter_map(|m| Some(typing_feed_topic(&UserId::parse(&m.user).ok()?)))
            .collect();
        self.deliveries
            .publish(conv.as_str(), 0, Fanout::new(feeds, relay))
            .await?;
        Ok(())
    }
}
