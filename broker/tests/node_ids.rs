//! Node ids on a shared PostgreSQL store: two live nodes never run with the
//! same id (`docs/cluster.md`, "Node ids").
//!
//! - A node refuses to start on an id a live node holds, naming the id and
//!   that node, and starts at once after that node shut down gracefully.
//! - A node killed with SIGKILL takes its id back at once when restarted on
//!   its own data directory, while another data directory is refused until
//!   the lease runs out; the refusal is the binary's exit code 1.
//! - A node whose lease is taken from under it stops (in this process: its
//!   shutdown token; as a process: exit code 1).
//!
//! PostgreSQL comes from `PARLEY_TEST_POSTGRES` (see `common::shared_postgres`);
//! every test creates a database of its own.

mod common;

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use common::process::free_port;
use common::shared_postgres::{fresh_database, raw_client};
use common::{sign_up, test_config, within, TestNode};
use parley::config::{Config, StorageBackend};
use parley::node_lease::instance::INSTANCE_FILE;
use parley::server::Node;
use persistence::postgres::{PostgresConfig, PostgresStore};
use persistence::{Lease, NodeLeases};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};

/// The node id every test fights over.
const NODE_ID: u16 = 7;

/// A config for node [`NODE_ID`] on the database at `url`, storing into `dir`.
fn pg_config(url: &str, dir: &Path) -> Config {
    let mut config = test_config(dir);
    config.node_id = NODE_ID;
    config.storage.backend = StorageBackend::Postgres;
    config.storage.postgres.url = url.to_owned();
    config.storage.postgres.max_connections = 4;
    config
}

/// Starts node [`NODE_ID`] in this process on `dir`.
async fn start_in_process(url: &str, dir: &Path) -> anyhow::Result<Node> {
    Node::start_with_bus(pg_config(url, dir), None).await
}

/// The lease on [`NODE_ID`] as the database has it.
async fn stored_lease(url: &str) -> Option<Lease> {
    let store = PostgresStore::connect(PostgresConfig::from_url(url).expect("a valid URL"))
        .await
        .expect("connect to the test database");
    store.lease(NODE_ID).await.expect("read the node lease")
}

/// Takes the lease on [`NODE_ID`] from its holder behind its back, as a
/// second process would after the holder had stalled past its lease: the
/// holder becomes `intruder`, described as "the intruding node".
async fn take_over(url: &str) {
    let taken = raw_client(url)
        .await
        .execute(
            "UPDATE node_leases SET holder = 'intruder', description = 'the intruding node', \
             expires_at = now() + interval '1 hour' WHERE node_id = $1",
            &[&i32::from(NODE_ID)],
        )
        .await
        .expect("take the lease over");
    assert_eq!(taken, 1, "node 7 held a lease to take");
}

/// The instance id a node keeps in `dir`.
fn instance_id(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(INSTANCE_FILE))
        .expect("a node on PostgreSQL writes its instance id")
        .trim()
        .to_owned()
}

/// `dir` as the node reports it.
fn shown(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .expect("canonical path")
        .display()
        .to_string()
}

#[tokio::test]
async fn a_second_node_with_the_id_of_a_live_one_is_refused_until_it_shuts_down() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let first_dir = tempfile::tempdir().unwrap();
    let first = TestNode {
        node: start_in_process(&url, first_dir.path())
            .await
            .expect("the first node with id 7 starts"),
        dir: first_dir,
    };
    let held = stored_lease(&url)
        .await
        .expect("the first node holds a lease");
    assert_eq!(held.holder, instance_id(first.dir.path()));

    // Another data directory is another holder: refused, naming the id and
    // the node that has it.
    let second_dir = tempfile::tempdir().unwrap();
    let refusal = match start_in_process(&url, second_dir.path()).await {
        Ok(_) => panic!("a second live node with id 7 must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        refusal.contains("node id 7 is in use by another live node"),
        "{refusal}"
    );
    assert!(
        refusal.contains(&shown(first.dir.path())),
        "the refusal names the other node's data directory: {refusal}"
    );
    assert!(
        refusal.contains(&format!("pid {}", std::process::id())),
        "the refusal names the other node's process: {refusal}"
    );
    let after = stored_lease(&url).await.expect("the lease is still there");
    assert_eq!(
        (after.holder, after.acquired_at_ms),
        (held.holder, held.acquired_at_ms),
        "the refused node leaves the first node's lease alone"
    );
    sign_up(&first, "alice", "alice password").await;

    // A graceful shutdown releases the lease: the id is free at once, long
    // before the 30 s the lease would otherwise last.
    first.node.shutdown().await.expect("graceful shutdown");
    assert_eq!(stored_lease(&url).await, None, "released at shutdown");
    let third = within(
        "a node with id 7 to start after the first one shut down",
        start_in_process(&url, second_dir.path()),
    )
    .await
    .expect("id 7 is free once its node shut down");
    assert_eq!(
        stored_lease(&url).await.map(|l| l.holder),
        Some(instance_id(second_dir.path()))
    );
    third.shutdown().await.expect("graceful shutdown");
}

#[tokio::test]
async fn a_node_whose_lease_is_taken_from_it_stops() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = pg_config(&url, dir.path());
    config.cluster.node_lease_ttl_ms = 1_000;
    let node = Node::start_with_bus(config, None)
        .await
        .expect("node 7 starts");

    take_over(&url).await;

    let why = within("the node to notice at its next renewal", node.failed()).await;
    assert!(why.contains("node id 7 was taken over"), "{why}");
    assert!(why.contains("the intruding node"), "{why}");
    assert!(
        node.shutdown_token().is_cancelled(),
        "a node that lost its id stops serving"
    );
    node.shutdown().await.expect("the rest of the shutdown");
    assert_eq!(
        stored_lease(&url).await.map(|l| l.holder),
        Some("intruder".to_owned()),
        "a node that lost its lease does not release the new holder's"
    );
}

/// The `parley` binary as node [`NODE_ID`] on `dir` (data in `dir/data`).
struct Process {
    /// The configuration file.
    config: std::path::PathBuf,
    /// The data directory.
    data_dir: std::path::PathBuf,
}

/// A running `parley` binary.
struct Running {
    /// The process.
    child: Child,
    /// Its standard error, where it reports why it exits (nothing else is
    /// written there, so the pipe never fills).
    stderr: ChildStderr,
}

impl Running {
    /// Waits for the process to exit; its status and standard error.
    async fn exit(mut self) -> (ExitStatus, String) {
        let status = within("parley to exit", self.child.wait()).await.unwrap();
        let mut text = String::new();
        self.stderr.read_to_string(&mut text).await.unwrap();
        (status, text)
    }

    /// Sends SIGTERM and waits for the process to exit.
    async fn terminate(self) -> (ExitStatus, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id().expect("running") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.exit().await
    }
}

impl Process {
    /// Writes the configuration for node [`NODE_ID`] on the database at
    /// `url`, with `extra` TOML tables appended.
    fn new(dir: &Path, url: &str, extra: &str) -> Process {
        let config = dir.join("parley.toml");
        let data_dir = dir.join("data");
        std::fs::write(
            &config,
            format!(
                "node_id = {NODE_ID}\ndata_dir = {data_dir:?}\n\
                 [storage]\nbackend = \"postgres\"\n[storage.postgres]\nurl = {url:?}\nmax_connections = 4\n\
                 [mqtt]\ntcp = \"127.0.0.1:{}\"\nws = \"off\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
                 [auth]\njwt_secret = \"test-secret-test-secret-test-secret-0123\"\n{extra}",
                free_port(),
                free_port(),
            ),
        )
        .unwrap();
        Process { config, data_dir }
    }

    /// Starts the binary and waits until it is up, or has exited (then its
    /// status and standard error).
    async fn start(&self) -> Result<Running, (ExitStatus, String)> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .arg("--config")
            .arg(&self.config)
            .env("PARLEY_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn parley");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = child.stderr.take().unwrap();
        let up = within("parley to start or exit", async {
            while let Some(line) = stdout.next_line().await.unwrap() {
                if line.contains("parley is up") {
                    return true;
                }
            }
            false
        })
        .await;
        let running = Running { child, stderr };
        if !up {
            return Err(running.exit().await);
        }
        // Keep draining the log so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Ok(running)
    }

    /// Starts the binary, which must come up.
    async fn up(&self) -> Running {
        match self.start().await {
            Ok(running) => running,
            Err((status, stderr)) => {
                panic!("parley exited with {status:?} instead of starting: {stderr}")
            }
        }
    }

    /// Starts the binary, which must exit with code 1; returns its stderr.
    async fn refused(&self) -> String {
        match self.start().await {
            Ok(_) => panic!("parley started although it must be refused"),
            Err((status, stderr)) => {
                assert_eq!(status.code(), Some(1), "a refused start exits 1: {stderr}");
                stderr
            }
        }
    }
}

#[tokio::test]
async fn a_killed_node_takes_its_id_back_on_its_own_data_dir_only() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let (home, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (home, elsewhere) = (
        Process::new(home.path(), &url, ""),
        Process::new(elsewhere.path(), &url, ""),
    );
    let mut killed = home.up().await;
    killed.child.start_kill().expect("SIGKILL");
    killed.child.wait().await.unwrap();

    // Its lease lives on for 30 s: a node on another data directory is
    // refused, with a message naming the id and the killed node.
    let refusal = elsewhere.refused().await;
    assert!(
        refusal.contains("node id 7 is in use by another live node"),
        "{refusal}"
    );
    assert!(refusal.contains(&shown(&home.data_dir)), "{refusal}");

    // The killed node's own data directory is the same holder: it starts
    // at once, well within the 30 s (the test's event timeout is 10 s).
    let restarted = home.up().await;
    // Two processes on one data directory are refused too, by its lock.
    let twin = home.refused().await;
    assert!(
        twin.contains("in use by another running parley node"),
        "{twin}"
    );

    // SIGTERM releases the lease: the other data directory may start now.
    let (status, stderr) = restarted.terminate().await;
    assert!(status.success(), "graceful exit: {stderr}");
    let (status, stderr) = elsewhere.up().await.terminate().await;
    assert!(status.success(), "graceful exit: {stderr}");
}

#[tokio::test]
async fn a_process_whose_lease_is_taken_exits_1() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let process = Process::new(dir.path(), &url, "[cluster]\nnode_lease_ttl_ms = 1000\n");
    let running = process.up().await;
    take_over(&url).await;
    let (status, stderr) = running.exit().await;
    assert_eq!(status.code(), Some(1), "a lost lease exits 1: {stderr}");
    assert!(stderr.contains("node id 7 was taken over"), "{stderr}");
    assert!(stderr.contains("the intruding node"), "{stderr}");
}
