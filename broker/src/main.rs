//! The `parley` binary: parse flags, load the configuration, run one node
//! until SIGTERM or Ctrl-C (or until it must stop, having lost its node id's
//! lease), then shut down gracefully.
//!
//! Exit codes: 0 after a graceful shutdown, 2 for an invalid configuration,
//! 1 for any other failure (a start-up failure, such as a node id another
//! live node holds, or a lost node lease).

use clap::Parser;
use parley::config::{Cli, Config};
use parley::server::Node;
use tracing_subscriber::EnvFilter;

/// jemalloc keeps per-thread caches, and a block freed on another thread
/// (a request allocated on a runtime worker and dropped by the history
/// writer, a delivery dropped by the recipient's connection) goes back
/// without the arena locking and chunk merging of glibc's allocator. On by
/// default (feature `jemalloc`); idle connections cost the same memory.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("parley: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if cli.check_config {
        print!("{}", config.to_redacted_toml());
        return std::process::ExitCode::SUCCESS;
    }
    let filter = EnvFilter::try_from_env("PARLEY_LOG")
        .unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    // While this is the only thread, so the one growth waits for nothing.
    match parley::fd_table::reserve(config.listeners.reserved_descriptors) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(descriptors = n, "descriptor table sized"),
        Err(e) => tracing::warn!(error = %e, "descriptor table not sized up front"),
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime.worker_threads_for(cores))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("parley: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    runtime.block_on(run(config))
}

/// Runs the node until it is told to stop or fails.
async fn run(config: Config) -> std::process::ExitCode {
    // Listen before starting, so that a signal arriving while the node
    // starts (or just after it reported that it is up) stops it gracefully
    // instead of killing it with its node lease still held.
    let stop = stop_signal();
    let node = match Node::start(config).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("parley: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    let failure = tokio::select! {
        _ = stop => None,
        why = node.failed() => Some(why),
    };
    let stopped = node.shutdown().await;
    if let Some(why) = failure {
        eprintln!("parley: {why}");
        return std::process::ExitCode::from(1);
    }
    match stopped {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when
/// this is called, not when the future is first polled.
#[cfg(unix)]
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (terminate, interrupt) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            _ => {
                tokio::signal::ctrl_c().await.ok();
            }
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> impl std::future::Future<Output = ()> {
    async {
        tokio::signal::ctrl_c().await.ok();
    }
}
