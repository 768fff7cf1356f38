//! A throwaway PostgreSQL cluster of a test's own, for tests that stop and
//! start the server under a running node (and so must not use the shared
//! server named by `PARLEY_TEST_POSTGRES` that other tests use).
//!
//! The cluster is created in a temporary directory with the server binaries
//! `PARLEY_TEST_POSTGRES_BIN` names (`.ci/postgres.sh` exports it) or,
//! failing that, the newest under `/usr/lib/postgresql/*/bin`, listens on a
//! free loopback port with trust authentication, and is stopped and deleted
//! when dropped. As root, the server's programs run as `postgres`.
//!
//! The persistence and broker restart tests both use this file (the broker's
//! test harness includes it by path), so there is one copy of it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The variable that may name the directory of `initdb` and `pg_ctl`.
pub const BIN_VAR: &str = "PARLEY_TEST_POSTGRES_BIN";

/// The directory of `initdb` and `pg_ctl`, if there is one.
pub fn server_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_VAR) {
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

/// The server binaries, or `None` (after printing why) when the test should
/// skip. Without them the test fails instead when `CI` is set.
pub fn server_bin_dir_or_skip() -> Option<PathBuf> {
    if let Some(bin) = server_bin_dir() {
        return Some(bin);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "no PostgreSQL server binaries ({BIN_VAR} or /usr/lib/postgresql/*/bin), \
             but CI is set: .ci/postgres.sh installs them"
        );
    }
    eprintln!(
        "skipping: no PostgreSQL server binaries ({BIN_VAR} or /usr/lib/postgresql/*/bin) \
         to run a throwaway cluster with"
    );
    None
}

/// True when this process runs as root (PostgreSQL then runs as `postgres`).
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A throwaway cluster, stopped and deleted when dropped. Its methods block
/// (they run the server's programs): call them from `spawn_blocking` in
/// async tests.
pub struct PgCluster {
    /// The directory of `initdb` and `pg_ctl`.
    bin: PathBuf,
    /// Holds the data directory, the log and the socket.
    dir: tempfile::TempDir,
    /// The loopback port the server listens on.
    port: u16,
    /// Whether the server's programs must run as `postgres` (we are root).
    as_root: bool,
}

impl PgCluster {
    /// Creates a cluster with the programs in `bin` and starts it on a free
    /// loopback port.
    pub fn start(bin: &Path) -> PgCluster {
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
        let cluster = PgCluster {
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

    /// The loopback port the server listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL of the cluster's superuser, database `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far (for failure messages).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A command running `program` of the server, as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        }
    }

    /// Runs one of the server's programs, asserting that it succeeds.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Starts the server (again, on the same port and data) and waits until
    /// it accepts connections.
    pub fn pg_ctl_start(&self) {
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

    /// Stops the server with shutdown mode `mode` (`fast`: open sessions are
    /// terminated and the server shuts down cleanly; `immediate`: it quits
    /// at once and recovers from its WAL on the next start) and waits until
    /// it is gone.
    pub fn pg_ctl_stop(&self, mode: &str) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("UTF-8 path"),
                "-m",
                mode,
                "-w",
                "stop",
            ],
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Already stopped is fine; nothing else can be done about a failure here.
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
