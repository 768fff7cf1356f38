//! Conversions between stored records, chat-core's domain types and the
//! protobuf wire types.

use chat_core::ids::UserId;
use chat_core::membership::{self, Conversation, Member};
use parley_proto::v1::{self, ChatMessage};
use persistence::{ConversationKind, ConversationRecord, MemberRecord, Role, StoredMessage};

use super::ChatError;

/// chat-core's view of a stored conversation.
pub fn to_domain(record: &ConversationRecord) -> Result<Conversation, ChatError> {
    let members = record
        .members
        .iter()
        .map(|m| {
            Ok(Member {
                user: UserId::parse(&m.user).map_err(|e| {
                    ChatError::new(
                        v1::ErrorCode::Internal,
                        format!("stored member {:?}: {e}", m.user),
                    )
                })?,
                role: match m.role {
                    Role::Member => membership::Role::Member,
                    Role::Admin => membership::Role::Admin,
                    Role::Owner => membership::Role::Owner,
                },
            })
        })
        .collect::<Result<_, ChatError>>()?;
    Ok(Conversation {
        kind: match record.kind {
            ConversationKind::Direct => membership::Kind::Direct,
            ConversationKind::Group => membership::Kind::Group,
        },
        name: record.name.clone(),
        members,
    })
}

/// Writes chat-core's new state into a copy of `record`, keeping join times.
pub fn apply_domain(
    record: &ConversationRecord,
    conv: &Conversation,
    now_ms: i64,
) -> ConversationRecord {
    let members = conv
        .members
        .iter()
        .map(|m| MemberRecord {
            user: m.user.to_string(),
            role: store_role(m.role),
            joined_at_ms: record
                .member(m.user.as_str())
                .map_or(now_ms, |old| old.joined_at_ms),
        })
        .collect();
    ConversationRecord {
        name: conv.name.clone(),
        members,
        updated_at_ms: now_ms,
        ..record.clone()
    }
}

/// chat-core role to stored role.
pub fn store_role(role: membership::Role) -> Role {
    match role {
        membership::Role::Member => Role::Member,
        membership::Role::Admin => Role::Admin,
        membership::Role::Owner => Role::Owner,
    }
}

/// Wire role to chat-core role.
pub fn role_from_proto(role: i32) -> Result<membership::Role, ChatError> {
    match v1::Role::try_from(role) {
        Ok(v1::Role::Member) => Ok(membership::Role::Member),
        Ok(v1::Role::Admin) => Ok(membership::Role::Admin),
        Ok(v1::Role::Owner) => Ok(membership::Role::Owner),
        _ => Err(ChatError::invalid(format!("unknown role {role}"))),
    }
}

/// A stored conversation on the wire.
pub fn conversation_proto(record: &ConversationRecord, last_seq: u64) -> v1::Conversation {
    v1::Conversation {
        id: record.id.clone(),
        kind: match record.kind {
            ConversationKind::Direct => v1::ConversationKind::Direct,
            ConversationKind::Group => v1::ConversationKind::Group,
        } as i32,
        name: record.name.clone(),
        members: record
            .members
            .iter()
            .map(|m| v1::Member {
                user: m.user.clone(),
                role: match m.role {
                    Role::Member => v1::Role::Member,
                    Role::Admin => v1::Role::Admin,
                    Role::Owner => v1::Role::Owner,
                } as i32,
            })
            .collect(),
        last_seq,
        updated_at_ms: record.updated_at_ms,
    }
}

/// A stored message as clients see it: the stored payload with the server's fields.
pub fn message_proto(stored: &StoredMessage) -> Result<ChatMessage, ChatError> {
    let mut message: ChatMessage = parley_proto::prost::Message::decode(stored.payload.as_slice())
        .map_err(|e| {
            ChatError::new(
                v1::ErrorCode::Internal,
                format!("stored message {} unreadable: {e}", stored.seq),
            )
        })?;
    message.seq = stored.seq;
    message.message_id = stored.message_id;
    message.server_time_ms = stored.server_time_ms;
    message.sender = stored.sender.clone();
    message.client_message_id = stored.client_message_id.clone();
    message.conversation_id = stored.conversation_id.clone();
    Ok(message)
}
