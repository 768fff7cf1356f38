//! Catching up after being offline: a short gap bridged by a persistent MQTT
//! session, and a long gap (or a new device) bridged by `SyncConversations`
//! and `FetchMessages`.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::chat::*;
use common::*;
use parley_proto::v1::{response, ReceiptKind, SyncConversations};

#[tokio::test]
async fn a_persistent_session_receives_what_was_sent_while_it_was_away() {
    const N: usize = 20;
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let phone = ClientOptions::new(Proto::V4, "bob", "bob-phone").persistent();
    let mut bob = ChatClient::connect(&node, phone.clone()).await;
    assert!(!bob.session_present, "a first connection has no session");
    let conv = direct("alice", "bob");

    let first = alice.say(&conv, "a-0", "are you there?").await;
    assert_eq!(bob.next_message().await, first);
    bob.disconnect().await;

    let mut sent = Vec::new();
    for i in 1..=N {
        sent.push(alice.say(&conv, &format!("a-{i}"), &format!("m{i}")).await);
    }

    // Same client id, clean session off, no new SUBSCRIBE: the stored
    // session's inbox subscription delivers the backlog in order.
    let mut bob = ChatClient::connect(&node, phone.without_subscriptions()).await;
    assert!(bob.session_present, "the session was kept");
    let got = bob.next_messages(N).await;
    assert_eq!(got, sent, "everything sent while away, in order");
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (2..=N as u64 + 1).collect::<Vec<_>>());

    // And the resumed session keeps receiving live.
    let live = alice.say(&conv, "a-live", "welcome back").await;
    assert_eq!(bob.next_message().await, live);
    bob.assert_nothing_queued();
}

#[tokio::test]
async fn an_mqtt5_session_with_an_expiry_receives_what_was_sent_while_away() {
    const N: usize = 10;
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let laptop = ClientOptions::new(Proto::V5, "bob", "bob-laptop").persistent();
    let bob = ChatClient::connect(&node, laptop.clone()).await;
    assert!(!bob.session_present);
    bob.disconnect().await;
    let conv = direct("alice", "bob");
    let mut sent = Vec::new();
    for i in 1..=N {
        sent.push(alice.say(&conv, &format!("a-{i}"), "while away").await);
    }
    let mut bob = ChatClient::connect(&node, laptop.without_subscriptions()).await;
    assert!(
        bob.session_present,
        "clean start off with an expiry keeps the session"
    );
    assert_eq!(bob.next_messages(N).await, sent);
}

#[tokio::test]
async fn a_persistent_session_that_dropped_abruptly_loses_nothing() {
    const N: usize = 10;
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let phone = ClientOptions::new(Proto::V4, "bob", "bob-phone").persistent();
    let mut bob = ChatClient::connect(&node, phone.clone()).await;
    let conv = direct("alice", "bob");
    let first = alice.say(&conv, "a-0", "hello").await;
    assert_eq!(bob.next_message().await, first);

    // The socket closes without DISCONNECT (a phone losing its network);
    // messages are sent while the broker may not have noticed yet.
    drop(bob);
    let mut sent = Vec::new();
    for i in 1..=N {
        sent.push(alice.say(&conv, &format!("a-{i}"), &format!("m{i}")).await);
    }
    let mut bob = ChatClient::connect(&node, phone.without_subscriptions()).await;
    assert!(bob.session_present);
    // Anything that was in flight to the dead connection may come again
    // (QoS 1 is at least once); after dropping duplicates by message id,
    // nothing is missing and the order holds.
    let mut got: Vec<parley_proto::v1::ChatMessage> = Vec::new();
    let mut ids = HashSet::new();
    while got.len() < N {
        let m = bob.next_message().await;
        if ids.insert(m.message_id) {
            got.push(m);
        }
    }
    assert_eq!(got, sent);
}

#[tokio::test]
async fn a_new_device_catches_up_with_sync_and_fetch() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob", "carol"]).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    let mut phone = ChatClient::v4(&node, "bob", "bob-phone").await;
    let pair = direct("alice", "bob");

    // The phone sees 5 messages live and confirms them.
    let mut local = Vec::new();
    for i in 1..=5 {
        let m = alice
            .say(&pair, &format!("p-{i}"), &format!("early {i}"))
            .await;
        assert_eq!(phone.next_message().await, m);
        local.push(m);
    }
    assert!(phone
        .send_receipt(&pair, ReceiptKind::Delivered, 5)
        .await
        .is_success());
    assert_eq!(phone.next_receipt().await.up_to_seq, 5);
    assert_eq!(alice.next_receipt().await.up_to_seq, 5);
    phone.disconnect().await;

    // Meanwhile: 12 more in the direct conversation, and a new group.
    let mut missed = Vec::new();
    for i in 6..=17 {
        missed.push(
            alice
                .say(&pair, &format!("p-{i}"), &format!("later {i}"))
                .await,
        );
    }
    let group = alice.create_group("book club", &["bob", "carol"]).await.id;
    let mut missed_in_group = Vec::new();
    for i in 1..=3 {
        missed_in_group.push(alice.say(&group, &format!("g-{i}"), "chapter one").await);
    }

    // A brand-new device (new client id, clean session) gets no backlog ...
    let mut tablet = ChatClient::v5(&node, "bob", "bob-tablet").await;
    // ... but sync lists both conversations with their positions.
    let summaries = tablet.sync(0).await;
    let by_id: BTreeMap<String, _> = summaries
        .into_iter()
        .map(|s| (s.conversation.clone().expect("conversation").id, s))
        .collect();
    assert_eq!(
        by_id.keys().cloned().collect::<Vec<_>>(),
        {
            let mut ids = vec![pair.clone(), group.clone()];
            ids.sort();
            ids
        },
        "exactly bob's two conversations"
    );
    let pair_summary = &by_id[&pair];
    assert_eq!(pair_summary.conversation.as_ref().unwrap().last_seq, 17);
    assert_eq!(pair_summary.delivered_up_to_seq, 5);
    assert_eq!(pair_summary.read_up_to_seq, 0);
    assert_eq!(pair_summary.unread, 17);
    assert_eq!(
        pair_summary.last_message.as_ref(),
        missed.last(),
        "the preview is the newest entry"
    );
    let group_summary = &by_id[&group];
    // The group's first entry is the event of its creation.
    assert_eq!(group_summary.conversation.as_ref().unwrap().last_seq, 4);
    assert_eq!(group_summary.unread, 4);

    // Fetch what is missing after the last seq the device knows (the phone's
    // 5, say, synced through the client's own backend), in small pages.
    let fetched = tablet.fetch_after(&pair, 5, 5).await;
    assert_eq!(fetched, missed, "6..=17 exactly, as delivered live");
    let group_history = tablet.fetch_after(&group, 0, 2).await;
    assert!(
        matches!(
            &group_history[0].body,
            Some(parley_proto::v1::chat_message::Body::Event(e)) if e.users == ["bob", "carol"]
        ),
        "{:?}",
        group_history[0]
    );
    assert_eq!(group_history[1..], missed_in_group);

    // A client that refetches an overlap and merges by message id ends up
    // with every entry exactly once, in seq order.
    let overlap = tablet.fetch_after(&pair, 3, 4).await;
    let mut merged: BTreeMap<u64, parley_proto::v1::ChatMessage> = BTreeMap::new();
    let mut ids = HashSet::new();
    for m in local.iter().chain(&fetched).chain(&overlap) {
        if ids.insert(m.message_id) {
            assert!(merged.insert(m.seq, m.clone()).is_none(), "seq {}", m.seq);
        } else {
            assert_eq!(&merged[&m.seq], m, "a duplicate is the same entry");
        }
    }
    let merged: Vec<_> = merged.into_values().collect();
    assert_contiguous_from_1(&merged);
    assert_eq!(merged.len(), 17);

    // Nothing changed after the newest activity.
    let newest = missed_in_group
        .iter()
        .chain(&missed)
        .map(|m| m.server_time_ms)
        .max()
        .unwrap();
    assert!(tablet.sync(newest).await.is_empty());

    // Live delivery continues from there: the next inbox entry is seq 18
    // (so nothing old was queued for the new device either).
    let live = alice.say(&pair, "p-18", "you're back").await;
    assert_eq!(tablet.next_message().await, live);
    assert_eq!(live.seq, 18);
}

#[tokio::test]
async fn sync_pages_through_many_conversations() {
    let node = start_node(|_| {}).await;
    let peers = ["p1", "p2", "p3", "p4", "p5"];
    sign_up_users(&node, &["alice"]).await;
    sign_up_users(&node, &peers).await;
    let mut alice = ChatClient::v4(&node, "alice", "a").await;
    for peer in peers {
        alice.say(&direct("alice", peer), peer, "hi").await;
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let list = match alice
            .request_ok(SyncConversations {
                changed_since_ms: 0,
                limit: 2,
                page_token: page_token.clone(),
            })
            .await
        {
            response::Result::Conversations(list) => list,
            other => panic!("expected conversations, got {other:?}"),
        };
        pages += 1;
        assert!(list.items.len() <= 2, "page of at most 2");
        seen.extend(list.items.into_iter().map(|s| s.conversation.unwrap().id));
        if list.next_page_token.is_empty() {
            break;
        }
        page_token = list.next_page_token;
        assert!(pages < 10, "paging must end");
    }
    seen.sort();
    let mut expected: Vec<String> = peers.iter().map(|p| direct("alice", p)).collect();
    expected.sort();
    assert_eq!(seen, expected, "every conversation exactly once");
    assert_eq!(pages, 3);
}
