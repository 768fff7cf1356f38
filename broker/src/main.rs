//! The `parley` binary: parse flags, load the configuration, run one node
//! until SIGTERM or Ctrl-C, then shut down gracefully.

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
    wait_for_signal().await;
    match node.shutdown().await {
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
