//! Edits and deletes: entries of their own that change the history of the
//! message they target, allowed only to its sender, and safe to retry.

mod common;

use common::chat::*;
use common::*;
use parley_proto::v1::{ChatMessage, ErrorCode, MessageAction};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

/// Asserts that `history` holds `original` changed as described.
fn assert_changed(history: &ChatMessage, original: &ChatMessage, text: Option<&str>) {
    assert_eq!(history.seq, original.seq);
    assert_eq!(history.message_id, original.message_id);
    assert_eq!(history.client_message_id, original.client_message_id);
    assert_eq!(history.sender, original.sender);
    assert_eq!(history.server_time_ms, original.server_time_ms);
    assert_eq!(history.action(), MessageAction::New);
    assert_eq!(text_of(history), text);
}

#[tokio::test]
async fn edits_and_deletes_are_delivered_as_entries_and_change_history() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v5(&node, "alice", "a").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let conv = direct("alice", "bob");
    let first = alice.say(&conv, "a-1", "helo").await;
    let second = alice.say(&conv, "a-2", "to be deleted").await;
    assert_eq!(
        bob.next_messages(2).await,
        vec![first.clone(), second.clone()]
    );

    // An edit is an entry with its own seq, delivered to everyone.
    let ack = alice.send(&conv, edit_message("a-3", 1, "hello")).await;
    assert_eq!(ack, Ack::V5(PubAckReason::Success));
    let edit = alice.next_message().await;
    assert_eq!(edit.seq, 3);
    assert_eq!(edit.action(), MessageAction::Edit);
    assert_eq!(edit.target_seq, 1);
    assert_eq!(text_of(&edit), Some("hello"));
    assert_eq!(edit.sender, "alice");
    assert_eq!(bob.next_message().await, edit);

    // A delete likewise, without a body.
    let ack = alice.send(&conv, delete_message("a-4", 2)).await;
    assert_eq!(ack, Ack::V5(PubAckReason::Success));
    let delete = alice.next_message().await;
    assert_eq!(delete.seq, 4);
    assert_eq!(delete.action(), MessageAction::Delete);
    assert_eq!(delete.target_seq, 2);
    assert_eq!(delete.body, None);
    assert_eq!(bob.next_message().await, delete);

    // History shows the originals changed, and the entries at their own seqs.
    let history = bob.fetch_all(&conv).await;
    assert_contiguous_from_1(&history);
    assert_eq!(history.len(), 4);
    assert_changed(&history[0], &first, Some("hello"));
    assert!(history[0].edited && !history[0].deleted);
    assert_changed(&history[1], &second, None);
    assert!(history[1].deleted);
    assert_eq!(history[1].body, None, "a tombstone has no body");
    assert_eq!(history[2], edit);
    assert_eq!(history[3], delete);

    // An edited message may be edited again; the last body wins.
    alice
        .send(&conv, edit_message("a-5", 1, "hello!"))
        .await
        .is_success()
        .then_some(())
        .expect("second edit accepted");
    let edit2 = alice.next_message().await;
    assert_eq!((edit2.seq, edit2.target_seq), (5, 1));
    assert_eq!(bob.next_message().await, edit2);
    let history = bob.fetch_all(&conv).await;
    assert_changed(&history[0], &first, Some("hello!"));
    // The conversation preview is the newest entry, the edit itself.
    assert_eq!(bob.summary(&conv).await.last_message, Some(edit2));
}

#[tokio::test]
async fn only_the_sender_may_change_a_message_and_only_a_plain_live_one() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let mut bob = ChatClient::v5(&node, "bob", "b").await;
    let conv = direct("alice", "bob");
    let first = alice.say(&conv, "a-1", "mine").await;
    let second = alice.say(&conv, "a-2", "gone soon").await;
    assert!(alice
        .send(&conv, delete_message("a-3", 2))
        .await
        .is_success());
    let delete = alice.next_message().await;
    assert_eq!(
        bob.next_messages(3).await,
        vec![first.clone(), second, delete]
    );

    // (who, the change, expected code, expected MQTT 5 reason)
    let refusals: Vec<(&str, ChatMessage, ErrorCode, PubAckReason)> = vec![
        // Someone else's message.
        (
            "bob",
            edit_message("b-1", 1, "yours now"),
            ErrorCode::NotAllowed,
            PubAckReason::NotAuthorized,
        ),
        (
            "bob",
            delete_message("b-2", 1),
            ErrorCode::NotAllowed,
            PubAckReason::NotAuthorized,
        ),
        // Already deleted.
        (
            "alice",
            edit_message("a-4", 2, "undelete"),
            ErrorCode::NotAllowed,
            PubAckReason::NotAuthorized,
        ),
        (
            "alice",
            delete_message("a-5", 2),
            ErrorCode::NotAllowed,
            PubAckReason::NotAuthorized,
        ),
        // An edit or delete entry itself.
        (
            "alice",
            edit_message("a-6", 3, "meta"),
            ErrorCode::NotAllowed,
            PubAckReason::NotAuthorized,
        ),
        // No such message.
        (
            "alice",
            edit_message("a-7", 99, "ghost"),
            ErrorCode::NotFound,
            PubAckReason::ImplementationSpecificError,
        ),
        // Badly shaped: a delete with a body, an edit without a target.
        (
            "bob",
            ChatMessage {
                action: MessageAction::Delete as i32,
                target_seq: 1,
                ..text_message("b-3", "body")
            },
            ErrorCode::InvalidArgument,
            PubAckReason::PayloadFormatInvalid,
        ),
        (
            "alice",
            ChatMessage {
                action: MessageAction::Edit as i32,
                ..text_message("a-8", "where?")
            },
            ErrorCode::InvalidArgument,
            PubAckReason::PayloadFormatInvalid,
        ),
    ];
    for (who, change, code, reason) in refusals {
        let cmid = change.client_message_id.clone();
        let client = if who == "alice" { &mut alice } else { &mut bob };
        let ack = client.send(&conv, change).await;
        match ack {
            Ack::V4 => {}
            Ack::V5(got) => assert_eq!(got, reason, "{cmid}"),
        }
        let e = client.next_error().await;
        assert_eq!(e.code(), code, "{cmid}: {}", e.message);
        assert_eq!(e.client_message_id, cmid);
        assert_eq!(e.conversation_id, conv);
    }

    // Nothing was stored or delivered: the next entry is seq 4, and it is
    // the next thing either of them receives.
    let marker = alice.say(&conv, "a-9", "marker").await;
    assert_eq!(marker.seq, 4);
    assert_eq!(bob.next_message().await, marker);
    let history = alice.fetch_all(&conv).await;
    assert_eq!(history.len(), 4);
    assert_changed(&history[0], &first, Some("mine"));
    assert!(!history[0].edited);
}

#[tokio::test]
async fn retried_edits_and_deletes_are_stored_once() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v5(&node, "alice", "a").await;
    let mut bob = ChatClient::v4(&node, "bob", "b").await;
    let conv = direct("alice", "bob");
    alice.say(&conv, "a-1", "first").await;
    alice.say(&conv, "a-2", "second").await;
    bob.next_messages(2).await;

    // The edit and the delete, each sent twice with the same client message
    // id (a retry after a lost PUBACK): the retry gets the stored entry back.
    let mut stored = Vec::new();
    for change in [edit_message("a-3", 1, "first!"), delete_message("a-4", 2)] {
        let ack = alice.send(&conv, change.clone()).await;
        assert_eq!(ack, Ack::V5(PubAckReason::Success));
        let entry = alice.next_message().await;
        let ack = alice.send(&conv, change.clone()).await;
        assert_eq!(
            ack,
            Ack::V5(PubAckReason::Success),
            "retry of {}",
            change.client_message_id
        );
        assert_eq!(alice.next_message().await, entry, "redelivered as stored");
        assert_eq!(bob.next_message().await, entry);
        assert_eq!(bob.next_message().await, entry);
        stored.push(entry);
    }
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 4]);

    // The edited message is deleted afterwards; a late retry of the edit is
    // still answered with the stored edit, not refused.
    assert!(alice
        .send(&conv, delete_message("a-5", 1))
        .await
        .is_success());
    let delete = alice.next_message().await;
    assert_eq!(bob.next_message().await, delete);
    let ack = alice.send(&conv, edit_message("a-3", 1, "first!")).await;
    assert_eq!(ack, Ack::V5(PubAckReason::Success));
    assert_eq!(alice.next_message().await, stored[0]);
    assert_eq!(bob.next_message().await, stored[0]);
    // A new edit of the deleted message is refused as before.
    let ack = alice.send(&conv, edit_message("a-6", 1, "back")).await;
    assert_eq!(ack, Ack::V5(PubAckReason::NotAuthorized));
    assert_eq!(alice.next_error().await.code(), ErrorCode::NotAllowed);

    let history = alice.fetch_all(&conv).await;
    assert_contiguous_from_1(&history);
    assert_eq!(history.len(), 5, "each change stored once");
    assert!(history[0].deleted && history[1].deleted);
    assert_eq!(history[2], stored[0]);
    assert_eq!(history[3], stored[1]);
    assert_eq!(history[4], delete);
}
