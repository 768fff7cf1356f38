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

#[tokio::main]
async fn main() -> std::process::ExitCode {
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

    let node = match Node::start(config).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("parley: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    let failure = tokio::select! {
        _ = wait_for_signal() => None,
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

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    ctrl_c.await.ok();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.ok();
}
