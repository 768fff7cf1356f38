//! Churned client ids leave nothing behind. A clean session ends with its
//! connection, so a thousand connects with fresh client ids, each with a
//! subscription, some ending with DISCONNECT and some with a dropped socket,
//! leave no session, subscription or live-session entry: the engine's
//! session table, its subscription tree and the admin list all return to
//! empty. (Before the engine, each churned id left ~718 bytes behind.)

mod common;

use common::raw::*;
use common::*;

const USER: &str = "churn";
const PASSWORD: &str = "churn password";

#[tokio::test]
async fn churned_clean_sessions_leave_no_entries() {
    let node = start_node(|_| {}).await;
    sign_up(&node, USER, PASSWORD).await;
    let inbox = format!("u/{USER}/i");
    for i in 0..1_000 {
        let connect = Connect::v4(&format!("fresh-{i}"), USER, PASSWORD);
        let (mut raw, _) = Raw::connected(&node, &connect).await;
        raw.send(&subscribe(false, 1, &[(inbox.as_str(), 1)], &Props::new()))
            .await;
        let suback = raw.recv().await.expect("SUBACK");
        assert_eq!(suback.codes(false), vec![1], "subscription {i} granted");
        if i % 2 == 0 {
            raw.send(&[0xE0, 0x00]).await;
        }
        drop(raw);
    }
    within("every churned session to be gone", async {
        loop {
            let sessions = metric(&node, "parley_mqtt_sessions ").await;
            let subscriptions = metric(&node, "parley_mqtt_subscriptions ").await;
            if sessions == Some(0.0) && subscriptions == Some(0.0) {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        metric(&node, "parley_connections{transport=\"tcp\"} ").await,
        Some(0.0),
        "no live connection is listed"
    );
    // The node still serves: one more client subscribes and is counted.
    let (mut raw, _) = Raw::connected(&node, &Connect::v4("last", USER, PASSWORD)).await;
    raw.send(&subscribe(false, 1, &[(inbox.as_str(), 1)], &Props::new()))
        .await;
    assert!(raw.recv().await.is_some(), "SUBACK");
    assert_eq!(metric(&node, "parley_mqtt_sessions ").await, Some(1.0));
}
