//! `From` conversions from each `oneof` arm to the type holding it, and
//! constructors for requests and responses, so that building a payload
//! takes one line: `Envelope::from(typing)`, `Body::from(text)`,
//! `Request::new("r1", OpenDirect { peer })`.

use crate::v1::{
    chat_message, envelope, request, response, AcceptRequest, AddMembers, BlockUser, ChatMessage,
    Ciphertext, Conversation, ConversationList, CreateGroup, Empty, Envelope, Error, FetchMessages,
    GetConversation, LeaveGroup, ListBlocks, MediaRef, MessagePage, Notice, OpenDirect, Presence,
    Receipt, RemoveMember, RenameGroup, ReportConversation, Request, Response, SetGroupConsent,
    SetRole, SyncConversations, Text, Typing, UnblockUser, UserList,
};

/// Implements `From<Arm>` for a oneof enum, one variant per arm type.
macro_rules! oneof_arms {
    ($oneof:path { $($arm:ty => $variant:ident),+ $(,)? }) => {
        $(
            impl From<$arm> for $oneof {
                fn from(value: $arm) -> Self {
                    use $oneof as Oneof;
                    Oneof::$variant(value)
                }
            }
        )+
    };
}

oneof_arms!(envelope::Kind {
    ChatMessage => Message,
    Receipt => Receipt,
    Typing => Typing,
    Presence => Presence,
    Request => Request,
    Response => Response,
    Error => Error,
    Notice => Notice,
});

oneof_arms!(chat_message::Body {
    Text => Text,
    MediaRef => Media,
    Ciphertext => Ciphertext,
});

oneof_arms!(request::Op {
    SyncConversations => SyncConversations,
    FetchMessages => FetchMessages,
    CreateGroup => CreateGroup,
    RenameGroup => RenameGroup,
    AddMembers => AddMembers,
    RemoveMember => RemoveMember,
    SetRole => SetRole,
    LeaveGroup => LeaveGroup,
    OpenDirect => OpenDirect,
    GetConversation => GetConversation,
    BlockUser => BlockUser,
    UnblockUser => UnblockUser,
    ListBlocks => ListBlocks,
    AcceptRequest => AcceptRequest,
    SetGroupConsent => SetGroupConsent,
    ReportConversation => ReportConversation,
});

oneof_arms!(response::Result {
    ConversationList => Conversations,
    MessagePage => Messages,
    Conversation => Conversation,
    Empty => Ok,
    Error => Error,
    UserList => Users,
});

impl From<envelope::Kind> for Envelope {
    fn from(kind: envelope::Kind) -> Self {
        Envelope { kind: Some(kind) }
    }
}

/// Implements `From<Arm>` for [`Envelope`] for each of its kinds.
macro_rules! envelope_from {
    ($($arm:ty),+ $(,)?) => {
        $(
            impl From<$arm> for Envelope {
                fn from(value: $arm) -> Self {
                    Envelope::from(envelope::Kind::from(value))
                }
            }
        )+
    };
}

envelope_from!(
    ChatMessage,
    Receipt,
    Typing,
    Presence,
    Request,
    Response,
    Error,
    Notice
);

impl Request {
    /// A request with correlation id `request_id` asking for `op`.
    pub fn new(request_id: impl Into<String>, op: impl Into<request::Op>) -> Self {
        Request {
            request_id: request_id.into(),
            op: Some(op.into()),
        }
    }
}

impl Response {
    /// The answer `result` to the request with id `request_id`.
    pub fn new(request_id: impl Into<String>, result: impl Into<response::Result>) -> Self {
        Response {
            request_id: request_id.into(),
            result: Some(result.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::ErrorCode;

    #[test]
    fn every_envelope_kind_converts_into_its_own_arm() {
        let typing = Typing {
            conversation_id: "alice~bob".into(),
            user: "alice".into(),
            active: true,
        };
        assert_eq!(
            Envelope::from(typing.clone()).kind,
            Some(envelope::Kind::Typing(typing))
        );
        let error = Error {
            code: ErrorCode::RateLimited.into(),
            ..Error::default()
        };
        assert_eq!(
            Envelope::from(error.clone()).kind,
            Some(envelope::Kind::Error(error))
        );
        let message = ChatMessage {
            seq: 7,
            ..ChatMessage::default()
        };
        assert_eq!(
            Envelope::from(message.clone()).kind,
            Some(envelope::Kind::Message(message))
        );
    }

    #[test]
    fn bodies_convert_into_their_arms() {
        let text = Text { text: "hi".into() };
        assert_eq!(
            chat_message::Body::from(text.clone()),
            chat_message::Body::Text(text)
        );
        let media = MediaRef {
            object_key: "k".into(),
            ..MediaRef::default()
        };
        assert_eq!(
            chat_message::Body::from(media.clone()),
            chat_message::Body::Media(media)
        );
    }

    #[test]
    fn request_new_sets_id_and_op() {
        let request = Request::new("r1", OpenDirect { peer: "bob".into() });
        assert_eq!(request.request_id, "r1");
        assert_eq!(
            request.op,
            Some(request::Op::OpenDirect(OpenDirect { peer: "bob".into() }))
        );
    }

    #[test]
    fn response_new_sets_id_and_result() {
        let response = Response::new("r1", Empty {});
        assert_eq!(response.request_id, "r1");
        assert_eq!(response.result, Some(response::Result::Ok(Empty {})));
        let page = MessagePage {
            messages: vec![],
            has_more: true,
        };
        assert_eq!(
            Response::new("r2", page.clone()).result,
            Some(response::Result::Messages(page))
        );
    }
}
