//! `OpenDirect`: the direct conversation between the user and a peer,
//! created on first use. Sending to a direct conversation id creates it too.

use std::sync::Arc;

use chat_core::ids::{ConversationId, UserId};
use chat_core::membership::direct;
use parley_proto::v1::{response::Result as Answer, ErrorCode, OpenDirect};
use persistence::{ConversationKind, ConversationRecord, StoreError};

use crate::chat::convert::{apply_domain, conversation_proto};
use crate::chat::{now_ms, ChatError, ChatService};

impl ChatService {
    pub(super) async fn open_direct(
        &self,
        user: &UserId,
        r: OpenDirect,
    ) -> Result<Answer, ChatError> {
        let peer = UserId::parse(&r.peer).map_err(|e| ChatError::invalid(format!("peer: {e}")))?;
        let id =
            ConversationId::direct(user, &peer).map_err(|e| ChatError::invalid(e.to_string()))?;
        let record = self.open_conversation(user, &id).await?;
        // Opening the conversation is consent to talk with the peer.
        self.accept(user, &peer).await?;
        let last_seq = self.stores.history.last_seq(id.as_str()).await?;
        Ok(Answer::Conversation(conversation_proto(&record, last_seq)))
    }

    /// Creates the direct conversation `id` if `user` is one of its two users
    /// and the other exists; otherwise it is unknown.
    pub(in crate::chat) async fn open_direct_by_id(
        &self,
        user: &UserId,
        id: &ConversationId,
    ) -> Result<Arc<ConversationRecord>, ChatError> {
        let Some((a, b)) = id.direct_members() else {
            return Err(ChatError::unknown_conversation(id.as_str()));
        };
        if &a != user && &b != user {
            return Err(ChatError::not_a_member(id.as_str()));
        }
        let peer = if &a == user { &b } else { &a };
        if self
            .stores
            .metadata
            .get_user(peer.as_str())
            .await?
            .is_none()
        {
            return Err(
                ChatError::new(ErrorCode::NotFound, format!("no user {peer}"))
                    .in_conversation(id.as_str()),
            );
        }
        let now = now_ms();
        let empty = ConversationRecord {
            id: id.to_string(),
            kind: ConversationKind::Direct,
            name: String::new(),
            members: Vec::new(),
            created_at_ms: now,
            updated_at_ms: now,
            version: 1,
        };
        let record = apply_domain(&empty, &direct(&a, &b), now);
        match self.stores.metadata.create_conversation(record).await {
            Ok(record) => Ok(self.conversations.put(record)),
            // Created concurrently (by the peer, or another node): use theirs.
            Err(StoreError::AlreadyExists(_)) => self
                .conversations
                .get(id.as_str())
                .await?
                .ok_or_else(|| ChatError::unknown_conversation(id.as_str())),
            Err(e) => Err(e.into()),
        }
    }
}
