//! The PostgreSQL store across a server restart: while the server is down,
//! operations fail promptly with [`StoreError::Unavailable`] (no panic, no
//! hang); once it is back, the same store works again, seqs continuing
//! without a gap.
//!
//! The test stops and starts a PostgreSQL cluster of its own, created in a
//! temporary directory with the server binaries `PARLEY_TEST_POSTGRES_BIN`
//! names (`.ci/postgres.sh` exports it) or, failing that, the newest under
//! `/usr/lib/postgresql/*/bin`; so it never disturbs the server other tests
//! use. Without server binaries it prints why and passes, except when `CI` is
//! set, where it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use persistence::postgres::{PostgresConfig, PostgresStore};
use persistence::{AppendRequest, HistoryStore, StoreError};

/// Longest an operation against a stopped server may take to fail.
const FAILURE_DEADLINE: Duration = Duration::from_secs(10);
/// Longest the store may take to work again after the server is back.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

/// The directory of `initdb` and `pg_ctl`, if there is one.
fn server_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PARLEY_TEST_POSTGRES_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    // Major versions are plain numbers: the longest name, then the highest, is the newest.
    dirs.sort_by_key(|dir| {
        let name = dir
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned());
        name.map(|n| (n.len(), n))
    });
    dirs.pop()
}

/// True when this process runs as root (PostgreSQL then runs as `postgres`).
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A throwaway cluster, stopped and deleted when dropped.
struct Cluster {
    /// The directory of `initdb` and `pg_ctl`.
    bin: PathBuf,
    /// Holds the data directory, the log and the socket.
    dir: tempfile::TempDir,
    /// The loopback port the server listens on.
    port: u16,
    /// Whether the server's programs must run as `postgres` (we are root).
    as_root: bool,
}

impl Cluster {
    /// Creates and starts a cluster on a free loopback port.
    fn start(bin: &Path) -> Cluster {
        let dir = tempfile::tempdir().expect("create the cluster directory");
        let as_root = running_as_root();
        if as_root {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(status.success(), "chown the cluster directory to postgres");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("find a free port")
            .port();
        let cluster = Cluster {
            bin: bin.to_owned(),
            dir,
            port,
            as_root,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().expect("UTF-8 path"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        cluster.pg_ctl_start();
        cluster
    }

    /// The cluster's data directory.
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the server's programs, as `postgres` when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut command = if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Starts the server and waits until it accepts connections.
    fn pg_ctl_start(&self) {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("UTF-8 path"),
                "-l",
                log.to_str().expect("UTF-8 path"),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server (fast: open sessions are terminated) and waits for it.
    fn pg_ctl_stop(&self) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("UTF-8 path"),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    /// The connection URL of the cluster's superuser.
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let path = self.bin.join("pg_ctl");
        let mut command = if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        // Already stopped is fine; nothing else can be done about a failure here.
        let _ = command
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// A plain message `client_message_id` to `conversation`.
fn message(conversation: &str, client_message_id: &str) -> AppendRequest {
    AppendRequest {
        conversation_id: conversation.to_owned(),
        sender: "alice".to_owned(),
        client_message_id: client_message_id.to_owned(),
        message_id: rand::random(),
        server_time_ms: 1_700_000_000_000,
        payload: client_message_id.as_bytes().to_vec(),
        amend: None,
    }
}

/// Asserts that `outcome` is a prompt, clear [`StoreError::Unavailable`].
fn assert_unavailable<T: std::fmt::Debug>(what: &str, outcome: Result<T, StoreError>) {
    match outcome {
        Err(StoreError::Unavailable(why)) => {
            eprintln!("{what} while PostgreSQL is down: {why}");
            assert!(
                why.contains("PostgreSQL"),
                "{what}: the error must say PostgreSQL is the problem: {why}"
            );
        }
        other => panic!("{what} while PostgreSQL is down must be Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_fails_cleanly_while_postgres_is_down_and_recovers_after() {
    let Some(bin) = server_bin_dir() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "no PostgreSQL server binaries (PARLEY_TEST_POSTGRES_BIN or \
                 /usr/lib/postgresql/*/bin), but CI is set: .ci/postgres.sh installs them"
            );
        }
        eprintln!("skipping: no PostgreSQL server binaries to run a throwaway cluster with");
        return;
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&bin))
        .await
        .expect("start the throwaway cluster");
    let config = PostgresConfig::from_url(&cluster.url())
        .expect("a valid URL")
        .connect_timeout(Duration::from_secs(2))
        .operation_timeout(FAILURE_DEADLINE);
    let store = PostgresStore::connect(config)
        .await
        .expect("connect to the throwaway cluster");
    let conversation = "c_restart";
    for (i, expected) in (1..=3u64).enumerate() {
        let appended = store
            .append(message(conversation, &format!("before{i}")))
            .await
            .expect("append while the server is up");
        assert_eq!(appended.seq, expected);
    }

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.pg_ctl_stop();
        cluster
    })
    .await
    .expect("stop the cluster");

    let started = Instant::now();
    let outcome = tokio::time::timeout(
        FAILURE_DEADLINE * 2,
        store.append(message(conversation, "during")),
    )
    .await
    .expect("an append while PostgreSQL is down must fail, not hang");
    assert_unavailable("an append", outcome);
    let outcome = tokio::time::timeout(FAILURE_DEADLINE * 2, store.last_seq(conversation))
        .await
        .expect("a read while PostgreSQL is down must fail, not hang");
    assert_unavailable("a read", outcome);
    assert!(
        started.elapsed() < FAILURE_DEADLINE,
        "failing took {:?}",
        started.elapsed()
    );

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.pg_ctl_start();
        cluster
    })
    .await
    .expect("restart the cluster");

    // The server accepts connections again (pg_ctl -w); the pool must notice
    // its dead connections and open new ones. Poll until it does, with a deadline.
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    let mut attempts = 0;
    let appended = loop {
        attempts += 1;
        match store.append(message(conversation, "after")).await {
            Ok(appended) => break appended,
            Err(e) if Instant::now() < deadline => {
                eprintln!("append attempt {attempts} after the restart failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not recover within {RECOVERY_DEADLINE:?}: {e}"),
        }
    };
    eprintln!("the store worked again after {attempts} attempt(s)");
    assert!(!appended.duplicate);
    assert_eq!(
        appended.seq, 4,
        "the failed append must not have used up a seq: seqs continue gap-free"
    );
    assert_eq!(
        store.last_seq(conversation).await.expect("last_seq"),
        4,
        "reads work again too"
    );
    drop(store);
    drop(cluster);
}
