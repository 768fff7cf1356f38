//! The command line of `parley-bench` (clap derive): subcommands `conn`,
//! `pubsub` and `compare`, their flags, and the value parsers they share.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::compare::brokers::BrokerKind;
use crate::mqtt::{MqttVersion, Qos};
use crate::scenario::chat::layout::Layout;
use crate::scenario::chat::ChatClient;
use crate::scenario::plan::Mode;
use crate::scenario::sessions::SessionLayout;
use crate::source_addr::SourceAddrs;

/// An MQTT load generator for any broker, and Parley's comparison runner.
#[derive(Debug, Parser)]
#[command(name = "parley-bench", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Worker threads of the bench's async runtime [default: one per core].
    #[arg(long, global = true, value_parser = parse_count)]
    pub threads: Option<usize>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open N connections at a given rate and hold them (connection load).
    Conn(ConnArgs),
    /// Publish/subscribe load: fan-in, fan-out or pairs.
    Pubsub(PubsubArgs),
    /// Parley chat load: users in 1:1 pairs or groups sending durable messages.
    Chat(ChatArgs),
    /// Persistent sessions: set up N offline sessions, queue QoS 1 messages
    /// for them, then resume them all at once and drain.
    Sessions(SessionsArgs),
    /// Run the same scenarios against Mosquitto, rumqttd and Parley, one at a
    /// time on loopback ports, sampling each broker's memory and CPU.
    Compare(CompareArgs),
}

/// Where the broker is and how clients connect to it.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Broker host.
    #[arg(short = 'H', long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker MQTT port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT protocol version: 4 (3.1.1) or 5.
    #[arg(short = 'V', long = "mqtt-version", default_value = "4")]
    pub mqtt_version: MqttVersion,
    /// Keep-alive interval (e.g. 60s; 0s disables pings).
    #[arg(short = 'k', long, default_value = "60s", value_parser = parse_duration)]
    pub keepalive: Duration,
    /// Client ids are `{prefix}-{run}-{role}{i}`.
    #[arg(long, default_value = "parley-bench")]
    pub client_id_prefix: String,
    /// Time allowed for TCP connect plus CONNACK (and SUBACK for subscribers).
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub connect_timeout: Duration,
    /// Login flags.
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// Who the clients log in as.
#[derive(Debug, Clone, Default, Args)]
pub struct CredentialArgs {
    /// One username for every connection.
    #[arg(short = 'u', long, conflicts_with = "user_prefix")]
    pub username: Option<String>,
    /// Password for --username, or for every --user-prefix user.
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    /// One user per connection: connection i logs in as `{prefix}{i}`.
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// Create the users first: POST {url}/v1/users with {"username","password"}
    /// for each (201 created and 409 already taken both count as ready).
    #[arg(long, value_name = "URL")]
    pub signup_url: Option<String>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct OutputArgs {
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Flags of `parley-bench conn`.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Broker and login flags.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Connections to open.
    #[arg(short = 'c', long, default_value_t = 100, value_parser = parse_count)]
    pub count: usize,
    /// Connection attempts per second.
    #[arg(short = 'R', long, default_value_t = 100.0, value_parser = parse_rate)]
    pub rate: f64,
    /// How long to hold the connections after the last one opened.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Source addresses to bind, round-robin: e.g. 127.0.0.1-127.0.0.20 or
    /// 127.0.0.1,127.0.0.2 (lifts the ~28k connections per address limit).
    #[arg(long, value_name = "ADDRS")]
    pub source_ips: Option<SourceAddrs>,
    /// After CONNACK, each connection subscribes (QoS 1) to
    /// `bench/idle/{client_id}` and waits for its SUBACK before holding; a
    /// refused subscription fails that connection.
    #[arg(long)]
    pub subscribe: bool,
    /// Output flags.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Flags of `parley-bench pubsub`.
#[derive(Debug, Clone, Args)]
pub struct PubsubArgs {
    /// Broker and login flags.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// fan-in: N publishers -> 1 subscriber; fan-out: 1 publisher -> N
    /// subscribers; pairs: N publisher/subscriber pairs.
    #[arg(short = 'm', long, value_enum, default_value_t = Mode::Pairs)]
    pub mode: Mode,
    /// N: publishers (fan-in), subscribers (fan-out) or pairs (pairs).
    #[arg(short = 'n', long, default_value_t = 10, value_parser = parse_count)]
    pub clients: usize,
    /// QoS of publishes and subscriptions: 0, 1 or 2.
    #[arg(short = 'q', long, default_value = "1")]
    pub qos: Qos,
    /// Payload size in bytes (at least 24: the timestamp header).
    #[arg(short = 's', long, default_value_t = 64)]
    pub payload_size: usize,
    /// Messages per second per publisher.
    #[arg(short = 'r', long, default_value_t = 10.0, value_parser = parse_rate)]
    pub rate: f64,
    /// How long to publish.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Topics are `{prefix}/{run}/...`.
    #[arg(long, default_value = "bench")]
    pub topic_prefix: String,
    /// Most QoS 1/2 publishes in flight per publisher.
    #[arg(long, default_value_t = 100)]
    pub inflight: u16,
    /// How long to wait for outstanding acks and deliveries after publishing.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Output flags.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Flags of `parley-bench sessions`.
#[derive(Debug, Clone, Args)]
pub struct SessionsArgs {
    /// Broker and login flags.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Persistent sessions (clean session 0, MQTT 3.1.1).
    #[arg(short = 'n', long, default_value_t = 1_000, value_parser = parse_count)]
    pub sessions: usize,
    /// QoS 1 messages published while the sessions are offline (0: none).
    #[arg(short = 'M', long, default_value_t = 100)]
    pub messages: usize,
    /// shared: every session subscribes to one topic (each message queued N
    /// times); own: each to its own topic (message i to session i mod N).
    #[arg(long, value_enum, default_value_t = SessionLayout::Shared)]
    pub layout: SessionLayout,
    /// Payload size in bytes.
    #[arg(short = 's', long, default_value_t = 64)]
    pub payload_size: usize,
    /// Publishes awaiting PUBACK at once.
    #[arg(long, default_value_t = 100, value_parser = parse_count)]
    pub inflight: usize,
    /// Connections open at once while setting the sessions up.
    #[arg(long, default_value_t = 1_000, value_parser = parse_count)]
    pub concurrency: usize,
    /// Sessions resuming at once (the reconnect storm).
    #[arg(long, default_value_t = 10_000, value_parser = parse_count)]
    pub resume_concurrency: usize,
    /// Source addresses to bind, round-robin (e.g. 127.0.1.1-127.0.1.250).
    #[arg(long, value_name = "ADDRS")]
    pub source_ips: Option<SourceAddrs>,
    /// The broker's process id: its RSS is sampled between the phases.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Stop after storing (the sessions stay offline).
    #[arg(long)]
    pub no_resume: bool,
    /// Output flags.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Flags of `parley-bench chat`.
///
/// User i is `{--user-prefix}{i}` [default: `bench-user-{i}` with password
/// `bench-password`]. The users are signed up first over Parley's HTTP API
/// (`--signup-url`, default `http://{host}:8080`); users that already exist
/// are reused after a log-in check. `--no-signup` skips that step.
#[derive(Debug, Clone, Args)]
#[command(after_help = CHAT_AFTER_HELP)]
pub struct ChatArgs {
    /// Broker and login flags.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Don't sign users up (or check their passwords) before connecting.
    #[arg(long, conflicts_with = "signup_url")]
    pub no_signup: bool,
    /// 1:1 pairs: direct conversations of two users [default: 10 pairs].
    #[arg(long, value_parser = parse_count, conflicts_with_all = ["group_size", "groups"])]
    pub pairs: Option<usize>,
    /// Members per group (with --groups).
    #[arg(long, value_parser = parse_count, requires = "groups")]
    pub group_size: Option<usize>,
    /// Number of groups (with --group-size).
    #[arg(long, value_parser = parse_count, requires = "group_size")]
    pub groups: Option<usize>,
    /// Sending members per conversation (the first ones).
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub senders: usize,
    /// Messages per second per sender.
    #[arg(short = 'r', long, default_value_t = 10.0, value_parser = parse_rate)]
    pub rate: f64,
    /// How long to send.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Text bytes per message.
    #[arg(short = 's', long, default_value_t = 64, value_parser = parse_count)]
    pub text_size: usize,
    /// Most messages awaiting PUBACK per connection.
    #[arg(long, default_value_t = 100)]
    pub inflight: u16,
    /// The MQTT client the users run on: `lean` (one task per user owns
    /// the socket, one write per wake-up) or `rumqttc`.
    #[arg(long, default_value_t = ChatClient::Lean)]
    pub client: ChatClient,
    /// How long to wait for outstanding acks and deliveries after sending.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// The MQTT ports of a cluster's nodes on --host (comma-separated):
    /// user i connects to the (i mod n)th, and deliveries are also split
    /// into same-node and cross-node ones [default: --port alone].
    #[arg(long, value_delimiter = ',', value_name = "PORTS")]
    pub node_ports: Vec<u16>,
    /// Count the cluster bus's records while senders send, from the Kafka
    /// cluster at these bootstrap servers (with --bus-topic, --bus-nodes).
    #[arg(long, value_name = "SERVERS", requires_all = ["bus_topic", "bus_nodes"])]
    pub bus_kafka: Option<String>,
    /// The cluster's broadcast bus topic (`[cluster.kafka] topic`).
    #[arg(long, value_name = "TOPIC")]
    pub bus_topic: Option<String>,
    /// The cluster's node ids (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub bus_nodes: Vec<u16>,
    /// Output flags.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl ChatArgs {
    /// The credential flags with the chat defaults filled in: one user per
    /// connection, and a sign-up URL unless `--no-signup`.
    pub fn credentials(&self) -> CredentialArgs {
        let mut c = self.broker.credentials.clone();
        if c.username.is_none() && c.user_prefix.is_none() {
            c.user_prefix = Some(DEFAULT_CHAT_USER_PREFIX.into());
            c.password
                .get_or_insert_with(|| DEFAULT_CHAT_PASSWORD.into());
        }
        if c.signup_url.is_none() && !self.no_signup {
            c.signup_url = Some(format!(
                "http://{}:{DEFAULT_PARLEY_HTTP_PORT}",
                self.broker.host
            ));
        }
        c
    }

    /// The conversation layout the flags ask for.
    pub fn layout(&self) -> Layout {
        match (self.group_size, self.groups, self.pairs) {
            (Some(size), Some(count), _) => Layout::Groups { size, count },
            (_, _, pairs) => Layout::Pairs {
                pairs: pairs.unwrap_or(DEFAULT_CHAT_PAIRS),
            },
        }
    }
}

/// Pairs of `chat` when neither --pairs nor --groups is given.
pub const DEFAULT_CHAT_PAIRS: usize = 10;

/// User prefix of `chat` when --user-prefix is not given.
pub const DEFAULT_CHAT_USER_PREFIX: &str = "bench-user-";

/// Password of `chat` users when --password is not given.
pub const DEFAULT_CHAT_PASSWORD: &str = "bench-password";

/// HTTP port of Parley's account API when --signup-url is not given.
pub const DEFAULT_PARLEY_HTTP_PORT: u16 = 8080;

const CHAT_AFTER_HELP: &str = "\
Measured: send->PUBACK latency (the message is stored durably before the
PUBACK), send->delivery latency at every member (the send time travels in the
client message id), delivered/expected counts, losses, duplicates, seq gaps
and server Error envelopes. Parley limits chat to 20 messages/s per user by
default; raise [chat] messages_per_sec and message_burst for load runs.
Parley hashes a user's password on sign-up and on its first connect (PBKDF2),
so the first run with hundreds of new users needs a longer --connect-timeout
(e.g. 120s for 200 users on two cores).

Examples:
  parley-bench chat --pairs 50 -r 100 -d 10s
  parley-bench chat --groups 10 --group-size 8 --senders 2 -r 20 --json
  parley-bench chat -p 1883 --user-prefix load- --password secret123 \\
      --signup-url http://127.0.0.1:8080";

/// Flags of `parley-bench compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Brokers to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mosquitto,rumqttd,parley"
    )]
    pub brokers: Vec<BrokerKind>,
    /// Length of each scenario (publishing time, or hold time for idle connections).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Publishers in the fan-in scenario.
    #[arg(long, default_value_t = 10, value_parser = parse_count)]
    pub fan_in_publishers: usize,
    /// Publisher/subscriber pairs in the pairs scenario.
    #[arg(long, default_value_t = 10, value_parser = parse_count)]
    pub pairs: usize,
    /// Messages per second per publisher (fan-in and pairs).
    #[arg(short = 'r', long, default_value_t = 500.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Payload size in bytes.
    #[arg(short = 's', long, default_value_t = 64)]
    pub payload_size: usize,
    /// Connections in the idle-connections scenario.
    #[arg(long, default_value_t = 1000, value_parser = parse_count)]
    pub idle_connections: usize,
    /// Connection attempts (CONNECTs) per second in the idle-connections
    /// scenario; its CONNACK p50/p99 are measured at this rate.
    #[arg(long, default_value_t = 500.0, value_parser = parse_rate)]
    pub conn_rate: f64,
    /// Idle connections don't subscribe. By default each one subscribes (QoS 1)
    /// to `bench/idle/{client_id}` after CONNACK and waits for its SUBACK.
    #[arg(long)]
    pub no_idle_subscribe: bool,
    /// 1:1 pairs in the chat scenario, run against Parley only (0 skips it).
    #[arg(long, default_value_t = 50)]
    pub chat_pairs: usize,
    /// Chat messages per second per sender (one sender per pair).
    #[arg(long, default_value_t = 100.0, value_parser = parse_rate)]
    pub chat_rate: f64,
    /// After the other scenarios, step fan-in and pairs through these rates
    /// per publisher (ascending), stopping a broker's steps at the first that
    /// loses a message, errs or delivers under 95% of the offered rate; the
    /// highest passing step is the broker's ceiling. Empty: no steps.
    #[arg(long, value_delimiter = ',', value_parser = parse_rate)]
    pub step_rates: Vec<f64>,
    /// Mosquitto binary.
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    pub mosquitto_bin: PathBuf,
    /// rumqttd binary (installed with `cargo install rumqttd --locked --root bench/out/tools` if missing).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/out/tools/bin/rumqttd"))]
    pub rumqttd_bin: PathBuf,
    /// rumqttd's stock rumqttd.toml to derive the config from [default: the
    /// one in the rumqttd crate source under $CARGO_HOME/registry/src].
    #[arg(long)]
    pub rumqttd_config: Option<PathBuf>,
    /// Parley binary [default: $CARGO_TARGET_DIR/release/parley, else
    /// target/release/parley in this workspace].
    #[arg(long)]
    pub parley_bin: Option<PathBuf>,
    /// Parley configuration file; listen addresses and data dir are overridden
    /// [default: a generated one allowing readwrite on bench/#].
    #[arg(long)]
    pub parley_config: Option<PathBuf>,
    /// Don't install missing brokers (apt-get for Mosquitto, cargo install for rumqttd); skip them.
    #[arg(long)]
    pub no_install: bool,
    /// Where broker configs, data and logs go [default: a temporary directory].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Output flags.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Parses a duration like `10s`, `500ms` or `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 10s, 500ms, 2m"))
}

/// Parses a duration that must be longer than zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("duration must be longer than zero".into()),
        d => Ok(d),
    }
}

/// Parses a positive, finite rate per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "invalid rate {s:?}; use a positive number per second"
        )),
    }
}

/// Parses a count of at least one.
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "invalid count {s:?}; use a whole number of at least 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("parley-bench").chain(args.iter().copied()))
    }

    #[test]
    fn conn_defaults_and_flags() {
        let Command::Conn(a) = parse(&["conn"]).unwrap().command else {
            panic!("expected conn")
        };
        assert_eq!((a.broker.host.as_str(), a.broker.port), ("127.0.0.1", 1883));
        assert_eq!(a.broker.mqtt_version, MqttVersion::V4);
        assert_eq!(
            (a.count, a.rate, a.hold),
            (100, 100.0, Duration::from_secs(10))
        );
        assert!(a.source_ips.is_none() && !a.output.json && !a.subscribe);

        let Command::Conn(a) = parse(&[
            "conn",
            "-c",
            "5000",
            "-R",
            "250",
            "--hold",
            "1m",
            "--source-ips",
            "127.0.0.1-127.0.0.20",
            "-V",
            "5",
            "--subscribe",
            "--json",
        ])
        .unwrap()
        .command
        else {
            panic!("expected conn")
        };
        assert_eq!(
            (a.count, a.rate, a.hold),
            (5000, 250.0, Duration::from_secs(60))
        );
        assert_eq!(a.source_ips.map(|s| s.len()), Some(20));
        assert_eq!(a.broker.mqtt_version, MqttVersion::V5);
        assert!(a.output.json && a.subscribe);
    }

    #[test]
    fn pubsub_flags() {
        let Command::Pubsub(a) = parse(&[
            "pubsub",
            "--mode",
            "fan-in",
            "-n",
            "50",
            "-q",
            "2",
            "-s",
            "256",
            "-r",
            "100",
            "-d",
            "30s",
            "--user-prefix",
            "u",
            "--password",
            "pw",
            "--signup-url",
            "http://127.0.0.1:8080",
        ])
        .unwrap()
        .command
        else {
            panic!("expected pubsub")
        };
        assert_eq!(a.mode, Mode::FanIn);
        assert_eq!(
            (a.clients, a.qos, a.payload_size),
            (50, Qos::ExactlyOnce, 256)
        );
        assert_eq!((a.rate, a.duration), (100.0, Duration::from_secs(30)));
        assert_eq!(a.broker.credentials.user_prefix.as_deref(), Some("u"));
        assert_eq!(
            a.broker.credentials.signup_url.as_deref(),
            Some("http://127.0.0.1:8080")
        );
        for mode in ["fan-out", "pairs"] {
            assert!(parse(&["pubsub", "--mode", mode]).is_ok(), "{mode}");
        }
    }

    #[test]
    fn rejects_bad_values() {
        let kind = |args: &[&str]| parse(args).map(|_| ()).unwrap_err().kind();
        assert_eq!(kind(&["pubsub", "-q", "3"]), ErrorKind::ValueValidation);
        assert_eq!(
            kind(&["pubsub", "--mode", "fan-around"]),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            kind(&["pubsub", "--mqtt-version", "3"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(kind(&["pubsub", "-r", "0"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["pubsub", "-d", "0s"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["conn", "-c", "0"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["conn", "--hold", "ten"]), ErrorKind::ValueValidation);
        assert_eq!(
            kind(&["conn", "--source-ips", "127.0.0.9-127.0.0.1"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            kind(&["conn", "--username", "a", "--user-prefix", "b"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            kind(&["compare", "--brokers", "mosquitto,emqx"]),
            ErrorKind::InvalidValue
        );
    }

    fn chat(args: &[&str]) -> ChatArgs {
        let argv: Vec<&str> = std::iter::once("chat")
            .chain(args.iter().copied())
            .collect();
        match parse(&argv).unwrap().command {
            Command::Chat(a) => a,
            other => panic!("expected chat, got {other:?}"),
        }
    }

    #[test]
    fn chat_defaults_fill_in_users_and_signup() {
        let a = chat(&[]);
        assert_eq!(
            a.layout(),
            Layout::Pairs {
                pairs: DEFAULT_CHAT_PAIRS
            }
        );
        assert_eq!((a.senders, a.rate, a.text_size), (1, 10.0, 64));
        assert_eq!(a.duration, Duration::from_secs(10));
        let c = a.credentials();
        assert_eq!(c.user_prefix.as_deref(), Some(DEFAULT_CHAT_USER_PREFIX));
        assert_eq!(c.password.as_deref(), Some(DEFAULT_CHAT_PASSWORD));
        assert_eq!(c.signup_url.as_deref(), Some("http://127.0.0.1:8080"));

        let a = chat(&[
            "-H",
            "127.0.0.2",
            "--no-signup",
            "--user-prefix",
            "load-",
            "-P",
            "secret123",
        ]);
        let c = a.credentials();
        assert_eq!(c.signup_url, None);
        assert_eq!(
            (c.user_prefix.as_deref(), c.password.as_deref()),
            (Some("load-"), Some("secret123"))
        );
        let a = chat(&["--signup-url", "http://127.0.0.1:9090"]);
        assert_eq!(
            a.credentials().signup_url.as_deref(),
            Some("http://127.0.0.1:9090")
        );
    }

    #[test]
    fn chat_layouts_and_load() {
        let a = chat(&[
            "--pairs", "500", "-r", "20", "-d", "30s", "-s", "200", "--json",
        ]);
        assert_eq!(a.layout(), Layout::Pairs { pairs: 500 });
        assert_eq!(a.layout().users(), 1000);
        assert_eq!((a.rate, a.text_size), (20.0, 200));
        assert_eq!(a.duration, Duration::from_secs(30));
        assert!(a.output.json);
        assert_eq!(a.client, ChatClient::Lean);
        let a = chat(&["--groups", "4", "--group-size", "8", "--senders", "3"]);
        assert_eq!(a.layout(), Layout::Groups { size: 8, count: 4 });
        assert_eq!((a.layout().users(), a.senders), (32, 3));
        assert_eq!(chat(&["--client", "rumqttc"]).client, ChatClient::Rumqttc);
        let cli = Cli::try_parse_from(["parley-bench", "chat", "--threads", "1"]).unwrap();
        assert_eq!(cli.threads, Some(1));
    }

    #[test]
    fn chat_rejects_bad_combinations() {
        let kind = |args: &[&str]| {
            let argv: Vec<&str> = std::iter::once("chat")
                .chain(args.iter().copied())
                .collect();
            parse(&argv).map(|_| ()).unwrap_err().kind()
        };
        assert_eq!(
            kind(&["--pairs", "3", "--groups", "2", "--group-size", "4"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(kind(&["--groups", "2"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            kind(&["--group-size", "2"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(kind(&["--pairs", "0"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["-r", "0"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["-d", "0s"]), ErrorKind::ValueValidation);
        assert_eq!(
            kind(&["--no-signup", "--signup-url", "http://127.0.0.1:8080"]),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn help_documents_chat() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let top = cli.render_long_help().to_string();
        assert!(top.contains("chat"), "{top}");
        let chat = cli
            .find_subcommand_mut("chat")
            .expect("chat subcommand")
            .render_long_help()
            .to_string();
        for flag in [
            "--pairs",
            "--groups",
            "--group-size",
            "--senders",
            "--rate",
            "--no-signup",
            "--client",
            "--json",
        ] {
            assert!(
                chat.contains(flag),
                "{flag} missing from chat --help:\n{chat}"
            );
        }
        assert!(chat.contains("send->PUBACK"), "{chat}");
    }

    #[test]
    fn compare_defaults() {
        let Command::Compare(a) = parse(&["compare"]).unwrap().command else {
            panic!("expected compare")
        };
        assert_eq!(
            a.brokers,
            [
                BrokerKind::Mosquitto,
                BrokerKind::Rumqttd,
                BrokerKind::Parley
            ]
        );
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!((a.fan_in_publishers, a.pairs, a.payload_size), (10, 10, 64));
        assert_eq!((a.chat_pairs, a.chat_rate), (50, 100.0));
        assert!(!a.no_idle_subscribe);
        assert_eq!(a.parley_bin, None);
        assert!(a.rumqttd_bin.ends_with("out/tools/bin/rumqttd"));
        let Command::Compare(a) = parse(&[
            "compare",
            "--brokers",
            "rumqttd",
            "-d",
            "3s",
            "--idle-connections",
            "15000",
            "--conn-rate",
            "5000",
            "--no-idle-subscribe",
        ])
        .unwrap()
        .command
        else {
            panic!("expected compare")
        };
        assert_eq!(a.brokers, [BrokerKind::Rumqttd]);
        assert_eq!(a.duration, Duration::from_secs(3));
        assert_eq!((a.idle_connections, a.conn_rate), (15_000, 5000.0));
        assert!(a.no_idle_subscribe);
    }
}
