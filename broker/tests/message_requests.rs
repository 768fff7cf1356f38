//! Message requests and blocking (`chat.message_requests`, docs/topics.md):
//! a stranger's first message reaches the recipient as a request, and until
//! the recipient accepts (or replies) the stranger gets none of the
//! recipient's presence, typing, receipts or keys; a block refuses the
//! blocked sender's messages with the answer for a user who does not exist.

mod common;

use common::chat::*;
use common::*;
use parley_proto::v1::{
    envelope::Kind, response, AcceptRequest, BlockUser, ErrorCode, ListBlocks, OpenDirect,
    ReceiptKind, UnblockUser,
};
use reqwest::StatusCode;

async fn with_requests() -> TestNode {
    start_node(|c| c.chat.message_requests = true).await
}

/// `GET /v1/keys/users/{owner}` as `caller`: the status.
async fn fetch_keys(node: &TestNode, caller: &str, owner: &str) -> StatusCode {
    let token = log_in(node, caller, &password_of(caller)).await;
    reqwest::Client::new()
        .get(format!("{}/v1/keys/users/{owner}", node.http()))
        .bearer_auth(token)
        .send()
        .await
        .expect("key fetch")
        .status()
}

/// The next receipt on `client`'s inbox, skipping other envelopes.
async fn next_receipt_skipping(client: &mut ChatClient) -> parley_proto::v1::Receipt {
    loop {
        if let Some(Kind::Receipt(receipt)) = client.next_envelope().await.kind {
            return receipt;
        }
    }
}

#[tokio::test]
async fn a_strangers_message_is_a_request_until_accepted() {
    let node = with_requests().await;
    sign_up_users(&node, &["alice", "mallory"]).await;
    let conv = direct("alice", "mallory");
    let mut alice = ChatClient::v5(&node, "alice", "alice-phone").await;
    let mut mallory = ChatClient::v5(&node, "mallory", "mallory-phone").await;

    // The request reaches Alice.
    let first = mallory.say(&conv, "m1", "hi, remember me?").await;
    let received = alice.next_message().await;
    assert_eq!(received.message_id, first.message_id);

    // Mallory gets no presence and no keys of Alice's.
    assert_eq!(
        mallory.subscribe("p/alice", 1).await,
        None,
        "presence refused"
    );
    assert_eq!(
        fetch_keys(&node, "mallory", "alice").await,
        StatusCode::FORBIDDEN
    );
    // Alice reading and typing tells Mallory nothing (and Alice's own
    // sessions still learn her read position).
    alice.send_typing(&conv, true).await;
    let ack = alice
        .send_receipt(&conv, ReceiptKind::Read, first.seq)
        .await;
    assert!(ack.is_success());
    let own = next_receipt_skipping(&mut alice).await;
    assert_eq!(own.user, "alice");

    // Alice accepts: from now on both ways.
    alice
        .request_ok(AcceptRequest {
            peer: "mallory".into(),
        })
        .await;
    alice.send_typing(&conv, false).await;
    let typing = mallory.next_typing().await;
    assert!(
        !typing.active,
        "the first typing indicator Mallory sees is the one after the acceptance"
    );
    let second = mallory.say(&conv, "m2", "great").await;
    alice.next_message().await;
    alice
        .send_receipt(&conv, ReceiptKind::Read, second.seq)
        .await;
    let receipt = next_receipt_skipping(&mut mallory).await;
    assert_eq!(
        (receipt.user.as_str(), receipt.up_to_seq),
        ("alice", second.seq),
        "the first receipt Mallory sees is the one after the acceptance"
    );
    assert_eq!(mallory.subscribe("p/alice", 1).await, Some(1));
    assert_eq!(fetch_keys(&node, "mallory", "alice").await, StatusCode::OK);
}

#[tokio::test]
async fn replying_or_opening_the_conversation_accepts() {
    let node = with_requests().await;
    sign_up_users(&node, &["bob", "carol", "dave"]).await;
    let mut bob = ChatClient::v5(&node, "bob", "bob-phone").await;
    let mut carol = ChatClient::v5(&node, "carol", "carol-phone").await;
    let mut dave = ChatClient::v5(&node, "dave", "dave-phone").await;

    carol.say(&direct("bob", "carol"), "c1", "hello bob").await;
    bob.next_message().await;
    assert_eq!(carol.subscribe("p/bob", 1).await, None);
    bob.say(&direct("bob", "carol"), "b1", "hello carol").await;
    carol.next_message().await;
    assert_eq!(
        carol.subscribe("p/bob", 1).await,
        Some(1),
        "a reply accepts"
    );

    dave.say(&direct("bob", "dave"), "d1", "hey").await;
    bob.next_message().await;
    assert_eq!(
        fetch_keys(&node, "dave", "bob").await,
        StatusCode::FORBIDDEN
    );
    bob.conversation_op(OpenDirect {
        peer: "dave".into(),
    })
    .await;
    assert_eq!(
        fetch_keys(&node, "dave", "bob").await,
        StatusCode::OK,
        "opening the conversation accepts"
    );
}

#[tokio::test]
async fn a_blocked_sender_is_refused_as_if_the_user_did_not_exist() {
    let node = with_requests().await;
    sign_up_users(&node, &["erin", "frank"]).await;
    let conv = direct("erin", "frank");
    let mut erin = ChatClient::v5(&node, "erin", "erin-phone").await;
    let mut frank = ChatClient::v5(&node, "frank", "frank-phone").await;
    frank.say(&conv, "f1", "buy my stuff").await;
    erin.next_message().await;

    erin.request_ok(BlockUser {
        user: "frank".into(),
    })
    .await;
    let blocks = erin.request_ok(ListBlocks {}).await;
    let response::Result::Users(list) = blocks else {
        panic!("expected a user list, got {blocks:?}");
    };
    assert_eq!(list.users, ["frank"]);

    let ack = frank.send_text(&conv, "f2", "hello?").await;
    assert!(!ack.is_success(), "{ack:?}");
    let error = frank.next_error().await;
    assert_eq!(error.code(), ErrorCode::NotFound);
    assert_eq!(
        error.message, "no user erin",
        "the same answer as for no such user"
    );
    assert_eq!(frank.subscribe("p/erin", 1).await, None);

    erin.request_ok(UnblockUser {
        user: "frank".into(),
    })
    .await;
    assert_eq!(
        erin.request_err(UnblockUser {
            user: "frank".into(),
        })
        .await,
        ErrorCode::NotFound
    );
    frank.say(&conv, "f3", "sorry").await;
    let received = erin.next_message().await;
    assert_eq!(received.client_message_id, "f3", "f2 was never delivered");
}
