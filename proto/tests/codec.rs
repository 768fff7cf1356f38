//! Decoding and encoding of envelopes: round trips of every kind, forward
//! compatibility with fields from newer schemas, and refusal of empty or
//! malformed payloads.

use parley_proto::prost::encoding::{encode_key, encode_varint, WireType};
use parley_proto::prost::Message;
use parley_proto::v1::{
    chat_message, envelope, request, response, AddMembers, ChatMessage, Ciphertext, Conversation,
    ConversationKind, ConversationList, ConversationSummary, CreateGroup, DeviceCiphertext,
    Direction, Empty, Envelope, Error, ErrorCode, FetchMessages, GetConversation, LeaveGroup,
    MediaRef, Member, MessageAction, MessagePage, OpenDirect, Presence, PresenceState, Receipt,
    ReceiptKind, RemoveMember, RenameGroup, Request, Response, Role, SetRole, SyncConversations,
    Text, Typing,
};
use parley_proto::{decode_envelope, encode_envelope, DecodeError};

/// Encodes `envelope`, decodes it again and checks nothing changed.
fn assert_round_trip(envelope: impl Into<Envelope>) {
    let envelope = envelope.into();
    let bytes = encode_envelope(&envelope);
    assert_eq!(decode_envelope(&bytes), Ok(envelope));
}

/// A chat message as the server delivers it, with every field set.
fn delivered_text() -> ChatMessage {
    ChatMessage {
        message_id: 9_007_199_254_740_993,
        conversation_id: "alice~bob".into(),
        seq: 42,
        sender: "alice".into(),
        client_message_id: "c-0001".into(),
        server_time_ms: 1_700_000_000_123,
        body: Some(
            Text {
                text: "héllo 👋".into(),
            }
            .into(),
        ),
        reply_to_seq: 41,
        action: MessageAction::New.into(),
        target_seq: 0,
        edited: true,
        deleted: false,
    }
}

/// A conversation with members of every role.
fn group() -> Conversation {
    Conversation {
        id: "gabcdefghijklmnop".into(),
        kind: ConversationKind::Group.into(),
        name: "Climbing".into(),
        members: vec![
            Member {
                user: "alice".into(),
                role: Role::Owner.into(),
            },
            Member {
                user: "bob".into(),
                role: Role::Admin.into(),
            },
            Member {
                user: "carol".into(),
                role: Role::Member.into(),
            },
        ],
        last_seq: 1200,
        updated_at_ms: 1_700_000_000_000,
    }
}

#[test]
fn chat_message_with_each_body_round_trips() {
    assert_round_trip(delivered_text());
    assert_round_trip(ChatMessage {
        client_message_id: "c-0002".into(),
        body: Some(
            MediaRef {
                object_key: "media/3f2a".into(),
                content_type: "image/jpeg".into(),
                size: 2_345_678,
                file_name: "summit.jpg".into(),
                thumbnail: vec![0xff, 0xd8, 0xff, 0xe0],
                width: 4032,
                height: 3024,
            }
            .into(),
        ),
        ..ChatMessage::default()
    });
    assert_round_trip(ChatMessage {
        client_message_id: "c-0003".into(),
        body: Some(
            Ciphertext {
                scheme_version: 2,
                sender_device_id: "phone".into(),
                recipients: vec![
                    DeviceCiphertext {
                        user: "bob".into(),
                        device_id: "tablet".into(),
                        ciphertext: vec![1, 2, 3, 0, 255],
                    },
                    DeviceCiphertext {
                        user: "alice".into(),
                        device_id: "laptop".into(),
                        ciphertext: vec![],
                    },
                ],
            }
            .into(),
        ),
        ..ChatMessage::default()
    });
}

#[test]
fn edit_and_delete_round_trip() {
    assert_round_trip(ChatMessage {
        client_message_id: "c-0004".into(),
        action: MessageAction::Edit.into(),
        target_seq: 42,
        body: Some(
            Text {
                text: "hello".into(),
            }
            .into(),
        ),
        ..ChatMessage::default()
    });
    let delete = ChatMessage {
        client_message_id: "c-0005".into(),
        action: MessageAction::Delete.into(),
        target_seq: 42,
        ..ChatMessage::default()
    };
    assert_round_trip(delete.clone());
    let decoded = decode_envelope(&encode_envelope(&delete.into())).expect("decodes");
    let Some(envelope::Kind::Message(message)) = decoded.kind else {
        panic!("expected a chat message, got {decoded:?}");
    };
    assert_eq!(message.action(), MessageAction::Delete);
    assert_eq!(message.body, None);
}

#[test]
fn receipt_typing_presence_and_error_round_trip() {
    assert_round_trip(Receipt {
        conversation_id: "alice~bob".into(),
        user: "bob".into(),
        kind: ReceiptKind::Read.into(),
        up_to_seq: 42,
        server_time_ms: 1_700_000_000_456,
    });
    assert_round_trip(Typing {
        conversation_id: "alice~bob".into(),
        user: "bob".into(),
        active: true,
    });
    assert_round_trip(Presence {
        user: "carol".into(),
        state: PresenceState::Offline.into(),
        last_seen_ms: 1_699_999_999_000,
    });
    assert_round_trip(Error {
        code: ErrorCode::NotAMember.into(),
        message: "alice is not a member of gabcdefghijklmnop".into(),
        request_id: String::new(),
        client_message_id: "c-0006".into(),
        conversation_id: "gabcdefghijklmnop".into(),
    });
}

#[test]
fn every_request_op_round_trips() {
    let ops: Vec<request::Op> = vec![
        SyncConversations {
            changed_since_ms: 1_700_000_000_000,
            limit: 50,
            page_token: "p2".into(),
        }
        .into(),
        FetchMessages {
            conversation_id: "alice~bob".into(),
            after_seq: 0,
            before_seq: 100,
            limit: 30,
            direction: Direction::Backward.into(),
        }
        .into(),
        CreateGroup {
            name: "Climbing".into(),
            members: vec!["bob".into(), "carol".into()],
        }
        .into(),
        RenameGroup {
            conversation_id: "gabcdefghijklmnop".into(),
            name: "Bouldering".into(),
        }
        .into(),
        AddMembers {
            conversation_id: "gabcdefghijklmnop".into(),
            users: vec!["dave".into()],
        }
        .into(),
        RemoveMember {
            conversation_id: "gabcdefghijklmnop".into(),
            user: "dave".into(),
        }
        .into(),
        SetRole {
            conversation_id: "gabcdefghijklmnop".into(),
            user: "bob".into(),
            role: Role::Admin.into(),
        }
        .into(),
        LeaveGroup {
            conversation_id: "gabcdefghijklmnop".into(),
        }
        .into(),
        OpenDirect { peer: "bob".into() }.into(),
        GetConversation {
            conversation_id: "alice~bob".into(),
        }
        .into(),
    ];
    assert_eq!(ops.len(), 10, "one case per arm of Request.op");
    for (n, op) in ops.into_iter().enumerate() {
        assert_round_trip(Request::new(format!("r{n}"), op));
    }
}

#[test]
fn every_response_result_round_trips() {
    let results: Vec<response::Result> = vec![
        ConversationList {
            items: vec![ConversationSummary {
                conversation: Some(group()),
                unread: 3,
                read_up_to_seq: 1197,
                delivered_up_to_seq: 1200,
                last_message: Some(delivered_text()),
            }],
            next_page_token: "p3".into(),
        }
        .into(),
        MessagePage {
            messages: vec![delivered_text(), delivered_text()],
            has_more: true,
        }
        .into(),
        group().into(),
        Empty {}.into(),
        Error {
            code: ErrorCode::GroupFull.into(),
            message: "group has 256 members".into(),
            request_id: "r1".into(),
            ..Error::default()
        }
        .into(),
    ];
    assert_eq!(results.len(), 5, "one case per arm of Response.result");
    for (n, result) in results.into_iter().enumerate() {
        assert_round_trip(Response::new(format!("r{n}"), result));
    }
}

#[test]
fn a_short_text_from_a_client_costs_twelve_bytes() {
    let envelope = Envelope::from(ChatMessage {
        client_message_id: "c1".into(),
        body: Some(chat_message::Body::from(Text { text: "hi".into() })),
        ..ChatMessage::default()
    });
    // Envelope key + length, client_message_id key + length + 2 bytes,
    // body key + length, text key + length + 2 bytes: every key is one byte.
    let bytes = encode_envelope(&envelope);
    assert_eq!(
        bytes,
        [0x0a, 0x0a, 0x2a, 0x02, b'c', b'1', 0x3a, 0x04, 0x0a, 0x02, b'h', b'i']
    );
    assert_eq!(bytes.len(), 12);
}

#[test]
fn unknown_fields_in_the_envelope_are_skipped() {
    let typing = Envelope::from(Typing {
        conversation_id: "alice~bob".into(),
        user: "bob".into(),
        active: true,
    });
    let mut bytes = encode_envelope(&typing);
    // Field 99 as a varint, field 100 as a length-delimited blob, field 101
    // as a fixed64: all unknown to this schema version.
    encode_key(99, WireType::Varint, &mut bytes);
    encode_varint(123_456, &mut bytes);
    encode_key(100, WireType::LengthDelimited, &mut bytes);
    encode_varint(3, &mut bytes);
    bytes.extend_from_slice(b"new");
    encode_key(101, WireType::SixtyFourBit, &mut bytes);
    bytes.extend_from_slice(&7u64.to_le_bytes());
    assert_eq!(decode_envelope(&bytes), Ok(typing));
}

#[test]
fn unknown_fields_inside_a_nested_message_are_skipped() {
    let message = ChatMessage {
        client_message_id: "c-0007".into(),
        body: Some(Text { text: "hi".into() }.into()),
        ..ChatMessage::default()
    };
    let mut inner = message.encode_to_vec();
    encode_key(99, WireType::LengthDelimited, &mut inner);
    encode_varint(2, &mut inner);
    inner.extend_from_slice(b"ok");
    encode_key(2000, WireType::ThirtyTwoBit, &mut inner);
    inner.extend_from_slice(&1u32.to_le_bytes());

    let mut bytes = Vec::new();
    encode_key(1, WireType::LengthDelimited, &mut bytes);
    encode_varint(inner.len() as u64, &mut bytes);
    bytes.extend_from_slice(&inner);
    assert_eq!(decode_envelope(&bytes), Ok(Envelope::from(message)));
}

#[test]
fn unknown_enum_values_survive_a_round_trip() {
    let message = ChatMessage {
        client_message_id: "c-0008".into(),
        action: 42,
        ..ChatMessage::default()
    };
    let decoded = decode_envelope(&encode_envelope(&message.clone().into())).expect("decodes");
    assert_eq!(decoded, Envelope::from(message));
    let Some(envelope::Kind::Message(message)) = decoded.kind else {
        panic!("expected a chat message, got {decoded:?}");
    };
    assert_eq!(message.action, 42);
    assert_eq!(message.action(), MessageAction::Unspecified);
}

#[test]
fn empty_envelopes_are_rejected() {
    assert_eq!(decode_envelope(&[]), Err(DecodeError::Empty));
    assert_eq!(
        decode_envelope(&encode_envelope(&Envelope::default())),
        Err(DecodeError::Empty)
    );
}

#[test]
fn an_envelope_of_only_a_kind_from_a_newer_schema_is_empty() {
    // Field 99 would be a new arm of Envelope.kind; this version skips it.
    let mut bytes = Vec::new();
    encode_key(99, WireType::LengthDelimited, &mut bytes);
    encode_varint(0, &mut bytes);
    assert_eq!(decode_envelope(&bytes), Err(DecodeError::Empty));
}

#[test]
fn garbage_is_rejected_as_malformed() {
    let valid = encode_envelope(&delivered_text().into());
    let truncated = &valid[..valid.len() - 1];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unterminated key varint", vec![0xff, 0xff, 0xff]),
        ("field number zero", vec![0x00, 0x01]),
        ("wire type 7 does not exist", vec![0x0f, 0x00]),
        ("message field sent as a varint", vec![0x08, 0x01]),
        ("length beyond the end", vec![0x0a, 0x10, 0x00]),
        ("truncated valid envelope", truncated.to_vec()),
        (
            "string that is not UTF-8",
            vec![0x1a, 0x04, 0x0a, 0x02, 0xc3, 0x28],
        ),
        ("overlong varint", {
            let mut bytes = vec![0x08];
            bytes.extend_from_slice(&[0x80; 11]);
            bytes.push(0x01);
            bytes
        }),
        ("text bytes", b"hello, world".to_vec()),
    ];
    for (what, bytes) in cases {
        let result = decode_envelope(&bytes);
        assert!(
            matches!(result, Err(DecodeError::Malformed(_))),
            "{what}: expected Malformed, got {result:?}"
        );
    }
}

#[test]
fn decode_errors_explain_themselves() {
    assert_eq!(
        DecodeError::Empty.to_string(),
        "empty envelope: no kind is set"
    );
    let Err(malformed) = decode_envelope(&[0x0a, 0x10, 0x00]) else {
        panic!("expected an error");
    };
    assert!(
        malformed.to_string().starts_with("malformed envelope: "),
        "{malformed}"
    );
}
