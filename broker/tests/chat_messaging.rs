//! The chat pipeline end to end over real MQTT connections: direct and
//! group conversations, who receives what, sequence numbers, retries and
//! refusals of publishes by non-members.

mod common;

use std::collections::HashSet;

use common::chat::*;
use common::*;
use parley_proto::v1::{
    chat_message::Body, response, AddMembers, ChatMessage, ConversationEvent,
    ConversationEventKind, ConversationKind, ErrorCode, GetConversation, LeaveGroup, MessageAction,
    RemoveMember, RenameGroup, Role, SetRole,
};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

/// Each `(user, role)` of a conversation's members, sorted by user.
fn roles(conversation: &parley_proto::v1::Conversation) -> Vec<(String, Role)> {
    let mut members: Vec<(String, Role)> = conversation
        .members
        .iter()
        .map(|m| (m.user.clone(), m.role()))
        .collect();
    members.sort();
    members
}

/// The event each of `clients` receives next, which must be the same entry
/// for all, with `seq` and `kind`, made by `sender`.
async fn expect_event(
    clients: &mut [&mut ChatClient],
    seq: u64,
    sender: &str,
    kind: ConversationEventKind,
) -> ConversationEvent {
    let mut seen: Option<ChatMessage> = None;
    for client in clients.iter_mut() {
        // Boxed: the waits are large futures, and this test has many.
        let entry = Box::pin(client.next_event()).await;
        assert_eq!(entry.seq, seq, "{}: {entry:?}", client.user());
        assert_eq!(entry.sender, sender, "{}", client.user());
        if let Some(first) = &seen {
            assert_eq!(&entry, first, "{} got another copy", client.user());
        }
        seen = Some(entry);
    }
    match seen.and_then(|m| m.body) {
        Some(Body::Event(event)) => {
            assert_eq!(event.kind(), kind);
            event
        }
        other => panic!("not an event: {other:?}"),
    }
}

#[tokio::test]
async fn direct_chat_reaches_both_users_in_order_with_server_fields() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "alice-phone").await;
    let mut bob = ChatClient::v5(&node, "bob", "bob-laptop").await;
    let conv = direct("bob", "alice");
    assert_eq!(conv, "alice~bob", "the smaller user id comes first");

    let script = [
        ("alice", "a-1", "hi bob"),
        ("bob", "b-1", "hi alice"),
        ("alice", "a-2", "how are you?"),
        ("alice", "a-3", "still there?"),
        ("bob", "b-2", "yes, sorry"),
    ];
    for (who, cmid, text) in script {
        let sender = if who == "alice" { &mut alice } else { &mut bob };
        let ack = sender.send_text(&conv, cmid, text).await;
        assert!(ack.is_success(), "{cmid}: {ack:?}");
    }

    let seen_by_alice = alice.next_messages(script.len()).await;
    let seen_by_bob = bob.next_messages(script.len()).await;
    assert_contiguous_from_1(&seen_by_alice);
    assert_eq!(
        seen_by_alice, seen_by_bob,
        "both users see the same entries"
    );
    let mut last_time = 0;
    for (m, (who, cmid, text)) in seen_by_alice.iter().zip(script) {
        assert_eq!(m.sender, who);
        assert_eq!(m.client_message_id, cmid);
        assert_eq!(text_of(m), Some(text));
        assert_eq!(m.conversation_id, conv);
        assert_eq!(m.action(), MessageAction::New);
        assert!(m.message_id != 0, "the server assigns a message id");
        assert!(m.server_time_ms >= last_time, "server time never goes back");
        last_time = m.server_time_ms;
    }

    // History holds exactly what was delivered.
    assert_eq!(alice.fetch_all(&conv).await, seen_by_alice);
    // The first send created the conversation.
    let c = bob
        .conversation_op(GetConversation {
            conversation_id: conv.clone(),
        })
        .await;
    assert_eq!(c.kind(), ConversationKind::Direct);
    assert_eq!(c.last_seq, 5);
    assert_eq!(
        roles(&c),
        vec![("alice".into(), Role::Member), ("bob".into(), Role::Member)]
    );
    alice.assert_nothing_queued();
    bob.assert_nothing_queued();
}

#[tokio::test]
async fn fields_only_the_server_may_set_are_overwritten() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let conv = direct("alice", "bob");

    let forged = ChatMessage {
        message_id: 7,
        conversation_id: "carol~dave".into(),
        seq: 99,
        sender: "bob".into(),
        server_time_ms: 1,
        edited: true,
        deleted: true,
        ..text_message("c-1", "who am I?")
    };
    let before = parley::chat::now_ms();
    assert!(alice.send(&conv, forged).await.is_success());
    let got = bob.next_message().await;
    assert_eq!(got.sender, "alice");
    assert_eq!(got.seq, 1);
    assert_eq!(got.conversation_id, conv);
    assert_ne!(got.message_id, 7);
    assert!(got.server_time_ms >= before, "time is the server's");
    assert!(!got.edited && !got.deleted);
    assert_eq!(
        alice.next_message().await,
        got,
        "the sender's copy is identical"
    );
}

/// Sends `n` numbered messages from `client` to `conv`, each acknowledged.
async fn send_numbered(client: &mut ChatClient, conv: &str, n: usize) {
    for i in 0..n {
        let cmid = format!("{}-{i}", client.user());
        let ack = client.send_text(conv, &cmid, &format!("message {i}")).await;
        assert!(ack.is_success(), "{cmid}: {ack:?}");
    }
}

// The node runs on a multi-threaded runtime here, as in production: the
// senders' connections resume from one group commit on different threads, and
// must still deliver in seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_three_with_concurrent_senders_receives_one_gapless_order() {
    const EACH: usize = 15;
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob", "carol"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let mut bob = ChatClient::v5(&node, "bob", "b").await;
    let mut carol = ChatClient::v4(&node, "carol", "c").await;
    let group = alice.create_group("trio", &["bob", "carol"]).await;
    assert_eq!(group.kind(), ConversationKind::Group);
    assert!(
        group.id.starts_with('g') && group.id.len() == 17,
        "{}",
        group.id
    );
    let conv = group.id.clone();
    // The group's first entry is the event of its creation.
    expect_event(
        &mut [&mut alice, &mut bob, &mut carol],
        1,
        "alice",
        ConversationEventKind::Created,
    )
    .await;

    tokio::join!(
        send_numbered(&mut alice, &conv, EACH),
        send_numbered(&mut bob, &conv, EACH),
        send_numbered(&mut carol, &conv, EACH),
    );

    let total = 3 * EACH;
    let mut streams = Vec::new();
    for client in [&mut alice, &mut bob, &mut carol] {
        let got = client.next_messages(total).await;
        let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (2..=total as u64 + 1).collect::<Vec<_>>(),
            "{} must receive 2, 3, 4, ... in that order",
            client.user()
        );
        streams.push(got);
    }
    assert_eq!(streams[0], streams[1], "alice and bob agree");
    assert_eq!(streams[0], streams[2], "alice and carol agree");
    // Each sender's messages keep the order they were sent in.
    for user in ["alice", "bob", "carol"] {
        let sent: Vec<String> = streams[0]
            .iter()
            .filter(|m| m.sender == user)
            .map(|m| m.client_message_id.clone())
            .collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{user}-{i}")).collect();
        assert_eq!(sent, expected, "{user}'s messages in sending order");
    }
    let history = alice.fetch_all(&conv).await;
    assert_contiguous_from_1(&history);
    assert_eq!(history[1..], streams[0]);
}

/// A connection keeps the checks its messages passed (membership, consent)
/// while nothing they depend on changes: a removal must still refuse the
/// removed member's very next message on the same connection.
#[tokio::test]
async fn a_member_removed_after_sending_is_refused_on_the_same_connection() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["olga", "pete", "quinn"]).await;
    let mut olga = ChatClient::v5(&node, "olga", "olga-1").await;
    let mut pete = ChatClient::v5(&node, "pete", "pete-1").await;
    let group = olga.create_group("book club", &["pete", "quinn"]).await;
    let conv = group.id.clone();
    expect_event(
        &mut [&mut olga, &mut pete],
        1,
        "olga",
        ConversationEventKind::Created,
    )
    .await;
    for n in 0..3 {
        let sent = pete.say(&conv, &format!("p-{n}"), "page 12").await;
        assert_eq!(olga.next_message().await, sent);
    }

    olga.conversation_op(RemoveMember {
        conversation_id: conv.clone(),
        user: "pete".into(),
    })
    .await;
    let ack = pete.send_text(&conv, "p-3", "still here?").await;
    assert_eq!(ack, Ack::V5(PubAckReason::NotAuthorized));
    assert_eq!(pete.next_error().await.code(), ErrorCode::NotAMember);
}

#[tokio::test]
async fn group_management_decides_who_receives() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob", "carol", "dave"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let mut carol = ChatClient::v5(&node, "carol", "c").await;
    let mut dave = ChatClient::v4(&node, "dave", "d").await;

    // Duplicates and the creator in the member list are ignored.
    let group = alice
        .create_group("Weekend plans", &["bob", "carol", "bob", "alice"])
        .await;
    let conv = group.id.clone();
    assert_eq!(group.name, "Weekend plans");
    assert_eq!(group.last_seq, 1, "the creation is the first entry");
    assert_eq!(
        roles(&group),
        vec![
            ("alice".into(), Role::Owner),
            ("bob".into(), Role::Member),
            ("carol".into(), Role::Member)
        ]
    );

    let created = expect_event(
        &mut [&mut alice, &mut bob, &mut carol],
        1,
        "alice",
        ConversationEventKind::Created,
    )
    .await;
    assert_eq!(created.users, ["bob", "carol"]);
    assert_eq!(created.name, "Weekend plans");

    let first = alice.say(&conv, "a-1", "who's in?").await;
    assert_eq!(first.seq, 2);
    assert_eq!(bob.next_message().await, first);
    assert_eq!(carol.next_message().await, first);

    let renamed = alice
        .conversation_op(RenameGroup {
            conversation_id: conv.clone(),
            name: "Sunday plans".into(),
        })
        .await;
    assert_eq!(renamed.name, "Sunday plans");
    assert_eq!(renamed.last_seq, 3);
    let event = expect_event(
        &mut [&mut alice, &mut bob, &mut carol],
        3,
        "alice",
        ConversationEventKind::Renamed,
    )
    .await;
    assert_eq!(event.name, "Sunday plans");

    // A plain member may neither add nor rename.
    assert_eq!(
        bob.request_err(AddMembers {
            conversation_id: conv.clone(),
            users: vec!["dave".into()],
        })
        .await,
        ErrorCode::NotAllowed
    );
    assert_eq!(
        bob.request_err(RenameGroup {
            conversation_id: conv.clone(),
            name: "mine now".into(),
        })
        .await,
        ErrorCode::NotAllowed
    );
    // Nor is dave a member yet: he cannot post, and he got nothing so far.
    let ack = dave.send_text(&conv, "d-0", "let me in").await;
    assert_eq!(ack, Ack::V4);
    let refused = dave.next_error().await;
    assert_eq!(refused.code(), ErrorCode::NotAMember);
    assert_eq!(refused.client_message_id, "d-0");
    assert_eq!(refused.conversation_id, conv);

    let added = alice
        .conversation_op(AddMembers {
            conversation_id: conv.clone(),
            users: vec!["dave".into()],
        })
        .await;
    assert!(roles(&added).contains(&("dave".into(), Role::Member)));
    let event = expect_event(
        &mut [&mut alice, &mut bob, &mut carol, &mut dave],
        4,
        "alice",
        ConversationEventKind::MembersAdded,
    )
    .await;
    assert_eq!(event.users, ["dave"]);
    // Adding a member again changes nothing and records nothing.
    let again = alice
        .conversation_op(AddMembers {
            conversation_id: conv.clone(),
            users: vec!["dave".into()],
        })
        .await;
    assert_eq!(again.last_seq, 4);
    let second = bob.say(&conv, "b-1", "welcome dave").await;
    assert_eq!(second.seq, 5);
    for client in [&mut alice, &mut carol, &mut dave] {
        assert_eq!(client.next_message().await, second, "{}", client.user());
    }

    // Carol is removed: she no longer receives, nor may she post.
    let removed = alice
        .conversation_op(RemoveMember {
            conversation_id: conv.clone(),
            user: "carol".into(),
        })
        .await;
    assert!(!removed.members.iter().any(|m| m.user == "carol"));
    // Carol gets the event too, as her last entry of the group.
    let event = expect_event(
        &mut [&mut alice, &mut bob, &mut dave, &mut carol],
        6,
        "alice",
        ConversationEventKind::MemberRemoved,
    )
    .await;
    assert_eq!(event.users, ["carol"]);
    let ack = carol.send_text(&conv, "c-1", "hey!").await;
    assert_eq!(ack, Ack::V5(PubAckReason::NotAuthorized));
    assert_eq!(carol.next_error().await.code(), ErrorCode::NotAMember);
    assert_eq!(
        carol
            .request_err(GetConversation {
                conversation_id: conv.clone()
            })
            .await,
        ErrorCode::NotAMember
    );

    // Bob leaves on his own.
    assert!(matches!(
        bob.request_ok(LeaveGroup {
            conversation_id: conv.clone()
        })
        .await,
        response::Result::Ok(_)
    ));
    let event = expect_event(
        &mut [&mut alice, &mut dave, &mut bob],
        7,
        "bob",
        ConversationEventKind::MemberLeft,
    )
    .await;
    assert!(event.users.is_empty() && event.new_owner.is_empty());
    // Ownership handed to dave: alice becomes an admin.
    alice
        .conversation_op(SetRole {
            conversation_id: conv.clone(),
            user: "dave".into(),
            role: Role::Owner as i32,
        })
        .await;
    let event = expect_event(
        &mut [&mut alice, &mut dave],
        8,
        "alice",
        ConversationEventKind::RoleChanged,
    )
    .await;
    assert_eq!(
        (event.role(), event.new_owner.as_str()),
        (Role::Owner, "dave")
    );
    let third = dave.say(&conv, "d-1", "just us now").await;
    assert_eq!(third.seq, 9, "refused sends used no seq");
    assert_eq!(alice.next_message().await, third);

    // Carol and bob got nothing after leaving: a message to each of them in
    // a direct conversation, sent afterwards, is the next thing they see.
    let to_carol = alice.say(&direct("alice", "carol"), "a-c", "sorry").await;
    assert_eq!(carol.next_message().await, to_carol);
    let to_bob = alice.say(&direct("alice", "bob"), "a-b", "bye").await;
    assert_eq!(bob.next_message().await, to_bob);

    let history = alice.fetch_all(&conv).await;
    assert_contiguous_from_1(&history);
    let messages: Vec<ChatMessage> = history
        .iter()
        .filter(|m| !matches!(m.body, Some(Body::Event(_))))
        .cloned()
        .collect();
    assert_eq!(messages, vec![first, second, third]);
    let summary = alice.summary(&conv).await;
    // What one sends, one has read: alice's cursor is at her last entry
    // (the handover), and dave's message after it is unread.
    assert_eq!((summary.read_up_to_seq, summary.unread), (8, 1));
    let group = summary.conversation.expect("conversation");
    assert_eq!(group.name, "Sunday plans");
    assert_eq!(
        roles(&group),
        vec![("alice".into(), Role::Admin), ("dave".into(), Role::Owner)]
    );
    for client in [alice, bob, carol, dave] {
        client.assert_nothing_queued();
    }
}

#[tokio::test]
async fn direct_conversations_have_fixed_members() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob", "carol"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let conv = direct("alice", "bob");
    alice.say(&conv, "a-1", "hello").await;
    assert_eq!(
        alice
            .request_err(AddMembers {
                conversation_id: conv.clone(),
                users: vec!["carol".into()],
            })
            .await,
        ErrorCode::NotAllowed
    );
    assert_eq!(
        alice
            .request_err(RenameGroup {
                conversation_id: conv.clone(),
                name: "us".into(),
            })
            .await,
        ErrorCode::NotAllowed
    );
    // Sending to a direct conversation with nobody behind it: NOT_FOUND.
    let ack = alice
        .send_text(&direct("alice", "zed"), "a-2", "anyone?")
        .await;
    assert_eq!(ack, Ack::V4);
    let e = alice.next_error().await;
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert_eq!(e.client_message_id, "a-2");
}

#[tokio::test]
async fn a_retried_message_is_stored_once_and_keeps_its_seq() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v5(&node, "alice", "a").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let conv = direct("alice", "bob");

    let first = alice.say(&conv, "m-1", "once").await;
    // The retry (say, after a lost PUBACK) is acknowledged like the original
    // and delivered again as stored, even with a different body.
    let again = alice.say(&conv, "m-1", "once (retry)").await;
    assert_eq!(again, first, "the retry is the stored original");
    let next = alice.say(&conv, "m-2", "twice").await;
    assert_eq!(next.seq, 2, "the retry used no seq");

    assert_eq!(bob.next_message().await, first);
    assert_eq!(bob.next_message().await, first, "redelivered as stored");
    assert_eq!(bob.next_message().await, next);

    // The key is per sender: bob may use the same client message id.
    let bobs = bob.say(&conv, "m-1", "mine").await;
    assert_eq!(bobs.seq, 3);
    assert_ne!(bobs.message_id, first.message_id);

    let history = alice.fetch_all(&conv).await;
    assert_contiguous_from_1(&history);
    assert_eq!(history, vec![first, next, bobs]);
}

#[tokio::test]
async fn non_members_are_refused_and_members_receive_nothing() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob", "mallory"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let mut mallory4 = ChatClient::v4(&node, "mallory", "m4").await;
    let mut mallory5 = ChatClient::v5(&node, "mallory", "m5").await;
    let group = alice.create_group("private", &["bob"]).await.id;
    expect_event(
        &mut [&mut alice, &mut bob],
        1,
        "alice",
        ConversationEventKind::Created,
    )
    .await;
    let pair = direct("alice", "bob");
    alice.say(&pair, "a-0", "just us").await;
    assert_eq!(bob.next_message().await.seq, 1);

    for conv in [&group, &pair] {
        // MQTT 5: PUBACK 0x87 and the details on the inbox.
        let ack = mallory5.send_text(conv, "evil-5", "let me in").await;
        assert_eq!(ack, Ack::V5(PubAckReason::NotAuthorized), "{conv}");
        let e = mallory5.next_error().await;
        assert_eq!(e.code(), ErrorCode::NotAMember, "{conv}");
        assert_eq!(e.conversation_id, *conv);
        assert_eq!(e.client_message_id, "evil-5");
        // The error reaches mallory's other session too (it is her inbox).
        assert_eq!(mallory4.next_error().await, e);
        // 3.1.1: a plain PUBACK, and the Error envelope.
        assert_eq!(
            mallory4.send_text(conv, "evil-4", "let me in").await,
            Ack::V4
        );
        let e = mallory4.next_error().await;
        assert_eq!(e.code(), ErrorCode::NotAMember, "{conv}");
        assert_eq!(e.client_message_id, "evil-4");
        assert_eq!(mallory5.next_error().await, e);

        // Marker: the refused messages were published before it, so had
        // they reached the members, they would come first.
        let marker = alice.say(conv, &format!("marker-{conv}"), "marker").await;
        assert_eq!(bob.next_message().await, marker, "{conv}");
    }
    assert_eq!(
        alice.fetch_all(&group).await.len(),
        2,
        "only the creation and the marker"
    );
    assert_eq!(alice.fetch_all(&pair).await.len(), 2, "a-0 and the marker");
    // Mallory cannot read either history.
    for conv in [&group, &pair] {
        let code = mallory4
            .request_err(parley_proto::v1::FetchMessages {
                conversation_id: conv.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(code, ErrorCode::NotAMember, "{conv}");
    }
    alice.assert_nothing_queued();
    bob.assert_nothing_queued();
    mallory4.assert_nothing_queued();
    mallory5.assert_nothing_queued();
}

#[tokio::test]
async fn mqtt5_requests_may_name_a_response_topic_and_correlation_data() {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v5(&node, "alice", "a").await;
    let request = parley_proto::v1::Request {
        request_id: String::new(),
        op: Some(parley_proto::v1::OpenDirect { peer: "bob".into() }.into()),
    };
    let payload = parley_proto::encode_envelope(&request.into());
    let properties = |topic: &str, correlation: &'static [u8]| PublishProperties {
        response_topic: Some(topic.into()),
        correlation_data: Some(bytes::Bytes::from_static(correlation)),
        ..PublishProperties::default()
    };

    // To a/alice, with the correlation data echoed.
    let ack = alice
        .publish_with_properties("q/alice", payload.clone(), properties("a/alice", b"one"))
        .await;
    assert!(ack.is_success());
    let answer = alice.answer("").await;
    assert_eq!(answer.correlation_data.as_deref(), Some(&b"one"[..]));
    let Some(response::Result::Conversation(c)) = answer.response.result else {
        panic!("expected the conversation, got {:?}", answer.response);
    };
    assert_eq!(c.id, "alice~bob");

    // To her inbox, when she names it.
    let ack = alice
        .publish_with_properties("q/alice", payload.clone(), properties("u/alice/i", b"two"))
        .await;
    assert!(ack.is_success());
    match alice.next_envelope().await.kind {
        Some(parley_proto::v1::envelope::Kind::Response(r)) => {
            assert!(matches!(r.result, Some(response::Result::Conversation(_))))
        }
        other => panic!("expected a response on the inbox, got {other:?}"),
    }
    // Someone else's topic is replaced by a/alice.
    let ack = alice
        .publish_with_properties("q/alice", payload, properties("u/bob/i", b"three"))
        .await;
    assert!(ack.is_success());
    assert_eq!(
        alice.answer("").await.correlation_data.as_deref(),
        Some(&b"three"[..])
    );
}

#[tokio::test]
async fn message_ids_are_unique_across_conversations() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob", "carol"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let group = alice.create_group("g", &["bob", "carol"]).await.id;
    let mut ids = HashSet::new();
    for i in 0..10 {
        for conv in [
            direct("alice", "bob"),
            direct("alice", "carol"),
            group.clone(),
        ] {
            let m = alice.say(&conv, &format!("{conv}-{i}"), "x").await;
            // The group's seq 1 is the event of its creation.
            let first = if conv == group { 2 } else { 1 };
            assert_eq!(m.seq, i + first, "each conversation counts on its own");
            assert!(
                ids.insert(m.message_id),
                "message id {} reused",
                m.message_id
            );
        }
    }
}
