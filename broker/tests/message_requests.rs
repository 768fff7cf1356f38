//! Message requests and blocking (`chat.message_requests`, docs/topics.md):
//! a stranger's first message reaches the recipient as a request, and until
//! the recipient accepts (or replies) the stranger gets none of the
//! recipient's presence, typing, receipts or keys; a block refuses the
//! blocked sender's messages with the answer for a user who does not exist.

mod common;

use common::chat::*;
use common::*;
use parley_proto::v1::{
    envelope::Kind, response, AcceptRequest, AddMembers, BlockUser, CreateGroup, ErrorCode,
    ListBlocks, OpenDirect, ReceiptKind, ReportConversation, SetGroupConsent, UnblockUser,
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

#[tokio::test]
async fn group_consent_and_blocks_limit_who_adds_whom() {
    let node = with_requests().await;
    sign_up_users(&node, &["gina", "hank", "ivy"]).await;
    let mut gina = ChatClient::v5(&node, "gina", "gina-phone").await;
    let mut hank = ChatClient::v5(&node, "hank", "hank-phone").await;
    let mut ivy = ChatClient::v5(&node, "ivy", "ivy-phone").await;

    gina.request_ok(SetGroupConsent { required: true }).await;
    assert_eq!(
        hank.request_err(CreateGroup {
            name: "spam".into(),
            members: vec!["gina".into()],
        })
        .await,
        ErrorCode::NotAllowed,
        "gina accepted nobody yet"
    );
    gina.request_ok(AcceptRequest {
        peer: "hank".into(),
    })
    .await;
    let group = hank.create_group("friends", &["gina"]).await;

    // Ivy is blocked by Gina: adding her is refused as for no such user.
    gina.request_ok(BlockUser { user: "ivy".into() }).await;
    gina.request_ok(SetGroupConsent { required: false }).await;
    let own = ivy.create_group("ivy's", &[]).await;
    assert_eq!(
        ivy.request_err(AddMembers {
            conversation_id: own.id.clone(),
            users: vec!["gina".into()],
        })
        .await,
        ErrorCode::NotFound
    );
    assert_eq!(group.members.len(), 2);
}

#[tokio::test]
async fn members_report_conversations_to_the_admin_api() {
    const ADMIN: &str = "message-requests-admin-token-0123456789";
    let node = start_node(|c| {
        c.chat.message_requests = true;
        c.admin.token = Some(ADMIN.into());
    })
    .await;
    sign_up_users(&node, &["jill", "kyle", "lena"]).await;
    let conv = direct("jill", "kyle");
    let mut jill = ChatClient::v5(&node, "jill", "jill-phone").await;
    let mut kyle = ChatClient::v5(&node, "kyle", "kyle-phone").await;
    let mut lena = ChatClient::v5(&node, "lena", "lena-phone").await;
    kyle.say(&conv, "k1", "cheap watches").await;
    jill.next_message().await;

    assert_eq!(
        lena.request_err(ReportConversation {
            conversation_id: conv.clone(),
            reason: "not mine to report".into(),
        })
        .await,
        ErrorCode::NotAMember
    );
    jill.request_ok(ReportConversation {
        conversation_id: conv.clone(),
        reason: "spam".into(),
    })
    .await;

    let reports: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/admin/reports", node.http()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reports = reports.as_array().expect("a list");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["reporter"], "jill");
    assert_eq!(reports[0]["conversation_id"], conv.as_str());
    assert_eq!(reports[0]["reason"], "spam");
    assert_eq!(reports[0]["last_seq"], 1);
}
