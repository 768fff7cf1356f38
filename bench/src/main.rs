//! The `parley-bench` binary: parse the command line, raise the file
//! descriptor limit, size the descriptor table and hand over to [`parley_bench::app::run`].

use std::process::ExitCode;

use clap::Parser;
use parley_bench::cli::Cli;

/// Descriptors the bench's table is sized for at start-up (clamped to the
/// open-files limit): 8 bytes each.
const DESCRIPTOR_TABLE: u64 = 1 << 18;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = parley_bench::limits::raise_nofile() {
        eprintln!("parley-bench: warning: {e}");
    }
    // While this is the only thread (see `limits`).
    if let Err(e) = parley_bench::limits::presize_descriptor_table(DESCRIPTOR_TABLE) {
        eprintln!("parley-bench: warning: descriptor table not sized up front: {e}");
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parley-bench: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(parley_bench::app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
