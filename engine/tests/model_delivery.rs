//! Model-based property test of delivery through one [`Router`].
//!
//! proptest generates a scenario: engine bounds (`max_queued_messages`
//! 2/4/1,000, `max_inflight` 1/2/64), four clients (each with a session
//! expiry of 0, 5 or 60 s and a Receive Maximum of 1, 3 or 100), and a
//! sequence of actions: connect (Clean Start 0 = resume, or 1, with a new
//! Receive Maximum; connecting while connected is a take-over, after which
//! the old connection's task ends), disconnect (normally, with a DISCONNECT
//! Session Expiry of 0 = explicit end or 3 s, or with the connection dying
//! right after the engine wrote into it, so the client never sees those
//! bytes), subscribe / unsubscribe (six filters with `+` and `#`, QoS
//! 0/1/2), publish (QoS 0/1/2 to four topics; for QoS 2 the test plays the
//! broker's inbound rule, `is_qos2_pending` / `begin_qos2`, and the client
//! may resend it with DUP or release it with PUBREL, across reconnects
//! too), read (`poll_transmit` until
//! `wants_transmit` is false, decoded with rumqttc), acknowledge one or all
//! of the deliveries the client knows of (PUBACK; PUBREC, after which the
//! broker's PUBREL is taken as received; PUBCOMP), and time passing with
//! `Router::tick`. Every client starts connected with Clean Start 1.
//!
//! # The model
//!
//! For each client the model holds its live session ("epoch"), if any. An
//! epoch starts when a connect does not resume (Clean Start 1, or no live
//! session) and ends at Clean Start 1, at a disconnect with expiry 0
//! (configured, or set by DISCONNECT), or at the first tick at or after
//! `detached_at + expiry`. Per epoch the model keeps:
//!
//! - `subs`: filter -> granted QoS;
//! - `queue`: the deliveries the engine must hold, in order, mirroring the
//!   documented bound: past `max_queued_messages` the oldest queued QoS 0
//!   goes, else the new message (QoS 0 or 1/2) is dropped;
//! - `inflight`: QoS 1/2 deliveries written and not completed, in send
//!   order, with packet id, stage (PUBACK / PUBREC / PUBCOMP awaited) and
//!   whether the client saw the PUBLISH (a lost write hides it);
//! - `accepted` (message -> delivered QoS), `done` (PUBACKed / PUBRECed),
//!   `received` (seen by the client), and the drop counters;
//! - `incoming`: the client's own QoS 2 publishes awaiting its PUBREL.
//!
//! # What is checked
//!
//! - At each publish, the set of sessions matched is computed by the model
//!   from its own subscription table (live epochs only, whether connected
//!   or not), at QoS min(published, highest granted QoS of the matching
//!   filters); `PublishReport::delivered` and `PublishReport::dropped` must
//!   equal the model's prediction exactly (which session, which QoS), and
//!   each session's `dropped_qos0` / `dropped_qos12` / `sent` counters too.
//! - Every PUBLISH written by `poll_transmit` has DUP 0, must be a queued
//!   delivery of that session (so: never a message published while it had
//!   no matching subscription, never one reported dropped, never one sent
//!   before), at the model's QoS, on its topic, with a packet id not in use
//!   (0 for QoS 0).
//! - A read leaves nothing the window allows unsent: the queue is empty or
//!   its front is QoS 1/2 with `min(Receive Maximum, max_inflight)` in flight.
//! - A resume writes exactly the model's in-flight deliveries, in their
//!   original order: PUBLISH with DUP 1, the same packet id and QoS for those
//!   awaiting PUBACK/PUBREC, PUBREL for those awaiting PUBCOMP. A new session
//!   writes nothing. CONNACK Session Present and take-over match the model;
//!   a taken-over attachment is powerless (its subscribe, unsubscribe and
//!   detach, even with expiry 0 and a will, change nothing).
//! - QoS 2 exactly once: no PUBLISH of a message after the client's PUBREC
//!   (its in-flight entry is then at the PUBCOMP stage, so only PUBREL may
//!   follow), and a resend before PUBREC carries DUP 1 and the same packet id.
//!   Any message the client receives a second time must carry DUP 1.
//! - Per session, messages from one publisher to one topic are first
//!   received in publish order.
//! - Every acknowledgement of a delivery the client knows is accepted
//!   (`on_puback` true, `on_pubrec` Released, `on_pubcomp` true).
//! - Inbound QoS 2 is routed once: a new packet id is not pending, a resend
//!   of one awaiting PUBREL is (also after a resume), PUBREL releases it;
//!   a new session starts with none pending.
//! - The session table, each connected session's `queued()`, `inflight()`,
//!   `qos2_pending()` and its counters match the model after every action;
//!   ticks expire exactly the sessions whose expiry passed.
//! - At the end every live session is resumed if needed and drained (read,
//!   acknowledge everything, repeat): every QoS 1/2 message accepted for it
//!   (matched and not reported dropped) must then have been received and
//!   acknowledged (at least once; exactly once for QoS 2 by the rules above),
//!   and nothing may stay queued or in flight.

mod support;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parley_engine::message::{QoS, SubscriptionOptions};
use parley_engine::router::{Attachment, ConnectRequest, Detach, Router, RouterConfig};
use parley_engine::session::{PubRecOutcome, SessionLimits};
use proptest::prelude::*;
use proptest::sample::Index;
use rumqttc::v5::mqttbytes::v5::{Packet as V5Packet, Publish};
use support::*;

const FILTERS: [&str; 6] = ["a/b", "a/+", "a/#", "+/b", "#", "b/c"];
const TOPICS: [&str; 4] = ["a/b", "a/c", "b/b", "b/c"];
const CLIENTS: usize = 4;
const NAMESPACE: &str = "u";
/// Parley's Receive Maximum: QoS 2 publishes of one client awaiting PUBREL.
const INBOUND_MAXIMUM: u16 = 4;

/// MQTT filter matching, written independently of the engine's trie.
fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn qos_of(v: u8) -> QoS {
    QoS::from_u8(v).expect("0..=2")
}

fn key(c: usize) -> String {
    format!("c{c}")
}

#[derive(Debug, Clone)]
struct ClientCfg {
    expiry: u32,
    receive_maximum: u16,
}

#[derive(Debug, Clone)]
enum Action {
    Connect {
        c: usize,
        clean: bool,
        receive_maximum: u16,
    },
    /// `expiry`: the Session Expiry of an MQTT 5 DISCONNECT (0 ends the
    /// session); `lose`: the connection dies right after the engine wrote.
    Disconnect {
        c: usize,
        expiry: Option<u32>,
        lose: bool,
    },
    Subscribe {
        c: usize,
        f: usize,
        qos: u8,
    },
    Unsubscribe {
        c: usize,
        f: usize,
    },
    Publish {
        c: usize,
        t: usize,
        qos: u8,
    },
    /// The publisher resends a QoS 2 PUBLISH still awaiting its PUBREL (DUP).
    Resend {
        c: usize,
        pick: Index,
    },
    /// The publisher sends PUBREL for one of its QoS 2 publishes.
    Release {
        c: usize,
        pick: Index,
    },
    Read {
        c: usize,
    },
    Ack {
        c: usize,
        pick: Index,
        all: bool,
    },
    Tick {
        secs: u64,
    },
}

#[derive(Debug, Clone)]
struct Scenario {
    max_queued: usize,
    max_inflight: u16,
    clients: Vec<ClientCfg>,
    /// Subscriptions (filter, QoS) each client makes after its first connect.
    initial: Vec<Vec<(usize, u8)>>,
    actions: Vec<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Ack,
    Rec,
    Comp,
}

#[derive(Debug)]
struct Flight {
    msg: usize,
    pkid: u16,
    stage: Stage,
    /// The client saw the PUBLISH (it was not lost with its connection).
    known: bool,
}

#[derive(Debug, Default)]
struct Epoch {
    subs: HashMap<&'static str, QoS>,
    queue: VecDeque<(usize, QoS)>,
    /// In send order.
    inflight: Vec<Flight>,
    accepted: HashMap<usize, QoS>,
    done: HashSet<usize>,
    received: HashSet<usize>,
    last: HashMap<(usize, usize), usize>,
    sent: u64,
    /// The client's own QoS 2 publishes awaiting its PUBREL: (packet id, message).
    incoming: Vec<(u16, usize)>,
    dropped_qos0: u64,
    dropped_qos12: u64,
}

impl Epoch {
    /// The client application sees PUBLISH `msg`.
    fn receive(&mut self, msgs: &[(usize, usize)], msg: usize, dup: bool, who: &str) {
        if self.received.insert(msg) {
            if let Some(prev) = self.last.insert(msgs[msg], msg) {
                assert!(
                    prev < msg,
                    "{who}: message {msg} first received after {prev}, a later \
                     message of the same publisher and topic"
                );
            }
        } else {
            assert!(dup, "{who}: message {msg} received again without DUP");
            assert!(
                !self.done.contains(&msg),
                "{who}: message {msg} received again after it was acknowledged"
            );
        }
    }
}

struct Client {
    cfg: ClientCfg,
    /// The session expiry in force once disconnected.
    expiry: u32,
    /// The Receive Maximum of the current connection.
    receive_maximum: u16,
    /// The next packet id the client uses for its own QoS 2 publishes.
    next_pkid: u16,
    att: Option<Attachment>,
    epoch: Option<Epoch>,
    detached_at: Option<u64>,
}

struct World {
    router: Router,
    base: Instant,
    now: u64,
    max_queued: usize,
    max_inflight: u16,
    clients: Vec<Client>,
    /// Message id -> (publisher, topic index).
    msgs: Vec<(usize, usize)>,
}

fn msg_id(p: &Publish) -> usize {
    std::str::from_utf8(&p.payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected payload {:?}", p.payload))
}

impl World {
    fn new(s: &Scenario) -> World {
        let config = RouterConfig {
            session: SessionLimits {
                max_queued_messages: s.max_queued,
                max_inflight: s.max_inflight,
                receive_maximum: INBOUND_MAXIMUM,
                ..SessionLimits::default()
            },
            ..RouterConfig::default()
        };
        World {
            router: Router::new(config),
            base: now(),
            now: 0,
            max_queued: s.max_queued,
            max_inflight: s.max_inflight,
            clients: s
                .clients
                .iter()
                .map(|cfg| Client {
                    cfg: cfg.clone(),
                    receive_maximum: cfg.receive_maximum,
                    expiry: cfg.expiry,
                    next_pkid: 1,
                    att: None,
                    epoch: None,
                    detached_at: None,
                })
                .collect(),
            msgs: Vec::new(),
        }
    }

    fn at(&self) -> Instant {
        self.base + Duration::from_secs(self.now)
    }

    fn apply(&mut self, action: &Action) {
        match *action {
            Action::Connect {
                c,
                clean,
                receive_maximum,
            } => self.connect(c, clean, receive_maximum),
            Action::Disconnect { c, expiry, lose } => self.disconnect(c, expiry, lose),
            Action::Subscribe { c, f, qos } => self.subscribe(c, f, qos_of(qos)),
            Action::Unsubscribe { c, f } => self.unsubscribe(c, f),
            Action::Publish { c, t, qos } => self.publish(c, t, qos_of(qos)),
            Action::Resend { c, pick } => self.resend(c, pick),
            Action::Release { c, pick } => self.release(c, pick),
            Action::Read { c } => self.read(c),
            Action::Ack { c, pick, all } => self.ack(c, Some(pick), all),
            Action::Tick { secs } => self.tick(secs),
        }
        self.check_invariants();
    }

    fn connect(&mut self, c: usize, clean: bool, receive_maximum: u16) {
        let at = self.at();
        let client = &mut self.clients[c];
        let resume = client.epoch.is_some() && !clean;
        let was_connected = client.att.is_some();
        let mut out = BytesMut::new();
        let connected = self.router.connect(
            ConnectRequest {
                key: key(c),
                namespace: NAMESPACE.into(),
                clean_start: clean,
                session_expiry_secs: client.cfg.expiry,
                params: v5(receive_maximum),
                will: None,
            },
            at,
            &mut out,
        );
        let who = key(c);
        assert_eq!(connected.session_present, resume, "{who}: Session Present");
        assert_eq!(connected.took_over, was_connected, "{who}: take-over");
        if let Some(old) = client.att.replace(connected.attachment) {
            assert!(
                !old.is_current(),
                "{who}: taken-over attachment still current"
            );
            assert!(
                self.router.with_session(&old, |_| ()).is_none(),
                "{who}: taken-over attachment still reaches the session"
            );
            let sub = (FILTERS[4].to_owned(), SubscriptionOptions::default());
            assert!(self.router.subscribe(&old, &[sub], at).is_none());
            assert!(self
                .router
                .unsubscribe(&old, &[FILTERS[0].into()])
                .is_none());
            // The old connection's task ends as badly as it can: a no-op.
            self.router.detach(
                &old,
                Detach {
                    publish_will: true,
                    session_expiry_secs: Some(0),
                },
                at,
            );
        }
        client.detached_at = None;
        client.receive_maximum = receive_maximum;
        let packets = decode_v5(&out);
        if !resume {
            assert!(packets.is_empty(), "{who}: a new session wrote {packets:?}");
            client.epoch = Some(Epoch::default());
            return;
        }
        let epoch = client.epoch.as_mut().expect("resumed");
        let expected: Vec<(bool, u16)> = epoch
            .inflight
            .iter()
            .map(|f| (f.stage != Stage::Comp, f.pkid))
            .collect();
        let got: Vec<(bool, u16)> = packets
            .iter()
            .map(|p| match p {
                V5Packet::Publish(p) => (true, p.pkid),
                V5Packet::PubRel(r) => (false, r.pkid),
                other => panic!("{who}: resume wrote {other:?}"),
            })
            .collect();
        assert_eq!(
            got, expected,
            "{who}: resume must resend every in-flight delivery (PUBLISH=true / \
             PUBREL=false, packet id) in original order"
        );
        for p in packets {
            let V5Packet::Publish(p) = p else { continue };
            let msg = msg_id(&p);
            assert!(p.dup, "{who}: resent PUBLISH {msg} without DUP");
            let flight = epoch
                .inflight
                .iter_mut()
                .find(|f| f.pkid == p.pkid)
                .expect("checked above");
            assert_eq!(
                flight.msg, msg,
                "{who}: resent packet id {} carries another message",
                p.pkid
            );
            assert_eq!(p.qos as u8, epoch.accepted[&msg] as u8, "{who}: resent QoS");
            flight.known = true;
            epoch.receive(&self.msgs, msg, true, &who);
        }
    }

    fn disconnect(&mut self, c: usize, expiry: Option<u32>, lose: bool) {
        let Some(att) = self.clients[c].att.clone() else {
            return;
        };
        // A session that began with expiry 0 cannot be given one at DISCONNECT
        // (the broker refuses it): such a client sends none.
        let cfg_expiry = self.clients[c].cfg.expiry;
        let expiry = expiry.filter(|_| cfg_expiry > 0);
        if lose {
            // The engine writes, then the connection dies before the client reads.
            self.transmit(c, &att, true);
        }
        self.router.detach(
            &att,
            Detach {
                publish_will: false,
                session_expiry_secs: expiry,
            },
            self.at(),
        );
        let client = &mut self.clients[c];
        client.att = None;
        client.expiry = expiry.unwrap_or(cfg_expiry);
        if client.expiry == 0 {
            client.epoch = None;
        } else {
            client.detached_at = Some(self.now);
        }
    }

    fn subscribe(&mut self, c: usize, f: usize, qos: QoS) {
        let Some(att) = &self.clients[c].att else {
            return;
        };
        let options = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        let result = self
            .router
            .subscribe(att, &[(FILTERS[f].to_owned(), options)], self.at())
            .expect("current attachment");
        assert_eq!(result, vec![Ok(qos)], "{}: SUBACK", key(c));
        let epoch = self.clients[c].epoch.as_mut().expect("connected");
        epoch.subs.insert(FILTERS[f], qos);
    }

    fn unsubscribe(&mut self, c: usize, f: usize) {
        let Some(att) = &self.clients[c].att else {
            return;
        };
        let result = self
            .router
            .unsubscribe(att, &[FILTERS[f].to_owned()])
            .expect("current attachment");
        let epoch = self.clients[c].epoch.as_mut().expect("connected");
        let existed = epoch.subs.remove(FILTERS[f]).is_some();
        assert_eq!(result, vec![existed], "{}: UNSUBACK", key(c));
    }

    fn publish(&mut self, c: usize, t: usize, qos: QoS) {
        let Some(att) = self.clients[c].att.clone() else {
            return;
        };
        let id = self.msgs.len();
        if qos == QoS::ExactlyOnce {
            // The broker's inbound QoS 2 rule: route unless the packet id
            // already awaits PUBREL, then PUBREC.
            let client = &mut self.clients[c];
            let epoch = client.epoch.as_mut().expect("connected");
            if epoch.incoming.len() >= usize::from(INBOUND_MAXIMUM) {
                return; // the client honours Parley's Receive Maximum
            }
            let mut pkid = client.next_pkid;
            while epoch.incoming.iter().any(|(p, _)| *p == pkid) {
                pkid = pkid.checked_add(1).unwrap_or(1);
            }
            client.next_pkid = pkid.checked_add(1).unwrap_or(1);
            let begun = self.router.with_session(&att, |s| {
                let pending = s.is_qos2_pending(pkid);
                (pending, s.begin_qos2(pkid))
            });
            assert_eq!(
                begun,
                Some((false, Ok(()))),
                "{}: new QoS 2 publish {pkid}",
                key(c)
            );
            epoch.incoming.push((pkid, id));
        }
        self.msgs.push((c, t));
        let mut m = message(TOPICS[t], &id.to_string(), qos);
        m.origin = Some(att.slot().id());
        let mut delivered = 0;
        let mut dropped: Vec<(String, QoS)> = Vec::new();
        for (j, client) in self.clients.iter_mut().enumerate() {
            let Some(e) = client.epoch.as_mut() else {
                continue;
            };
            let granted = e
                .subs
                .iter()
                .filter(|(f, _)| filter_matches(f, TOPICS[t]))
                .map(|(_, q)| *q)
                .max();
            let Some(granted) = granted else { continue };
            let dq = qos.min(granted);
            loop {
                if e.queue.len() < self.max_queued {
                    e.queue.push_back((id, dq));
                    e.accepted.insert(id, dq);
                    delivered += 1;
                    break;
                }
                let oldest_qos0 = e.queue.iter().position(|(_, q)| *q == QoS::AtMostOnce);
                match oldest_qos0 {
                    Some(at) if dq != QoS::AtMostOnce => {
                        e.queue.remove(at);
                        e.dropped_qos0 += 1;
                    }
                    _ => {
                        if dq == QoS::AtMostOnce {
                            e.dropped_qos0 += 1;
                        } else {
                            e.dropped_qos12 += 1;
                        }
                        dropped.push((key(j), dq));
                        break;
                    }
                }
            }
        }
        let _ = att;
        let report = self
            .router
            .publish(m, NAMESPACE, self.at())
            .expect("not retained");
        let mut got: Vec<(String, QoS)> = report
            .dropped
            .iter()
            .map(|(k, q)| (k.to_string(), *q))
            .collect();
        got.sort();
        dropped.sort();
        assert_eq!(
            got, dropped,
            "message {id}: sessions that dropped it (queue full)"
        );
        assert_eq!(
            report.delivered, delivered,
            "message {id}: sessions it was queued for"
        );
    }

    fn resend(&mut self, c: usize, pick: Index) {
        let Some(att) = &self.clients[c].att else {
            return;
        };
        let epoch = self.clients[c].epoch.as_ref().expect("connected");
        if epoch.incoming.is_empty() {
            return;
        }
        let (pkid, msg) = epoch.incoming[pick.index(epoch.incoming.len())];
        let pending = self.router.with_session(att, |s| s.is_qos2_pending(pkid));
        assert_eq!(
            pending,
            Some(true),
            "{}: resent QoS 2 publish {pkid} (message {msg}) would be routed again",
            key(c)
        );
    }

    fn release(&mut self, c: usize, pick: Index) {
        let Some(att) = self.clients[c].att.clone() else {
            return;
        };
        let epoch = self.clients[c].epoch.as_mut().expect("connected");
        if epoch.incoming.is_empty() {
            return;
        }
        let (pkid, msg) = epoch.incoming.remove(pick.index(epoch.incoming.len()));
        let released = self.router.with_session(&att, |s| {
            let released = s.on_pubrel(pkid);
            (released, s.is_qos2_pending(pkid), s.qos2_pending())
        });
        assert_eq!(
            released,
            Some((true, false, epoch.incoming.len())),
            "{}: PUBREL {pkid} (message {msg}): (released, still pending, pending)",
            key(c)
        );
    }

    /// Drains what the session may send into a buffer and checks it;
    /// `lost`: the client never sees it.
    fn transmit(&mut self, c: usize, att: &Attachment, lost: bool) {
        let at = self.at();
        let mut out = BytesMut::new();
        self.router
            .with_session(att, |s| {
                while s.wants_transmit() {
                    s.poll_transmit(at, &mut out, |_| {});
                }
            })
            .expect("current attachment");
        let who = key(c);
        let epoch = self.clients[c].epoch.as_mut().expect("connected");
        for p in decode_v5(&out) {
            let V5Packet::Publish(p) = p else {
                panic!("{who}: poll_transmit wrote {p:?}");
            };
            let msg = msg_id(&p);
            assert!(!p.dup, "{who}: first transmission of {msg} has DUP set");
            let pos = epoch
                .queue
                .iter()
                .position(|(m, _)| *m == msg)
                .unwrap_or_else(|| {
                    panic!(
                        "{who}: sent message {msg}, which is not queued for it (no matching \
                         subscription when published, reported dropped, evicted, or sent before)"
                    )
                });
            let (_, qos) = epoch.queue.remove(pos).expect("found");
            assert_eq!(
                p.qos as u8, qos as u8,
                "{who}: message {msg} at QoS min(published, granted)"
            );
            assert_eq!(&p.topic[..], TOPICS[self.msgs[msg].1].as_bytes());
            epoch.sent += 1;
            if qos == QoS::AtMostOnce {
                assert_eq!(p.pkid, 0, "{who}: QoS 0 with a packet id");
            } else {
                assert_ne!(p.pkid, 0, "{who}: QoS {} without packet id", qos as u8);
                assert!(
                    epoch.inflight.iter().all(|f| f.pkid != p.pkid),
                    "{who}: packet id {} reused while in flight",
                    p.pkid
                );
                epoch.inflight.push(Flight {
                    msg,
                    pkid: p.pkid,
                    stage: if qos == QoS::AtLeastOnce {
                        Stage::Ack
                    } else {
                        Stage::Rec
                    },
                    known: !lost,
                });
            }
            if !lost {
                epoch.receive(&self.msgs, msg, false, &who);
            }
        }
        let window = usize::from(
            self.clients[c]
                .receive_maximum
                .min(self.max_inflight)
                .max(1),
        );
        let epoch = self.clients[c].epoch.as_ref().expect("connected");
        if let Some((msg, qos)) = epoch.queue.front() {
            assert!(
                *qos != QoS::AtMostOnce && epoch.inflight.len() >= window,
                "{who}: message {msg} (QoS {}) left queued with {} of {window} in flight",
                *qos as u8,
                epoch.inflight.len()
            );
        }
    }

    fn read(&mut self, c: usize) {
        if let Some(att) = self.clients[c].att.clone() {
            self.transmit(c, &att, false);
        }
    }

    fn ack(&mut self, c: usize, pick: Option<Index>, all: bool) {
        let Some(att) = self.clients[c].att.clone() else {
            return;
        };
        let who = key(c);
        let epoch = self.clients[c].epoch.as_mut().expect("connected");
        let known: Vec<u16> = epoch
            .inflight
            .iter()
            .filter(|f| f.known)
            .map(|f| f.pkid)
            .collect();
        let chosen = match pick {
            _ if known.is_empty() => return,
            Some(pick) if !all => vec![known[pick.index(known.len())]],
            _ => known,
        };
        for pkid in chosen {
            let i = epoch
                .inflight
                .iter()
                .position(|f| f.pkid == pkid)
                .expect("known");
            let msg = epoch.inflight[i].msg;
            match epoch.inflight[i].stage {
                Stage::Ack => {
                    let ok = self.router.with_session(&att, |s| s.on_puback(pkid));
                    assert_eq!(ok, Some(true), "{who}: PUBACK {pkid} (message {msg})");
                    epoch.inflight.remove(i);
                    epoch.done.insert(msg);
                }
                Stage::Rec => {
                    let ok = self.router.with_session(&att, |s| s.on_pubrec(pkid, false));
                    assert_eq!(
                        ok,
                        Some(PubRecOutcome::Released),
                        "{who}: PUBREC {pkid} (message {msg})"
                    );
                    // The broker answers PUBREL; the client now owes PUBCOMP.
                    epoch.inflight[i].stage = Stage::Comp;
                    epoch.done.insert(msg);
                }
                Stage::Comp => {
                    let ok = self.router.with_session(&att, |s| s.on_pubcomp(pkid));
                    assert_eq!(ok, Some(true), "{who}: PUBCOMP {pkid} (message {msg})");
                    epoch.inflight.remove(i);
                }
            }
        }
    }

    fn tick(&mut self, secs: u64) {
        self.now += secs;
        let report = self.router.tick(self.at());
        let mut expired = 0;
        for client in &mut self.clients {
            let due = client
                .detached_at
                .is_some_and(|t| self.now >= t + u64::from(client.expiry));
            if client.att.is_none() && client.epoch.is_some() && due {
                client.epoch = None;
                client.detached_at = None;
                expired += 1;
            }
        }
        assert_eq!(report.sessions_expired, expired, "sessions expired at tick");
    }

    fn check_invariants(&self) {
        let live = self.clients.iter().filter(|c| c.epoch.is_some()).count();
        assert_eq!(self.router.session_count(), live, "live sessions");
        for (c, client) in self.clients.iter().enumerate() {
            let who = key(c);
            let stats = self.router.session_stats(&who);
            let Some(epoch) = &client.epoch else {
                assert!(stats.is_none(), "{who}: its session should have ended");
                continue;
            };
            let stats = stats.unwrap_or_else(|| panic!("{who}: its session ended"));
            assert_eq!(
                (stats.sent, stats.dropped_qos0, stats.dropped_qos12),
                (epoch.sent, epoch.dropped_qos0, epoch.dropped_qos12),
                "{who}: counters (sent, dropped QoS 0, dropped QoS 1/2)"
            );
            if let Some(att) = &client.att {
                let state = self.router.with_session(att, |s| {
                    (s.queued(), s.inflight(), s.qos2_pending(), s.is_attached())
                });
                assert_eq!(
                    state,
                    Some((
                        epoch.queue.len(),
                        epoch.inflight.len(),
                        epoch.incoming.len(),
                        true
                    )),
                    "{who}: (queued, in flight, QoS 2 publishes awaiting PUBREL, attached)"
                );
            }
        }
    }

    /// Resumes and drains every live session, then checks delivery.
    fn finish(&mut self) {
        for c in 0..self.clients.len() {
            if self.clients[c].epoch.is_none() {
                continue;
            }
            if self.clients[c].att.is_none() {
                let receive_maximum = self.clients[c].receive_maximum;
                self.connect(c, false, receive_maximum);
            }
            let att = self.clients[c].att.clone().expect("connected");
            for _ in 0..10_000 {
                self.transmit(c, &att, false);
                self.ack(c, None, true);
                let epoch = self.clients[c].epoch.as_ref().expect("live");
                if epoch.queue.is_empty() && epoch.inflight.is_empty() {
                    break;
                }
            }
            self.check_invariants();
            let who = key(c);
            let epoch = self.clients[c].epoch.as_ref().expect("live");
            assert!(
                epoch.queue.is_empty() && epoch.inflight.is_empty(),
                "{who}: could not drain"
            );
            let mut missing: Vec<usize> = epoch
                .accepted
                .iter()
                .filter(|(m, q)| {
                    **q != QoS::AtMostOnce
                        && !(epoch.done.contains(m) && epoch.received.contains(m))
                })
                .map(|(m, _)| *m)
                .collect();
            missing.sort_unstable();
            assert!(
                missing.is_empty(),
                "{who}: QoS 1/2 messages never delivered nor reported dropped: {missing:?}"
            );
        }
    }
}

fn receive_maximum() -> impl Strategy<Value = u16> {
    prop_oneof![Just(1u16), Just(3), Just(100)]
}

fn action() -> impl Strategy<Value = Action> {
    let c = 0..CLIENTS;
    prop_oneof![
        2 => (c.clone(), any::<bool>(), receive_maximum()).prop_map(|(c, clean, receive_maximum)| {
            Action::Connect { c, clean, receive_maximum }
        }),
        2 => (
            c.clone(),
            prop_oneof![6 => Just(None), 1 => Just(Some(0u32)), 1 => Just(Some(3))],
            any::<bool>(),
        )
            .prop_map(|(c, expiry, lose)| Action::Disconnect { c, expiry, lose }),
        3 => (c.clone(), 0..FILTERS.len(), 0..3u8)
            .prop_map(|(c, f, qos)| Action::Subscribe { c, f, qos }),
        1 => (c.clone(), 0..FILTERS.len()).prop_map(|(c, f)| Action::Unsubscribe { c, f }),
        8 => (c.clone(), 0..TOPICS.len(), 0..3u8)
            .prop_map(|(c, t, qos)| Action::Publish { c, t, qos }),
        1 => (c.clone(), any::<Index>()).prop_map(|(c, pick)| Action::Resend { c, pick }),
        2 => (c.clone(), any::<Index>()).prop_map(|(c, pick)| Action::Release { c, pick }),
        4 => c.clone().prop_map(|c| Action::Read { c }),
        4 => (c, any::<Index>(), prop::bool::weighted(0.3))
            .prop_map(|(c, pick, all)| Action::Ack { c, pick, all }),
        1 => prop_oneof![Just(1u64), Just(4), Just(40)].prop_map(|secs| Action::Tick { secs }),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let client = (
        prop_oneof![Just(0u32), Just(5), Just(60)],
        receive_maximum(),
    )
        .prop_map(|(expiry, receive_maximum)| ClientCfg {
            expiry,
            receive_maximum,
        });
    (
        prop_oneof![Just(2usize), Just(4), Just(1_000)],
        prop_oneof![Just(1u16), Just(2), Just(64)],
        prop::collection::vec(client, CLIENTS),
        prop::collection::vec(
            prop::collection::vec((0..FILTERS.len(), 0..3u8), 0..3),
            CLIENTS,
        ),
        prop::collection::vec(action(), 1..200),
    )
        .prop_map(
            |(max_queued, max_inflight, clients, initial, actions)| Scenario {
                max_queued,
                max_inflight,
                clients,
                initial,
                actions,
            },
        )
}

fn run(scenario: &Scenario) {
    let mut world = World::new(scenario);
    for c in 0..CLIENTS {
        world.connect(c, true, scenario.clients[c].receive_maximum);
        for &(f, qos) in &scenario.initial[c] {
            world.subscribe(c, f, qos_of(qos));
        }
    }
    world.check_invariants();
    for action in &scenario.actions {
        world.apply(action);
    }
    world.finish();
}

proptest! {
    // 1,024 cases take a few seconds in debug; PROPTEST_CASES=N runs more.
    #![proptest_config(ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            ProptestConfig::default().cases
        } else {
            1024
        },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn deliveries_follow_the_model(scenario in scenario()) {
        run(&scenario);
    }
}
