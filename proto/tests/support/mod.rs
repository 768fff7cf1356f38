//! Proptest strategies for every `parley.v1` message, shared by the
//! integration tests. Enum fields range over known and unknown values alike,
//! since the wire keeps both.

use parley_proto::v1::{
    chat_message, envelope, request, response, AddMembers, ChatMessage, Ciphertext, Conversation,
    ConversationList, ConversationSummary, CreateGroup, DeviceCiphertext, Empty, Envelope, Error,
    FetchMessages, GetConversation, LeaveGroup, MediaRef, Member, MessagePage, OpenDirect,
    Presence, Receipt, RemoveMember, RenameGroup, Request, Response, SetRole, SyncConversations,
    Text, Typing,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// A short string of printable characters from all of Unicode.
fn string() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

/// A short byte string.
fn blob() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..24)
}

/// An enum field's raw value: mostly a known one, sometimes any `i32`.
fn enum_value() -> impl Strategy<Value = i32> {
    prop_oneof![4 => 0..4i32, 1 => any::<i32>()]
}

/// A short list of strings.
fn strings() -> impl Strategy<Value = Vec<String>> {
    vec(string(), 0..4)
}

/// Any message body, or none.
fn body() -> impl Strategy<Value = Option<chat_message::Body>> {
    let text = string().prop_map(|text| Text { text });
    let media = (
        string(),
        string(),
        any::<u64>(),
        string(),
        blob(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(object_key, content_type, size, file_name, thumbnail, width, height)| MediaRef {
                object_key,
                content_type,
                size,
                file_name,
                thumbnail,
                width,
                height,
            },
        );
    let recipient =
        (string(), string(), blob()).prop_map(|(user, device_id, ciphertext)| DeviceCiphertext {
            user,
            device_id,
            ciphertext,
        });
    let ciphertext = (any::<u32>(), string(), vec(recipient, 0..3)).prop_map(
        |(scheme_version, sender_device_id, recipients)| Ciphertext {
            scheme_version,
            sender_device_id,
            recipients,
        },
    );
    option::of(prop_oneof![
        text.prop_map(chat_message::Body::from),
        media.prop_map(chat_message::Body::from),
        ciphertext.prop_map(chat_message::Body::from),
    ])
}

/// Any chat message.
pub fn chat_message() -> impl Strategy<Value = ChatMessage> {
    let ids = (
        any::<u64>(),
        string(),
        any::<u64>(),
        string(),
        string(),
        any::<i64>(),
    );
    let rest = (
        body(),
        any::<u64>(),
        enum_value(),
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
    );
    (ids, rest).prop_map(
        |(
            (message_id, conversation_id, seq, sender, client_message_id, server_time_ms),
            (body, reply_to_seq, action, target_seq, edited, deleted),
        )| ChatMessage {
            message_id,
            conversation_id,
            seq,
            sender,
            client_message_id,
            server_time_ms,
            body,
            reply_to_seq,
            action,
            target_seq,
            edited,
            deleted,
        },
    )
}

/// Any receipt.
fn receipt() -> impl Strategy<Value = Receipt> {
    (string(), string(), enum_value(), any::<u64>(), any::<i64>()).prop_map(
        |(conversation_id, user, kind, up_to_seq, server_time_ms)| Receipt {
            conversation_id,
            user,
            kind,
            up_to_seq,
            server_time_ms,
        },
    )
}

/// Any typing indicator.
fn typing() -> impl Strategy<Value = Typing> {
    (string(), string(), any::<bool>()).prop_map(|(conversation_id, user, active)| Typing {
        conversation_id,
        user,
        active,
    })
}

/// Any presence.
fn presence() -> impl Strategy<Value = Presence> {
    (string(), enum_value(), any::<i64>()).prop_map(|(user, state, last_seen_ms)| Presence {
        user,
        state,
        last_seen_ms,
    })
}

/// Any request operation, or none.
fn op() -> impl Strategy<Value = Option<request::Op>> {
    option::of(prop_oneof![
        (any::<i64>(), any::<u32>(), string()).prop_map(|(changed_since_ms, limit, page_token)| {
            request::Op::from(SyncConversations {
                changed_since_ms,
                limit,
                page_token,
            })
        }),
        (
            string(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            enum_value()
        )
            .prop_map(
                |(conversation_id, after_seq, before_seq, limit, direction)| {
                    request::Op::from(FetchMessages {
                        conversation_id,
                        after_seq,
                        before_seq,
                        limit,
                        direction,
                    })
                }
            ),
        (string(), strings())
            .prop_map(|(name, members)| request::Op::from(CreateGroup { name, members })),
        (string(), string()).prop_map(|(conversation_id, name)| {
            request::Op::from(RenameGroup {
                conversation_id,
                name,
            })
        }),
        (string(), strings()).prop_map(|(conversation_id, users)| {
            request::Op::from(AddMembers {
                conversation_id,
                users,
            })
        }),
        (string(), string()).prop_map(|(conversation_id, user)| {
            request::Op::from(RemoveMember {
                conversation_id,
                user,
            })
        }),
        (string(), string(), enum_value()).prop_map(|(conversation_id, user, role)| {
            request::Op::from(SetRole {
                conversation_id,
                user,
                role,
            })
        }),
        string().prop_map(|conversation_id| request::Op::from(LeaveGroup { conversation_id })),
        string().prop_map(|peer| request::Op::from(OpenDirect { peer })),
        string().prop_map(|conversation_id| request::Op::from(GetConversation { conversation_id })),
    ])
}

/// Any request.
fn request() -> impl Strategy<Value = Request> {
    (string(), op()).prop_map(|(request_id, op)| Request { request_id, op })
}

/// Any conversation.
fn conversation() -> impl Strategy<Value = Conversation> {
    let member = (string(), enum_value()).prop_map(|(user, role)| Member { user, role });
    (
        string(),
        enum_value(),
        string(),
        vec(member, 0..4),
        any::<u64>(),
        any::<i64>(),
    )
        .prop_map(
            |(id, kind, name, members, last_seq, updated_at_ms)| Conversation {
                id,
                kind,
                name,
                members,
                last_seq,
                updated_at_ms,
            },
        )
}

/// Any error.
fn error() -> impl Strategy<Value = Error> {
    (enum_value(), string(), string(), string(), string()).prop_map(
        |(code, message, request_id, client_message_id, conversation_id)| Error {
            code,
            message,
            request_id,
            client_message_id,
            conversation_id,
        },
    )
}

/// Any response outcome, or none.
fn result() -> impl Strategy<Value = Option<response::Result>> {
    let summary = (
        option::of(conversation()),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        option::of(chat_message()),
    )
        .prop_map(
            |(conversation, unread, read_up_to_seq, delivered_up_to_seq, last_message)| {
                ConversationSummary {
                    conversation,
                    unread,
                    read_up_to_seq,
                    delivered_up_to_seq,
                    last_message,
                }
            },
        );
    option::of(prop_oneof![
        (vec(summary, 0..3), string()).prop_map(|(items, next_page_token)| {
            response::Result::from(ConversationList {
                items,
                next_page_token,
            })
        }),
        (vec(chat_message(), 0..3), any::<bool>()).prop_map(|(messages, has_more)| {
            response::Result::from(MessagePage { messages, has_more })
        }),
        conversation().prop_map(response::Result::from),
        Just(response::Result::from(Empty {})),
        error().prop_map(response::Result::from),
    ])
}

/// Any response.
fn response() -> impl Strategy<Value = Response> {
    (string(), result()).prop_map(|(request_id, result)| Response { request_id, result })
}

/// Any envelope with its kind set, of every kind.
pub fn envelope() -> impl Strategy<Value = Envelope> {
    prop_oneof![
        chat_message().prop_map(envelope::Kind::from),
        receipt().prop_map(envelope::Kind::from),
        typing().prop_map(envelope::Kind::from),
        presence().prop_map(envelope::Kind::from),
        request().prop_map(envelope::Kind::from),
        response().prop_map(envelope::Kind::from),
        error().prop_map(envelope::Kind::from),
    ]
    .prop_map(Envelope::from)
}
