//! Child processes for the embedded store's multi-process tests.
//!
//! A test that needs a second process re-runs its own test binary with
//! `--exact <child test>`, passing the child's role and data directory in
//! environment variables. The child test ([`child_data_dir`]) does nothing unless
//! those variables name its role, so ordinary test runs skip straight past it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Names the role a spawned child test is to play.
const ROLE_VAR: &str = "PARLEY_TEST_CHILD_ROLE";
/// The data directory a spawned child test is to use.
const DATA_DIR_VAR: &str = "PARLEY_TEST_CHILD_DATA_DIR";

/// How long a child may stay silent before the test gives up on it.
const CHILD_SILENCE_LIMIT: Duration = Duration::from_secs(60);

/// The data directory to use if this process was spawned to play `role`, else `None`.
pub fn child_data_dir(role: &str) -> Option<PathBuf> {
    if std::env::var(ROLE_VAR).ok()? != role {
        return None;
    }
    std::env::var_os(DATA_DIR_VAR).map(PathBuf::from)
}

/// A child test process with piped stdin and stdout.
pub struct ChildTest {
    /// The process; killed if dropped while still running.
    pub process: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ChildTest {
    /// Runs the test named `test_name` of this test binary in a child process,
    /// playing `role` on `data_dir`.
    pub fn spawn(test_name: &str, role: &str, data_dir: &Path) -> ChildTest {
        let exe = std::env::current_exe().expect("locate the test binary");
        let mut process = Command::new(exe)
            .args(["--exact", test_name, "--nocapture", "--include-ignored"])
            .env(ROLE_VAR, role)
            .env(DATA_DIR_VAR, data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the child test process");
        let stdout = process.stdout.take().expect("child stdout is piped");
        ChildTest {
            process,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// Waits for the child's next stdout line that starts with `prefix` and returns
    /// the rest of it; `None` once the child's stdout closes.
    ///
    /// Other lines (the test harness's own output) are skipped. Panics if the child
    /// stays silent for [`CHILD_SILENCE_LIMIT`].
    pub async fn next_line_after(&mut self, prefix: &str) -> Option<String> {
        loop {
            let line = tokio::time::timeout(CHILD_SILENCE_LIMIT, self.lines.next_line())
                .await
                .expect("the child test went silent")
                .expect("read the child's stdout")?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Some(rest.to_owned());
            }
        }
    }
}
