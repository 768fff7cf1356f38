//! The live signals around messages: delivered/read receipts and their
//! cursors, typing indicators (relayed, never stored, rate limited) and
//! presence on `p/{user}`.

mod common;

use common::chat::*;
use common::*;
use parley_proto::v1::{ErrorCode, PresenceState, ReceiptKind};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

#[tokio::test]
async fn receipts_are_relayed_and_cursors_only_move_forward() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let mut bob = ChatClient::v5(&node, "bob", "b").await;
    let conv = direct("alice", "bob");
    for i in 1..=4 {
        alice.say(&conv, &format!("a-{i}"), "news").await;
    }
    assert_eq!(bob.next_messages(4).await.last().unwrap().seq, 4);

    // (kind sent, up_to sent) -> (kind relayed, cursor relayed)
    let steps = [
        (ReceiptKind::Delivered, 4, 4),
        // Reading implies delivery; the read cursor moves to 2.
        (ReceiptKind::Read, 2, 2),
        // Lower than the cursor: it stays at 2.
        (ReceiptKind::Read, 1, 2),
        // A delivered receipt below the delivered cursor: stays at 4.
        (ReceiptKind::Delivered, 3, 4),
        // Past the last seq: capped at 4.
        (ReceiptKind::Read, 99, 4),
    ];
    for (kind, up_to, cursor) in steps {
        let ack = bob.send_receipt(&conv, kind, up_to).await;
        assert_eq!(ack, Ack::V5(PubAckReason::Success), "{kind:?} {up_to}");
        for client in [&mut alice, &mut bob] {
            let relayed = client.next_receipt().await;
            assert_eq!(relayed.user, "bob", "the server names the reader");
            assert_eq!(relayed.conversation_id, conv);
            assert_eq!(relayed.kind(), kind);
            assert_eq!(
                relayed.up_to_seq,
                cursor,
                "{kind:?} {up_to} relayed to {}",
                client.user()
            );
            assert!(relayed.server_time_ms > 0);
        }
    }
    alice.assert_nothing_queued();
    bob.assert_nothing_queued();
}

#[tokio::test]
async fn sync_reports_unread_from_the_read_cursor() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob", "carol"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let mut carol = ChatClient::v4(&node, "carol", "c").await;
    let group = alice.create_group("g", &["bob", "carol"]).await.id;
    for i in 1..=6 {
        alice.say(&group, &format!("a-{i}"), "update").await;
    }
    bob.next_messages(6).await;
    carol.next_messages(6).await;

    // Bob has read up to 4 (without a delivered receipt: reading implies it).
    assert!(bob
        .send_receipt(&group, ReceiptKind::Read, 4)
        .await
        .is_success());
    // Everyone in the group sees bob's cursor.
    for client in [&mut alice, &mut bob, &mut carol] {
        let r = client.next_receipt().await;
        assert_eq!(
            (r.user.as_str(), r.kind(), r.up_to_seq),
            ("bob", ReceiptKind::Read, 4)
        );
    }
    // Seq 1 is the event of the group's creation, 2 to 7 the messages.
    let s = bob.summary(&group).await;
    assert_eq!(s.conversation.as_ref().unwrap().last_seq, 7);
    assert_eq!(s.read_up_to_seq, 4);
    assert_eq!(s.delivered_up_to_seq, 4, "reading implies delivery");
    assert_eq!(s.unread, 3, "last_seq - read = 7 - 4");
    // Carol read nothing: everything is unread for her.
    let s = carol.summary(&group).await;
    assert_eq!((s.read_up_to_seq, s.unread), (0, 7));
    // Alice wrote every entry: what one sends, one has read.
    let s = alice.summary(&group).await;
    assert_eq!(
        (s.read_up_to_seq, s.delivered_up_to_seq, s.unread),
        (7, 7, 0)
    );

    // A lower read receipt does not bring unread back up.
    assert!(bob
        .send_receipt(&group, ReceiptKind::Read, 1)
        .await
        .is_success());
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(
            client.next_receipt().await.up_to_seq,
            4,
            "{}",
            client.user()
        );
    }
    assert_eq!(bob.summary(&group).await.unread, 3);
    // New messages add to it.
    alice.say(&group, "a-7", "one more").await;
    assert_eq!(bob.summary(&group).await.unread, 4);
}

#[tokio::test]
async fn receipts_are_checked_like_messages() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob", "mallory"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let mut mallory = ChatClient::v5(&node, "mallory", "m").await;
    let conv = direct("alice", "bob");
    alice.say(&conv, "a-1", "hi").await;
    assert_eq!(bob.next_message().await.seq, 1);

    // A non-member's receipt: refused, relayed to nobody.
    let ack = mallory.send_receipt(&conv, ReceiptKind::Read, 1).await;
    assert_eq!(ack, Ack::V5(PubAckReason::NotAuthorized));
    assert_eq!(mallory.next_error().await.code(), ErrorCode::NotAMember);
    // A receipt without a kind: invalid.
    let ack = mallory
        .send_receipt(&direct("alice", "mallory"), ReceiptKind::Unspecified, 1)
        .await;
    assert_eq!(ack, Ack::V5(PubAckReason::PayloadFormatInvalid));
    assert_eq!(
        mallory.next_error().await.code(),
        ErrorCode::InvalidArgument
    );
    // A message envelope on r/: malformed.
    let ack = mallory
        .publish_envelope(
            &format!("r/{}", direct("alice", "mallory")),
            text_message("x", "not a receipt").into(),
        )
        .await;
    assert_eq!(ack, Ack::V5(PubAckReason::PayloadFormatInvalid));
    assert_eq!(mallory.next_error().await.code(), ErrorCode::Malformed);

    // Marker: bob's own receipt is the first thing alice sees.
    assert!(bob
        .send_receipt(&conv, ReceiptKind::Delivered, 1)
        .await
        .is_success());
    let r = alice.next_receipt().await;
    assert_eq!((r.user.as_str(), r.up_to_seq), ("bob", 1));
    // Alice has read her own message; no receipt of anyone else moved her
    // cursor, and bob's delivered receipt did not move his read one.
    assert_eq!(alice.summary(&conv).await.read_up_to_seq, 1);
    assert_eq!(bob.summary(&conv).await.read_up_to_seq, 0);
}

#[tokio::test]
async fn typing_is_relayed_to_the_others_and_never_stored() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob", "carol"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let mut bob = ChatClient::v5(&node, "bob", "b").await;
    let mut carol = ChatClient::v4(&node, "carol", "c").await;
    let group = alice.create_group("g", &["bob", "carol"]).await.id;
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(client.next_event().await.seq, 1, "the group's creation");
    }
    let first = alice.say(&group, "a-1", "hello").await;
    assert_eq!(carol.next_message().await, first);

    alice.send_typing(&group, true).await;
    for client in [&mut bob, &mut carol] {
        let t = client.next_typing().await;
        assert_eq!(t.user, "alice");
        assert_eq!(t.conversation_id, group);
        assert!(t.active);
    }
    alice.send_typing(&group, false).await;
    for client in [&mut bob, &mut carol] {
        assert!(!client.next_typing().await.active);
    }
    // Not to the sender: bob's indicator is the first thing on alice's feed.
    bob.send_typing(&group, true).await;
    assert_eq!(alice.next_typing().await.user, "bob");
    assert_eq!(carol.next_typing().await.user, "bob");

    // Never stored, never on the inbox: history still holds only the
    // creation and the message.
    assert_eq!(
        &alice.fetch_all(&group).await[1..],
        std::slice::from_ref(&first)
    );
    assert_eq!(
        alice.summary(&group).await.conversation.unwrap().last_seq,
        2
    );
    let second = alice.say(&group, "a-2", "still just messages").await;
    assert_eq!(second.seq, 3);
    assert_eq!(bob.next_message().await, first);
    assert_eq!(bob.next_message().await, second);
    for client in [alice, bob, carol] {
        client.assert_nothing_queued();
    }
}

#[tokio::test]
async fn typing_beyond_the_burst_is_dropped() {
    let node = start_node(|c| {
        c.chat.typing_burst = 2;
        c.chat.typing_per_sec = 0.001;
    })
    .await;
    sign_up_users(&node, &["alice", "bob", "carol", "mallory"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let mut carol = ChatClient::v4(&node, "carol", "c").await;
    let mut mallory = ChatClient::v4(&node, "mallory", "m").await;
    let group = alice.create_group("g", &["bob", "carol"]).await.id;
    assert_eq!(alice.next_event().await.seq, 1, "the group's creation");

    // Four indicators: the burst allows two.
    for active in [true, false, true, false] {
        alice.send_typing(&group, active).await;
    }
    // A non-member's indicator is dropped too, silently.
    mallory.send_typing(&group, true).await;
    // Alice's and mallory's connections handle packets in order: once their
    // requests are answered, every indicator before them has been handled.
    alice.sync(0).await;
    mallory.sync(0).await;
    // Marker: carol's indicator.
    carol.send_typing(&group, true).await;

    let got: Vec<(String, bool)> = {
        let mut got = Vec::new();
        for _ in 0..3 {
            let t = bob.next_typing().await;
            got.push((t.user, t.active));
        }
        got
    };
    assert_eq!(
        got,
        vec![
            ("alice".into(), true),
            ("alice".into(), false),
            ("carol".into(), true)
        ],
        "the third and fourth of alice's indicators were dropped"
    );
    // Typing refusals are silent: no Error envelope on the inbox either,
    // as a message (seq 2, after the creation) arriving first proves.
    let m = alice.say(&group, "a-1", "sorry, typing a lot").await;
    assert_eq!(m.seq, 2);
    let m2 = mallory
        .say(&direct("alice", "mallory"), "m-1", "hello alice")
        .await;
    assert_eq!(m2.seq, 1);
    assert_eq!(alice.next_message().await, m2);
    // Carol's indicator reached alice too (only the sender is skipped).
    let t = alice.next_typing().await;
    assert_eq!((t.user.as_str(), t.active), ("carol", true));
    alice.assert_nothing_queued();
    mallory.assert_nothing_queued();
}

#[tokio::test]
async fn presence_is_online_while_any_session_lives_and_offline_after_the_last() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob", "mallory"]).await;
    let mut first = ChatClient::v4(&node, "alice", "phone").await;
    first.say(&direct("alice", "bob"), "a-1", "hi").await;

    // Only users who share a conversation with alice may watch her.
    let mut mallory = ChatClient::v4(&node, "mallory", "m").await;
    assert_eq!(mallory.subscribe("p/alice", 1).await, None);
    let mut bob = ChatClient::v5(&node, "bob", "b").await;
    assert_eq!(bob.subscribe("p/alice", 1).await, Some(1));
    let current = bob.next_presence().await;
    assert_eq!(current.topic, "p/alice");
    assert_eq!(current.presence.user, "alice");
    assert_eq!(current.presence.state(), PresenceState::Online);
    assert!(current.retain, "the current state is retained");
    assert!(current.presence.last_seen_ms > 0);

    // A second session (its SUBACK proves the broker is serving it), then
    // the first one drops without DISCONNECT: alice is still online.
    let second = ChatClient::v5(&node, "alice", "laptop").await;
    drop(first);
    let before_last_drop = parley::chat::now_ms();
    // The last session drops abruptly too: OFFLINE, with when she was last seen.
    drop(second);
    let offline = bob.next_presence().await;
    assert_eq!(
        offline.presence.state(),
        PresenceState::Offline,
        "nothing is published while a session remains: {offline:?}"
    );
    assert_eq!(offline.presence.user, "alice");
    assert!(offline.presence.last_seen_ms >= before_last_drop);

    // Back online: ONLINE again, and late subscribers see it retained.
    let _third = ChatClient::v4(&node, "alice", "tablet").await;
    let online = bob.next_presence().await;
    assert_eq!(online.presence.state(), PresenceState::Online, "{online:?}");
    assert!(online.presence.last_seen_ms >= offline.presence.last_seen_ms);
    let mut late = ChatClient::v4(&node, "bob", "b2").await;
    assert_eq!(late.subscribe("p/alice", 0).await, Some(0));
    let retained = late.next_presence().await;
    assert_eq!(retained.presence.state(), PresenceState::Online);
    assert!(retained.retain);
    mallory.assert_nothing_queued();
}
