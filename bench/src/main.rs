//! The `parley-bench` binary: parse the command line, raise the file
//! descriptor limit and hand over to [`parley_bench::app::run`].

use std::process::ExitCode;

use clap::Parser;
use parley_bench::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = parley_bench::limits::raise_nofile() {
        eprintln!("parley-bench: warning: {e}");
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
