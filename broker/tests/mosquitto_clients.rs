//! Stock `mosquitto_pub` / `mosquitto_sub` (Debian's mosquitto-clients)
//! against a real node: password and token logins, the exact refusal for a
//! wrong password, and a message round trip through a `%u` ACL rule.
//!
//! The CLIs are installed by `.ci/test`; outside CI a missing CLI skips
//! these tests with a printed reason.

mod common;

use std::process::Stdio;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn clients_available() -> bool {
    let found = std::process::Command::new("mosquitto_pub")
        .arg("--help")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "mosquitto_pub is not installed; .ci/test installs mosquitto-clients"
        );
        eprintln!("skipping: mosquitto-clients not installed (apt-get install mosquitto-clients)");
    }
    found
}

fn rules(config: &mut parley::config::Config) {
    config.acl = vec![chat_core::rules::AclRuleConfig {
        access: chat_core::rules::Access::ReadWrite,
        filter: "devices/%u/#".into(),
        users: Vec::new(),
    }];
}

async fn pub_once(
    node: &TestNode,
    user: &str,
    password: &str,
    topic: &str,
    message: &str,
    version: &str,
) -> std::process::Output {
    let port = node.mqtt().port().to_string();
    within(
        "mosquitto_pub",
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", "1"])
            .args(["-u", user, "-P", password, "-t", topic, "-m", message])
            .output(),
    )
    .await
    .expect("run mosquitto_pub")
}

#[tokio::test]
async fn mosquitto_clients_round_trip_with_password_and_token() {
    if !clients_available() {
        return;
    }
    let node = start_node(rules).await;
    sign_up(&node, "sensor", "sensor password").await;
    let token = log_in(&node, "sensor", "sensor password").await;
    let port = node.mqtt().port().to_string();

    for (version, password) in [("mqttv311", "sensor password"), ("mqttv5", token.as_str())] {
        // stdbuf: mosquitto_sub buffers its output when it is not a terminal.
        let mut sub = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-q",
                "1",
                "-v",
                "-d",
                "-C",
                "1",
            ])
            .args([
                "-u",
                "sensor",
                "-P",
                password,
                "-t",
                "devices/sensor/#",
                "-i",
                "cli-sub",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mosquitto_sub");
        // With -d, mosquitto_sub reports its SUBACK; publish only after it.
        let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
        within("mosquitto_sub SUBACK", async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("received SUBACK") {
                    return;
                }
            }
            panic!("mosquitto_sub exited before subscribing");
        })
        .await;
        let message = format!("hello over {version}");
        let out = pub_once(
            &node,
            "sensor",
            password,
            "devices/sensor/temp",
            &message,
            version,
        )
        .await;
        assert!(
            out.status.success(),
            "mosquitto_pub failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = within("mosquitto_sub message", async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.starts_with("devices/") {
                    return line;
                }
            }
            panic!("mosquitto_sub exited without printing the message");
        })
        .await;
        assert_eq!(line, format!("devices/sensor/temp {message}"));
        within("mosquitto_sub exit", sub.wait()).await.unwrap();
    }
}

#[tokio::test]
async fn mosquitto_pub_with_wrong_password_is_refused_as_not_authorised() {
    if !clients_available() {
        return;
    }
    let node = start_node(rules).await;
    sign_up(&node, "sensor", "sensor password").await;
    let out = pub_once(
        &node,
        "sensor",
        "wrong password",
        "devices/sensor/x",
        "m",
        "mqttv311",
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        stderr.contains("not authori"),
        "3.1.1 CONNACK 0x05: {stderr}"
    );

    let out = pub_once(
        &node,
        "sensor",
        "wrong password",
        "devices/sensor/x",
        "m",
        "mqttv5",
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        stderr.contains("bad user name or password"),
        "v5 CONNACK 0x86: {stderr}"
    );
}
