//! Starting and stopping one Parley node: store, node lease, router, MQTT
//! listeners and the HTTP side, with graceful shutdown (stop accepting, close
//! connections, flush the store, release the node lease).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_core::rules::AclRules;
use persistence::{ClusterBus, KeyDirectory, MetadataStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

mod live;
use live::LiveCollector;

use crate::auth::{AuthSettings, Authenticator};
use crate::chat::{ChatService, ChatStores};
use crate::cluster::{BusPublisher, ClusterEvents, Deliveries, WithDirectory, WithPlainMqtt};
use crate::cluster_mqtt::ClusterMqtt;
use crate::config::{Config, HistoryBackend, Listen, StorageBackend};
use crate::directory::ClusterDirectory;
use crate::http::{self, HttpState};
use crate::limits::Limits;
use crate::metrics::cluster_mqtt::ClusterMqttCollector;
use crate::metrics::directory::DirectoryCollector;
use crate::metrics::history::MeteredHistory;
use crate::metrics::Metrics;
use crate::mqtt::listener::{accept_loop, tls_acceptor, Transport};
use crate::mqtt::sessions::SessionRegistry;
use crate::mqtt::MqttContext;
use crate::node_lease::NodeLease;
use crate::publisher::ServerPublisher;
use crate::push::metrics::PushCollector;
use crate::push::PushService;

/// The addresses a running node actually listens on (useful with port 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct BoundAddrs {
    /// MQTT over TCP.
    pub mqtt_tcp: Option<SocketAddr>,
    /// MQTT over WebSocket.
    pub mqtt_ws: Option<SocketAddr>,
    /// MQTT over TLS.
    pub mqtt_tls: Option<SocketAddr>,
    /// HTTP API.
    pub http: Option<SocketAddr>,
    /// The separate metrics listener (`[metrics] listen`).
    pub metrics: Option<SocketAddr>,
}

/// A running node.
pub struct Node {
    /// Where it listens.
    pub addrs: BoundAddrs,
    /// Account and metadata store.
    pub store: Arc<dyn MetadataStore>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// The lease on its node id, on a store shared by several nodes.
    lease: Option<NodeLease>,
    /// The cluster's session directory, with a bus.
    directory: Option<Arc<ClusterDirectory>>,
    /// Plain MQTT routing across the cluster, with a bus.
    cluster_mqtt: Option<Arc<ClusterMqtt>>,
}

impl Node {
    /// Starts a node from `config`, with the cluster bus `config.cluster` names.
    pub async fn start(config: Config) -> anyhow::Result<Node> {
        let bus = crate::cluster::open_bus(&config).await?;
        Node::start_with_bus(config, bus).await
    }

    /// Starts a node from `config` that delivers through `bus` (or only to
    /// its own clients with `None`), whatever `config.cluster` says.
    ///
    /// On a store several nodes share, the node first takes the lease on its
    /// node id (see [`crate::node_lease`]), before anything uses the id, and
    /// fails to start if another live node holds it.
    pub async fn start_with_bus(
        config: Config,
        bus: Option<Arc<dyn ClusterBus>>,
    ) -> anyhow::Result<Node> {
        let opened = crate::storage::open(&config).await?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let lease = match &opened.leases {
            Some(leases) => Some(NodeLease::take(leases.clone(), &config, shutdown.clone()).await?),
            None => None,
        };
        match Node::serve(config, bus, opened, shutdown.clone(), &tasks).await {
            Ok((addrs, store, directory, cluster_mqtt)) => Ok(Node {
                addrs,
                store,
                shutdown,
                tasks,
                lease,
                directory,
                cluster_mqtt,
            }),
            Err(e) => {
                shutdown.cancel();
                tasks.close();
                if tokio::time::timeout(Duration::from_secs(10), tasks.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!("some tasks did not stop within 10 s of a failed start");
                }
                if let Some(lease) = lease {
                    lease.release().await;
                }
                Err(e)
            }
        }
    }

    /// Everything after the node lease: chat, router, bus consumer,
    /// listeners. Returns where the node listens, its metadata store and
    /// its session directory (with a bus).
    async fn serve(
        config: Config,
        bus: Option<Arc<dyn ClusterBus>>,
        opened: crate::storage::Stores,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> anyhow::Result<(
        BoundAddrs,
        Arc<dyn MetadataStore>,
        Option<Arc<ClusterDirectory>>,
        Option<Arc<ClusterMqtt>>,
    )> {
        let store: Arc<dyn MetadataStore> = opened.metadata.clone();
        let key_directory: Arc<dyn KeyDirectory> = opened.keys.clone();
        let mut metrics = Metrics::new();
        let stores = ChatStores {
            metadata: store.clone(),
            history: Arc::new(MeteredHistory::new(opened.history.clone(), &metrics)),
            offline: opened.offline.clone(),
        };
        let jwt_secret = match &config.auth.jwt_secret {
            Some(s) => s.clone(),
            None => load_or_create_secret(&config.data_dir)?,
        };
        let auth = Arc::new(
            Authenticator::new(
                store.clone(),
                AuthSettings {
                    jwt_secret: jwt_secret.clone(),
                    token_ttl: Duration::from_secs(config.auth.token_ttl_secs),
                    pbkdf2_iterations: config.auth.pbkdf2_iterations,
                    verified_cache_ttl: Duration::from_secs(config.auth.verified_cache_secs),
                },
            )
            .context("configuring authentication")?
            .with_login_policy(&config.login, metrics.security_refusals.clone()),
        );
        let acl = AclRules::compile(config.acl.clone()).context("compiling ACL rules")?;
        let router = Arc::new(parley_engine::router::Router::new(
            config.mqtt.router_config(),
        ));
        let publisher = ServerPublisher::new(router.clone());
        let bus_counts = Arc::new(crate::targeting::BusCounts::default());
        let deliveries = match &bus {
            None => Deliveries::Local(publisher.clone()),
            Some(bus) => Deliveries::Bus(BusPublisher::start(
                bus.clone(),
                config.node_id,
                crate::cluster::TargetingSettings {
                    broadcast_min_recipients: config.cluster.broadcast_min_recipients,
                    replay_window: Duration::from_millis(config.cluster.join_replay_ms),
                    replay_max_bytes: config.cluster.join_replay_max_bytes,
                },
                bus_counts.clone(),
            )),
        };
        // Installed before persistent sessions are restored, so their routes count.
        let cluster_mqtt = match (&bus, &opened.cluster_mqtt) {
            (Some(_), Some(store)) => Some(ClusterMqtt::new(
                config.node_id,
                router.clone(),
                deliveries.clone(),
                store.clone(),
            )),
            _ => None,
        };
        let durable = match &opened.sessions {
            Some(store) => {
                let journal = crate::mqtt::durable::DurableSessions::start(store.clone());
                router.set_journal(journal.clone());
                crate::mqtt::durable::load(store.as_ref(), &router)
                    .await
                    .context("loading persistent MQTT sessions")?;
                Some(journal)
            }
            None => None,
        };
        let moves = match (&opened.handover, &durable) {
            (Some(store), Some(journal)) => {
                let moves = crate::mqtt::handover::SessionMoves::new(
                    store.clone(),
                    router.clone(),
                    journal.clone(),
                    Duration::from_millis(config.cluster.session_handover_timeout_ms),
                    Duration::from_millis(config.cluster.session_handover_poll_ms),
                );
                let adopt_every = crate::node_lease::renewal::renew_every(Duration::from_millis(
                    config.cluster.node_lease_ttl_ms,
                ));
                tasks.spawn(moves.clone().run(adopt_every, shutdown.clone()));
                Some(moves)
            }
            _ => None,
        };
        tasks.spawn(crate::mqtt::ticker::run(router.clone(), shutdown.clone()));
        let push = PushService::start(&config.push, store.clone(), shutdown.clone(), tasks)
            .context("configuring push notifications")?;
        let chat = Arc::new(
            ChatService::with_deliveries(
                config.node_id,
                stores,
                publisher.clone(),
                deliveries.clone(),
                config.chat.clone(),
            )?
            .with_push(push.clone()),
        );
        // Chat presence follows the node's connections.
        let sessions = Arc::new(SessionRegistry::with_listeners(vec![chat.presence.clone()]));
        let directory = match (&bus, &opened.directory) {
            (Some(_), Some(store)) => {
                let directory = ClusterDirectory::new(
                    store.clone(),
                    config.node_id,
                    deliveries.clone(),
                    sessions.clone(),
                    Duration::from_millis(config.cluster.presence_offline_delay_ms),
                );
                chat.presence.leave_publishing_to_cluster();
                chat.share_with_cluster(directory.clone());
                if let Deliveries::Bus(bus) = &deliveries {
                    bus.target_with(directory.clone());
                }
                metrics.register_collector(Box::new(DirectoryCollector::new(directory.clone())));
                Some(directory)
            }
            _ => None,
        };
        if let Some(moves) = &moves {
            metrics.register_collector(Box::new(crate::metrics::moves::MovesCollector::new(
                moves.clone(),
            )));
        }
        if let Some(embedded) = &opened.embedded {
            metrics.register_collector(Box::new(
                crate::metrics::history_writer::HistoryWriterCollector::new(embedded.clone()),
            ));
        }
        metrics.register_collector(Box::new(LiveCollector::new(sessions.clone(), chat.clone())));
        metrics.register_collector(Box::new(crate::metrics::engine::EngineCollector::new(
            router.clone(),
        )));
        if let Some(push) = &push {
            metrics.register_collector(Box::new(PushCollector::new(push.clone())));
        }
        if bus.is_some() {
            metrics.register_collector(Box::new(crate::metrics::cluster_bus::BusCollector::new(
                bus_counts.clone(),
            )));
        }
        if let Some(cluster_mqtt) = &cluster_mqtt {
            metrics.register_collector(Box::new(ClusterMqttCollector::new(cluster_mqtt.clone())));
        }
        let metrics = Arc::new(metrics);
        if let Some(bus) = &bus {
            let events: Arc<dyn ClusterEvents> = match &directory {
                Some(directory) => Arc::new(WithDirectory {
                    chat: chat.clone(),
                    directory: directory.clone(),
                }),
                None => chat.clone(),
            };
            let events: Arc<dyn ClusterEvents> = match &cluster_mqtt {
                Some(mqtt) => Arc::new(WithPlainMqtt {
                    inner: events,
                    mqtt: mqtt.clone(),
                }),
                None => events,
            };
            crate::cluster::spawn_consumer(
                bus.as_ref(),
                config.node_id,
                publisher.clone(),
                events,
                bus_counts.clone(),
                shutdown.clone(),
                tasks,
            )
            .await
            .context("subscribing to the cluster bus")?;
        }
        if let Some(directory) = &directory {
            let sweep_every = crate::node_lease::renewal::renew_every(Duration::from_millis(
                config.cluster.node_lease_ttl_ms,
            ));
            directory
                .start(sweep_every, shutdown.clone(), tasks)
                .await
                .context("loading the session directory")?;
        }
        if let Some(cluster_mqtt) = &cluster_mqtt {
            let sweep_every = crate::node_lease::renewal::renew_every(Duration::from_millis(
                config.cluster.node_lease_ttl_ms,
            ));
            cluster_mqtt
                .start(sweep_every, shutdown.clone(), tasks)
                .await
                .context("joining the cluster's plain MQTT routing")?;
        }
        let ctx = Arc::new(MqttContext {
            config: config.mqtt.clone(),
            auth: auth.clone(),
            acl,
            router,
            publisher,
            chat,
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            sessions: sessions.clone(),
            limits: Limits::new(&config.limits).with_listeners(&config.listeners),
            durable,
            moves,
            directory: directory.clone(),
            cluster_mqtt: cluster_mqtt.clone(),
        });

        let mut addrs = BoundAddrs::default();
        if let Some(listener) = bind(config.mqtt.tcp, "MQTT/TCP").await? {
            addrs.mqtt_tcp = listener.local_addr().ok();
            tasks.spawn(accept_loop(
                listener,
                Transport::Tcp,
                ctx.clone(),
                tasks.clone(),
            ));
        }
        if let Some(listener) = bind(config.mqtt.ws, "MQTT/WebSocket").await? {
            addrs.mqtt_ws = listener.local_addr().ok();
            let path = Arc::from(config.mqtt.ws_path.as_str());
            tasks.spawn(accept_loop(
                listener,
                Transport::WebSocket { path },
                ctx.clone(),
                tasks.clone(),
            ));
        }
        if let Some(tls) = &config.mqtt.tls {
            let acceptor = tls_acceptor(&tls.cert, &tls.key).context("configuring TLS")?;
            if let Some(listener) = bind(Listen::on(tls.listen), "MQTT/TLS").await? {
                addrs.mqtt_tls = listener.local_addr().ok();
                tasks.spawn(accept_loop(
                    listener,
                    Transport::Tls(acceptor),
                    ctx.clone(),
                    tasks.clone(),
                ));
            }
        }
        let media = crate::media::Presigner::from_config(&config.media)
            .map_err(anyhow::Error::msg)
            .context("configuring media")?
            .map(|presigner| {
                info!(?presigner, "media through presigned URLs");
                Arc::new(http::media::MediaState {
                    presigner,
                    store: store.clone(),
                })
            });
        if let Some(listener) = bind(config.http.listen, "HTTP").await? {
            addrs.http = listener.local_addr().ok();
            let state = HttpState {
                auth,
                metrics,
                push: push.as_ref().map(|push| {
                    Arc::new(http::push::PushState {
                        store: store.clone(),
                        kind: push.kind(),
                        max_devices_per_user: config.push.max_devices_per_user,
                    })
                }),
                media,
                admin: config.admin.token.clone().map(|token| {
                    Arc::new(http::admin::AdminState {
                        token,
                        sessions,
                        store: store.clone(),
                        chat: ctx.chat.clone(),
                    })
                }),
                keys: Some(Arc::new(http::keys::KeysState::new(
                    key_directory,
                    ctx.chat.clone(),
                    &config.keys,
                ))),
                signup: Arc::new(crate::auth::signup::SignUpPolicy::new(
                    &config.accounts,
                    &jwt_secret,
                )),
                metrics_access: http::metrics::MetricsAccess {
                    token: config.metrics.token.as_deref().map(Arc::from),
                    on_api: config.metrics.listen.0.is_none(),
                },
                storage: Some(Arc::new({
                    let check = http::health::StorageCheck::new(
                        store.clone(),
                        match config.storage.backend {
                            StorageBackend::Embedded => "embedded store",
                            StorageBackend::Postgres => "PostgreSQL",
                        },
                    );
                    match config.storage.history {
                        HistoryBackend::Backend => check,
                        HistoryBackend::Scylla => {
                            check.with_history(opened.history.clone(), "Scylla")
                        }
                    }
                })),
                web: Some(Arc::new(http::web::WebState {
                    dir: config
                        .http
                        .web_dir
                        .clone()
                        .unwrap_or_else(http::web::default_dir),
                    client: http::web::ClientConfig {
                        mqtt_ws_port: addrs.mqtt_ws.map(|a| a.port()),
                        mqtt_ws_path: config.mqtt.ws_path.clone(),
                    },
                })),
            };
            if let Some(metrics_listener) = bind(config.metrics.listen, "metrics").await? {
                addrs.metrics = metrics_listener.local_addr().ok();
                let (state, limits, stop) =
                    (state.clone(), config.listeners.clone(), shutdown.clone());
                tasks.spawn(async move {
                    let stopped = async move { stop.cancelled().await };
                    if let Err(e) =
                        http::serve_metrics(metrics_listener, state, limits, stopped).await
                    {
                        tracing::error!(error = %e, "metrics server failed");
                    }
                });
            }
            let (limits, stop) = (config.listeners.clone(), shutdown.clone());
            tasks.spawn(async move {
                let stopped = async move { stop.cancelled().await };
                if let Err(e) = http::serve(listener, state, limits, stopped).await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            });
        }
        info!(?addrs, data_dir = %config.data_dir.display(), node_id = config.node_id,
            storage = ?config.storage.backend, bus = ?config.cluster.bus, "parley is up");
        Ok((addrs, store, directory, cluster_mqtt))
    }

    /// The node's plain MQTT routing across the cluster: `None` without a bus.
    pub fn cluster_mqtt(&self) -> Option<Arc<ClusterMqtt>> {
        self.cluster_mqtt.clone()
    }

    /// The cluster's session directory: `None` without a bus.
    pub fn directory(&self) -> Option<Arc<ClusterDirectory>> {
        self.directory.clone()
    }

    /// A token that is cancelled when the node begins shutting down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Resolves when the node has stopped by itself because it must not go
    /// on: another process took over its node id's lease (see
    /// [`crate::node_lease`]). Returns why. Never resolves while the node
    /// runs normally, nor on the embedded store.
    pub async fn failed(&self) -> String {
        match &self.lease {
            Some(lease) => lease.lost().await,
            None => std::future::pending().await,
        }
    }

    /// Stops accepting, disconnects every client, waits for tasks, flushes
    /// the store and releases the node lease, so that the node id is free at
    /// once.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        info!("shutting down");
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 10 s");
        }
        if let Some(directory) = &self.directory {
            directory.leave().await;
        }
        if let Some(cluster_mqtt) = &self.cluster_mqtt {
            cluster_mqtt.leave().await;
        }
        let flushed = self.store.flush().await.context("flushing the store");
        if let Some(lease) = self.lease {
            lease.release().await;
        }
        flushed?;
        info!("shutdown complete");
        Ok(())
    }
}

async fn bind(listen: Listen, what: &str) -> anyhow::Result<Option<TcpListener>> {
    match listen.0 {
        None => Ok(None),
        Some(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .with_context(|| format!("binding the {what} listener on {addr}")),
    }
}

/// Reads `{data_dir}/token.secret`, creating it with a fresh random secret if missing.
fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<String> {
    use ring::rand::{SecureRandom, SystemRandom};
    let path = data_dir.join("token.secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_owned();
        if secret.len() >= 32 {
            return Ok(secret);
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness for the token secret"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}
