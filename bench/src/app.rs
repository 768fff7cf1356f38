//! What the `parley-bench` binary does with a parsed command line: turn flags
//! into scenario settings, sign users up if asked, run, and print the result
//! as a table or JSON.

use std::io::Write;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cli::{
    BrokerArgs, ChatArgs, Cli, Command, CompareArgs, ConnArgs, OutputArgs, PubsubArgs, SessionsArgs,
};
use crate::compare::brokers::{self, BrokerPaths};
use crate::compare::{self, steps, summary, CompareConfig};
use crate::credentials::{self, Credentials, SignupUrl};
use crate::limits;
use crate::report;
use crate::scenario::chat::{self, layout, ChatConfig};
use crate::scenario::conn::{self, ConnConfig};
use crate::scenario::plan;
use crate::scenario::pubsub::{self, PubsubConfig};
use crate::scenario::sessions::{self, SessionsConfig};
use crate::scenario::Target;

/// Runs the command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Conn(args) => run_conn(args).await,
        Command::Pubsub(args) => run_pubsub(args).await,
        Command::Chat(args) => run_chat(args).await,
        Command::Sessions(args) => run_sessions(args).await,
        Command::Compare(args) => run_compare(args).await,
    }
}

/// The target of `args`, and the sign-up endpoint if one was given.
pub fn target(args: &BrokerArgs) -> Result<(Target, Option<SignupUrl>)> {
    let (credentials, signup) = Credentials::from_args(&args.credentials)?;
    let target = Target {
        host: args.host.clone(),
        port: args.port,
        version: args.mqtt_version,
        keepalive: args.keepalive,
        client_id_prefix: args.client_id_prefix.clone(),
        credentials,
    };
    Ok((target, signup))
}

async fn sign_up(
    signup: Option<&SignupUrl>,
    target: &Target,
    clients: usize,
    quiet: bool,
) -> Result<()> {
    let Some(url) = signup else {
        return Ok(());
    };
    let logins = target.credentials.logins(clients);
    let summary = credentials::sign_up(url, &logins).await?;
    if !quiet {
        eprintln!(
            "signed up {} users at {} ({} new, {} existing)",
            logins.len(),
            url.as_str(),
            summary.created,
            summary.existing
        );
    }
    Ok(())
}

async fn run_conn(args: ConnArgs) -> Result<()> {
    let (target, signup) = target(&args.broker)?;
    if let Some(warning) = limits::connection_warning(args.count) {
        eprintln!("parley-bench: warning: {warning}");
    }
    sign_up(signup.as_ref(), &target, args.count, args.output.quiet).await?;
    let cfg = ConnConfig {
        target,
        count: args.count,
        rate: args.rate,
        hold: args.hold,
        source_addrs: args.source_ips,
        connect_timeout: args.broker.connect_timeout,
        subscribe: args.subscribe,
        held: None,
        progress: !args.output.quiet,
    };
    let report = conn::run(&cfg).await?;
    print(&args.output, &report, || report.table())?;
    if report.connected == 0 {
        let first = report
            .errors
            .by_kind
            .keys()
            .next()
            .cloned()
            .unwrap_or_default();
        bail!("no connection succeeded ({first})");
    }
    Ok(())
}

async fn run_pubsub(args: PubsubArgs) -> Result<()> {
    let (target, signup) = target(&args.broker)?;
    // Plan once up front so sign-up covers exactly the clients the run uses.
    let clients = plan::plan(args.mode, args.clients, &args.topic_prefix)?.client_count();
    sign_up(signup.as_ref(), &target, clients, args.output.quiet).await?;
    let cfg = PubsubConfig {
        target,
        mode: args.mode,
        clients: args.clients,
        qos: args.qos,
        payload_size: args.payload_size,
        rate: args.rate,
        duration: args.duration,
        topic_prefix: args.topic_prefix,
        inflight: args.inflight,
        drain_timeout: args.drain_timeout,
        connect_timeout: args.broker.connect_timeout,
        progress: !args.output.quiet,
    };
    let report = pubsub::run(&cfg).await?;
    print(&args.output, &report, || report.table())
}

async fn run_sessions(args: SessionsArgs) -> Result<()> {
    let (target, signup) = target(&args.broker)?;
    let open_at_once = args.concurrency.max(args.resume_concurrency);
    if let Some(warning) = limits::connection_warning(open_at_once) {
        eprintln!("parley-bench: warning: {warning}");
    }
    sign_up(
        signup.as_ref(),
        &target,
        args.sessions + 2,
        args.output.quiet,
    )
    .await?;
    let cfg = SessionsConfig {
        target,
        sessions: args.sessions,
        messages: args.messages,
        payload_size: args.payload_size,
        layout: args.layout,
        inflight: args.inflight,
        concurrency: args.concurrency,
        resume_concurrency: args.resume_concurrency,
        source_addrs: args.source_ips,
        timeout: args.broker.connect_timeout,
        broker_pid: args.broker_pid,
        no_resume: args.no_resume,
    };
    let report = sessions::run(&cfg).await?;
    print(&args.output, &report, || report.table())
}

async fn run_chat(args: ChatArgs) -> Result<()> {
    let mut broker = args.broker.clone();
    broker.credentials = args.credentials();
    let (target, signup) = target(&broker)?;
    let Credentials::PerClient { prefix, .. } = &target.credentials else {
        bail!("chat needs one user per connection: --user-prefix and --password");
    };
    let layout = args.layout();
    // Plan once up front so a bad layout fails before sign-up, and sign-up
    // covers exactly the users the run uses.
    let users = layout::plan(layout, args.senders, prefix, "check")?
        .users
        .len();
    if let Some(warning) = limits::connection_warning(users) {
        eprintln!("parley-bench: warning: {warning}");
    }
    if let Some(url) = &signup {
        let summary = credentials::sign_up_or_log_in(url, &target.credentials.logins(users))
            .await
            .context("signing the chat users up (--no-signup skips this)")?;
        if !args.output.quiet {
            eprintln!(
                "{users} users ready at {} ({} new, {} existing)",
                url.as_str(),
                summary.created,
                summary.existing
            );
        }
    }
    let cfg = ChatConfig {
        target,
        layout,
        senders: args.senders,
        rate: args.rate,
        duration: args.duration,
        text_size: args.text_size,
        inflight: args.inflight,
        client: args.client,
        drain_timeout: args.drain_timeout,
        connect_timeout: args.broker.connect_timeout,
        progress: !args.output.quiet,
        node_ports: args.node_ports.clone(),
        bus: args
            .bus_kafka
            .clone()
            .map(|bootstrap| crate::busprobe::BusProbeConfig {
                bootstrap,
                topic: args.bus_topic.clone().unwrap_or_default(),
                nodes: args.bus_nodes.clone(),
            }),
    };
    let report = chat::run(&cfg).await?;
    print(&args.output, &report, || report.table())
}

async fn run_compare(args: CompareArgs) -> Result<()> {
    if let Some(warning) = limits::connection_warning(args.idle_connections) {
        eprintln!("parley-bench: warning: {warning}");
    }
    let cfg = CompareConfig {
        brokers: args.brokers,
        duration: args.duration,
        fan_in_publishers: args.fan_in_publishers,
        pairs: args.pairs,
        rate: args.rate,
        payload_size: args.payload_size,
        idle_connections: args.idle_connections,
        conn_rate: args.conn_rate,
        idle_subscribe: !args.no_idle_subscribe,
        chat_pairs: args.chat_pairs,
        chat_rate: args.chat_rate,
        step_rates: args.step_rates,
        paths: BrokerPaths {
            mosquitto_bin: args.mosquitto_bin,
            rumqttd_bin: args.rumqttd_bin,
            rumqttd_config: args.rumqttd_config,
            parley_bin: args.parley_bin.unwrap_or_else(brokers::default_parley_bin),
            parley_config: args.parley_config,
            install: !args.no_install,
        },
        work_dir: args.work_dir,
        progress: !args.output.quiet,
    };
    let report = compare::run(&cfg).await?;
    print(&args.output, &report, || {
        let m = &report.machine;
        format!(
            "{} cores ({}), {:.1} GiB, Linux {}\n\n{}{}",
            m.cores,
            m.cpu_model,
            m.memory_gib,
            m.kernel,
            summary::table(&report),
            steps::table(&report.ceilings)
        )
    })
}

/// Writes the report to stdout; a closed stdout (e.g. `| head`) is not an error.
fn print<T: Serialize>(
    output: &OutputArgs,
    report: &T,
    table: impl FnOnce() -> String,
) -> Result<()> {
    let text = if output.json {
        report::to_json(report).context("encoding the report as JSON")?
    } else {
        table()
    };
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing the report")
        }
        _ => Ok(()),
    }
}
