//! CONNECT authentication against a real node: passwords, access tokens,
//! wrong credentials and disabled users, with MQTT 3.1.1 and 5 clients.

mod common;

use common::*;

#[tokio::test]
async fn v4_password_token_wrong_and_disabled() {
    let node = start_node(|_| {}).await;
    sign_up(&node, "alice", "correct horse").await;

    // Right password.
    let (_c, mut el) =
        rumqttc::AsyncClient::new(v4::options(&node, "a1", "alice", "correct horse"), 10);
    assert_eq!(
        v4::connack(&mut el).await.unwrap(),
        rumqttc::ConnectReturnCode::Success
    );

    // Access token as the password.
    let token = log_in(&node, "alice", "correct horse").await;
    let (_c, mut el) = rumqttc::AsyncClient::new(v4::options(&node, "a2", "alice", &token), 10);
    assert_eq!(
        v4::connack(&mut el).await.unwrap(),
        rumqttc::ConnectReturnCode::Success
    );

    // Wrong password and unknown user: 0x05.
    let (_c, mut el) =
        rumqttc::AsyncClient::new(v4::options(&node, "a3", "alice", "wrong password"), 10);
    assert_eq!(
        v4::connack(&mut el).await.unwrap(),
        rumqttc::ConnectReturnCode::NotAuthorized
    );
    let (_c, mut el) =
        rumqttc::AsyncClient::new(v4::options(&node, "a4", "nobody", "whatever1"), 10);
    assert_eq!(
        v4::connack(&mut el).await.unwrap(),
        rumqttc::ConnectReturnCode::NotAuthorized
    );

    // Another user's token is refused.
    sign_up(&node, "bob", "bob's password").await;
    let (_c, mut el) = rumqttc::AsyncClient::new(v4::options(&node, "a5", "bob", &token), 10);
    assert_eq!(
        v4::connack(&mut el).await.unwrap(),
        rumqttc::ConnectReturnCode::NotAuthorized
    );

    // Disabled: refused with both the password and a token issued before.
    node.node
        .store
        .set_user_disabled("alice", true)
        .await
        .unwrap();
    let (_c, mut el) =
        rumqttc::AsyncClient::new(v4::options(&node, "a6", "alice", "correct horse"), 10);
    assert_eq!(
        v4::connack(&mut el).await.unwrap(),
        rumqttc::ConnectReturnCode::NotAuthorized
    );
    let (_c, mut el) = rumqttc::AsyncClient::new(v4::options(&node, "a7", "alice", &token), 10);
    assert_eq!(
        v4::connack(&mut el).await.unwrap(),
        rumqttc::ConnectReturnCode::NotAuthorized
    );
}

#[tokio::test]
async fn v5_reason_codes_for_bad_credentials_and_disabled_user() {
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as Code;
    let node = start_node(|_| {}).await;
    sign_up(&node, "carol", "carol's password").await;

    let (_c, mut el) =
        rumqttc::v5::AsyncClient::new(v5::options(&node, "c1", "carol", "carol's password"), 10);
    assert_eq!(v5::connack(&mut el).await.unwrap(), Code::Success);
    let token = log_in(&node, "carol", "carol's password").await;
    let (_c, mut el) = rumqttc::v5::AsyncClient::new(v5::options(&node, "c2", "carol", &token), 10);
    assert_eq!(v5::connack(&mut el).await.unwrap(), Code::Success);

    let (_c, mut el) =
        rumqttc::v5::AsyncClient::new(v5::options(&node, "c3", "carol", "not it at all"), 10);
    assert_eq!(
        v5::connack(&mut el).await.unwrap(),
        Code::BadUserNamePassword,
        "0x86"
    );

    node.node
        .store
        .set_user_disabled("carol", true)
        .await
        .unwrap();
    let (_c, mut el) =
        rumqttc::v5::AsyncClient::new(v5::options(&node, "c4", "carol", "carol's password"), 10);
    assert_eq!(
        v5::connack(&mut el).await.unwrap(),
        Code::NotAuthorized,
        "0x87"
    );
}

#[tokio::test]
async fn connect_without_credentials_is_refused() {
    let node = start_node(|_| {}).await;
    let addr = node.mqtt();
    let options = rumqttc::MqttOptions::new("anon", addr.ip().to_string(), addr.port());
    let (_c, mut el) = rumqttc::AsyncClient::new(options, 10);
    assert_eq!(
        v4::connack(&mut el).await.unwrap(),
        rumqttc::ConnectReturnCode::NotAuthorized
    );
}
