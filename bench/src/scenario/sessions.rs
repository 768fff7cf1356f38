//! The `sessions` scenario: persistent (clean session 0, MQTT 3.1.1)
//! sessions that are offline while messages are queued for them, then resume.
//!
//! 1. **Set-up**: N clients connect with clean session 0, subscribe (QoS 1)
//!    and disconnect, `concurrency` at a time (waves, so the bench and the
//!    broker stay under their open-files limits). With `--source-ips` the
//!    sockets spread over many source addresses (no TIME_WAIT exhaustion).
//!    The broker's RSS is sampled before and after (`--broker-pid`).
//! 2. **Store**: one publisher sends M QoS 1 messages, pipelined, and waits
//!    for every PUBACK. Layout `shared`: every session subscribed to one
//!    topic, so each message is queued N times; layout `own`: each session
//!    subscribed to its own topic, message i goes to session i mod N.
//! 3. **Resume**: every session reconnects at once (`resume_concurrency` at
//!    a time), records its CONNECT→CONNACK time and session present flag,
//!    drains its queue (PUBACK each) and disconnects.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{ResolveError, RunId, Target};
use crate::compare::procstat;
use crate::mqtt::persistent::{self, PersistentClient, PersistentSpec};
use crate::report::{self, fmt_rate, kv_table, LatencySummary};
use crate::source_addr::SourceAddrs;

/// How sessions subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionLayout {
    /// Every session subscribes to one topic: each message is queued N times.
    Shared,
    /// Each session subscribes to its own topic: message i goes to session i mod N.
    Own,
}

/// Settings of a `sessions` run.
#[derive(Debug, Clone)]
pub struct SessionsConfig {
    /// The broker and how to log in.
    pub target: Target,
    /// Persistent sessions.
    pub sessions: usize,
    /// QoS 1 messages published while they are offline.
    pub messages: usize,
    /// Payload size in bytes.
    pub payload_size: usize,
    /// Subscription layout.
    pub layout: SessionLayout,
    /// Publishes awaiting PUBACK at once.
    pub inflight: usize,
    /// Connections open at once during set-up.
    pub concurrency: usize,
    /// Connections open at once when resuming (the reconnect storm).
    pub resume_concurrency: usize,
    /// Source addresses to bind, round-robin.
    pub source_addrs: Option<SourceAddrs>,
    /// Time allowed for connect, CONNACK and SUBACK, and for silence while draining.
    pub timeout: Duration,
    /// The broker's process id, to sample its RSS.
    pub broker_pid: Option<u32>,
    /// Skip the resume phase (measure idle sessions only).
    pub no_resume: bool,
}

/// Result of the `sessions` scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionsReport {
    /// Always `"sessions"`.
    pub scenario: &'static str,
    /// Broker address.
    pub broker: String,
    /// Sessions requested.
    pub sessions: usize,
    /// Subscription layout.
    pub layout: SessionLayout,
    /// Sessions set up (subscribed and disconnected).
    pub set_up: u64,
    /// Set-up time, seconds.
    pub setup_secs: f64,
    /// Broker RSS before set-up, MiB.
    pub rss_before_mib: Option<f64>,
    /// Broker RSS with every session set up and offline, MiB.
    pub rss_idle_mib: Option<f64>,
    /// Broker RSS after the messages were stored, MiB.
    pub rss_queued_mib: Option<f64>,
    /// Broker RSS after every session drained, MiB.
    pub rss_after_mib: Option<f64>,
    /// Messages published (every one PUBACKed).
    pub published: usize,
    /// Deliveries queued for offline sessions.
    pub deliveries_expected: u64,
    /// Publishing time, seconds.
    pub store_secs: f64,
    /// Messages PUBACKed per second.
    pub publish_rate: f64,
    /// Deliveries stored per second.
    pub stored_rate: f64,
    /// Sessions that reconnected.
    pub resumed: u64,
    /// Of those, CONNACK with session present 1.
    pub session_present: u64,
    /// Deliveries received while draining.
    pub drained: u64,
    /// Time from the first reconnect until the last session drained, seconds.
    pub resume_secs: f64,
    /// Deliveries drained per second.
    pub drain_rate: f64,
    /// TCP connect to CONNACK when resuming, µs.
    pub resume_connack_us: LatencySummary,
    /// Failures by kind.
    pub errors: std::collections::BTreeMap<String, u64>,
}

impl SessionsReport {
    /// The report as a two-column table.
    pub fn table(&self) -> String {
        let mib = |v: Option<f64>| v.map_or("-".to_string(), |m| format!("{m:.1} MiB"));
        let mut rows = vec![
            ("scenario".to_string(), "sessions".to_string()),
            ("broker".into(), self.broker.clone()),
            (
                "sessions (layout)".into(),
                format!("{} ({:?})", self.sessions, self.layout),
            ),
            ("set up".into(), self.set_up.to_string()),
            ("set-up time".into(), format!("{:.2} s", self.setup_secs)),
            ("rss before".into(), mib(self.rss_before_mib)),
            ("rss, sessions offline".into(), mib(self.rss_idle_mib)),
            ("rss, messages queued".into(), mib(self.rss_queued_mib)),
            ("rss, after drain".into(), mib(self.rss_after_mib)),
            ("published (PUBACKed)".into(), self.published.to_string()),
            (
                "deliveries queued".into(),
                self.deliveries_expected.to_string(),
            ),
            ("publish rate".into(), fmt_rate(self.publish_rate)),
            ("stored deliveries rate".into(), fmt_rate(self.stored_rate)),
            ("resumed".into(), self.resumed.to_string()),
            ("session present".into(), self.session_present.to_string()),
            ("drained".into(), self.drained.to_string()),
            (
                "resume + drain time".into(),
                format!("{:.2} s", self.resume_secs),
            ),
            ("drain rate".into(), fmt_rate(self.drain_rate)),
        ];
        let c = &self.resume_connack_us;
        for (q, us) in [("p50", c.p50), ("p99", c.p99), ("max", c.max)] {
            rows.push((format!("resume connack {q}"), report::fmt_ms(us)));
        }
        for (kind, n) in &self.errors {
            rows.push((format!("error: {kind}"), n.to_string()));
        }
        kv_table(&rows)
    }
}

/// A `sessions` run that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    /// Zero sessions requested.
    #[error("session count must be at least 1")]
    NoSessions,
    /// The broker address did not resolve.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The publisher failed.
    #[error("publisher: {0}")]
    Publisher(#[from] persistent::PersistentError),
}

/// State shared by the session tasks.
struct Shared {
    cfg: SessionsConfig,
    addr: SocketAddr,
    run: RunId,
    errors: Mutex<std::collections::BTreeMap<String, u64>>,
    connack: Mutex<Histogram<u64>>,
}

impl Shared {
    fn error(&self, step: &str, e: &persistent::PersistentError) {
        let kind = format!("{step}: {e}");
        let kind: String = kind.chars().take(80).collect();
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    fn client_id(&self, i: usize) -> String {
        self.cfg.target.client_id(&self.run, "ps", i)
    }

    fn topic(&self, i: usize) -> String {
        match self.cfg.layout {
            SessionLayout::Shared => format!("bench/sessions/{}/all", self.run.0),
            SessionLayout::Own => format!("bench/sessions/{}/{i}", self.run.0),
        }
    }

    /// Deliveries session `i` should find queued.
    fn expected(&self, i: usize) -> usize {
        let (n, m) = (self.cfg.sessions, self.cfg.messages);
        match self.cfg.layout {
            SessionLayout::Shared => m,
            SessionLayout::Own => m / n + usize::from(i < m % n),
        }
    }

    async fn open(
        &self,
        i: usize,
        client_id: &str,
        clean_session: bool,
    ) -> Result<(PersistentClient, persistent::Connected), persistent::PersistentError> {
        let login = self.cfg.target.login(i);
        let spec = PersistentSpec {
            target: self.addr,
            source: self.cfg.source_addrs.as_ref().map(|s| s.for_connection(i)),
            client_id,
            login: login.as_ref(),
            keepalive: self.cfg.target.keepalive,
            clean_session,
        };
        tokio::time::timeout(self.cfg.timeout, persistent::connect(&spec))
            .await
            .map_err(|_| persistent::PersistentError::Timeout)?
    }

    /// Connects session `i` with clean session 0, subscribes and leaves.
    async fn set_up(&self, i: usize) -> bool {
        let id = self.client_id(i);
        let result = async {
            let (mut client, _) = self.open(i, &id, false).await?;
            tokio::time::timeout(self.cfg.timeout, client.subscribe(&self.topic(i)))
                .await
                .map_err(|_| persistent::PersistentError::Timeout)??;
            client.disconnect(self.cfg.timeout).await
        }
        .await;
        match result {
            Ok(()) => true,
            Err(e) => {
                self.error("set-up", &e);
                false
            }
        }
    }

    /// Resumes session `i`, drains it and leaves: (session present, drained).
    async fn resume(&self, i: usize) -> Option<(bool, usize)> {
        let id = self.client_id(i);
        let result = async {
            let (mut client, connected) = self.open(i, &id, false).await?;
            report::record(
                &mut self.connack.lock().unwrap_or_else(|e| e.into_inner()),
                connected.connack,
            );
            let drained = client.drain(self.expected(i), self.cfg.timeout).await?;
            client.disconnect(self.cfg.timeout).await?;
            Ok::<_, persistent::PersistentError>((connected.session_present, drained))
        }
        .await;
        match result {
            Ok(r) => Some(r),
            Err(e) => {
                self.error("resume", &e);
                None
            }
        }
    }
}

fn rss_mib(pid: Option<u32>) -> Option<f64> {
    let pid = pid?;
    procstat::sample(pid)
        .ok()
        .map(|s| s.rss_kib as f64 / 1024.0)
}

/// Runs `task(i)` for every session, `concurrency` at a time; returns the
/// results in no particular order.
async fn for_each_session<T, F, Fut>(shared: &Arc<Shared>, concurrency: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<Shared>, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut out = Vec::with_capacity(shared.cfg.sessions);
    for i in 0..shared.cfg.sessions {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let fut = task(shared.clone(), i);
        tasks.spawn(async move {
            let result = fut.await;
            drop(permit);
            result
        });
        while let Some(done) = tasks.try_join_next() {
            if let Ok(r) = done {
                out.push(r);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(r) = done {
            out.push(r);
        }
    }
    out
}

/// Runs the scenario and returns its report.
pub async fn run(cfg: &SessionsConfig) -> Result<SessionsReport, SessionsError> {
    if cfg.sessions == 0 {
        return Err(SessionsError::NoSessions);
    }
    let addr = cfg.target.resolve().await?;
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        addr,
        run: RunId::new(),
        errors: Mutex::new(Default::default()),
        connack: Mutex::new(report::new_histogram()),
    });
    let rss_before_mib = rss_mib(cfg.broker_pid);

    let started = Instant::now();
    let set_up = for_each_session(
        &shared,
        cfg.concurrency,
        |s, i| async move { s.set_up(i).await },
    )
    .await
    .into_iter()
    .filter(|ok| *ok)
    .count() as u64;
    let setup_secs = started.elapsed().as_secs_f64();
    let rss_idle_mib = rss_mib(cfg.broker_pid);

    let started = Instant::now();
    if cfg.messages > 0 {
        let (mut publisher, _) = shared
            .open(cfg.sessions, &shared.client_id(cfg.sessions + 1), true)
            .await?;
        let payload = Bytes::from(vec![b'x'; cfg.payload_size]);
        let sessions = cfg.sessions;
        let s = shared.clone();
        publisher
            .publish_qos1(cfg.messages, cfg.inflight, payload, move |i| {
                s.topic(i % sessions)
            })
            .await?;
        publisher.disconnect(cfg.timeout).await?;
    }
    let store_secs = started.elapsed().as_secs_f64().max(1e-9);
    let deliveries_expected: u64 = (0..cfg.sessions).map(|i| shared.expected(i) as u64).sum();
    let rss_queued_mib = rss_mib(cfg.broker_pid);

    let started = Instant::now();
    let resumed: Vec<(bool, usize)> = if cfg.no_resume {
        Vec::new()
    } else {
        for_each_session(&shared, cfg.resume_concurrency, |s, i| async move {
            s.resume(i).await
        })
        .await
        .into_iter()
        .flatten()
        .collect()
    };
    let resume_secs = started.elapsed().as_secs_f64().max(1e-9);
    let drained: u64 = resumed.iter().map(|(_, n)| *n as u64).sum();
    let connack = shared.connack.lock().unwrap_or_else(|e| e.into_inner());
    let errors = shared
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(SessionsReport {
        scenario: "sessions",
        broker: cfg.target.address(),
        sessions: cfg.sessions,
        layout: cfg.layout,
        set_up,
        setup_secs,
        rss_before_mib,
        rss_idle_mib,
        rss_queued_mib,
        rss_after_mib: rss_mib(cfg.broker_pid),
        published: cfg.messages,
        deliveries_expected,
        store_secs,
        publish_rate: cfg.messages as f64 / store_secs,
        stored_rate: deliveries_expected as f64 / store_secs,
        resumed: resumed.len() as u64,
        session_present: resumed.iter().filter(|(p, _)| *p).count() as u64,
        drained,
        resume_secs,
        drain_rate: drained as f64 / resume_secs,
        resume_connack_us: LatencySummary::from_histogram(&connack),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;
    use crate::mqtt::MqttVersion;

    fn shared(layout: SessionLayout, sessions: usize, messages: usize) -> Shared {
        Shared {
            cfg: SessionsConfig {
                target: Target {
                    host: "127.0.0.1".into(),
                    port: 1883,
                    version: MqttVersion::V4,
                    keepalive: Duration::from_secs(60),
                    client_id_prefix: "pb".into(),
                    credentials: Credentials::Anonymous,
                },
                sessions,
                messages,
                payload_size: 8,
                layout,
                inflight: 10,
                concurrency: 10,
                resume_concurrency: 10,
                source_addrs: None,
                timeout: Duration::from_secs(1),
                broker_pid: None,
                no_resume: false,
            },
            addr: "127.0.0.1:1883".parse().unwrap(),
            run: RunId("r".into()),
            errors: Mutex::new(Default::default()),
            connack: Mutex::new(report::new_histogram()),
        }
    }

    #[test]
    fn expected_deliveries_add_up_to_what_is_published() {
        let own = shared(SessionLayout::Own, 7, 100);
        assert_eq!((0..7).map(|i| own.expected(i)).sum::<usize>(), 100);
        assert_eq!(own.topic(3), "bench/sessions/r/3");
        let all = shared(SessionLayout::Shared, 7, 100);
        assert!((0..7).all(|i| all.expected(i) == 100));
        assert_eq!(all.topic(3), all.topic(4));
    }
}
