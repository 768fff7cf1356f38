//! What the `chat` scenario puts on and reads off Parley's chat topics:
//! `parley.v1` envelopes (a `ChatMessage` to `s/{conv}`, a `CreateGroup` or
//! `OpenDirect` request to `q/{user}`), and the stamp each message carries in its
//! `client_message_id` so that receivers can measure latency and spot losses
//! and duplicates without any shared state.
//!
//! Stamp layout: `{run}.{sender}.{seq}.{sent}`, the last three in lowercase
//! hex: the run token, the sender id, the sender's sequence number from 0 and
//! the send time in nanoseconds on the [`Clock`](crate::payload::Clock). With
//! a run token of up to 14 bytes (a [`RunId`](crate::scenario::RunId) is 7
//! to 14) that is at most 14 + 3 + 8 + 16 + 16 = 57 bytes, within the 64
//! Parley allows.

use parley_proto::v1::{self, chat_message::Body, envelope::Kind, request::Op};
use parley_proto::{decode_envelope, encode_envelope};

use super::layout::ConversationKey;

/// Longest `client_message_id` Parley accepts.
pub const CLIENT_MESSAGE_ID_MAX_LEN: usize = 64;

/// What a message's `client_message_id` says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageStamp {
    /// Sender id (see the layout).
    pub sender: u32,
    /// The sender's sequence number, from 0.
    pub seq: u64,
    /// Send time, nanoseconds on the bench clock.
    pub sent_nanos: u64,
}

impl MessageStamp {
    /// The `client_message_id` of this message in run `run`.
    pub fn client_message_id(&self, run: &str) -> String {
        format!(
            "{run}.{:x}.{:x}.{:x}",
            self.sender, self.seq, self.sent_nanos
        )
    }

    /// Reads a `client_message_id`; `None` if it is not a stamp of run `run`.
    pub fn parse(client_message_id: &str, run: &str) -> Option<MessageStamp> {
        let rest = client_message_id.strip_prefix(run)?.strip_prefix('.')?;
        let mut parts = rest.split('.');
        let mut hex = || u64::from_str_radix(parts.next()?, 16).ok();
        let sender = u32::try_from(hex()?).ok()?;
        let (seq, sent_nanos) = (hex()?, hex()?);
        parts.next().is_none().then_some(MessageStamp {
            sender,
            seq,
            sent_nanos,
        })
    }
}

/// The payload of a text message with `client_message_id` and a text of
/// `text_len` bytes (at least one).
pub fn chat_message(client_message_id: String, text_len: usize) -> Vec<u8> {
    let message = v1::ChatMessage {
        client_message_id,
        body: Some(Body::Text(v1::Text {
            text: "x".repeat(text_len.max(1)),
        })),
        ..Default::default()
    };
    encode_envelope(&message.into())
}

/// The request that opens a conversation before the run: `OpenDirect` with
/// the other member of a pair, `CreateGroup` with the other members of a
/// group.
pub fn open_request(request_id: &str, key: &ConversationKey, others: Vec<String>) -> Vec<u8> {
    match key {
        ConversationKey::Direct(_) => {
            let request = v1::Request {
                request_id: request_id.to_string(),
                op: Some(Op::OpenDirect(v1::OpenDirect {
                    peer: others.into_iter().next().unwrap_or_default(),
                })),
            };
            encode_envelope(&request.into())
        }
        ConversationKey::Group { name } => create_group(request_id, name, others),
    }
}

/// The payload of a `CreateGroup` request.
pub fn create_group(request_id: &str, name: &str, members: Vec<String>) -> Vec<u8> {
    let request = v1::Request {
        request_id: request_id.to_string(),
        op: Some(Op::CreateGroup(v1::CreateGroup {
            name: name.to_string(),
            members,
        })),
    };
    encode_envelope(&request.into())
}

/// A server `Error`, reduced to what the bench reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The code's protobuf name (`ERROR_CODE_RATE_LIMITED`) or its number.
    pub code: String,
    /// The server's explanation.
    pub message: String,
    /// The message refused, if any.
    pub client_message_id: String,
}

impl ServerError {
    fn from_proto(e: &v1::Error) -> ServerError {
        let code = v1::ErrorCode::try_from(e.code).map_or_else(
            |_| format!("error code {}", e.code),
            |c| c.as_str_name().into(),
        );
        ServerError {
            code,
            message: e.message.clone(),
            client_message_id: e.client_message_id.clone(),
        }
    }

    /// `CODE: message`, the kind under which the bench counts it.
    pub fn kind(&self) -> String {
        format!("server error {}: {}", self.code, self.message)
    }
}

/// What arrived on a user's inbox `u/{user}/i`.
#[derive(Debug, Clone, PartialEq)]
pub enum InboxItem {
    /// A stored chat message.
    Message(v1::ChatMessage),
    /// A refusal.
    Error(ServerError),
    /// Something else (a receipt, a conversation event such as the group's
    /// creation, a kind from a newer schema).
    Other,
}

/// Decodes an inbox payload.
pub fn inbox_item(payload: &[u8]) -> Result<InboxItem, parley_proto::DecodeError> {
    Ok(match decode_envelope(payload)?.kind {
        Some(Kind::Message(m)) if matches!(m.body, Some(Body::Event(_))) => InboxItem::Other,
        Some(Kind::Message(m)) => InboxItem::Message(m),
        Some(Kind::Error(e)) => InboxItem::Error(ServerError::from_proto(&e)),
        _ => InboxItem::Other,
    })
}

/// The answer to a `CreateGroup` or `OpenDirect` request, from a payload on
/// `a/{user}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenAnswer {
    /// Not an answer to the request asked about.
    NotOurs,
    /// The conversation is open (created if it was new) with this id.
    Opened(String),
    /// The request failed.
    Refused(ServerError),
}

/// Reads a payload on `a/{user}` as the answer to request `request_id`.
pub fn open_answer(
    payload: &[u8],
    request_id: &str,
) -> Result<OpenAnswer, parley_proto::DecodeError> {
    use parley_proto::v1::response::Result as Answer;
    let Some(Kind::Response(response)) = decode_envelope(payload)?.kind else {
        return Ok(OpenAnswer::NotOurs);
    };
    if response.request_id != request_id {
        return Ok(OpenAnswer::NotOurs);
    }
    Ok(match response.result {
        Some(Answer::Conversation(c)) => OpenAnswer::Opened(c.id),
        Some(Answer::Error(e)) => OpenAnswer::Refused(ServerError::from_proto(&e)),
        other => OpenAnswer::Refused(ServerError {
            code: "unexpected answer".into(),
            message: format!("{other:?}"),
            client_message_id: String::new(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::v1::response::Result as Answer;

    #[test]
    fn stamps_round_trip_and_fit_parley_limits() {
        let stamp = MessageStamp {
            sender: u32::MAX,
            seq: u64::MAX,
            sent_nanos: u64::MAX,
        };
        let run = "abcdef12345678";
        let id = stamp.client_message_id(run);
        assert!(id.len() <= CLIENT_MESSAGE_ID_MAX_LEN, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(MessageStamp::parse(&id, run), Some(stamp));
        let small = MessageStamp {
            sender: 3,
            seq: 10,
            sent_nanos: 255,
        };
        assert_eq!(small.client_message_id("r1"), "r1.3.a.ff");
        assert_eq!(MessageStamp::parse("r1.3.a.ff", "r1"), Some(small));
    }

    #[test]
    fn foreign_ids_are_not_stamps() {
        assert_eq!(MessageStamp::parse("r2.3.a.ff", "r1"), None);
        assert_eq!(MessageStamp::parse("r1.3.a", "r1"), None);
        assert_eq!(MessageStamp::parse("r1.3.a.ff.0", "r1"), None);
        assert_eq!(MessageStamp::parse("r1.3.zz.ff", "r1"), None);
        assert_eq!(MessageStamp::parse("r13.a.ff.1", "r1"), None);
        assert_eq!(MessageStamp::parse("r1.100000000.0.0", "r1"), None);
    }

    #[test]
    fn a_message_payload_decodes_as_parley_would() {
        let payload = chat_message("r1.0.0.1".into(), 5);
        let envelope = decode_envelope(&payload).unwrap();
        let Some(Kind::Message(m)) = envelope.kind else {
            panic!("not a message: {envelope:?}");
        };
        assert_eq!(m.client_message_id, "r1.0.0.1");
        assert_eq!(
            m.body,
            Some(Body::Text(v1::Text {
                text: "xxxxx".into()
            }))
        );
        assert_eq!((m.seq, m.sender.as_str()), (0, ""));
        // An empty text is refused by Parley, so there is always one byte.
        let Some(Kind::Message(m)) = decode_envelope(&chat_message("c".into(), 0)).unwrap().kind
        else {
            panic!("not a message");
        };
        assert_eq!(m.body, Some(Body::Text(v1::Text { text: "x".into() })));
    }

    #[test]
    fn reads_inbox_items() {
        let stored = v1::ChatMessage {
            seq: 4,
            sender: "u0".into(),
            client_message_id: "r1.0.3.9".into(),
            ..Default::default()
        };
        let payload = encode_envelope(&stored.clone().into());
        assert_eq!(inbox_item(&payload).unwrap(), InboxItem::Message(stored));
        // A conversation event (the group's creation) is not a message of the run.
        let event = v1::ChatMessage {
            seq: 1,
            body: Some(Body::Event(v1::ConversationEvent::default())),
            ..Default::default()
        };
        let payload = encode_envelope(&event.into());
        assert_eq!(inbox_item(&payload).unwrap(), InboxItem::Other);
        let error = v1::Error {
            code: v1::ErrorCode::RateLimited as i32,
            message: "too many messages; slow down".into(),
            client_message_id: "r1.0.4.a".into(),
            ..Default::default()
        };
        let item = inbox_item(&encode_envelope(&error.into())).unwrap();
        let InboxItem::Error(e) = item else {
            panic!("not an error: {item:?}");
        };
        assert_eq!(e.client_message_id, "r1.0.4.a");
        assert_eq!(
            e.kind(),
            "server error ERROR_CODE_RATE_LIMITED: too many messages; slow down"
        );
        let receipt = v1::Receipt::default();
        assert_eq!(
            inbox_item(&encode_envelope(&receipt.into())).unwrap(),
            InboxItem::Other
        );
        assert!(inbox_item(b"\xff\xff").is_err());
    }

    #[test]
    fn a_pair_is_opened_with_open_direct_and_a_group_with_create_group() {
        let direct = open_request(
            "open-1",
            &ConversationKey::Direct("u0~u1".into()),
            vec!["u1".into()],
        );
        let Some(Kind::Request(r)) = decode_envelope(&direct).unwrap().kind else {
            panic!("not a request");
        };
        assert_eq!(r.request_id, "open-1");
        assert_eq!(
            r.op,
            Some(Op::OpenDirect(v1::OpenDirect { peer: "u1".into() }))
        );
        let group = ConversationKey::Group {
            name: "team".into(),
        };
        let created = open_request("open-2", &group, vec!["u1".into(), "u2".into()]);
        let Some(Kind::Request(r)) = decode_envelope(&created).unwrap().kind else {
            panic!("not a request");
        };
        let Some(Op::CreateGroup(g)) = r.op else {
            panic!("not CreateGroup");
        };
        assert_eq!((g.name.as_str(), g.members.len()), ("team", 2));
    }

    #[test]
    fn matches_open_answers_by_request_id() {
        let request = create_group("create-1", "team", vec!["u1".into(), "u2".into()]);
        let Some(Kind::Request(r)) = decode_envelope(&request).unwrap().kind else {
            panic!("not a request");
        };
        assert_eq!(r.request_id, "create-1");
        let Some(Op::CreateGroup(g)) = r.op else {
            panic!("not CreateGroup");
        };
        assert_eq!((g.name.as_str(), g.members.len()), ("team", 2));

        let answer = |request_id: &str, result| {
            encode_envelope(
                &v1::Response {
                    request_id: request_id.into(),
                    result: Some(result),
                }
                .into(),
            )
        };
        let created = answer(
            "create-1",
            Answer::Conversation(v1::Conversation {
                id: "gaaaaaaaaaaaaaaaa".into(),
                ..Default::default()
            }),
        );
        assert_eq!(
            open_answer(&created, "create-1").unwrap(),
            OpenAnswer::Opened("gaaaaaaaaaaaaaaaa".into())
        );
        assert_eq!(
            open_answer(&created, "create-2").unwrap(),
            OpenAnswer::NotOurs
        );
        let refused = answer(
            "create-1",
            Answer::Error(v1::Error {
                code: v1::ErrorCode::GroupFull as i32,
                message: "too many members".into(),
                ..Default::default()
            }),
        );
        match open_answer(&refused, "create-1").unwrap() {
            OpenAnswer::Refused(e) => assert_eq!(e.code, "ERROR_CODE_GROUP_FULL"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
