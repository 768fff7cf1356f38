//! Running the real `parley` binary as a child process, for tests that need
//! a separate process (kill -9, signals, exit codes).

use std::net::TcpListener;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::within;

/// A port that was free a moment ago (bind to port 0 and release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The ports a child `parley` listens on.
pub struct Ports {
    /// MQTT/TCP port.
    pub mqtt: u16,
    /// HTTP port.
    pub http: u16,
}

/// Starts `parley` on `dir` and waits until it reports that it is up.
pub async fn spawn_parley(dir: &std::path::Path, ports: &Ports, extra: &str) -> Child {
    spawn_parley_with_mqtt(dir, ports, "", extra).await
}

/// [`spawn_parley`] with more `[mqtt]` keys (`mqtt_keys`, one per line).
pub async fn spawn_parley_with_mqtt(
    dir: &std::path::Path,
    ports: &Ports,
    mqtt_keys: &str,
    extra: &str,
) -> Child {
    let config = dir.join("parley.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[mqtt]\n{mqtt_keys}tcp = \"127.0.0.1:{}\"\nws = \"off\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[auth]\njwt_secret = \"process-test-secret-0123456789abcdef\"\n{extra}",
            dir.join("data"),
            ports.mqtt,
            ports.http
        ),
    )
    .unwrap();
    spawn_parley_config(&config).await
}

/// Starts `parley` with the configuration file `config` and waits until it
/// reports that it is up; panics with the end of its output if it exits
/// first. Its log is drained (and shown with the test's output) after that.
pub async fn spawn_parley_config(config: &std::path::Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("--config")
        .arg(config)
        .env("PARLEY_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn parley");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    within("parley to start", async {
        let mut log = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("parley is up") {
                return;
            }
            log.push(line);
        }
        while let Ok(Some(line)) = errors.next_line().await {
            log.push(line);
        }
        let tail = log[log.len().saturating_sub(20)..].join("\n");
        panic!("parley exited before it was up; the end of its output:\n{tail}");
    })
    .await;
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            eprintln!("parley (stderr): {line}");
        }
    });
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("parley: {line}");
        }
    });
    child
}
