//! Chat errors: the typed `Error` envelope a client receives, and the MQTT
//! acknowledgement that goes with it.

use parley_proto::v1::{Error as ErrorProto, ErrorCode};
use persistence::StoreError;

/// How the connection acknowledges a chat publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatAck {
    /// Stored or relayed: PUBACK success.
    Success,
    /// MQTT 5 reason 0x87.
    NotAuthorized,
    /// MQTT 5 reason 0x99.
    PayloadFormatInvalid,
    /// MQTT 5 reason 0x97 (size limits, group size).
    QuotaExceeded,
    /// Over the sender's message rate: MQTT 5 reason 0x97; 3.1.1 clients are
    /// disconnected without an acknowledgement (a PUBACK means stored).
    RateLimited,
    /// MQTT 5 reason 0x83.
    ImplementationSpecific,
    /// The store failed: nothing was stored, so success must not be acknowledged
    /// (MQTT 5 gets 0x80; 3.1.1 clients are disconnected and will retry).
    StoreFailed,
}

/// A refused chat operation: the code and text the client receives.
#[derive(Debug, Clone)]
pub struct ChatError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: String,
    /// The request it answers, if any.
    pub request_id: String,
    /// The message it answers, if any.
    pub client_message_id: String,
    /// The conversation concerned, if any.
    pub conversation_id: String,
}

impl ChatError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ChatError {
        ChatError {
            code,
            message: message.into(),
            request_id: String::new(),
            client_message_id: String::new(),
            conversation_id: String::new(),
        }
    }
    /// `MALFORMED`.
    pub fn malformed(message: impl Into<String>) -> ChatError {
        ChatError::new(ErrorCode::Malformed, message)
    }
    /// `NOT_ALLOWED`.
    pub fn not_allowed(message: impl Into<String>) -> ChatError {
        ChatError::new(ErrorCode::NotAllowed, message)
    }
    /// `INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<String>) -> ChatError {
        ChatError::new(ErrorCode::InvalidArgument, message)
    }
    /// `NOT_A_MEMBER` of `conversation`.
    pub fn not_a_member(conversation: &str) -> ChatError {
        ChatError::new(
            ErrorCode::NotAMember,
            format!("not a member of {conversation}"),
        )
        .in_conversation(conversation)
    }
    /// `UNKNOWN_CONVERSATION`.
    pub fn unknown_conversation(conversation: &str) -> ChatError {
        ChatError::new(
            ErrorCode::UnknownConversation,
            format!("no conversation {conversation}"),
        )
        .in_conversation(conversation)
    }
    /// Sets the conversation.
    pub fn in_conversation(mut self, conversation: &str) -> ChatError {
        self.conversation_id = conversation.to_owned();
        self
    }
    /// Sets the client message id.
    pub fn for_message(mut self, client_message_id: &str) -> ChatError {
        self.client_message_id = client_message_id.to_owned();
        self
    }
    /// Sets the request id.
    pub fn for_request(mut self, request_id: &str) -> ChatError {
        self.request_id = request_id.to_owned();
        self
    }

    /// The acknowledgement that goes with this error.
    pub fn ack(&self) -> ChatAck {
        match self.code {
            ErrorCode::Malformed | ErrorCode::InvalidArgument => ChatAck::PayloadFormatInvalid,
            ErrorCode::RateLimited => ChatAck::RateLimited,
            ErrorCode::MessageTooLarge | ErrorCode::GroupFull => ChatAck::QuotaExceeded,
            ErrorCode::NotAMember | ErrorCode::NotAllowed | ErrorCode::UnknownConversation => {
                ChatAck::NotAuthorized
            }
            ErrorCode::NotFound => ChatAck::ImplementationSpecific,
            ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::Unspecified => {
                ChatAck::StoreFailed
            }
        }
    }

    /// The wire form.
    pub fn into_proto(self) -> ErrorProto {
        ErrorProto {
            code: self.code as i32,
            message: self.message,
            request_id: self.request_id,
            client_message_id: self.client_message_id,
            conversation_id: self.conversation_id,
        }
    }
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> ChatError {
        match e {
            StoreError::NotFound(what) => {
                ChatError::new(ErrorCode::NotFound, format!("{what} not found"))
            }
            StoreError::AlreadyExists(what) => ChatError::invalid(format!("{what} already exists")),
            StoreError::Conflict(what) => ChatError::new(
                ErrorCode::Unavailable,
                format!("{what} changed concurrently; retry"),
            ),
            StoreError::Unavailable(why) => ChatError::new(
                ErrorCode::Unavailable,
                format!("storage unavailable: {why}"),
            ),
            StoreError::Corrupt(why) => ChatError::new(
                ErrorCode::Internal,
                format!("stored data unreadable: {why}"),
            ),
        }
    }
}
