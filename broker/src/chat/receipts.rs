//! `r/{conv}`: delivered and read receipts. Cursors only move forward and
//! never past the conversation's last message; the resulting cursor is
//! relayed to the other members (a read receipt implies delivery).

use chat_core::ids::{ConversationId, UserId};
use parley_proto::v1::{envelope::Kind, Receipt, ReceiptKind};
use parley_proto::{decode_envelope, encode_envelope};

use super::{now_ms, ChatError, ChatService};

impl ChatService {
    /// Handles a receipt published to `r/{conv}` by `user`.
    pub(super) async fn receipt(
        &self,
        user: &UserId,
        conv: &ConversationId,
        payload: &[u8],
    ) -> Result<(), ChatError> {
        let envelope = decode_envelope(payload)
            .map_err(|e| ChatError::malformed(e.to_string()).in_conversation(conv.as_str()))?;
        let Some(Kind::Receipt(receipt)) = envelope.kind else {
            return Err(
                ChatError::malformed("r/{conversation} carries Receipt envelopes only")
                    .in_conversation(conv.as_str()),
            );
        };
        let kind = ReceiptKind::try_from(receipt.kind).unwrap_or(ReceiptKind::Unspecified);
        if kind == ReceiptKind::Unspecified {
            return Err(ChatError::invalid("receipt kind must be DELIVERED or READ")
                .in_conversation(conv.as_str()));
        }
        let record = self.member_conversation(user, conv).await?;
        let last_seq = self.stores.history.last_seq(conv.as_str()).await?;
        let up_to = receipt.up_to_seq.min(last_seq);
        let delivered = self
            .stores
            .offline
            .mark_delivered(user.as_str(), conv.as_str(), up_to)
            .await?;
        let cursor = match kind {
            ReceiptKind::Read => {
                self.stores
                    .metadata
                    .mark_read(conv.as_str(), user.as_str(), up_to)
                    .await?
            }
            _ => delivered,
        };
        let relay = Receipt {
            conversation_id: conv.to_string(),
            user: user.to_string(),
            kind: kind as i32,
            up_to_seq: cursor,
            server_time_ms: now_ms(),
        };
        if self.activity_flows(user, &record).await? {
            self.fan_out(&record, encode_envelope(&relay.into()))
                .await?;
        } else {
            // A pending message request: only the reader's own sessions learn it.
            self.deliveries
                .publish(
                    conv.as_str(),
                    1,
                    crate::cluster::Fanout::new(
                        vec![chat_core::topics::inbox_topic(user)],
                        encode_envelope(&relay.into()).into(),
                    ),
                )
                .await?;
        }
        Ok(())
    }
}
