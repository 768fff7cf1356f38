//! A PostgreSQL restart under load: the node reports the failure clearly,
//! PUBACKs nothing it could not store, and recovers by itself once
//! PostgreSQL is back.
//!
//! One node runs in this process on a PostgreSQL cluster of the test's own
//! (`common::postgres`, so the shared server other tests use is never
//! disturbed), with short pool timeouts. Alice streams messages to Bob at
//! QoS 1 over MQTT 5, several in flight, recording each PUBACK; Bob receives
//! live. Mid-stream PostgreSQL is stopped while publishes are in flight, and
//! started again on the same port and data later; the node is never
//! restarted. The scenario runs twice, on a fresh cluster and node each
//! time: with `pg_ctl stop -m fast` (sessions terminated, clean shutdown) and
//! with `-m immediate` (a crash, recovered from the WAL on start).
//!
//! What is checked, and why it is the strict contract:
//!
//! - **Reporting.** While PostgreSQL is down every publish is answered
//!   promptly (within the operation timeout plus slack, never hanging) with
//!   PUBACK 0x80 (Unspecified error) and an `Error` envelope `UNAVAILABLE`
//!   naming PostgreSQL on the sender's inbox; `/healthz` answers 503 with a
//!   reason naming PostgreSQL (`/livez` stays 200); the node logs the failure
//!   at warn/error. A 3.1.1 client, which has no failure PUBACK, is
//!   disconnected without an acknowledgement.
//! - **Recovery.** After PostgreSQL is started again, without touching the
//!   node, sends are acknowledged with success again within a deadline (a
//!   bounded poll), `/healthz` is back to 200, and every later message
//!   succeeds.
//! - **Nothing acknowledged is lost.** Every message that got a success
//!   PUBACK is in history.
//! - **A failure PUBACK does not promise "not stored".** An append whose
//!   commit reached PostgreSQL before the connection was cut is stored although
//!   the node saw it fail (docs/storage.md, Failures); the node cannot tell.
//!   So, in the history taken after recovery and before any retry, messages
//!   beyond the successfully acknowledged ones are allowed only if their
//!   attempt overlapped the stop or the restart (published before PostgreSQL
//!   had stopped, or after it was started again). A message published after
//!   PostgreSQL had stopped and answered before it was started again cannot
//!   have reached it and must not be stored. Such an ambiguous message was
//!   never fanned out: a failed append is not delivered to anyone.
//! - **Retries make it exact.** The client resends every failed message with
//!   its client message id after recovery; each is acknowledged with success.
//!   History then holds every message ever sent exactly once, seqs 1..n
//!   without a gap, an ambiguous one under the seq it first got (the retry is
//!   answered from the original).
//! - **Delivered exactly once.** Bob received every stored message exactly
//!   once (the first-time deliveries in seq order; an ambiguous one only when
//!   its retry redelivered it), and nothing else.
//!
//! Without PostgreSQL server binaries the test prints why and passes, except
//! when `CI` is set, where it fails.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::chat::{direct, password_of, sign_up_users, text_message, ChatClient};
use common::postgres::{server_bin_dir_or_skip, PgCluster};
use common::{test_config, within, TestNode};
use parley::config::StorageBackend;
use parley::server::Node;
use parley_proto::v1::{envelope::Kind, ChatMessage, Error as ErrorProto, ErrorCode};
use parley_proto::{decode_envelope, encode_envelope};
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use rumqttc::Outgoing;
use tokio::sync::mpsc;

/// `storage.postgres.operation_timeout_ms` of the node under test.
const OPERATION_TIMEOUT: Duration = Duration::from_millis(2_000);
/// `storage.postgres.connect_timeout_ms` of the node under test.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Longest a publish may wait for its failure PUBACK while PostgreSQL is down.
const FAILURE_BOUND: Duration = Duration::from_millis(4_000);
/// Longest the node may take to store messages again once PostgreSQL is back.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(20);
/// Longest `/healthz` may take to reflect a change of PostgreSQL's state.
const HEALTH_DEADLINE: Duration = Duration::from_secs(10);
/// Publishes Alice keeps in flight.
const WINDOW: usize = 8;
/// Successful sends before PostgreSQL is stopped.
const BEFORE: usize = 40;
/// At most this many publishes while `pg_ctl stop` runs.
const STOPPING_CAP: usize = 100;
/// Failed sends to see while PostgreSQL is down.
const DOWN: usize = 20;
/// Sends after recovery, all of which must succeed.
const AFTER: usize = 40;

/// When an attempt was published, relative to PostgreSQL's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Before the stop began (it may still have been in flight across it).
    Up,
    /// While `pg_ctl stop` ran.
    Stopping,
    /// After PostgreSQL had stopped, answered before it was started again.
    Down,
    /// After PostgreSQL was started again, until the first success.
    Recovering,
    /// After the first success following the restart.
    UpAgain,
    /// A resend of a failed message with its client message id.
    Retry,
}

/// One publish of a message and its PUBACK.
#[derive(Debug)]
struct Attempt {
    /// The message's client message id.
    id: String,
    /// When it was published.
    phase: Phase,
    /// Its PUBACK's reason and how long after sending it came.
    ack: Option<(PubAckReason, Duration)>,
}

impl Attempt {
    /// Whether it was acknowledged with success.
    fn succeeded(&self) -> bool {
        matches!(self.ack, Some((PubAckReason::Success, _)))
    }
    /// Whether it was acknowledged with a failure reason.
    fn failed(&self) -> bool {
        self.ack.is_some() && !self.succeeded()
    }
}

/// What the sender's event loop task reports.
enum SenderEvent {
    /// The PUBACK of attempt `index`, `took` after its PUBLISH was sent.
    Acked {
        index: usize,
        reason: PubAckReason,
        took: Duration,
    },
    /// An `Error` envelope on the sender's inbox.
    Error(ErrorProto),
    /// A stored message on the sender's inbox (its own copy).
    Own(ChatMessage),
    /// The connection failed.
    Lost(String),
}

/// Alice's MQTT 5 connection, streaming messages to one conversation with
/// several in flight. A task polls the event loop and reports PUBACKs
/// (matched to attempts through the order of PUBLISHes) and what arrives
/// on `u/alice/i`.
struct Sender {
    client: AsyncClient,
    /// Attempts queued to the client, in publish order, not yet sent.
    order: Arc<Mutex<VecDeque<usize>>>,
    events: mpsc::UnboundedReceiver<SenderEvent>,
    topic: String,
    attempts: Vec<Attempt>,
    errors: Vec<ErrorProto>,
    own: Vec<ChatMessage>,
    in_flight: usize,
    next_id: usize,
}

impl Sender {
    /// Connects Alice, subscribes to her inbox and starts the event loop task.
    async fn connect(node: &TestNode, conv: &str) -> Sender {
        let options = common::v5::options(node, "alice-stream", "alice", &password_of("alice"));
        let (client, mut eventloop) = common::v5::connect(options).await;
        client
            .subscribe("u/alice/i", QoS::AtLeastOnce)
            .await
            .expect("queue SUBSCRIBE");
        common::v5::next_matching(&mut eventloop, "SUBACK", |p| match p {
            Packet::SubAck(_) => Some(()),
            _ => None,
        })
        .await;
        let order: Arc<Mutex<VecDeque<usize>>> = Arc::default();
        let (report, events) = mpsc::unbounded_channel();
        let queued = order.clone();
        tokio::spawn(async move {
            let mut by_pkid: HashMap<u16, (usize, Instant)> = HashMap::new();
            loop {
                let event = match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let index = queued
                            .lock()
                            .unwrap()
                            .pop_front()
                            .expect("every PUBLISH sent was queued by the test");
                        by_pkid.insert(pkid, (index, Instant::now()));
                        continue;
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => match by_pkid.remove(&ack.pkid) {
                        Some((index, sent)) => SenderEvent::Acked {
                            index,
                            reason: ack.reason,
                            took: sent.elapsed(),
                        },
                        None => SenderEvent::Lost(format!("unsolicited PUBACK {ack:?}")),
                    },
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        match decode_envelope(&publish.payload).map(|e| e.kind) {
                            Ok(Some(Kind::Error(error))) => SenderEvent::Error(error),
                            Ok(Some(Kind::Message(message))) => SenderEvent::Own(message),
                            other => {
                                SenderEvent::Lost(format!("unexpected on the inbox: {other:?}"))
                            }
                        }
                    }
                    Ok(_) => continue,
                    Err(e) => SenderEvent::Lost(format!("{e:?}")),
                };
                let lost = matches!(event, SenderEvent::Lost(_));
                if report.send(event).is_err() || lost {
                    return;
                }
            }
        });
        Sender {
            client,
            order,
            events,
            topic: format!("s/{conv}"),
            attempts: Vec::new(),
            errors: Vec::new(),
            own: Vec::new(),
            in_flight: 0,
            next_id: 0,
        }
    }

    /// Publishes message `id` at QoS 1 as an attempt of `phase`.
    async fn publish(&mut self, id: String, phase: Phase) {
        let index = self.attempts.len();
        let payload = encode_envelope(&text_message(&id, &format!("text of {id}")).into());
        self.attempts.push(Attempt {
            id,
            phase,
            ack: None,
        });
        self.order.lock().unwrap().push_back(index);
        self.client
            .publish(self.topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await
            .expect("queue PUBLISH");
        self.in_flight += 1;
    }

    /// Publishes a new message (ids `m0000`, `m0001`, ...).
    async fn publish_new(&mut self, phase: Phase) {
        let id = format!("m{:04}", self.next_id);
        self.next_id += 1;
        self.publish(id, phase).await;
    }

    /// Publishes new messages until [`WINDOW`] are in flight.
    async fn fill(&mut self, phase: Phase) {
        while self.in_flight < WINDOW {
            self.publish_new(phase).await;
        }
    }

    /// The next report of the event loop task (cancel-safe).
    async fn recv(&mut self) -> SenderEvent {
        self.events
            .recv()
            .await
            .unwrap_or_else(|| SenderEvent::Lost("the event loop task ended".into()))
    }

    /// Takes in one report.
    fn file(&mut self, event: SenderEvent) {
        match event {
            SenderEvent::Acked {
                index,
                reason,
                took,
            } => {
                let attempt = &mut self.attempts[index];
                assert!(attempt.ack.is_none(), "{} acknowledged twice", attempt.id);
                attempt.ack = Some((reason, took));
                self.in_flight -= 1;
            }
            SenderEvent::Error(error) => self.errors.push(error),
            SenderEvent::Own(message) => self.own.push(message),
            SenderEvent::Lost(why) => panic!("Alice's connection failed: {why}"),
        }
    }

    /// Waits for the next report and takes it in.
    async fn next(&mut self) {
        let event = within("Alice's next PUBACK or delivery", self.recv()).await;
        self.file(event);
    }

    /// Waits until every attempt is acknowledged.
    async fn drain(&mut self) {
        while self.in_flight > 0 {
            self.next().await;
        }
    }

    /// Attempts of `phase`.
    fn of(&self, phase: Phase) -> impl Iterator<Item = &Attempt> {
        self.attempts.iter().filter(move |a| a.phase == phase)
    }
}

/// Captures the log of this test process (warn and above) for assertions.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Installs the capture as this process's tracing subscriber.
    fn install() -> Captured {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only tracing subscriber of this test binary");
        captured
    }

    /// Forgets what was captured so far.
    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// The captured lines containing `needle`.
    fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

/// `GET {path}` on the node: status and JSON body.
async fn get_json(node: &TestNode, path: &str) -> (u16, serde_json::Value) {
    let response = within(
        path,
        reqwest::Client::new()
            .get(format!("{}{path}", node.http()))
            .send(),
    )
    .await
    .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    let body = within(path, response.json::<serde_json::Value>())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: a JSON body: {e}"));
    (status, body)
}

/// Polls `/healthz` until it answers `want`; its body then. Bounded by
/// [`HEALTH_DEADLINE`].
async fn health_becomes(node: &TestNode, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + HEALTH_DEADLINE;
    loop {
        let (status, body) = get_json(node, "/healthz").await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still answers {status} {body} after {HEALTH_DEADLINE:?}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `id` to `topic` over a 3.1.1 client at QoS 1.
async fn publish_v4(client: &rumqttc::AsyncClient, topic: &str, id: &str) {
    let payload = encode_envelope(&text_message(id, &format!("text of {id}")).into());
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
        .await
        .expect("queue PUBLISH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_load_fails_cleanly_and_recovers_by_itself() {
    let Some(bin) = server_bin_dir_or_skip() else {
        return;
    };
    let logs = Captured::install();
    // A clean shutdown, then a crash (recovered from the WAL on start).
    for stop_mode in ["fast", "immediate"] {
        eprintln!("-- pg_ctl stop -m {stop_mode}");
        logs.clear();
        restart_under_load(&bin, stop_mode, &logs).await;
    }
}

/// The whole scenario on a fresh cluster and node, stopping PostgreSQL
/// with `pg_ctl stop -m {stop_mode}`.
async fn restart_under_load(bin: &std::path::Path, stop_mode: &'static str, logs: &Captured) {
    let started = Instant::now();
    let bin = bin.to_owned();
    let cluster = tokio::task::spawn_blocking(move || PgCluster::start(&bin))
        .await
        .expect("start the throwaway cluster");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.storage.backend = StorageBackend::Postgres;
    config.storage.postgres.url = cluster.url();
    config.storage.postgres.max_connections = 4;
    config.storage.postgres.connect_timeout_ms = CONNECT_TIMEOUT.as_millis() as u64;
    config.storage.postgres.operation_timeout_ms = OPERATION_TIMEOUT.as_millis() as u64;
    config.chat.messages_per_sec = 10_000.0;
    config.chat.message_burst = 10_000;
    let node = Node::start_with_bus(config, None)
        .await
        .expect("node starts on the throwaway cluster");
    let node = TestNode { node, dir };

    sign_up_users(&node, &["alice", "bob"]).await;
    let conv = direct("alice", "bob");
    let send_to = format!("s/{conv}");
    let mut bob = ChatClient::v5(&node, "bob", "bob-phone").await;
    let mut alice = Sender::connect(&node, &conv).await;
    let v4_options = || common::v4::options(&node, "alice-v4", "alice", &password_of("alice"));
    let (alice_v4, mut alice_v4_loop) = common::v4::connect(v4_options()).await;
    let (status, body) = get_json(&node, "/healthz").await;
    assert_eq!((status, &body), (200, &serde_json::json!({"status": "ok"})));

    // 1. Up: stream until BEFORE messages are acknowledged with success.
    while alice.of(Phase::Up).filter(|a| a.succeeded()).count() < BEFORE {
        alice.fill(Phase::Up).await;
        alice.next().await;
    }
    let failed_up: Vec<&Attempt> = alice.of(Phase::Up).filter(|a| a.failed()).collect();
    assert!(
        failed_up.is_empty(),
        "failures while PostgreSQL was up: {failed_up:?}"
    );

    // 2. Stop PostgreSQL while publishes are in flight, and keep publishing.
    let mut stopping = tokio::task::spawn_blocking(move || {
        cluster.pg_ctl_stop(stop_mode);
        cluster
    });
    let mut stopping_published = 0;
    let cluster = loop {
        while stopping_published < STOPPING_CAP && alice.in_flight < WINDOW {
            alice.publish_new(Phase::Stopping).await;
            stopping_published += 1;
        }
        if alice.in_flight == 0 {
            break within("pg_ctl stop", &mut stopping).await;
        }
        tokio::select! {
            stopped = &mut stopping => break stopped,
            event = within("Alice's next PUBACK", alice.recv()) => alice.file(event),
        }
    }
    .expect("stop PostgreSQL");
    eprintln!("PostgreSQL stopped after {stopping_published} publishes during the stop");

    // 3. Down: every publish fails promptly with 0x80 and is reported.
    while alice.of(Phase::Down).filter(|a| a.ack.is_some()).count() < DOWN {
        alice.fill(Phase::Down).await;
        alice.next().await;
    }
    alice.drain().await;
    let down: Vec<&Attempt> = alice.of(Phase::Down).collect();
    for attempt in &down {
        let (reason, took) = attempt.ack.expect("drained");
        assert_eq!(
            reason,
            PubAckReason::UnspecifiedError,
            "{} published while PostgreSQL was down",
            attempt.id
        );
        assert!(
            took <= FAILURE_BOUND,
            "{}: the failure PUBACK took {took:?}",
            attempt.id
        );
    }
    let slowest = down.iter().filter_map(|a| a.ack.map(|(_, t)| t)).max();
    eprintln!(
        "{} publishes while down, all PUBACK 0x80, slowest after {slowest:?}",
        down.len()
    );
    let body = health_becomes(&node, 503).await;
    assert_eq!(body["status"], "unavailable", "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("PostgreSQL"),
        "/healthz must name PostgreSQL: {body}"
    );
    eprintln!("/healthz while down: 503 {body}");
    let (status, _) = get_json(&node, "/livez").await;
    assert_eq!(status, 200, "/livez does not depend on the store");

    // A 3.1.1 client has no failure PUBACK: it is disconnected, unacknowledged.
    let v4_id = "v4-down".to_owned();
    publish_v4(&alice_v4, &send_to, &v4_id).await;
    let closed = within("the 3.1.1 connection to close", async {
        loop {
            match alice_v4_loop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(ack))) => {
                    panic!("a 3.1.1 publish acknowledged while PostgreSQL is down: {ack:?}")
                }
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    })
    .await;
    eprintln!("the 3.1.1 client was disconnected: {closed}");
    drop((alice_v4, alice_v4_loop));

    let logged = logs.lines_with("PostgreSQL");
    assert!(
        logged
            .iter()
            .any(|line| line.contains("WARN") || line.contains("ERROR")),
        "the node must log the failure at warn or error, naming PostgreSQL"
    );
    assert!(
        logs.lines_with("ERROR")
            .iter()
            .any(|line| line.contains("storage unreachable") && line.contains("PostgreSQL")),
        "the failed health check is logged as an error: {logged:#?}"
    );

    // 4. Start PostgreSQL again; the node recovers without being touched.
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.pg_ctl_start();
        cluster
    })
    .await
    .expect("start PostgreSQL again");
    let restarted = Instant::now();
    let deadline = restarted + RECOVERY_DEADLINE;
    loop {
        alice.publish_new(Phase::Recovering).await;
        alice.drain().await;
        let last = alice.attempts.last().expect("just published");
        if last.succeeded() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sends still fail {RECOVERY_DEADLINE:?} after PostgreSQL is back: {last:?}\n{}",
            cluster.server_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovering = alice.of(Phase::Recovering).count();
    eprintln!(
        "sends succeed again {:?} after the restart ({recovering} attempt(s))",
        restarted.elapsed()
    );
    health_becomes(&node, 200).await;
    eprintln!(
        "/healthz 200 again {:?} after the restart",
        restarted.elapsed()
    );
    while alice.of(Phase::UpAgain).count() < AFTER {
        alice.fill(Phase::UpAgain).await;
        alice.next().await;
    }
    alice.drain().await;
    let failed_after: Vec<&Attempt> = alice.of(Phase::UpAgain).filter(|a| a.failed()).collect();
    assert!(
        failed_after.is_empty(),
        "failures after recovery: {failed_after:?}"
    );

    // 5. History before any retry: nothing acknowledged lost, nothing that
    // never reached PostgreSQL stored, the rest (ambiguous) accounted for.
    let snapshot = bob.fetch_all(&conv).await;
    let stored: BTreeMap<String, &ChatMessage> = snapshot
        .iter()
        .map(|m| (m.client_message_id.clone(), m))
        .collect();
    assert_eq!(stored.len(), snapshot.len(), "each message stored once");
    assert_eq!(
        snapshot.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=snapshot.len() as u64).collect::<Vec<_>>(),
        "seqs run 1..n without a gap"
    );
    let succeeded: BTreeSet<&str> = alice
        .attempts
        .iter()
        .filter(|a| a.succeeded())
        .map(|a| a.id.as_str())
        .collect();
    for id in &succeeded {
        assert!(stored.contains_key(*id), "{id} acknowledged but not stored");
    }
    assert!(
        !stored.contains_key(&v4_id),
        "the 3.1.1 message sent while PostgreSQL was down is stored"
    );
    let mut ambiguous = BTreeSet::new();
    for attempt in alice.attempts.iter().filter(|a| a.failed()) {
        if !stored.contains_key(&attempt.id) {
            continue;
        }
        assert!(
            matches!(
                attempt.phase,
                Phase::Up | Phase::Stopping | Phase::Recovering
            ),
            "{} failed while PostgreSQL was down, yet is stored: {attempt:?}",
            attempt.id
        );
        ambiguous.insert(attempt.id.clone());
    }
    let known: BTreeSet<&str> = alice.attempts.iter().map(|a| a.id.as_str()).collect();
    for id in stored.keys() {
        assert!(known.contains(id.as_str()), "{id} stored but never sent");
    }
    let failed: Vec<String> = alice
        .attempts
        .iter()
        .filter(|a| a.failed())
        .map(|a| a.id.clone())
        .collect();
    eprintln!(
        "before retrying: {} stored, {} acknowledged, {} failed, {} of them stored anyway: {ambiguous:?}",
        snapshot.len(),
        succeeded.len(),
        failed.len(),
        ambiguous.len()
    );

    // 6. Retry every failed message with its client message id: each succeeds.
    for id in &failed {
        while alice.in_flight >= WINDOW {
            alice.next().await;
        }
        alice.publish(id.clone(), Phase::Retry).await;
    }
    alice.drain().await;
    let failed_retries: Vec<&Attempt> = alice.of(Phase::Retry).filter(|a| a.failed()).collect();
    assert!(
        failed_retries.is_empty(),
        "failed retries: {failed_retries:?}"
    );
    let (alice_v4, mut alice_v4_loop) = common::v4::connect(v4_options()).await;
    publish_v4(&alice_v4, &send_to, &v4_id).await;
    common::v4::next_matching(&mut alice_v4_loop, "the 3.1.1 retry's PUBACK", |p| {
        matches!(p, rumqttc::Packet::PubAck(_)).then_some(())
    })
    .await;
    // A marker: everything Bob gets for the above comes before it.
    alice.publish("marker".into(), Phase::Retry).await;
    alice.drain().await;
    assert!(alice.attempts.last().is_some_and(Attempt::succeeded));

    // 7. Every message ever sent is stored exactly once, seqs 1..n, the
    // ambiguous ones under the seq they first got.
    let history = bob.fetch_all(&conv).await;
    assert_eq!(
        history.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=history.len() as u64).collect::<Vec<_>>(),
        "seqs run 1..n without a gap"
    );
    assert_eq!(
        &history[..snapshot.len()],
        &snapshot[..],
        "what was stored before the retries is unchanged"
    );
    let mut everything: BTreeSet<String> = alice.attempts.iter().map(|a| a.id.clone()).collect();
    everything.insert(v4_id.clone());
    let in_history: Vec<String> = history
        .iter()
        .map(|m| m.client_message_id.clone())
        .collect();
    assert_eq!(
        in_history.iter().cloned().collect::<BTreeSet<_>>(),
        everything,
        "history holds every message sent"
    );
    assert_eq!(in_history.len(), everything.len(), "each exactly once");

    // 8. Bob got every stored message exactly once, as stored; first-time
    // deliveries in seq order.
    let mut received = Vec::new();
    loop {
        let message = bob.next_message().await;
        let done = message.client_message_id == "marker";
        received.push(message);
        if done {
            break;
        }
    }
    bob.assert_nothing_queued();
    let mut by_seq: Vec<&ChatMessage> = received.iter().collect();
    by_seq.sort_by_key(|m| m.seq);
    assert_eq!(
        by_seq.into_iter().cloned().collect::<Vec<_>>(),
        history,
        "Bob received every stored message exactly once, as stored"
    );
    let first_time: Vec<u64> = received
        .iter()
        .filter(|m| !ambiguous.contains(&m.client_message_id))
        .map(|m| m.seq)
        .collect();
    assert!(
        first_time.windows(2).all(|w| w[0] < w[1]),
        "live deliveries in seq order: {first_time:?}"
    );

    // 9. Every failure PUBACK came with an UNAVAILABLE error naming
    // PostgreSQL, and only those (Alice's own copy of the marker comes after
    // every error published before it).
    within("Alice's copy of the marker", async {
        while !alice.own.iter().any(|m| m.client_message_id == "marker") {
            let event = alice.recv().await;
            alice.file(event);
        }
    })
    .await;
    let mut expected_errors: Vec<&str> = alice
        .attempts
        .iter()
        .filter(|a| a.failed())
        .map(|a| a.id.as_str())
        .chain([v4_id.as_str()])
        .collect();
    expected_errors.sort_unstable();
    let mut errors: Vec<&str> = alice
        .errors
        .iter()
        .map(|e| e.client_message_id.as_str())
        .collect();
    errors.sort_unstable();
    assert_eq!(
        errors, expected_errors,
        "one Error envelope per failure PUBACK (and one for the 3.1.1 publish)"
    );
    for error in &alice.errors {
        assert_eq!(error.code(), ErrorCode::Unavailable, "{error:?}");
        assert_eq!(error.conversation_id, conv, "{error:?}");
        assert!(error.message.contains("PostgreSQL"), "{error:?}");
    }

    eprintln!(
        "{} messages stored and delivered once each ({} failed first, {} ambiguous) in {:?}",
        history.len(),
        failed.len() + 1,
        ambiguous.len(),
        started.elapsed()
    );
    drop(bob);
    drop(alice);
    node.node.shutdown().await.expect("clean shutdown");
    drop(cluster);
}
