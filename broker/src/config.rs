//! Parley's configuration: defaults, a TOML file, `PARLEY_*` environment
//! variables and command-line flags, merged in that order (later wins).
//!
//! Environment variables name nested keys with `__`, e.g.
//! `PARLEY_MQTT__TCP=0.0.0.0:1884` or `PARLEY_AUTH__JWT_SECRET=...`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chat_core::rules::AclRuleConfig;
use clap::Parser;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use crate::push::PushConfig;

pub use crate::media::config::MediaConfig;

mod security;
pub use security::{AccountsConfig, ListenersConfig, LoginConfig, MetricsConfig, SignUpMode};

/// Command-line flags of the `parley` binary. Flags override the file and the environment.
#[derive(Debug, Clone, Default, Parser, Serialize)]
#[command(
    name = "parley",
    version,
    about = "Parley: an MQTT-first messaging broker with chat semantics"
)]
pub struct Cli {
    /// TOML configuration file (see deploy/parley.toml for every key and its default).
    #[arg(short, long, env = "PARLEY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store [default: ./data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Node id of this Parley process within a cluster [default: 0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u16>,
    /// MQTT over TCP listen address, or "off" [default: 0.0.0.0:1883].
    #[arg(long)]
    #[serde(skip)]
    pub mqtt_tcp: Option<Listen>,
    /// MQTT over WebSocket listen address, or "off" [default: 0.0.0.0:8083].
    #[arg(long)]
    #[serde(skip)]
    pub mqtt_ws: Option<Listen>,
    /// HTTP API listen address [default: 0.0.0.0:8080].
    #[arg(long)]
    #[serde(skip)]
    pub http: Option<Listen>,
    /// Log filter in `tracing` EnvFilter syntax [default: info].
    #[arg(long)]
    #[serde(skip)]
    pub log: Option<String>,
    /// Load and validate the configuration (file, environment, flags), print
    /// the result as TOML with secrets redacted, and exit: 0 if valid, 2 if not.
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,
}

/// A listen address that can be switched off with `"off"` (or an empty string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Listen(pub Option<SocketAddr>);

impl Listen {
    /// A listener on `addr`.
    pub fn on(addr: SocketAddr) -> Listen {
        Listen(Some(addr))
    }
    /// A disabled listener.
    pub fn off() -> Listen {
        Listen(None)
    }
}

impl TryFrom<String> for Listen {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("off") {
            return Ok(Listen(None));
        }
        s.parse::<SocketAddr>()
            .map(|a| Listen(Some(a)))
            .map_err(|e| format!("invalid listen address {s:?} ({e}); use host:port or \"off\""))
    }
}

impl From<Listen> for String {
    fn from(l: Listen) -> String {
        l.to_string()
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("off"),
        }
    }
}

/// The whole configuration of one Parley node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Node id within a cluster (0 on a single node); no two live nodes may
    /// share one (on PostgreSQL a lease enforces it, see [`crate::node_lease`]).
    pub node_id: u16,
    /// Directory of the embedded store, of generated secrets and of the
    /// node's instance id; one per node.
    pub data_dir: PathBuf,
    /// Which store keeps users, conversations and history.
    pub storage: StorageConfig,
    /// How the nodes of a cluster deliver to each other's clients.
    pub cluster: ClusterConfig,
    /// MQTT listeners and protocol limits.
    pub mqtt: MqttConfig,
    /// The HTTP side (account API, health).
    pub http: HttpConfig,
    /// Passwords and access tokens.
    pub auth: AuthConfig,
    /// Chat limits.
    pub chat: ChatConfig,
    /// Connection, traffic and publish rate limits.
    pub limits: LimitsConfig,
    /// The end-to-end encryption key directory.
    pub keys: KeysConfig,
    /// The admin HTTP API.
    pub admin: AdminConfig,
    /// Push notifications to devices without a live session; off by default.
    pub push: PushConfig,
    /// Media uploads and downloads through presigned S3 URLs.
    pub media: MediaConfig,
    /// Log-in throttling.
    pub login: LoginConfig,
    /// Who may sign up, and how fast.
    pub accounts: AccountsConfig,
    /// Timeouts and per-address connection caps of every listener.
    pub listeners: ListenersConfig,
    /// Who may read `/metrics`.
    pub metrics: MetricsConfig,
    /// Plain-MQTT topic ACL rules (outside the chat namespace); deny by default.
    pub acl: Vec<AclRuleConfig>,
    /// Logging.
    pub log: LogConfig,
    /// The async runtime's threads.
    pub runtime: RuntimeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 0,
            data_dir: PathBuf::from("./data"),
            storage: StorageConfig::default(),
            cluster: ClusterConfig::default(),
            mqtt: MqttConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            chat: ChatConfig::default(),
            limits: LimitsConfig::default(),
            keys: KeysConfig::default(),
            admin: AdminConfig::default(),
            push: PushConfig::default(),
            media: MediaConfig::default(),
            login: LoginConfig::default(),
            accounts: AccountsConfig::default(),
            listeners: ListenersConfig::default(),
            metrics: MetricsConfig::default(),
            acl: Vec::new(),
            log: LogConfig::default(),
            runtime: RuntimeConfig::default(),
        }
    }
}

/// Which store a node uses (`[storage]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The backend: `embedded` (one file in `data_dir`, a single node) or
    /// `postgres` (one PostgreSQL database shared by every node of a cluster).
    pub backend: StorageBackend,
    /// The PostgreSQL backend's settings (used when `backend = "postgres"`).
    pub postgres: PostgresStorageConfig,
    /// Where message history lives: `backend` (with everything else) or
    /// `scylla` (a Scylla or Cassandra cluster; metadata stays in `backend`).
    pub history: HistoryBackend,
    /// The Scylla history store's settings (used when `history = "scylla"`).
    pub scylla: ScyllaStorageConfig,
    /// Embedded store: the longest time, in milliseconds, between two durable
    /// commits of the database itself (checkpoints); history batches in between
    /// are durable in the history log (docs/storage.md).
    pub history_checkpoint_ms: u64,
    /// Embedded store: a checkpoint is also made once the history log has
    /// grown by this many bytes since the last one.
    pub history_checkpoint_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let checkpoint = persistence::embedded::HistoryCheckpoint::default();
        StorageConfig {
            backend: StorageBackend::default(),
            postgres: PostgresStorageConfig::default(),
            history: HistoryBackend::default(),
            scylla: ScyllaStorageConfig::default(),
            history_checkpoint_ms: u64::try_from(checkpoint.interval.as_millis())
                .unwrap_or(u64::MAX),
            history_checkpoint_bytes: checkpoint.bytes,
        }
    }
}

impl StorageConfig {
    /// The embedded store's options from `[storage]`.
    pub fn embedded_options(&self) -> persistence::embedded::EmbeddedOptions {
        persistence::embedded::EmbeddedOptions {
            history_checkpoint: persistence::embedded::HistoryCheckpoint {
                interval: std::time::Duration::from_millis(self.history_checkpoint_ms),
                bytes: self.history_checkpoint_bytes,
            },
        }
    }
}

/// Where message history is kept.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HistoryBackend {
    /// In the store `storage.backend` names.
    #[default]
    Backend,
    /// In a Scylla (or Cassandra) cluster.
    Scylla,
}

/// `[storage.scylla]`: the Scylla cluster holding history.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScyllaStorageConfig {
    /// Comma-separated `host:port` contact points; the driver finds the rest.
    pub nodes: String,
    /// The keyspace (created with its tables if missing).
    pub keyspace: String,
    /// The local datacenter: preferred for requests and, when Parley creates
    /// the keyspace, replicated with `NetworkTopologyStrategy`. Empty: none
    /// (`SimpleStrategy`).
    pub datacenter: String,
    /// Replicas per row when Parley creates the keyspace.
    pub replication_factor: u32,
    /// User name, if the cluster requires authentication (empty: none).
    pub username: String,
    /// Password for `username`.
    pub password: String,
    /// Longest opening one connection may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest one CQL request may take, in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for ScyllaStorageConfig {
    fn default() -> Self {
        ScyllaStorageConfig {
            nodes: "127.0.0.1:9042".into(),
            keyspace: "parley".into(),
            datacenter: String::new(),
            replication_factor: 3,
            username: String::new(),
            password: String::new(),
            connect_timeout_ms: 5_000,
            request_timeout_ms: 5_000,
        }
    }
}

impl ScyllaStorageConfig {
    /// The driver settings these name; an error if one is out of range.
    pub fn driver_config(&self) -> anyhow::Result<persistence::scylla::ScyllaConfig> {
        use anyhow::Context;
        if self.connect_timeout_ms == 0 || self.request_timeout_ms == 0 {
            anyhow::bail!("connect_timeout_ms and request_timeout_ms must be at least 1");
        }
        if self.replication_factor == 0 {
            anyhow::bail!("replication_factor must be at least 1");
        }
        let nodes = self
            .nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty());
        let mut settings = persistence::scylla::ScyllaConfig::new(nodes)
            .context("nodes")?
            .keyspace(&self.keyspace)
            .context("keyspace")?
            .replication_factor(self.replication_factor)
            .connect_timeout(std::time::Duration::from_millis(self.connect_timeout_ms))
            .request_timeout(std::time::Duration::from_millis(self.request_timeout_ms));
        if !self.datacenter.is_empty() {
            settings = settings.datacenter(&self.datacenter);
        }
        if !self.username.is_empty() {
            settings = settings.credentials(&self.username, &self.password);
        }
        Ok(settings)
    }
}

impl fmt::Debug for ScyllaStorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaStorageConfig")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("datacenter", &self.datacenter)
            .field("replication_factor", &self.replication_factor)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish()
    }
}

/// A storage backend.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The embedded store in `data_dir` (redb); one node only.
    #[default]
    Embedded,
    /// A PostgreSQL database, shared by any number of nodes.
    Postgres,
}

/// `[storage.postgres]`: where the database is and how the pool behaves.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresStorageConfig {
    /// Connection string: a URL (`postgres://user:password@host:5432/parley`)
    /// or libpq's `key=value` form. Required with `backend = "postgres"`.
    pub url: String,
    /// Most connections this node's pool keeps open.
    pub max_connections: usize,
    /// Longest opening one connection may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest one store operation may take (waiting for a connection
    /// included), in milliseconds; slower ones fail as unavailable.
    pub operation_timeout_ms: u64,
    /// History writers appending batches in parallel, each for its share
    /// of the conversations (one transaction per batch of queued messages);
    /// 0 turns batching off (one transaction per message, and per read or
    /// delivered cursor move, which are otherwise batched too).
    pub history_writers: usize,
}

impl Default for PostgresStorageConfig {
    fn default() -> Self {
        PostgresStorageConfig {
            url: String::new(),
            max_connections: 16,
            connect_timeout_ms: 5_000,
            operation_timeout_ms: 30_000,
            history_writers: 4,
        }
    }
}

impl fmt::Debug for PostgresStorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PostgresStorageConfig")
            .field(
                "url",
                &if self.url.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("max_connections", &self.max_connections)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("operation_timeout_ms", &self.operation_timeout_ms)
            .field("history_writers", &self.history_writers)
            .finish()
    }
}

/// `[cluster]`: how several nodes act as one service (see `docs/cluster.md`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The bus carrying deliveries between nodes: `none` (each node delivers
    /// to its own clients only) or `kafka`.
    pub bus: BusKind,
    /// How long a node's lease on its `node_id` lasts without renewal, in
    /// milliseconds (with `storage.backend = "postgres"`; see
    /// [`crate::node_lease`]). The node renews it every third of that; a node
    /// killed without shutting down keeps its id from other processes this
    /// long.
    pub node_lease_ttl_ms: u64,
    /// How long after a user's last session anywhere in the cluster ended
    /// they are shown offline, in milliseconds; a session that comes back
    /// within it shows nothing (with a bus; a single node publishes at once).
    pub presence_offline_delay_ms: u64,
    /// How long a connection waits for the node holding its persistent
    /// session to hand it over, in milliseconds (with `storage.backend =
    /// "postgres"`); past it the CONNECT is refused with Server Unavailable
    /// and the client may retry. A session of a node whose lease expired is
    /// taken without waiting.
    pub session_handover_timeout_ms: u64,
    /// How often a node looks for sessions another node asked it for, and a
    /// waiting connection looks whether its session arrived, in milliseconds.
    pub session_handover_poll_ms: u64,
    /// A fan-out to at least this many users' topics (a message to a group
    /// of this many members) is broadcast to every node instead of going
    /// only to the nodes that hold its recipients; 0 broadcasts every
    /// fan-out, as nodes without targeted delivery do. See
    /// [`crate::targeting`].
    pub broadcast_min_recipients: usize,
    /// How long, in milliseconds, a node keeps the fan-outs it sent only to
    /// some nodes, to send them again to a node where one of their
    /// recipients' sessions becomes known later (a client that just
    /// connected there, whose claim this node had not consumed yet); 0
    /// keeps none. Longer than the bus's delivery delay.
    pub join_replay_ms: u64,
    /// At most this many bytes (topics and payloads) of those fan-outs; the
    /// oldest go first, counted in `parley_cluster_bus_replay_overflowed_total`.
    pub join_replay_max_bytes: usize,
    /// The Kafka bus's settings (used when `bus = "kafka"`).
    pub kafka: KafkaBusConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            bus: BusKind::default(),
            node_lease_ttl_ms: 30_000,
            presence_offline_delay_ms: 5_000,
            session_handover_timeout_ms: 5_000,
            session_handover_poll_ms: 100,
            broadcast_min_recipients: 512,
            join_replay_ms: 5_000,
            join_replay_max_bytes: 64 * 1024 * 1024,
            kafka: KafkaBusConfig::default(),
        }
    }
}

/// A cluster bus.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// No bus: a single node, or nodes that share storage but deliver live
    /// only to their own clients.
    #[default]
    None,
    /// A Kafka-protocol log (Kafka, Redpanda, ...).
    Kafka,
}

/// `[cluster.kafka]`: the Kafka bus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaBusConfig {
    /// Comma-separated `host:port` list of brokers to bootstrap from.
    pub bootstrap_servers: String,
    /// The topic carrying deliveries (created if missing).
    pub topic: String,
    /// Partitions of the topic when Parley creates it; records with one key
    /// (a conversation, or a user for presence) stay in one partition.
    pub partitions: u32,
    /// Replication factor of the topic when Parley creates it; unset leaves
    /// it to the Kafka cluster's `default.replication.factor`.
    pub replication_factor: Option<u16>,
    /// Whether a node creates the topic when it is missing (otherwise it
    /// must exist before the first node starts).
    pub create_topic: bool,
    /// Longest one bus operation may wait for Kafka (a publish's
    /// acknowledgement, subscribing, a commit), in milliseconds.
    pub timeout_ms: u64,
    /// The largest Kafka record a node produces, key and value included
    /// (librdkafka's `message.max.bytes`); the topic's `max.message.bytes`
    /// on the brokers must allow it. A fan-out too big for one record is
    /// split; `chat.max_message_bytes` must fit in one.
    pub max_record_bytes: usize,
}

impl Default for KafkaBusConfig {
    fn default() -> Self {
        KafkaBusConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: "parley.deliveries".into(),
            partitions: 12,
            replication_factor: None,
            create_topic: true,
            timeout_ms: 30_000,
            max_record_bytes: persistence::kafka::config::DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// MQTT listeners and protocol limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// MQTT 3.1.1 and 5 over TCP.
    pub tcp: Listen,
    /// MQTT over WebSocket (sub-protocol `mqtt`).
    pub ws: Listen,
    /// HTTP path of the WebSocket endpoint.
    pub ws_path: String,
    /// MQTT over TLS; off unless a certificate and key are configured.
    pub tls: Option<TlsConfig>,
    /// Largest MQTT packet accepted from a client, in bytes.
    pub max_packet_size: usize,
    /// Time a new connection has to send CONNECT, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Largest keep-alive a client may ask for, in seconds (0 = no cap).
    /// Clients asking for more (or for 0) get this value (MQTT 5: Server Keep Alive).
    pub max_keep_alive_secs: u16,
    /// Maximum number of concurrent connections on this node.
    pub max_connections: usize,
    /// Longest client id accepted, in bytes (any UTF-8 is allowed).
    pub max_client_id_bytes: usize,
    /// Messages queued per session beyond those in flight; past it QoS 0
    /// messages are dropped first, then new QoS 1/2 ones (counted).
    pub max_queued_messages: usize,
    /// Bytes queued per session (same policy as `max_queued_messages`).
    pub max_queued_bytes: usize,
    /// Outgoing QoS 1/2 deliveries in flight per connection (also capped by
    /// the client's Receive Maximum).
    pub max_inflight: u16,
    /// Incoming QoS 2 publishes awaiting PUBREL per connection (the Receive
    /// Maximum announced to MQTT 5 clients).
    pub receive_maximum: u16,
    /// Topic aliases a client may set (Topic Alias Maximum; 0 = none).
    pub topic_alias_maximum: u16,
    /// Subscriptions one session may hold.
    pub max_subscriptions_per_client: usize,
    /// Retained messages one user may own.
    pub max_retained_per_user: usize,
    /// Bytes of retained messages one user may own.
    pub max_retained_bytes_per_user: usize,
    /// Longest session expiry granted, in seconds (also the lifetime of a
    /// 3.1.1 persistent session after its client left).
    pub max_session_expiry_secs: u32,
    /// Longest Will Delay honoured, in seconds.
    pub max_will_delay_secs: u32,
    /// Largest will (topic + payload + properties), in bytes.
    pub max_will_bytes: usize,
    /// Time a client has to finish a packet it started, in milliseconds,
    /// whatever its keep-alive.
    pub packet_timeout_ms: u64,
    /// Time a write to a client may stall (it does not read) before the
    /// connection is closed, in milliseconds, when its keep-alive does not
    /// give a shorter bound (1.5 x keep-alive).
    pub write_timeout_ms: u64,
    /// Longest a publisher is paused while a subscriber it feeds drains its
    /// queue, in milliseconds; after it, the queue bounds apply.
    pub max_publisher_pause_ms: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            tcp: Listen::on(([0, 0, 0, 0], 1883).into()),
            ws: Listen::on(([0, 0, 0, 0], 8083).into()),
            ws_path: "/mqtt".into(),
            tls: None,
            max_packet_size: 1024 * 1024,
            connect_timeout_ms: 10_000,
            max_keep_alive_secs: 0,
            max_connections: 1_000_000,
            max_client_id_bytes: 256,
            max_queued_messages: 1_000,
            max_queued_bytes: 8 * 1024 * 1024,
            max_inflight: 64,
            receive_maximum: 64,
            topic_alias_maximum: 64,
            max_subscriptions_per_client: 1_000,
            max_retained_per_user: 1_000,
            max_retained_bytes_per_user: 1024 * 1024,
            max_session_expiry_secs: 7 * 24 * 3600,
            max_will_delay_secs: 24 * 3600,
            max_will_bytes: 64 * 1024,
            packet_timeout_ms: 30_000,
            write_timeout_ms: 60_000,
            max_publisher_pause_ms: 10_000,
        }
    }
}

impl MqttConfig {
    /// The engine's bounds, from this configuration.
    pub fn router_config(&self) -> parley_engine::router::RouterConfig {
        parley_engine::router::RouterConfig {
            session: parley_engine::session::SessionLimits {
                max_queued_messages: self.max_queued_messages,
                max_queued_bytes: self.max_queued_bytes,
                max_inflight: self.max_inflight,
                receive_maximum: self.receive_maximum,
                topic_alias_maximum: self.topic_alias_maximum,
            },
            retained: parley_engine::retained::RetainedLimits {
                max_messages_per_owner: self.max_retained_per_user,
                max_bytes_per_owner: self.max_retained_bytes_per_user,
            },
            max_subscriptions_per_session: self.max_subscriptions_per_client,
            max_session_expiry_secs: self.max_session_expiry_secs,
            max_will_delay_secs: self.max_will_delay_secs,
        }
    }
}

/// The TLS listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Listen address [default: 0.0.0.0:8883].
    #[serde(default = "default_tls_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn default_tls_listen() -> SocketAddr {
    ([0, 0, 0, 0], 8883).into()
}

/// The HTTP side.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address of the HTTP API.
    pub listen: Listen,
    /// The built web client served at `/` (`npm run build` in `web/` makes
    /// it). When unset, the `web/dist` of the source tree Parley was built
    /// from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_dir: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Listen::on(([0, 0, 0, 0], 8080).into()),
            web_dir: None,
        }
    }
}

/// Passwords and access tokens.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HMAC secret for access tokens (at least 32 bytes). When unset, Parley generates one
    /// and keeps it in `{data_dir}/token.secret`, so tokens survive restarts.
    pub jwt_secret: Option<String>,
    /// Lifetime of an access token, in seconds.
    pub token_ttl_secs: u64,
    /// PBKDF2-HMAC-SHA256 iterations for new password hashes (at least 100000).
    pub pbkdf2_iterations: u32,
    /// Seconds a successfully verified password is remembered, so reconnects
    /// skip the slow hash (0 disables; only an in-memory keyed digest is kept).
    pub verified_cache_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: None,
            token_ttl_secs: 3600,
            pbkdf2_iterations: 100_000,
            verified_cache_secs: 300,
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("pbkdf2_iterations", &self.pbkdf2_iterations)
            .field("verified_cache_secs", &self.verified_cache_secs)
            .finish()
    }
}

/// Limits of the chat pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Largest chat envelope a client may publish, in bytes.
    pub max_message_bytes: usize,
    /// Longest text body, in characters.
    pub max_text_chars: usize,
    /// Most members a group may have.
    pub max_group_size: usize,
    /// Sustained messages per second per user.
    pub messages_per_sec: f64,
    /// Messages a user may send in a burst.
    pub message_burst: u32,
    /// Longest a message over `messages_per_sec` / `message_burst` is held
    /// for its token, in milliseconds. Within it the message waits (the
    /// connection's later publishes queue behind it, then its socket is not
    /// read) and is stored and acknowledged as usual; past it the message is
    /// refused with `RATE_LIMITED` (MQTT 5: PUBACK 0x97; 3.1.1: the
    /// connection is closed without PUBACK). 0 refuses at once.
    pub rate_limit_max_wait_ms: u64,
    /// Sustained typing indicators per second per user.
    pub typing_per_sec: f64,
    /// Typing indicators a user may send in a burst.
    pub typing_burst: u32,
    /// Sustained requests (`q/{user}`: sync, history, group changes) per
    /// second per user.
    pub requests_per_sec: f64,
    /// Requests a user may send in a burst (a reconnecting client syncing
    /// many conversations at once).
    pub request_burst: u32,
    /// Largest page of history or conversations a request may ask for.
    pub max_page: usize,
    /// Message requests and blocking: a stranger's first direct message is a
    /// request, and the sender gets no presence, typing, receipts or keys of
    /// the recipient until they accept; users can block each other (see
    /// docs/topics.md). Off: any message opens the conversation fully.
    pub message_requests: bool,
    /// Most messages of one connection on their way to disk at once: queued
    /// for the history's group commit, their acknowledgements still to come
    /// (in order). Beyond it the connection is not read until one is
    /// durable. 1 stores a connection's messages one commit at a time.
    pub max_pipelined_sends: usize,
    /// How long the cursors a sender's own messages move (read and
    /// delivered) are gathered before they are written, in milliseconds:
    /// one write per interval carries every sender's newest seq instead of
    /// one per commit. They are served from memory meanwhile. 0 writes as
    /// soon as the previous write is done.
    pub own_read_interval_ms: u64,
}

/// The largest `[chat] rate_limit_max_wait_ms` accepted: a client whose
/// message is held longer than its keep-alive may give up on the connection.
pub const MAX_RATE_LIMIT_WAIT_MS: u64 = 60_000;

/// The largest `[chat] max_pipelined_sends` accepted: the MQTT receive
/// maximum bounds a client's unacknowledged publishes at 65,535 anyway.
pub const MAX_PIPELINED_SENDS: usize = 65_535;

/// The largest `[chat] own_read_interval_ms` accepted: a sender's own
/// cursors lag the store at most this long (and are lost with the process).
pub const MAX_OWN_READ_INTERVAL_MS: u64 = 10_000;

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_message_bytes: 64 * 1024,
            max_text_chars: 16 * 1024,
            max_group_size: 1024,
            messages_per_sec: 20.0,
            message_burst: 50,
            rate_limit_max_wait_ms: 2_000,
            typing_per_sec: 2.0,
            typing_burst: 5,
            requests_per_sec: 20.0,
            request_burst: 100,
            max_page: 500,
            message_requests: true,
            max_pipelined_sends: 32,
            own_read_interval_ms: 50,
        }
    }
}

/// Rate limits outside the chat pipeline. A rate of 0 switches that limit off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained new MQTT connections per second from one source IP address
    /// (0 = unlimited). Refused with CONNACK 0x9F (MQTT 5) or 0x03 (3.1.1).
    pub connects_per_sec_per_ip: f64,
    /// Connections one source IP address may open in a burst.
    pub connect_burst_per_ip: u32,
    /// Sustained bytes per second a connection may send (0 = unlimited).
    /// Over it the connection is closed (MQTT 5: DISCONNECT 0x96).
    pub bytes_per_sec_per_connection: u64,
    /// Bytes a connection may send in a burst.
    pub bytes_burst: u64,
    /// Sustained plain (non-chat) PUBLISH packets per second per user, over
    /// all of the user's connections (0 = unlimited). Over it a publish is
    /// dropped (MQTT 5: PUBACK / PUBREC 0x97).
    pub publishes_per_sec_per_user: f64,
    /// Plain publishes a user may send in a burst.
    pub publish_burst_per_user: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            connects_per_sec_per_ip: 0.0,
            connect_burst_per_ip: 20,
            bytes_per_sec_per_connection: 0,
            bytes_burst: 2 * 1024 * 1024,
            publishes_per_sec_per_user: 0.0,
            publish_burst_per_user: 100,
        }
    }
}

/// The end-to-end encryption key directory (`/v1/keys/...`, see `docs/e2e.md`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// Most devices one user may publish keys for.
    pub max_devices_per_user: usize,
    /// Most one-time prekeys stored for one device.
    pub max_one_time_prekeys_per_device: u64,
    /// Sustained bundle fetches (`GET /v1/keys/users/{user}`) per second per
    /// caller (0 = unlimited). Each fetch uses up one-time prekeys, so this
    /// bounds how fast anyone can drain a device's pool. Over it: 429.
    pub bundle_fetches_per_sec_per_user: f64,
    /// Bundle fetches a caller may make in a burst.
    pub bundle_fetch_burst_per_user: u32,
    /// Sustained bundle fetches per second of one user's keys, by everyone
    /// else together (0 = unlimited), so that many accounts together cannot
    /// drain a device's one-time prekeys either. Over it: 429.
    pub bundle_fetches_per_sec_per_target: f64,
    /// Bundle fetches of one user's keys in a burst.
    pub bundle_fetch_burst_per_target: u32,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            max_devices_per_user: 10,
            max_one_time_prekeys_per_device: 1000,
            bundle_fetches_per_sec_per_user: 1.0,
            bundle_fetch_burst_per_user: 30,
            bundle_fetches_per_sec_per_target: 0.2,
            bundle_fetch_burst_per_target: 20,
        }
    }
}

/// The admin HTTP API (`/v1/admin/...`).
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token of the admin API, at least 32 bytes. When unset the admin
    /// API is off and answers 404.
    pub token: Option<String>,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` EnvFilter directives, e.g. `info` or `parley=debug,parley_engine=debug`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
        }
    }
}

/// The async runtime that serves connections and chat (`[runtime]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads; 0 (the default) is one per core plus one. The extra
    /// worker keeps a runtime thread ready to run while the history writer,
    /// the history applier or another process holds a core (on 2 cores at
    /// 50,000 chat messages/s it lowered the PUBACK p99 by about a sixth:
    /// bench/RESULTS.md). At most [`MAX_WORKER_THREADS`].
    pub worker_threads: usize,
}

/// Most runtime worker threads `[runtime] worker_threads` may ask for.
pub const MAX_WORKER_THREADS: usize = 1024;

impl RuntimeConfig {
    /// The number of worker threads to start on a machine with `cores` cores.
    pub fn worker_threads_for(&self, cores: usize) -> usize {
        match self.worker_threads {
            0 => cores.max(1) + 1,
            n => n,
        }
    }
}

/// Replaces secret values in a configuration tree by `<redacted>`.
fn redact(value: &mut toml::Value) {
    const REDACTED: &str = "<redacted>";
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table.iter_mut() {
                let secret = key.contains("secret")
                    || key.contains("password")
                    || key.ends_with("token")
                    || key == "access_key";
                match v {
                    toml::Value::String(s) if secret && !s.is_empty() => *s = REDACTED.into(),
                    toml::Value::String(s) => {
                        if let Some(hidden) = without_url_password(s) {
                            *s = hidden;
                        }
                    }
                    other => redact(other),
                }
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// `scheme://user:<redacted>@host...` for a URL with a password, else `None`.
fn without_url_password(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let (userinfo, host) = rest.split_once('@')?;
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:<redacted>@{host}"))
}

/// The shortest `cluster.node_lease_ttl_ms`: renewals every third of it
/// must have time to reach the store.
pub const MIN_NODE_LEASE_TTL_MS: u64 = 1_000;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config` does not exist.
    #[error("configuration file {0} not found")]
    FileNotFound(PathBuf),
    /// A key has the wrong type, is unknown, or the TOML does not parse.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then the file named by `cli.config`, then `PARLEY_*` variables, then flags.
    ///
    /// `PARLEY_CONFIG` (the file) and `PARLEY_LOG` (a log filter read by the
    /// binary) are not configuration keys; `PARLEY_LOG__FILTER` is. Neither
    /// are `PARLEY_TEST_*` variables, which configure Parley's test suite.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        Self::load_with_env(
            cli,
            Env::prefixed("PARLEY_")
                .split("__")
                .ignore(&["config", "log"])
                .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_")),
        )
    }

    fn load_with_env(cli: &Cli, env: Env) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &cli.config {
            if !path.exists() {
                return Err(ConfigError::FileNotFound(path.clone()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(env).merge(Serialized::defaults(cli));
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(l) = cli.mqtt_tcp {
            config.mqtt.tcp = l;
        }
        if let Some(l) = cli.mqtt_ws {
            config.mqtt.ws = l;
        }
        if let Some(l) = cli.http {
            config.http.listen = l;
        }
        if let Some(f) = &cli.log {
            config.log.filter = f.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML, as `parley --check-config` prints it:
    /// secrets (keys named `*secret*`, `*token`, `*password*`, `access_key`,
    /// `secret_key`) and passwords inside URLs are replaced by `<redacted>`.
    pub fn to_redacted_toml(&self) -> String {
        let mut value = match toml::Value::try_from(self) {
            Ok(value) => value,
            Err(e) => return format!("# the configuration cannot be shown as TOML: {e}\n"),
        };
        redact(&mut value);
        toml::to_string_pretty(&value)
            .unwrap_or_else(|e| format!("# the configuration cannot be shown as TOML: {e}\n"))
    }

    /// Parses a TOML document on top of the defaults (no environment, no flags).
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: value ranges and ACL rule syntax.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.runtime.worker_threads > MAX_WORKER_THREADS {
            return invalid(format!(
                "runtime.worker_threads = {} is above the maximum of {MAX_WORKER_THREADS}",
                self.runtime.worker_threads
            ));
        }
        if self.auth.pbkdf2_iterations < 100_000 {
            return invalid(format!(
                "auth.pbkdf2_iterations = {} is below the minimum of 100000",
                self.auth.pbkdf2_iterations
            ));
        }
        if let Some(secret) = &self.auth.jwt_secret {
            if secret.len() < 32 {
                return invalid("auth.jwt_secret must be at least 32 bytes".into());
            }
        }
        if self.auth.token_ttl_secs == 0 {
            return invalid("auth.token_ttl_secs must be positive".into());
        }
        if !self.mqtt.ws_path.starts_with('/') {
            return invalid(format!(
                "mqtt.ws_path {:?} must start with '/'",
                self.mqtt.ws_path
            ));
        }
        if self.mqtt.max_packet_size < 1024 {
            return invalid("mqtt.max_packet_size must be at least 1024 bytes".into());
        }
        if self.mqtt.max_packet_size > 256 * 1024 * 1024 {
            return invalid("mqtt.max_packet_size must be at most 268435455 bytes".into());
        }
        if self.chat.max_group_size < 2 {
            return invalid("chat.max_group_size must be at least 2".into());
        }
        let chat = &self.chat;
        if chat.messages_per_sec <= 0.0
            || chat.typing_per_sec <= 0.0
            || chat.requests_per_sec <= 0.0
        {
            return invalid("chat rates must be positive".into());
        }
        if chat.message_burst == 0
            || chat.typing_burst == 0
            || chat.request_burst == 0
            || chat.max_page == 0
        {
            return invalid("chat bursts and max_page must be positive".into());
        }
        if chat.rate_limit_max_wait_ms > MAX_RATE_LIMIT_WAIT_MS {
            return invalid(format!(
                "chat.rate_limit_max_wait_ms must be at most {MAX_RATE_LIMIT_WAIT_MS}"
            ));
        }
        if !(1..=MAX_PIPELINED_SENDS).contains(&chat.max_pipelined_sends) {
            return invalid(format!(
                "chat.max_pipelined_sends must be between 1 and {MAX_PIPELINED_SENDS}"
            ));
        }
        if chat.own_read_interval_ms > MAX_OWN_READ_INTERVAL_MS {
            return invalid(format!(
                "chat.own_read_interval_ms must be at most {MAX_OWN_READ_INTERVAL_MS}"
            ));
        }
        if self.mqtt.max_client_id_bytes < 23 {
            return invalid(
                "mqtt.max_client_id_bytes must be at least 23 (MQTT requires it)".into(),
            );
        }
        if self.mqtt.max_queued_messages == 0 || self.mqtt.max_inflight == 0 {
            return invalid(
                "mqtt.max_queued_messages and mqtt.max_inflight must be at least 1".into(),
            );
        }
        if self.mqtt.receive_maximum == 0 {
            return invalid("mqtt.receive_maximum must be at least 1".into());
        }
        if self.mqtt.packet_timeout_ms == 0 || self.mqtt.write_timeout_ms == 0 {
            return invalid(
                "mqtt.packet_timeout_ms and mqtt.write_timeout_ms must be at least 1".into(),
            );
        }
        if self.chat.max_message_bytes > self.mqtt.max_packet_size {
            return invalid("chat.max_message_bytes cannot exceed mqtt.max_packet_size".into());
        }
        self.validate_limits()?;
        self.validate_security()?;
        self.push.validate().map_err(ConfigError::Invalid)?;
        self.validate_keys()?;
        self.media.validate().map_err(ConfigError::Invalid)?;
        self.validate_cluster()?;
        if let Some(token) = &self.admin.token {
            if token.len() < 32 {
                return invalid("admin.token must be at least 32 bytes".into());
            }
        }
        if self.node_id > chat_core::message_id::MAX_NODE_ID {
            return invalid(format!(
                "node_id must be at most {}",
                chat_core::message_id::MAX_NODE_ID
            ));
        }
        if let Some(tls) = &self.mqtt.tls {
            for (what, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                if !Path::new(path).exists() {
                    return invalid(format!(
                        "mqtt.tls.{what}: {} does not exist",
                        path.display()
                    ));
                }
            }
        }
        chat_core::rules::AclRules::compile(self.acl.clone())
            .map_err(|e| ConfigError::Invalid(format!("acl: {e}")))?;
        Ok(())
    }

    /// PostgreSQL needs a URL and a pool; a bus needs shared storage, a
    /// shared token secret and somewhere to connect.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.storage.history_checkpoint_ms == 0 || self.storage.history_checkpoint_bytes == 0 {
            return invalid(
                "storage.history_checkpoint_ms and history_checkpoint_bytes must be at least 1",
            );
        }
        let pg = &self.storage.postgres;
        if self.storage.backend == StorageBackend::Postgres {
            if pg.url.trim().is_empty() {
                return invalid(
                    "storage.backend is \"postgres\", so storage.postgres.url must be set",
                );
            }
            if let Err(e) = persistence::postgres::PostgresConfig::from_url(&pg.url) {
                return Err(ConfigError::Invalid(format!("storage.postgres.url: {e}")));
            }
        }
        if pg.max_connections == 0 || pg.connect_timeout_ms == 0 || pg.operation_timeout_ms == 0 {
            return invalid(
                "storage.postgres.max_connections, connect_timeout_ms and operation_timeout_ms must be at least 1",
            );
        }
        if self.storage.history == HistoryBackend::Scylla {
            self.storage
                .scylla
                .driver_config()
                .map_err(|e| ConfigError::Invalid(format!("storage.scylla: {e:#}")))?;
        }
        if self.cluster.node_lease_ttl_ms < MIN_NODE_LEASE_TTL_MS {
            return Err(ConfigError::Invalid(format!(
                "cluster.node_lease_ttl_ms must be at least {MIN_NODE_LEASE_TTL_MS}"
            )));
        }
        if self.cluster.session_handover_poll_ms < 10
            || self.cluster.session_handover_timeout_ms < self.cluster.session_handover_poll_ms
        {
            return invalid(
                "cluster.session_handover_poll_ms must be at least 10, and \
                 cluster.session_handover_timeout_ms at least that",
            );
        }
        if self.cluster.bus == BusKind::None {
            return Ok(());
        }
        if self.storage.backend != StorageBackend::Postgres {
            return invalid(
                "a cluster bus needs storage every node shares: set storage.backend = \"postgres\"",
            );
        }
        if self.auth.jwt_secret.is_none() {
            return invalid(
                "a cluster bus needs auth.jwt_secret, the same on every node, so tokens work on all of them",
            );
        }
        let kafka = &self.cluster.kafka;
        if kafka
            .bootstrap_servers
            .split(',')
            .all(|s| s.trim().is_empty())
        {
            return invalid("cluster.kafka.bootstrap_servers must name at least one broker");
        }
        let topic_ok = !kafka.topic.is_empty()
            && kafka.topic.len() <= 249
            && kafka
                .topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !topic_ok {
            return invalid(
                "cluster.kafka.topic must be 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'",
            );
        }
        if kafka.partitions == 0 || kafka.partitions > i32::MAX as u32 {
            return invalid("cluster.kafka.partitions must be at least 1");
        }
        if kafka.replication_factor == Some(0) || kafka.timeout_ms == 0 {
            return invalid(
                "cluster.kafka.replication_factor and cluster.kafka.timeout_ms must be at least 1",
            );
        }
        self.validate_kafka_record_size()
    }

    /// The bus splits a fan-out whose topics do not fit in one Kafka record
    /// over several, but never a payload: the largest envelope the server
    /// fans out (a client's largest, plus the fields the server adds) must
    /// fit in a record with one topic.
    fn validate_kafka_record_size(&self) -> Result<(), ConfigError> {
        use chat_core::ids::{CONVERSATION_ID_MAX_LEN, USER_ID_MAX_LEN};
        use persistence::kafka::{codec::value_len, KafkaConfig};
        /// Bytes the server adds to a client's message (ids, seq, sender,
        /// time; about 150), rounded up generously.
        const SERVER_FIELDS: usize = 1024;
        /// `u/{user}/i` and `u/{user}/t` with the longest user id.
        const LONGEST_FEED_TOPIC: usize = USER_ID_MAX_LEN + 4;
        let mut kafka = KafkaConfig::new("", "");
        kafka.max_record_bytes = self.cluster.kafka.max_record_bytes;
        let limit = kafka.max_value_bytes(CONVERSATION_ID_MAX_LEN);
        let fixed = value_len([LONGEST_FEED_TOPIC], SERVER_FIELDS);
        if self.chat.max_message_bytes + fixed > limit {
            return Err(ConfigError::Invalid(format!(
                "chat.max_message_bytes = {} does not fit in a Kafka record of the cluster bus \
                 (cluster.kafka.max_record_bytes = {}): with cluster.bus = \"kafka\" it must \
                 be at most {}",
                self.chat.max_message_bytes,
                self.cluster.kafka.max_record_bytes,
                limit.saturating_sub(fixed)
            )));
        }
        Ok(())
    }

    /// The key directory needs room for a device and a prekey; its fetch rate
    /// is checked like the other rates.
    fn validate_keys(&self) -> Result<(), ConfigError> {
        let k = &self.keys;
        if k.max_devices_per_user == 0 || k.max_one_time_prekeys_per_device == 0 {
            return Err(ConfigError::Invalid(
                "keys.max_devices_per_user and keys.max_one_time_prekeys_per_device must be at least 1"
                    .into(),
            ));
        }
        let rate = k.bundle_fetches_per_sec_per_user;
        if !rate.is_finite() || rate < 0.0 {
            return Err(ConfigError::Invalid(
                "keys.bundle_fetches_per_sec_per_user must be a number >= 0 (0 = unlimited)".into(),
            ));
        }
        if rate > 0.0 && k.bundle_fetch_burst_per_user == 0 {
            return Err(ConfigError::Invalid(
                "keys.bundle_fetches_per_sec_per_user is on, so keys.bundle_fetch_burst_per_user must be at least 1"
                    .into(),
            ));
        }
        let rate = k.bundle_fetches_per_sec_per_target;
        if !rate.is_finite() || rate < 0.0 {
            return Err(ConfigError::Invalid(
                "keys.bundle_fetches_per_sec_per_target must be a number >= 0 (0 = unlimited)"
                    .into(),
            ));
        }
        if rate > 0.0 && k.bundle_fetch_burst_per_target == 0 {
            return Err(ConfigError::Invalid(
                "keys.bundle_fetch_burst_per_target must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Rates must be finite and not negative; a limit that is on needs a burst.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        for (key, rate, burst) in [
            (
                "connects_per_sec_per_ip",
                l.connects_per_sec_per_ip,
                u64::from(l.connect_burst_per_ip),
            ),
            (
                "bytes_per_sec_per_connection",
                l.bytes_per_sec_per_connection as f64,
                l.bytes_burst,
            ),
            (
                "publishes_per_sec_per_user",
                l.publishes_per_sec_per_user,
                u64::from(l.publish_burst_per_user),
            ),
        ] {
            if !rate.is_finite() || rate < 0.0 {
                return Err(ConfigError::Invalid(format!(
                    "limits.{key} must be a number >= 0 (0 = unlimited)"
                )));
            }
            if burst > u64::from(u32::MAX) {
                return Err(ConfigError::Invalid(format!(
                    "the burst of limits.{key} must be at most {}",
                    u32::MAX
                )));
            }
            if rate > 0.0 && burst == 0 {
                return Err(ConfigError::Invalid(format!(
                    "limits.{key} is on, so its burst must be at least 1"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Env {
        Env::prefixed("PARLEY_TEST_UNUSED_PREFIX_")
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = Config::load_with_env(&Cli::default(), no_env()).expect("defaults load");
        assert_eq!(c.mqtt.tcp, Listen::on(([0, 0, 0, 0], 1883).into()));
        assert_eq!(c.mqtt.ws, Listen::on(([0, 0, 0, 0], 8083).into()));
        assert_eq!(c.http.listen, Listen::on(([0, 0, 0, 0], 8080).into()));
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.mqtt.tls.is_none());
        assert!(c.acl.is_empty());
    }

    #[test]
    fn file_then_flags_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "data_dir = \"/tmp/x\"\nnode_id = 3\n[mqtt]\ntcp = \"127.0.0.1:1999\"\nws = \"off\"\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            node_id: Some(7),
            ..Cli::default()
        };
        let c = Config::load_with_env(&cli, no_env()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.node_id, 7, "flag wins over file");
        assert_eq!(c.mqtt.tcp, Listen::on(([127, 0, 0, 1], 1999).into()));
        assert_eq!(c.mqtt.ws, Listen::off());
    }

    #[test]
    fn unknown_key_is_a_clear_error() {
        let err = Config::from_toml_str("[mqtt]\ntpc = \"1.2.3.4:1\"\n").unwrap_err();
        assert!(err.to_string().contains("tpc"), "{err}");
    }

    #[test]
    fn bad_listen_address_is_a_clear_error() {
        let err = Config::from_toml_str("[mqtt]\ntcp = \"nowhere\"\n").unwrap_err();
        assert!(err.to_string().contains("invalid listen address"), "{err}");
    }

    #[test]
    fn rate_limit_max_wait_ms_is_read_and_bounded() {
        assert_eq!(Config::default().chat.rate_limit_max_wait_ms, 2_000);
        let c = Config::from_toml_str("[chat]\nrate_limit_max_wait_ms = 0\n").unwrap();
        assert_eq!(c.chat.rate_limit_max_wait_ms, 0);
        let too_long = MAX_RATE_LIMIT_WAIT_MS + 1;
        let err = Config::from_toml_str(&format!("[chat]\nrate_limit_max_wait_ms = {too_long}\n"))
            .unwrap_err();
        assert!(err.to_string().contains("rate_limit_max_wait_ms"), "{err}");
    }

    #[test]
    fn own_read_interval_is_read_and_bounded() {
        assert_eq!(Config::default().chat.own_read_interval_ms, 50);
        let c = Config::from_toml_str("[chat]\nown_read_interval_ms = 0\n").unwrap();
        assert_eq!(c.chat.own_read_interval_ms, 0);
        let err = Config::from_toml_str("[chat]\nown_read_interval_ms = 10001\n")
            .expect_err("over the bound");
        assert!(err.to_string().contains("own_read_interval_ms"), "{err}");
    }

    #[test]
    fn max_pipelined_sends_is_read_and_bounded() {
        assert_eq!(Config::default().chat.max_pipelined_sends, 32);
        let c = Config::from_toml_str("[chat]\nmax_pipelined_sends = 1\n").unwrap();
        assert_eq!(c.chat.max_pipelined_sends, 1);
        for bad in [0, MAX_PIPELINED_SENDS + 1] {
            let err = Config::from_toml_str(&format!("[chat]\nmax_pipelined_sends = {bad}\n"))
                .unwrap_err();
            assert!(err.to_string().contains("max_pipelined_sends"), "{err}");
        }
    }

    #[test]
    fn weak_settings_are_refused() {
        assert!(Config::from_toml_str("[auth]\npbkdf2_iterations = 1000\n").is_err());
        assert!(Config::from_toml_str("[auth]\njwt_secret = \"short\"\n").is_err());
    }

    #[test]
    fn limits_and_admin_token_are_checked() {
        let c = Config::from_toml_str(
            "[limits]\nconnects_per_sec_per_ip = 5.0\nconnect_burst_per_ip = 10\n\
             [admin]\ntoken = \"0123456789abcdef0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(c.limits.connects_per_sec_per_ip, 5.0);
        assert_eq!(c.limits.connect_burst_per_ip, 10);
        assert!(
            !format!("{c:?}").contains("0123456789abcdef"),
            "token redacted"
        );
        let short = Config::from_toml_str("[admin]\ntoken = \"short\"\n").unwrap_err();
        assert!(short.to_string().contains("admin.token"), "{short}");
        let negative =
            Config::from_toml_str("[limits]\npublishes_per_sec_per_user = -1.0\n").unwrap_err();
        assert!(
            negative.to_string().contains("publishes_per_sec_per_user"),
            "{negative}"
        );
        let no_burst = Config::from_toml_str(
            "[limits]\nbytes_per_sec_per_connection = 100\nbytes_burst = 0\n",
        )
        .unwrap_err();
        assert!(no_burst.to_string().contains("burst"), "{no_burst}");
    }

    #[test]
    fn history_checkpoints_are_configurable_and_checked() {
        let defaults = Config::from_toml_str("")
            .unwrap()
            .storage
            .embedded_options();
        assert_eq!(
            defaults,
            persistence::embedded::EmbeddedOptions::default(),
            "the defaults are the store's"
        );
        let c = Config::from_toml_str(
            "[storage]\nhistory_checkpoint_ms = 250\nhistory_checkpoint_bytes = 4096\n",
        )
        .unwrap();
        let checkpoint = c.storage.embedded_options().history_checkpoint;
        assert_eq!(checkpoint.interval, std::time::Duration::from_millis(250));
        assert_eq!(checkpoint.bytes, 4096);
        for bad in ["history_checkpoint_ms = 0", "history_checkpoint_bytes = 0"] {
            let err = Config::from_toml_str(&format!("[storage]\n{bad}\n")).unwrap_err();
            assert!(err.to_string().contains("history_checkpoint"), "{err}");
        }
    }

    #[test]
    fn runtime_workers_default_to_one_per_core_plus_one_and_are_bounded() {
        let defaults = Config::from_toml_str("").unwrap().runtime;
        assert_eq!(defaults.worker_threads_for(2), 3);
        assert_eq!(defaults.worker_threads_for(0), 2, "at least one core");
        let set = Config::from_toml_str("[runtime]\nworker_threads = 5\n").unwrap();
        assert_eq!(set.runtime.worker_threads_for(2), 5);
        let err = Config::from_toml_str("[runtime]\nworker_threads = 1025\n").unwrap_err();
        assert!(err.to_string().contains("runtime.worker_threads"), "{err}");
    }

    #[test]
    fn storage_and_cluster_settings_are_checked() {
        let defaults = Config::default();
        assert_eq!(defaults.storage.backend, StorageBackend::Embedded);
        assert_eq!(defaults.cluster.bus, BusKind::None);
        let pg = Config::from_toml_str(
            "[storage]\nbackend = \"postgres\"\n[storage.postgres]\n\
             url = \"postgres://parley:hunter2@db:5432/parley\"\nmax_connections = 4\n",
        )
        .unwrap();
        assert_eq!(pg.storage.backend, StorageBackend::Postgres);
        assert_eq!(pg.storage.postgres.max_connections, 4);
        assert!(!format!("{pg:?}").contains("hunter2"), "URL redacted");
        let no_url = Config::from_toml_str("[storage]\nbackend = \"postgres\"\n").unwrap_err();
        assert!(
            no_url.to_string().contains("storage.postgres.url"),
            "{no_url}"
        );
        let bad_backend = Config::from_toml_str("[storage]\nbackend = \"mysql\"\n").unwrap_err();
        assert!(bad_backend.to_string().contains("mysql"), "{bad_backend}");
        let no_pool =
            Config::from_toml_str("[storage.postgres]\nmax_connections = 0\n").unwrap_err();
        assert!(no_pool.to_string().contains("max_connections"), "{no_pool}");

        let scylla = Config::from_toml_str(
            "[storage]\nhistory = \"scylla\"\n[storage.scylla]\n\
             nodes = \"s1:9042, s2:9042\"\ndatacenter = \"dc1\"\npassword = \"hunter3\"\n",
        )
        .unwrap();
        assert_eq!(scylla.storage.history, HistoryBackend::Scylla);
        assert!(
            !format!("{scylla:?}").contains("hunter3"),
            "password redacted"
        );
        for (bad, named) in [
            ("nodes = \" \"", "contact point"),
            ("keyspace = \"a-b\"", "keyspace"),
            ("request_timeout_ms = 0", "timeout"),
        ] {
            let error = Config::from_toml_str(&format!(
                "[storage]\nhistory = \"scylla\"\n[storage.scylla]\n{bad}\n"
            ))
            .unwrap_err();
            assert!(error.to_string().contains("storage.scylla"), "{error}");
            assert!(error.to_string().contains(named), "{error}");
        }

        assert_eq!(defaults.cluster.session_handover_timeout_ms, 5_000);
        assert_eq!(defaults.cluster.session_handover_poll_ms, 100);
        for bad in [
            "session_handover_poll_ms = 5",
            "session_handover_timeout_ms = 50",
        ] {
            let error = Config::from_toml_str(&format!("[cluster]\n{bad}\n")).unwrap_err();
            assert!(error.to_string().contains("session_handover"), "{error}");
        }

        assert_eq!(defaults.cluster.node_lease_ttl_ms, 30_000);
        let lease = Config::from_toml_str("[cluster]\nnode_lease_ttl_ms = 5000\n").unwrap();
        assert_eq!(lease.cluster.node_lease_ttl_ms, 5_000);
        let short_lease =
            Config::from_toml_str("[cluster]\nnode_lease_ttl_ms = 999\n").unwrap_err();
        assert!(
            short_lease
                .to_string()
                .contains("cluster.node_lease_ttl_ms must be at least 1000"),
            "{short_lease}"
        );

        let embedded_bus = Config::from_toml_str("[cluster]\nbus = \"kafka\"\n").unwrap_err();
        assert!(
            embedded_bus.to_string().contains("postgres"),
            "{embedded_bus}"
        );
        let shared = "[storage]\nbackend = \"postgres\"\n[storage.postgres]\nurl = \"postgres://db/parley\"\n";
        let no_secret =
            Config::from_toml_str(&format!("{shared}[cluster]\nbus = \"kafka\"\n")).unwrap_err();
        assert!(no_secret.to_string().contains("jwt_secret"), "{no_secret}");
        let secret = "[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n";
        let kafka = Config::from_toml_str(&format!(
            "{shared}{secret}[cluster]\nbus = \"kafka\"\n[cluster.kafka]\nbootstrap_servers = \"k1:9092,k2:9092\"\npartitions = 3\n"
        ))
        .unwrap();
        assert_eq!(kafka.cluster.bus, BusKind::Kafka);
        assert_eq!(kafka.cluster.kafka.partitions, 3);
        let bad_topic = Config::from_toml_str(&format!(
            "{shared}{secret}[cluster]\nbus = \"kafka\"\n[cluster.kafka]\ntopic = \"a b\"\n"
        ))
        .unwrap_err();
        assert!(
            bad_topic.to_string().contains("cluster.kafka.topic"),
            "{bad_topic}"
        );
        let no_replicas = Config::from_toml_str(&format!(
            "{shared}{secret}[cluster]\nbus = \"kafka\"\n[cluster.kafka]\nreplication_factor = 0\n"
        ))
        .unwrap_err();
        assert!(
            no_replicas.to_string().contains("replication_factor"),
            "{no_replicas}"
        );
        // The default 64 KiB fits a Kafka record with room to spare; the
        // default MQTT packet limit of 1 MiB does not.
        let kafka_chat = |bytes: usize| {
            Config::from_toml_str(&format!(
                "{shared}{secret}[cluster]\nbus = \"kafka\"\n[chat]\nmax_message_bytes = {bytes}\n"
            ))
        };
        assert!(kafka_chat(512 * 1024).is_ok());
        let too_large = kafka_chat(1024 * 1024).unwrap_err();
        assert!(
            too_large.to_string().contains("chat.max_message_bytes")
                && too_large.to_string().contains("Kafka record"),
            "{too_large}"
        );
        assert!(
            Config::from_toml_str(&format!("{shared}[chat]\nmax_message_bytes = 1048576\n"))
                .is_ok(),
            "without a bus the Kafka limit does not apply"
        );
        // A deployment with larger Kafka records may carry larger messages,
        // and one with smaller records must carry smaller ones.
        let with_records = |record: usize, bytes: usize| {
            Config::from_toml_str(&format!(
                "{shared}{secret}[cluster]\nbus = \"kafka\"\n[cluster.kafka]\n\
                 max_record_bytes = {record}\n[chat]\nmax_message_bytes = {bytes}\n"
            ))
        };
        assert!(with_records(4 * 1024 * 1024, 1024 * 1024).is_ok());
        let small = with_records(32 * 1024, 64 * 1024).unwrap_err();
        assert!(
            small.to_string().contains("max_record_bytes = 32768"),
            "{small}"
        );
    }

    #[test]
    fn key_directory_settings_are_checked() {
        let c = Config::from_toml_str(
            "[keys]\nmax_devices_per_user = 3\nbundle_fetches_per_sec_per_user = 0.5\n",
        )
        .unwrap();
        assert_eq!(c.keys.max_devices_per_user, 3);
        assert_eq!(c.keys.bundle_fetches_per_sec_per_user, 0.5);
        let no_devices = Config::from_toml_str("[keys]\nmax_devices_per_user = 0\n").unwrap_err();
        assert!(
            no_devices.to_string().contains("max_devices_per_user"),
            "{no_devices}"
        );
        let no_burst =
            Config::from_toml_str("[keys]\nbundle_fetch_burst_per_user = 0\n").unwrap_err();
        assert!(no_burst.to_string().contains("burst"), "{no_burst}");
        let negative =
            Config::from_toml_str("[keys]\nbundle_fetches_per_sec_per_user = -1.0\n").unwrap_err();
        assert!(
            negative
                .to_string()
                .contains("bundle_fetches_per_sec_per_user"),
            "{negative}"
        );
    }

    #[test]
    fn push_settings_are_checked() {
        let defaults = Config::default();
        assert_eq!(defaults.push.notifier, crate::push::NotifierKind::Off);
        let none = Config::from_toml_str("[push]\nnotifier = \"none\"\n").unwrap();
        assert_eq!(none.push.notifier, crate::push::NotifierKind::Off);
        let webhook = Config::from_toml_str(
            "[push]\nnotifier = \"webhook\"\n[push.webhook]\n\
             url = \"https://hooks.example.org/parley\"\n\
             secret = \"0123456789abcdef0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(webhook.push.notifier, crate::push::NotifierKind::Webhook);
        assert!(
            !format!("{webhook:?}").contains("0123456789abcdef"),
            "webhook secret redacted"
        );
        let no_secret = Config::from_toml_str(
            "[push]\nnotifier = \"webhook\"\n[push.webhook]\nurl = \"https://h.example.org/\"\n",
        )
        .unwrap_err();
        assert!(
            no_secret.to_string().contains("push.webhook.secret"),
            "{no_secret}"
        );
        let unknown = Config::from_toml_str("[push]\nnotifier = \"apns\"\n").unwrap_err();
        assert!(unknown.to_string().contains("apns"), "{unknown}");
        let zero = Config::from_toml_str("[push]\nqueue_capacity = 0\n").unwrap_err();
        assert!(zero.to_string().contains("push.queue_capacity"), "{zero}");
    }

    #[test]
    fn missing_file_is_reported() {
        let cli = Cli {
            config: Some("/nonexistent/parley.toml".into()),
            ..Cli::default()
        };
        assert!(matches!(
            Config::load_with_env(&cli, no_env()),
            Err(ConfigError::FileNotFound(_))
        ));
    }

    #[test]
    fn example_config_is_valid_and_lists_the_defaults() {
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/parley.toml"
        ))
        .unwrap();
        let c = Config::from_toml_str(&example).expect("deploy/parley.toml is valid");
        let defaults = Config::default();
        assert_eq!(c.mqtt, defaults.mqtt);
        assert_eq!(c.http, defaults.http);
        assert_eq!(c.auth, defaults.auth);
        assert_eq!(c.chat, defaults.chat);
        assert_eq!(c.log, defaults.log);
        assert_eq!(c.limits, defaults.limits);
        assert_eq!(c.keys, defaults.keys);
        assert_eq!(c.storage, defaults.storage);
        assert_eq!(c.cluster, defaults.cluster);
        assert_eq!(c.admin, defaults.admin);
        assert_eq!(c.push, defaults.push);
        assert_eq!(c.media, defaults.media);
        assert_eq!(c.acl.len(), 2, "the example carries two ACL rules");
    }

    #[test]
    fn acl_rules_parse_from_toml() {
        let c =
            Config::from_toml_str("[[acl]]\naccess = \"readwrite\"\nfilter = \"devices/%u/#\"\n")
                .unwrap();
        assert_eq!(c.acl.len(), 1);
    }

    #[test]
    fn check_config_output_is_a_valid_config_without_secrets() {
        let defaults = Config::default();
        let dumped = defaults.to_redacted_toml();
        assert_eq!(
            Config::from_toml_str(&dumped).unwrap(),
            defaults,
            "{dumped}"
        );

        let with_secrets = Config::from_toml_str(
            "[auth]\njwt_secret = \"jwt-secret-jwt-secret-jwt-secret-0123\"\n\
             [admin]\ntoken = \"admin-token-admin-token-admin-token-01\"\n\
             [storage]\nbackend = \"postgres\"\n\
             [storage.postgres]\nurl = \"postgres://parley:hunter2-db@db:5432/parley\"\n",
        )
        .unwrap();
        let dumped = with_secrets.to_redacted_toml();
        for secret in ["jwt-secret-jwt", "admin-token-admin", "hunter2-db"] {
            assert!(!dumped.contains(secret), "{secret} shown in:\n{dumped}");
        }
        assert!(
            dumped.contains("postgres://parley:<redacted>@db:5432/parley"),
            "{dumped}"
        );
        assert!(dumped.contains("backend = \"postgres\""), "{dumped}");
    }
}
