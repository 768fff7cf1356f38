//! Limits and bad input on the chat topics: size and rate limits, payloads
//! that are not what the topic carries, and conversations that do not
//! exist. Each refusal gets its error code (and MQTT 5 reason), and nothing
//! refused is stored or reaches anyone.

mod common;

use common::chat::*;
use common::raw::{packet, publish, Connect, Props, Raw, PINGREQ, PINGRESP, PUBACK};
use common::*;
use parley_proto::v1::{
    envelope::Kind, response, ChatMessage, Envelope, ErrorCode, Request, Typing,
};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

/// Publishes `payload` on `topic` from a 3.1.1 and an MQTT 5 session of the
/// same user and checks the refusal each gets (the error envelope reaches
/// both sessions, since it goes to the user's inbox). `what` names the case.
async fn assert_refused(
    v4: &mut ChatClient,
    v5: &mut ChatClient,
    (topic, what): (&str, &str),
    payload: Vec<u8>,
    code: ErrorCode,
    reason: PubAckReason,
) {
    assert_eq!(
        v4.publish(topic, 1, payload.clone()).await,
        Some(Ack::V4),
        "{what}"
    );
    let e = v4.next_error().await;
    assert_eq!(e.code(), code, "{what}, 3.1.1: {}", e.message);
    assert_eq!(v5.next_error().await, e, "{what}");

    assert_eq!(
        v5.publish(topic, 1, payload).await,
        Some(Ack::V5(reason)),
        "{what}, MQTT 5"
    );
    let e = v5.next_error().await;
    assert_eq!(e.code(), code, "{what}, MQTT 5: {}", e.message);
    assert_eq!(v4.next_error().await, e, "{what}");
}

fn envelope(kind: impl Into<Envelope>) -> Vec<u8> {
    parley_proto::encode_envelope(&kind.into())
}

/// QoS 1 PUBLISHes of `payloads` to `topic`, packet ids from 1, back to back
/// in one buffer (for one write: a client library may drop PUBACKs that
/// arrive together with a close).
fn qos1_burst(v5: bool, topic: &str, payloads: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut burst = Vec::new();
    for (pkid, payload) in (1u16..).zip(payloads) {
        burst.extend(publish(
            v5,
            topic,
            1,
            pkid,
            false,
            false,
            &Props::new(),
            &payload,
        ));
    }
    burst
}

#[tokio::test]
async fn oversize_messages_are_refused_as_too_large() {
    let node = start_node(|c| {
        c.chat.max_message_bytes = 100;
        c.chat.max_text_chars = 20;
    })
    .await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice4 = ChatClient::v4(&node, "alice", "a4").await;
    let mut alice5 = ChatClient::v5(&node, "alice", "a5").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let conv = direct("alice", "bob");
    let topic = format!("s/{conv}");

    // Over the payload limit (a 150-character text is over both limits;
    // the payload is checked first).
    let big = envelope(text_message("big", &"x".repeat(150)));
    assert!(big.len() > 100);
    assert_refused(
        &mut alice4,
        &mut alice5,
        (&topic, "over the payload limit"),
        big,
        ErrorCode::MessageTooLarge,
        PubAckReason::QuotaExceeded,
    )
    .await;
    // Within the payload limit, over the text limit: 21 characters, counted
    // as characters, not bytes.
    let long = envelope(text_message("long", &"é".repeat(21)));
    assert!(long.len() <= 100);
    assert_refused(
        &mut alice4,
        &mut alice5,
        (&topic, "over the text limit"),
        long,
        ErrorCode::MessageTooLarge,
        PubAckReason::QuotaExceeded,
    )
    .await;
    // Exactly at the text limit: accepted.
    let fits = alice5.say(&conv, "fits", &"é".repeat(20)).await;
    assert_eq!(fits.seq, 1, "nothing refused was stored");
    assert_eq!(bob.next_message().await, fits, "nor delivered");
    assert_eq!(alice4.next_message().await, fits);
    assert_eq!(alice4.fetch_all(&conv).await, vec![fits]);
}

#[tokio::test]
async fn sending_faster_than_the_limit_is_refused_as_rate_limited() {
    let node = start_node(|c| {
        c.chat.message_burst = 3;
        c.chat.messages_per_sec = 0.001;
    })
    .await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice4 = ChatClient::v4(&node, "alice", "a4").await;
    let mut alice5 = ChatClient::v5(&node, "alice", "a5").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let conv = direct("alice", "bob");

    let mut sent = Vec::new();
    for i in 1..=3 {
        sent.push(alice5.say(&conv, &format!("m{i}"), "quick").await);
    }
    assert_eq!(alice4.next_messages(3).await, sent);
    // The burst is spent; the limit is per user, across her sessions. MQTT 5
    // gets 0x97 and every session of hers the Error envelope.
    let topic = format!("s/{conv}");
    let quick = envelope(text_message("m4", "too quick"));
    assert_eq!(
        alice5.publish(&topic, 1, quick.clone()).await,
        Some(Ack::V5(PubAckReason::QuotaExceeded))
    );
    let e = alice5.next_error().await;
    assert_eq!(e.code(), ErrorCode::RateLimited, "{}", e.message);
    assert_eq!(alice4.next_error().await, e);
    // 3.1.1 cannot refuse in its PUBACK, and a PUBACK means stored: the
    // connection is closed without one (the client resends later).
    alice4.publish_expect_close(&topic, quick).await;
    let e = alice5.next_error().await;
    assert_eq!(e.code(), ErrorCode::RateLimited, "{}", e.message);
    assert_eq!(bob.next_messages(3).await, sent);
    // Other users are not affected; bob's message is the next entry, and the
    // next thing he receives (the refused one never reached him).
    let marker = bob.say(&conv, "b1", "my turn").await;
    assert_eq!(marker.seq, 4);
    // Requests are not messages: alice can still read history.
    let history = alice5.fetch_all(&conv).await;
    assert_eq!(history.len(), 4);
    assert_eq!(&history[..3], &sent[..]);
    assert_eq!(history[3], marker);
}

/// Publishes one text message per id to `topic` back to back at QoS 1 from
/// a 3.1.1 client (rumqttc) and polls until as many PUBACKs arrived. Returns
/// their packet ids in arrival order.
async fn send_back_to_back(node: &TestNode, user: &str, topic: &str, ids: &[String]) -> Vec<u16> {
    let options = v4::options(node, &format!("{user}-burst"), user, &password_of(user));
    let (client, mut eventloop) = v4::connect(options).await;
    for id in ids {
        let payload = envelope(text_message(id, "in a hurry"));
        client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .await
            .expect("queue PUBLISH");
    }
    let mut acked = Vec::new();
    while acked.len() < ids.len() {
        let pkid = v4::next_matching(&mut eventloop, "a PUBACK", |p| match p {
            rumqttc::Packet::PubAck(ack) => Some(ack.pkid),
            _ => None,
        })
        .await;
        acked.push(pkid);
    }
    acked
}

#[tokio::test]
async fn messages_over_the_rate_are_held_then_stored_and_acknowledged_in_order() {
    // One message at once, then one per 50 ms: a client sending twelve
    // back to back is slowed down, and every message waits well within the
    // bound.
    let node = start_node(|c| {
        c.chat.message_burst = 1;
        c.chat.messages_per_sec = 20.0;
        c.chat.rate_limit_max_wait_ms = 2_000;
        c.chat.message_requests = false;
    })
    .await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let conv = direct("alice", "bob");
    let ids: Vec<String> = (1..=12).map(|i| format!("m{i}")).collect();

    let acked = send_back_to_back(&node, "alice", &format!("s/{conv}"), &ids).await;
    assert_eq!(
        acked,
        (1..=12).collect::<Vec<u16>>(),
        "every message acknowledged, in publish order"
    );

    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let stored = bob.fetch_all(&conv).await;
    assert_contiguous_from_1(&stored);
    let stored_ids: Vec<&str> = stored
        .iter()
        .map(|m| m.client_message_id.as_str())
        .collect();
    assert_eq!(stored_ids, ids, "all twelve stored, in order");
    let held = metric(&node, "parley_chat_messages_held_total ")
        .await
        .expect("the held counter is exported");
    assert!(held >= 1.0, "messages were held: {held}");
    assert_eq!(
        metric(&node, "parley_chat_rate_limited_total{kind=\"message\"} ").await,
        Some(0.0),
        "none refused"
    );
}

#[tokio::test]
async fn a_message_past_the_wait_bound_is_never_acknowledged() {
    // Three at once, then one per 1,000 s: far past the 2 s bound.
    let node = start_node(|c| {
        c.chat.message_burst = 3;
        c.chat.messages_per_sec = 0.001;
        c.chat.rate_limit_max_wait_ms = 2_000;
        c.chat.message_requests = false;
    })
    .await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let conv = direct("alice", "bob");
    let topic = format!("s/{conv}");
    let ids: Vec<String> = (1..=5).map(|i| format!("m{i}")).collect();

    // 3.1.1, five back to back in one write (raw packets: a client library
    // may drop PUBACKs that arrive together with the close): the burst is
    // stored and acknowledged; the fourth cannot be, and a 3.1.1 PUBACK cannot
    // refuse, so the connection is closed without one.
    let (mut raw, _) = Raw::connected(
        &node,
        &Connect::v4("alice-burst", "alice", &password_of("alice")),
    )
    .await;
    let payloads = ids
        .iter()
        .map(|id| envelope(text_message(id, "in a hurry")));
    raw.send(&qos1_burst(false, &topic, payloads)).await;
    let mut acked = Vec::new();
    while let Some(frame) = raw.recv().await {
        assert_eq!(frame.kind, 4, "only PUBACKs before the close: {frame:?}");
        acked.push(frame.pkid());
    }
    assert_eq!(
        acked,
        vec![1, 2, 3],
        "only the stored messages acknowledged"
    );

    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let stored = bob.fetch_all(&conv).await;
    assert_contiguous_from_1(&stored);
    let stored_ids: Vec<&str> = stored
        .iter()
        .map(|m| m.client_message_id.as_str())
        .collect();
    assert_eq!(
        stored_ids,
        ["m1", "m2", "m3"],
        "every PUBACKed message stored, nothing else"
    );

    // MQTT 5 past the bound: PUBACK 0x97 and the Error envelope.
    let mut alice5 = ChatClient::v5(&node, "alice", "a5").await;
    assert_eq!(
        alice5
            .publish(&topic, 1, envelope(text_message("m6", "still too quick")))
            .await,
        Some(Ack::V5(PubAckReason::QuotaExceeded))
    );
    let e = alice5.next_error().await;
    assert_eq!(e.code(), ErrorCode::RateLimited, "{}", e.message);
    assert_eq!(bob.fetch_all(&conv).await.len(), 3, "nothing more stored");
    let refused = metric(&node, "parley_chat_rate_limited_total{kind=\"message\"} ")
        .await
        .expect("the refusal counter is exported");
    assert!(
        refused >= 2.0,
        "the 3.1.1 and the MQTT 5 refusal: {refused}"
    );
    assert_eq!(
        metric(&node, "parley_chat_messages_held_total ").await,
        Some(0.0),
        "nothing was held: every wait was past the bound"
    );
}

#[tokio::test]
async fn typing_over_the_rate_is_dropped_yet_acknowledged_on_both_versions() {
    // Two indicators at once, then one per 1,000 s.
    let node = start_node(|c| {
        c.chat.typing_burst = 2;
        c.chat.typing_per_sec = 0.001;
    })
    .await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let group = alice.create_group("g", &["bob"]).await.id;
    let topic = format!("t/{group}");

    // Five QoS 1 indicators back to back in one write, on 3.1.1 (two within
    // the burst, three over it) and then on MQTT 5 (all five over it): each
    // is acknowledged with success, and the connection stays open.
    for (v5, client_id) in [(false, "alice-typing4"), (true, "alice-typing5")] {
        let connect = if v5 {
            Connect::v5(client_id, "alice", &password_of("alice"))
        } else {
            Connect::v4(client_id, "alice", &password_of("alice"))
        };
        let (mut raw, _) = Raw::connected(&node, &connect).await;
        let payloads = [true, false, true, false, true].map(|active| {
            envelope(Typing {
                active,
                ..Typing::default()
            })
        });
        raw.send(&qos1_burst(v5, &topic, payloads)).await;
        let mut acked = Vec::new();
        while acked.len() < 5 {
            let frame = raw
                .recv()
                .await
                .unwrap_or_else(|| panic!("v5 {v5}: closed after PUBACKs {acked:?}"));
            assert_eq!(frame.kind, PUBACK, "v5 {v5}: only PUBACKs: {frame:?}");
            assert_eq!(frame.ack_reason(), 0, "v5 {v5}: success: {frame:?}");
            acked.push(frame.pkid());
        }
        assert_eq!(
            acked,
            [1, 2, 3, 4, 5],
            "v5 {v5}: every indicator acknowledged"
        );
        raw.send(&packet(PINGREQ << 4, &[])).await;
        let pong = raw.recv().await.expect("the connection is still open");
        assert_eq!(pong.kind, PINGRESP, "v5 {v5}: {pong:?}");
    }

    // Messages still flow, and every dropped indicator was counted.
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let m = alice.say(&group, "a-1", "still here").await;
    assert_eq!(bob.fetch_all(&group).await.last(), Some(&m));
    assert_eq!(
        metric(&node, "parley_chat_rate_limited_total{kind=\"typing\"} ").await,
        Some(8.0),
        "three dropped on 3.1.1, five on MQTT 5"
    );
}

#[tokio::test]
async fn requesting_faster_than_the_limit_is_refused_as_rate_limited() {
    let node = start_node(|c| {
        c.chat.request_burst = 2;
        c.chat.requests_per_sec = 0.001;
    })
    .await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v5(&node, "alice", "a").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let conv = direct("alice", "bob");
    let sent = alice.say(&conv, "m1", "hi").await;

    // The burst: two requests are answered.
    assert_eq!(alice.fetch_all(&conv).await, vec![sent.clone()]);
    assert_eq!(alice.sync(0).await.len(), 1);
    // The third is refused, with its request id; the MQTT ack is a success.
    assert_eq!(
        alice
            .request_err(parley_proto::v1::SyncConversations::default())
            .await,
        ErrorCode::RateLimited
    );
    // Messages are not requests, and bob has a bucket of his own.
    let second = alice.say(&conv, "m2", "still here").await;
    assert_eq!(bob.next_messages(2).await, vec![sent, second]);
    assert_eq!(bob.fetch_all(&conv).await.len(), 2);
    // The refusal is counted.
    let metrics = reqwest::get(format!("{}/metrics", node.http()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        metrics.contains("chat_rate_limited_total{kind=\"request\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn payloads_that_are_not_a_chat_message_are_malformed() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice4 = ChatClient::v4(&node, "alice", "a4").await;
    let mut alice5 = ChatClient::v5(&node, "alice", "a5").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let conv = direct("alice", "bob");
    let topic = format!("s/{conv}");
    let first = alice4.say(&conv, "m1", "before").await;
    assert_eq!(alice5.next_message().await, first);
    assert_eq!(bob.next_message().await, first);

    let cases: Vec<(&str, Vec<u8>, ErrorCode, PubAckReason)> = vec![
        (
            "garbage bytes",
            vec![0xff, 0x00, 0x13, 0x37, 0xde, 0xad],
            ErrorCode::Malformed,
            PubAckReason::PayloadFormatInvalid,
        ),
        (
            "an empty payload",
            Vec::new(),
            ErrorCode::Malformed,
            PubAckReason::PayloadFormatInvalid,
        ),
        (
            "plain text",
            b"hello bob".to_vec(),
            ErrorCode::Malformed,
            PubAckReason::PayloadFormatInvalid,
        ),
        (
            "the wrong kind for the topic",
            envelope(Typing {
                active: true,
                ..Typing::default()
            }),
            ErrorCode::Malformed,
            PubAckReason::PayloadFormatInvalid,
        ),
        (
            "no client message id",
            envelope(text_message("", "anonymous")),
            ErrorCode::InvalidArgument,
            PubAckReason::PayloadFormatInvalid,
        ),
        (
            "no body",
            envelope(ChatMessage {
                client_message_id: "nobody".into(),
                ..ChatMessage::default()
            }),
            ErrorCode::InvalidArgument,
            PubAckReason::PayloadFormatInvalid,
        ),
        (
            "an empty text",
            envelope(text_message("empty", "")),
            ErrorCode::InvalidArgument,
            PubAckReason::PayloadFormatInvalid,
        ),
        (
            "a target on a new message",
            envelope(ChatMessage {
                target_seq: 1,
                ..text_message("targeted", "hm")
            }),
            ErrorCode::InvalidArgument,
            PubAckReason::PayloadFormatInvalid,
        ),
    ];
    for (what, payload, code, reason) in cases {
        assert_refused(
            &mut alice4,
            &mut alice5,
            (&topic, what),
            payload,
            code,
            reason,
        )
        .await;
    }

    // Nothing was stored or forwarded: the marker is seq 2 and the next
    // thing bob receives.
    let marker = alice4.say(&conv, "m2", "after").await;
    assert_eq!(marker.seq, 2);
    assert_eq!(bob.next_message().await, marker);
    assert_eq!(alice4.fetch_all(&conv).await, vec![first, marker]);
}

#[tokio::test]
async fn bad_requests_are_answered_with_errors() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice"]).await;
    let mut alice = ChatClient::v5(&node, "alice", "a").await;

    // Undecodable: there is no request id to answer, so the error comes on
    // the inbox (and MQTT 5 gets 0x99).
    let ack = alice.publish("q/alice", 1, b"not protobuf".to_vec()).await;
    assert_eq!(ack, Some(Ack::V5(PubAckReason::PayloadFormatInvalid)));
    assert_eq!(alice.next_error().await.code(), ErrorCode::Malformed);

    // A request without an operation: answered on a/alice with its id.
    let request = Request {
        request_id: "empty-op".into(),
        op: None,
    };
    let ack = alice.publish("q/alice", 1, envelope(request)).await;
    assert_eq!(ack, Some(Ack::V5(PubAckReason::Success)));
    let answer = alice.answer("empty-op").await;
    match answer.response.result {
        Some(response::Result::Error(e)) => {
            assert_eq!(e.code(), ErrorCode::Malformed);
            assert_eq!(e.request_id, "empty-op");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // Someone else's request topic is refused by the ACL.
    let ack = alice
        .publish(
            "q/bob",
            1,
            envelope(Request::new(
                "x",
                parley_proto::v1::SyncConversations::default(),
            )),
        )
        .await;
    assert_eq!(ack, Some(Ack::V5(PubAckReason::NotAuthorized)));
    alice.assert_nothing_queued();
}

#[tokio::test]
async fn unknown_conversations_are_refused() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice4 = ChatClient::v4(&node, "alice", "a4").await;
    let mut alice5 = ChatClient::v5(&node, "alice", "a5").await;
    // A well-formed group id that nobody created.
    let ghost = "gaaaaaaaaaaaaaaaa";
    assert_refused(
        &mut alice4,
        &mut alice5,
        (&format!("s/{ghost}"), "a group nobody created"),
        envelope(text_message("g1", "hello?")),
        ErrorCode::UnknownConversation,
        PubAckReason::NotAuthorized,
    )
    .await;
    // Reading it is refused the same way, inside the response.
    assert_eq!(
        alice5
            .request_err(parley_proto::v1::FetchMessages {
                conversation_id: ghost.into(),
                ..Default::default()
            })
            .await,
        ErrorCode::UnknownConversation
    );
    assert_eq!(
        alice5
            .request_err(parley_proto::v1::GetConversation {
                conversation_id: ghost.into(),
            })
            .await,
        ErrorCode::UnknownConversation
    );
    // Nothing was created by trying.
    assert!(
        alice4.sync(0).await.is_empty(),
        "alice has no conversations"
    );
    // A receipt and a typing indicator there are refused too (typing silently).
    let ack = alice5
        .send_receipt(ghost, parley_proto::v1::ReceiptKind::Read, 1)
        .await;
    assert_eq!(ack, Ack::V5(PubAckReason::NotAuthorized));
    let e = alice5.next_error().await;
    assert_eq!(e.code(), ErrorCode::UnknownConversation);
    assert_eq!(alice4.next_error().await, e);
    alice5.send_typing(ghost, true).await;
    // The next inbox entry is a message of a real conversation: no error
    // came for the typing indicator.
    let m = alice5.say(&direct("alice", "bob"), "real", "hi bob").await;
    assert_eq!(m.seq, 1);
    match alice4.next_envelope().await.kind {
        Some(Kind::Message(got)) => assert_eq!(got, m),
        other => panic!("expected alice's message, got {other:?}"),
    }
}
