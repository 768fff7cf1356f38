//! What the router tells a cluster layer: a route (filter, or shared group
//! in its namespace) when its first session subscribes and when its last
//! one leaves, and every will it publishes; and how it routes a message
//! another node forwarded (shared groups only if they are its to serve,
//! the retained copy kept separately).

mod support;

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use parley_engine::message::{Message, QoS, SubscriptionOptions};
use parley_engine::router::{
    Attachment, ConnectRequest, Detach, Route, Router, RouterConfig, RouterEvents, Will,
};
use parley_engine::trie::SharedGroupId;
use support::*;

/// Records every event, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl RouterEvents for Recorder {
    fn route_added(&self, route: &Route) {
        self.0
            .lock()
            .unwrap()
            .push(format!("+{} {}", route.filter, route.namespace));
    }
    fn route_removed(&self, route: &Route) {
        self.0
            .lock()
            .unwrap()
            .push(format!("-{} {}", route.filter, route.namespace));
    }
    fn will_published(&self, message: &Message, namespace: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("will {} {namespace}", message.topic));
    }
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn connect(router: &Router, key: &str, ns: &str, will: Option<Will>) -> Attachment {
    router
        .connect(
            ConnectRequest {
                key: key.into(),
                namespace: ns.into(),
                clean_start: true,
                session_expiry_secs: 0,
                params: v5(100),
                will,
            },
            now(),
            &mut BytesMut::new(),
        )
        .attachment
}

fn subscribe(router: &Router, a: &Attachment, filter: &str) {
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    let r = router
        .subscribe(a, &[(filter.to_owned(), options)], now())
        .unwrap();
    assert!(r[0].is_ok(), "{filter}: {:?}", r[0]);
}

fn end(router: &Router, a: &Attachment, publish_will: bool) {
    router.detach(
        a,
        Detach {
            publish_will,
            session_expiry_secs: None,
        },
        now(),
    );
}

fn count(router: &Router, a: &Attachment) -> usize {
    let mut out = BytesMut::new();
    router
        .with_session(a, |s| {
            while s.wants_transmit() {
                s.poll_transmit(now(), &mut out, |_| {});
            }
        })
        .unwrap();
    publishes_v5(&decode_v5(&out)).len()
}

#[test]
fn routes_are_counted_per_filter_and_shared_group() {
    let router = Router::new(RouterConfig::default());
    let events = Arc::new(Recorder::default());
    router.set_events(events.clone());
    let a = connect(&router, "a", "alice", None);
    let b = connect(&router, "b", "bob", None);
    subscribe(&router, &a, "sensors/+/temp");
    subscribe(&router, &b, "sensors/+/temp");
    subscribe(&router, &a, "$share/g/jobs/#");
    subscribe(&router, &b, "$share/g/jobs/#");
    assert_eq!(
        events.take(),
        [
            "+sensors/+/temp ",
            "+$share/g/jobs/# alice",
            "+$share/g/jobs/# bob"
        ],
        "one route per filter, one per shared group's namespace"
    );
    assert_eq!(router.routes().len(), 3);
    router
        .unsubscribe(&a, &["sensors/+/temp".to_owned()])
        .unwrap();
    assert!(events.take().is_empty(), "bob still subscribes");
    end(&router, &b, false);
    let mut gone = events.take();
    gone.sort();
    assert_eq!(gone, ["-$share/g/jobs/# bob", "-sensors/+/temp "]);
    end(&router, &a, false);
    assert_eq!(events.take(), ["-$share/g/jobs/# alice"]);
    assert!(router.routes().is_empty());
}

#[test]
fn wills_are_reported_after_they_are_routed() {
    let router = Router::new(RouterConfig::default());
    let events = Arc::new(Recorder::default());
    router.set_events(events.clone());
    let dev = connect(
        &router,
        "dev",
        "alice",
        Some(Will {
            message: message("status/dev", "gone", QoS::AtLeastOnce),
            delay_secs: 0,
        }),
    );
    end(&router, &dev, true);
    assert_eq!(events.take(), ["will status/dev alice"]);
}

#[test]
fn a_forwarded_message_reaches_only_the_shared_groups_this_node_serves() {
    let router = Router::new(RouterConfig::default());
    let plain = connect(&router, "p", "alice", None);
    let member = connect(&router, "m", "bob", None);
    subscribe(&router, &plain, "jobs/#");
    subscribe(&router, &member, "$share/g/jobs/#");
    let ours = SharedGroupId {
        namespace: "bob".into(),
        filter: "$share/g/jobs/#".into(),
    };
    router.publish_forwarded(message("jobs/1", "x", QoS::AtLeastOnce), now(), &|_| false);
    assert_eq!((count(&router, &plain), count(&router, &member)), (1, 0));
    router.publish_forwarded(message("jobs/2", "x", QoS::AtLeastOnce), now(), &|g| {
        *g == ours
    });
    assert_eq!((count(&router, &plain), count(&router, &member)), (1, 1));
}

#[test]
fn a_forwarded_retained_message_is_kept_only_when_asked() {
    let router = Router::new(RouterConfig::default());
    let mut retained = message("state/lamp", "on", QoS::AtLeastOnce);
    retained.retain = true;
    router.publish_forwarded(retained.clone(), now(), &|_| false);
    assert_eq!(router.retained_count(), 0, "routing alone keeps nothing");
    assert!(router.keep_retained(retained.clone(), "alice"));
    assert_eq!(router.retained_count(), 1);
    let mut cleared = retained;
    cleared.payload = bytes::Bytes::new();
    router.keep_retained(cleared, "alice");
    assert_eq!(router.retained_count(), 0, "an empty payload deletes it");
}
