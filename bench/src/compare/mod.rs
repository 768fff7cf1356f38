//! `parley-bench compare`: runs the same scenarios against several brokers,
//! one broker at a time on loopback ports, while sampling the broker's memory
//! and CPU, and summarises everything in one table (with Parley/peer ratios).
//!
//! Scenarios per broker: fan-in and pairs (QoS 1, MQTT 3.1.1, fixed payload)
//! and idle connections (by default each subscribed, QoS 1, to its own
//! `bench/idle/{client_id}`); then, against Parley alone, the `chat` scenario
//! (1:1 pairs sending durable chat messages).
//!
//! Idle connections: the broker's RSS is read just before the first one
//! opens and again once all are open (into the hold, see [`IdleRss`]); the
//! difference divided by the connections open is the RSS per connection.
//! Each broker's idle connections come from source addresses of their own
//! (see [`idle_source_addrs`]): one address per [`CONNS_PER_SOURCE_ADDR`]
//! connections, in a 127.x.y.0/24 block that no other broker of the run and
//! no recent run used, so neither the ephemeral ports of one address nor the
//! sockets an earlier run left in TIME_WAIT slow a broker's connects.
//!
//! The message scenarios log in as one user per client (`bench-user-{i}`).
//! The idle connections all log in as `bench-user-0`: Parley hashes a
//! password with PBKDF2 (at least 100k rounds) on sign-up and on the first
//! connect of each user, so thousands of distinct users would measure password
//! hashing (and the sign-up would take minutes), not connection handling. Every client logs in as its own user
//! (`bench-user-{i}`); brokers without authentication ignore it, and Parley's
//! users are signed up through its HTTP API first. A broker that is missing
//! or fails to start is skipped with the reason.

pub mod brokers;
pub mod procstat;
pub mod steps;
pub mod summary;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use procfs::Current;
use serde::Serialize;
use tokio::sync::Notify;

use self::brokers::{BrokerKind, BrokerPaths, RunningBroker};
use self::procstat::{ResourceUsage, Sampler};
use crate::credentials::{self, Credentials, SignupUrl};
use crate::mqtt::{MqttVersion, Qos};
use crate::report::{ChatReport, ConnReport, PubsubReport};
use crate::scenario::chat::layout::Layout;
use crate::scenario::chat::{self, ChatClient, ChatConfig};
use crate::scenario::conn::{self, ConnConfig};
use crate::scenario::plan::Mode;
use crate::scenario::pubsub::{self, PubsubConfig};
use crate::scenario::Target;
use crate::source_addr::SourceAddrs;

/// Username prefix of the comparison's clients.
pub const USER_PREFIX: &str = "bench-user-";
/// Password of every comparison user.
pub const USER_PASSWORD: &str = "bench-password";
/// How often broker RSS and CPU are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// Settings of a comparison.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// Brokers to run, in order.
    pub brokers: Vec<BrokerKind>,
    /// Publishing time of the message scenarios; hold time of idle connections.
    pub duration: Duration,
    /// Publishers in fan-in.
    pub fan_in_publishers: usize,
    /// Pairs in pairs.
    pub pairs: usize,
    /// Messages per second per publisher.
    pub rate: f64,
    /// Payload bytes.
    pub payload_size: usize,
    /// Connections in the idle-connections scenario.
    pub idle_connections: usize,
    /// Connection attempts per second in the idle-connections scenario.
    pub conn_rate: f64,
    /// Each idle connection subscribes (QoS 1) to `bench/idle/{client_id}`.
    pub idle_subscribe: bool,
    /// 1:1 pairs in the chat scenario (Parley only); 0 skips it.
    pub chat_pairs: usize,
    /// Messages per second per chat sender (one sender per pair).
    pub chat_rate: f64,
    /// Rates per publisher to step fan-in and pairs through (see [`steps`]).
    pub step_rates: Vec<f64>,
    /// Where the brokers are.
    pub paths: BrokerPaths,
    /// Where configs, data and logs go (`None`: a temporary directory).
    pub work_dir: Option<PathBuf>,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// The scenarios of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioName {
    /// N publishers to one subscriber.
    FanIn,
    /// N publisher/subscriber pairs.
    Pairs,
    /// Many connections doing nothing but keep-alive.
    IdleConnections,
    /// Parley's chat: 1:1 pairs sending durable messages (Parley only).
    Chat,
    /// Fan-in at one of the stepped rates.
    FanInStep,
    /// Pairs at one of the stepped rates.
    PairsStep,
}

impl fmt::Display for ScenarioName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScenarioName::FanIn => "fan-in",
            ScenarioName::Pairs => "pairs",
            ScenarioName::IdleConnections => "idle connections",
            ScenarioName::Chat => "chat pairs",
            ScenarioName::FanInStep => "fan-in step",
            ScenarioName::PairsStep => "pairs step",
        })
    }
}

/// A scenario's own report.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ScenarioReport {
    /// From `pubsub`.
    Pubsub(PubsubReport),
    /// From `conn`.
    Conn(ConnReport),
    /// From `chat`.
    Chat(ChatReport),
}

/// One scenario against one broker.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRun {
    /// Which scenario.
    pub scenario: ScenarioName,
    /// Its report, if it ran.
    pub report: Option<ScenarioReport>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The broker's RSS and CPU during the scenario.
    pub resources: Option<ResourceUsage>,
    /// Idle connections only: broker RSS before and with the connections open.
    pub idle_rss: Option<IdleRss>,
}

/// Broker memory taken by the idle connections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleRss {
    /// Broker RSS just before the first connection opened, KiB.
    pub before_kib: u64,
    /// Broker RSS with every connection open, read [`IDLE_RSS_SETTLE`] into
    /// the hold (at most half of it), KiB.
    pub after_kib: u64,
    /// Connections open (CONNACK, and SUBACK if subscribing).
    pub connections: u64,
    /// `(after_kib - before_kib) / connections` (`None` without connections).
    pub per_connection_kib: Option<f64>,
}

impl IdleRss {
    /// The reading for `connections` open connections.
    pub fn new(before_kib: u64, after_kib: u64, connections: u64) -> IdleRss {
        IdleRss {
            before_kib,
            after_kib,
            connections,
            per_connection_kib: (connections > 0)
                .then(|| after_kib.saturating_sub(before_kib) as f64 / connections as f64),
        }
    }
}

/// Everything about one broker.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerRun {
    /// Which broker.
    pub broker: BrokerKind,
    /// Its version line.
    pub version: Option<String>,
    /// Why it was skipped, if it was.
    pub skipped: Option<String>,
    /// Its scenarios.
    pub scenarios: Vec<ScenarioRun>,
}

/// The machine the comparison ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available.
    pub cores: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Describes this machine.
    pub fn current() -> Machine {
        let cpu_model = procfs::CpuInfo::current()
            .ok()
            .and_then(|c| c.model_name(0).map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        let memory_gib =
            procfs::Meminfo::current().map_or(0.0, |m| m.mem_total as f64 / (1u64 << 30) as f64);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            memory_gib,
            kernel,
        }
    }
}

/// The settings, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Seconds per scenario.
    pub duration_secs: f64,
    /// Publishers in fan-in.
    pub fan_in_publishers: usize,
    /// Pairs in pairs.
    pub pairs: usize,
    /// Messages per second per publisher.
    pub rate_per_publisher: f64,
    /// Payload bytes.
    pub payload_size: usize,
    /// QoS of the message scenarios.
    pub qos: Qos,
    /// Protocol version.
    pub mqtt_version: MqttVersion,
    /// Connections in idle connections.
    pub idle_connections: usize,
    /// Connection attempts per second.
    pub conn_rate: f64,
    /// Whether each idle connection subscribed (QoS 1) to `bench/idle/{client_id}`.
    pub idle_subscribe: bool,
    /// Source addresses the idle connections were spread over (0: kernel's choice).
    pub idle_source_addresses: usize,
    /// 1:1 pairs in the chat scenario (Parley only).
    pub chat_pairs: usize,
    /// Messages per second per chat sender.
    pub chat_rate_per_sender: f64,
    /// Rates per publisher that fan-in and pairs were stepped through.
    pub step_rates_per_publisher: Vec<f64>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// When it started, Unix seconds.
    pub started_unix_secs: u64,
    /// Where it ran.
    pub machine: Machine,
    /// With which settings.
    pub settings: Settings,
    /// Per broker.
    pub brokers: Vec<BrokerRun>,
    /// One row per scenario and metric.
    pub summary: Vec<summary::Row>,
    /// Each broker's stepped runs and ceiling, per mode (empty without steps).
    pub ceilings: Vec<steps::Ceiling>,
}

/// The comparison could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// No broker was asked for.
    #[error("no brokers to compare")]
    NoBrokers,
    /// The work directory could not be made.
    #[error("work directory: {0}")]
    WorkDir(#[from] std::io::Error),
}

/// QoS of the comparison's message scenarios.
const QOS: Qos = Qos::AtLeastOnce;

/// Runs every scenario against every broker in turn.
pub async fn run(cfg: &CompareConfig) -> Result<CompareReport, CompareError> {
    if cfg.brokers.is_empty() {
        return Err(CompareError::NoBrokers);
    }
    let temp;
    let work_dir = match &cfg.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("parley-bench-compare-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let started_unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut runs = Vec::new();
    for (index, kind) in cfg.brokers.iter().enumerate() {
        let idle_addrs = idle_source_addrs(cfg.idle_connections, index, started_unix_secs);
        let dir = work_dir.join(kind.to_string());
        runs.push(run_broker(cfg, *kind, &dir, &idle_addrs).await);
    }
    let mut report = CompareReport {
        started_unix_secs,
        machine: Machine::current(),
        settings: Settings {
            duration_secs: cfg.duration.as_secs_f64(),
            fan_in_publishers: cfg.fan_in_publishers,
            pairs: cfg.pairs,
            rate_per_publisher: cfg.rate,
            payload_size: cfg.payload_size,
            qos: QOS,
            mqtt_version: MqttVersion::V4,
            idle_connections: cfg.idle_connections,
            conn_rate: cfg.conn_rate,
            idle_subscribe: cfg.idle_subscribe,
            idle_source_addresses: idle_source_addrs(cfg.idle_connections, 0, 0).len(),
            chat_pairs: cfg.chat_pairs,
            chat_rate_per_sender: cfg.chat_rate,
            step_rates_per_publisher: cfg.step_rates.clone(),
        },
        brokers: runs,
        summary: Vec::new(),
        ceilings: Vec::new(),
    };
    report.summary = summary::rows(&report);
    report.ceilings = steps::ceilings(&report.brokers);
    Ok(report)
}

async fn run_broker(
    cfg: &CompareConfig,
    kind: BrokerKind,
    dir: &Path,
    idle_addrs: &SourceAddrs,
) -> BrokerRun {
    let mut run = BrokerRun {
        broker: kind,
        version: None,
        skipped: None,
        scenarios: Vec::new(),
    };
    let skip = |mut run: BrokerRun, reason: String| {
        eprintln!("{kind}: skipped: {reason}");
        run.skipped = Some(reason);
        run
    };
    let broker = match brokers::start(kind, &cfg.paths, dir).await {
        Ok(b) => b,
        Err(e) => return skip(run, e.to_string()),
    };
    eprintln!(
        "{kind}: {} (pid {}, port {})",
        broker.version, broker.pid, broker.mqtt_port
    );
    run.version = Some(broker.version.clone());
    let credentials = Credentials::PerClient {
        prefix: USER_PREFIX.into(),
        password: USER_PASSWORD.into(),
    };
    if let Err(reason) = sign_up(&broker, &credentials, users_needed(cfg)).await {
        let _ = broker.stop().await;
        return skip(run, reason);
    }
    let target = Target {
        host: "127.0.0.1".into(),
        port: broker.mqtt_port,
        version: MqttVersion::V4,
        keepalive: Duration::from_secs(60),
        client_id_prefix: format!("cmp-{kind}"),
        credentials,
    };
    for scenario in scenarios(cfg, kind) {
        eprintln!("{kind}: {scenario} ...");
        run.scenarios
            .push(run_scenario(cfg, scenario, &target, &broker, idle_addrs).await);
    }
    for step in [ScenarioName::FanInStep, ScenarioName::PairsStep] {
        for &rate in &cfg.step_rates {
            eprintln!("{kind}: {step} at {rate}/s per publisher ...");
            let stepped = CompareConfig {
                rate,
                ..cfg.clone()
            };
            let done = run_scenario(&stepped, step, &target, &broker, idle_addrs).await;
            let passed = steps::passed(&done);
            run.scenarios.push(done);
            if !passed {
                break;
            }
        }
    }
    if let Err(e) = broker.stop().await {
        eprintln!("{kind}: stopping: {e}");
    }
    run
}

/// The scenarios run against `kind`: chat needs Parley's chat topics.
pub fn scenarios(cfg: &CompareConfig, kind: BrokerKind) -> Vec<ScenarioName> {
    let mut list = vec![
        ScenarioName::FanIn,
        ScenarioName::Pairs,
        ScenarioName::IdleConnections,
    ];
    if kind == BrokerKind::Parley && cfg.chat_pairs > 0 {
        list.push(ScenarioName::Chat);
    }
    list
}

/// Users the scenarios log in as (`bench-user-0` up to this many); the idle
/// connections share the first.
pub fn users_needed(cfg: &CompareConfig) -> usize {
    (cfg.fan_in_publishers + 1)
        .max(cfg.pairs * 2)
        .max(cfg.chat_pairs * 2)
}

/// Most idle connections bound to one source address (a loopback address
/// has ~28k ephemeral ports).
pub const CONNS_PER_SOURCE_ADDR: usize = 5_000;

/// How long into the hold the broker's RSS is read for [`IdleRss`].
pub const IDLE_RSS_SETTLE: Duration = Duration::from_secs(3);

/// Source addresses for the `connections` idle connections of the broker at
/// `broker_index` in a run started at `started_unix_secs`: 127.(100 +
/// broker_index).(started_unix_secs mod 256).1 and up, one address per
/// [`CONNS_PER_SOURCE_ADDR`] connections. Brokers of one run never share an
/// address, and a run started more than a TIME_WAIT period (60 s) after
/// another but less than 256 s apart gets another block too.
pub fn idle_source_addrs(
    connections: usize,
    broker_index: usize,
    started_unix_secs: u64,
) -> SourceAddrs {
    let n = connections.div_ceil(CONNS_PER_SOURCE_ADDR).clamp(1, 254) as u8;
    let second = 100u8.saturating_add(broker_index.min(155) as u8);
    let third = (started_unix_secs % 256) as u8;
    let first = Ipv4Addr::new(127, second, third, 1);
    let last = Ipv4Addr::new(127, second, third, n);
    format!("{first}-{last}")
        .parse()
        .expect("a loopback range parses")
}

/// Connection 0's login for every connection.
fn shared_login(credentials: &Credentials) -> Credentials {
    match credentials.login(0) {
        Some(login) => Credentials::Shared(login),
        None => Credentials::Anonymous,
    }
}

/// Signs up the users on brokers with an account API (Parley).
async fn sign_up(
    broker: &RunningBroker,
    credentials: &Credentials,
    users: usize,
) -> Result<(), String> {
    let Some(http_port) = broker.http_port else {
        return Ok(());
    };
    let url =
        SignupUrl::parse(&format!("http://127.0.0.1:{http_port}")).map_err(|e| e.to_string())?;
    eprintln!("{}: signing up {users} users ...", broker.kind);
    credentials::sign_up(&url, &credentials.logins(users))
        .await
        .map(|_| ())
        .map_err(|e| format!("sign-up failed: {e}"))
}

async fn run_scenario(
    cfg: &CompareConfig,
    scenario: ScenarioName,
    target: &Target,
    broker: &RunningBroker,
    idle_addrs: &SourceAddrs,
) -> ScenarioRun {
    let sampler = Sampler::start(broker.pid, SAMPLE_INTERVAL);
    let pubsub_cfg = |mode: Mode, clients: usize| PubsubConfig {
        target: target.clone(),
        mode,
        clients,
        qos: QOS,
        payload_size: cfg.payload_size,
        rate: cfg.rate,
        duration: cfg.duration,
        topic_prefix: "bench".into(),
        inflight: 100,
        drain_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(30),
        progress: cfg.progress,
    };
    let mut idle_rss = None;
    let outcome = match scenario {
        ScenarioName::FanIn | ScenarioName::FanInStep => {
            pubsub::run(&pubsub_cfg(Mode::FanIn, cfg.fan_in_publishers))
                .await
                .map(ScenarioReport::Pubsub)
                .map_err(|e| e.to_string())
        }
        ScenarioName::Pairs | ScenarioName::PairsStep => {
            pubsub::run(&pubsub_cfg(Mode::Pairs, cfg.pairs))
                .await
                .map(ScenarioReport::Pubsub)
                .map_err(|e| e.to_string())
        }
        ScenarioName::IdleConnections => {
            let (outcome, rss) = run_idle(cfg, target, broker.pid, idle_addrs).await;
            idle_rss = rss;
            outcome.map(ScenarioReport::Conn)
        }
        ScenarioName::Chat => chat::run(&ChatConfig {
            target: target.clone(),
            layout: Layout::Pairs {
                pairs: cfg.chat_pairs,
            },
            senders: 1,
            rate: cfg.chat_rate,
            duration: cfg.duration,
            text_size: cfg.payload_size,
            inflight: 100,
            drain_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(30),
            progress: cfg.progress,
            node_ports: Vec::new(),
            bus: None,
            client: ChatClient::default(),
        })
        .await
        .map(ScenarioReport::Chat)
        .map_err(|e| e.to_string()),
    };
    let resources = match sampler.finish().await {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("{}: {scenario}: resource sampling: {e}", broker.kind);
            None
        }
    };
    if let Err(e) = &outcome {
        eprintln!("{}: {scenario} failed: {e}", broker.kind);
    }
    ScenarioRun {
        scenario,
        report: outcome.as_ref().ok().cloned(),
        error: outcome.err(),
        resources,
        idle_rss,
    }
}

/// The idle-connections scenario, reading the broker's RSS (`pid`) before
/// the connections open and [`IDLE_RSS_SETTLE`] into their hold.
async fn run_idle(
    cfg: &CompareConfig,
    target: &Target,
    pid: u32,
    source_addrs: &SourceAddrs,
) -> (Result<ConnReport, String>, Option<IdleRss>) {
    let held = Arc::new(Notify::new());
    let conn_cfg = ConnConfig {
        target: Target {
            credentials: shared_login(&target.credentials),
            ..target.clone()
        },
        count: cfg.idle_connections,
        rate: cfg.conn_rate,
        hold: cfg.duration,
        source_addrs: Some(source_addrs.clone()),
        connect_timeout: Duration::from_secs(30),
        subscribe: cfg.idle_subscribe,
        held: Some(held.clone()),
        progress: cfg.progress,
    };
    let before = procstat::sample(pid).ok();
    let run = conn::run(&conn_cfg);
    tokio::pin!(run);
    let (outcome, after) = tokio::select! {
        // Finished without holding: it failed before connecting.
        outcome = &mut run => (outcome, None),
        () = held.notified() => {
            let settle = IDLE_RSS_SETTLE.min(cfg.duration / 2);
            let read = async {
                tokio::time::sleep(settle).await;
                procstat::sample(pid).ok()
            };
            tokio::join!(&mut run, read)
        }
    };
    let outcome = outcome.map_err(|e| e.to_string());
    let rss = match (before, after, &outcome) {
        (Some(b), Some(a), Ok(report)) => {
            Some(IdleRss::new(b.rss_kib, a.rss_kib, report.connected))
        }
        _ => None,
    };
    (outcome, rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(chat_pairs: usize) -> CompareConfig {
        CompareConfig {
            brokers: vec![BrokerKind::Mosquitto, BrokerKind::Parley],
            duration: Duration::from_secs(1),
            fan_in_publishers: 10,
            pairs: 10,
            rate: 500.0,
            payload_size: 64,
            idle_connections: 5000,
            conn_rate: 1000.0,
            idle_subscribe: true,
            chat_pairs,
            chat_rate: 100.0,
            step_rates: Vec::new(),
            paths: BrokerPaths {
                mosquitto_bin: "mosquitto".into(),
                rumqttd_bin: "rumqttd".into(),
                rumqttd_config: None,
                parley_bin: "parley".into(),
                parley_config: None,
                install: false,
            },
            work_dir: None,
            progress: false,
        }
    }

    #[test]
    fn chat_runs_against_parley_only() {
        let cfg = config(50);
        assert!(!scenarios(&cfg, BrokerKind::Mosquitto).contains(&ScenarioName::Chat));
        assert!(!scenarios(&cfg, BrokerKind::Rumqttd).contains(&ScenarioName::Chat));
        assert_eq!(
            scenarios(&cfg, BrokerKind::Parley),
            [
                ScenarioName::FanIn,
                ScenarioName::Pairs,
                ScenarioName::IdleConnections,
                ScenarioName::Chat
            ]
        );
        assert!(!scenarios(&config(0), BrokerKind::Parley).contains(&ScenarioName::Chat));
    }

    #[test]
    fn idle_connections_of_each_broker_come_from_addresses_of_their_own() {
        assert_eq!(idle_source_addrs(1, 0, 7).len(), 1);
        assert_eq!(idle_source_addrs(CONNS_PER_SOURCE_ADDR, 0, 7).len(), 1);
        let addrs = idle_source_addrs(15_000, 1, 7);
        assert_eq!(addrs.len(), 3);
        assert_eq!(addrs.for_connection(2).to_string(), "127.101.7.3");
        assert_eq!(idle_source_addrs(CONNS_PER_SOURCE_ADDR + 1, 0, 7).len(), 2);
        let first = idle_source_addrs(15_000, 0, 300);
        let second = idle_source_addrs(15_000, 1, 300);
        assert!(
            first.addrs().iter().all(|a| !second.addrs().contains(a)),
            "two brokers of one run share no address"
        );
        assert_ne!(
            idle_source_addrs(15_000, 0, 300).addrs(),
            idle_source_addrs(15_000, 0, 300 + 120).addrs(),
            "a run two minutes later uses other addresses"
        );
    }

    #[test]
    fn rss_per_connection_is_the_growth_over_connections() {
        let rss = IdleRss::new(10_000, 40_000, 15_000);
        assert_eq!(rss.per_connection_kib, Some(2.0));
        assert_eq!(
            IdleRss::new(10_000, 9_000, 10).per_connection_kib,
            Some(0.0)
        );
        assert_eq!(IdleRss::new(10_000, 20_000, 0).per_connection_kib, None);
    }

    #[test]
    fn sign_up_covers_chat_users_but_not_idle_connections() {
        // 50 chat pairs are 100 users; the 5000 idle connections share one.
        assert_eq!(users_needed(&config(50)), 100);
        assert_eq!(users_needed(&config(0)), 20);
        let shared = shared_login(&Credentials::PerClient {
            prefix: USER_PREFIX.into(),
            password: USER_PASSWORD.into(),
        });
        assert_eq!(shared.logins(5000).len(), 1);
        assert_eq!(
            shared.login(4999).map(|l| l.username),
            Some(format!("{USER_PREFIX}0"))
        );
        assert_eq!(
            shared_login(&Credentials::Anonymous),
            Credentials::Anonymous
        );
    }
}
