//! The `parley` binary as a process: `--help`, a clear exit on an invalid
//! configuration, and graceful shutdown on SIGTERM.

mod common;

use std::time::Duration;

use common::process::{free_port, spawn_parley, Ports};
use common::within;
use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;

#[tokio::test]
async fn help_documents_the_flags() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("--help")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--data-dir",
        "--node-id",
        "--mqtt-tcp",
        "--mqtt-ws",
        "--http",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[tokio::test]
async fn invalid_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[mqtt]\nmax_packet_size = \"big\"\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("--config")
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_packet_size"), "{stderr}");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["--config", "/nonexistent/parley.toml"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[tokio::test]
async fn sigterm_disconnects_clients_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports {
        mqtt: free_port(),
        http: free_port(),
    };
    let mut parley = spawn_parley(dir.path(), &ports, "").await;
    let status = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/users", ports.http))
        .json(&serde_json::json!({"username": "carol", "password": "carol password"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    let mut o = rumqttc::v5::MqttOptions::new("c", "127.0.0.1", ports.mqtt);
    o.set_credentials("carol", "carol password");
    o.set_keep_alive(Duration::from_secs(30));
    let (_client, mut eventloop) = common::v5::connect(o).await;

    let pid = nix::unistd::Pid::from_raw(parley.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    assert_eq!(
        common::v5::disconnect_reason(&mut eventloop).await,
        Some(DisconnectReasonCode::ServerShuttingDown)
    );
    let status = within("parley to exit", parley.wait()).await.unwrap();
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}"
    );
}
