//! Keeping a node's lease: renew it every third of its time to live until
//! told to stop, and stop the node if another holder has taken it.
//!
//! A renewal that cannot reach the store is logged and tried again at the
//! next tick: the node keeps running, since without the store it stores
//! nothing anyway, and the next renewal that gets through settles it. One that
//! finds the lease taken ([`StoreError::AlreadyExists`], which happens only
//! after this node failed to renew for a whole time to live, e.g. while it
//! was paused, and another process started with its id) is fatal: the node
//! records why and cancels its shutdown token, which closes its listeners and
//! connections.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use persistence::{LeaseHolder, NodeLeases, StoreError};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Why a node lost its lease, once it has; shared by the renewal task and
/// whoever waits for it.
#[derive(Debug, Default)]
pub struct Lost {
    /// Cancelled when the lease is lost.
    token: CancellationToken,
    /// Why, set before `token` is cancelled.
    why: OnceLock<String>,
}

impl Lost {
    /// Records why the lease is lost and wakes every waiter.
    pub fn set(&self, why: String) {
        let _ = self.why.set(why);
        self.token.cancel();
    }

    /// Why the lease was lost, if it was.
    pub fn why(&self) -> Option<&str> {
        self.why.get().map(String::as_str)
    }

    /// Waits until the lease is lost and returns why.
    pub async fn wait(&self) -> String {
        self.token.cancelled().await;
        self.why().unwrap_or("the node lease was lost").to_owned()
    }
}

/// What the renewal loop needs.
pub struct Renewal {
    /// The store holding the leases.
    pub leases: Arc<dyn NodeLeases>,
    /// The node id the lease is on.
    pub node_id: u16,
    /// This node, as the holder.
    pub holder: LeaseHolder,
    /// The lease's time to live; renewed every third of it.
    pub ttl: Duration,
    /// Cancelled to stop renewing (the node releases the lease next).
    pub stop: CancellationToken,
    /// The node's shutdown token, cancelled if the lease is lost.
    pub node_shutdown: CancellationToken,
    /// Where a loss is recorded.
    pub lost: Arc<Lost>,
}

/// How often a lease with time to live `ttl` is renewed.
pub fn renew_every(ttl: Duration) -> Duration {
    ttl / 3
}

impl Renewal {
    /// Renews the lease every third of its time to live until `stop` is
    /// cancelled or the lease is lost. A renewal under way when `stop` is
    /// cancelled is finished first, so none is left in flight to recreate
    /// the lease after it is released.
    pub async fn run(self) {
        let period = renew_every(self.ttl);
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_renewed = Instant::now();
        let mut failing = false;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let asked = Instant::now();
            match self
                .leases
                .acquire(self.node_id, &self.holder, self.ttl)
                .await
            {
                Ok(lease) => {
                    if std::mem::take(&mut failing) {
                        info!(node_id = self.node_id, "node lease renewed again");
                    }
                    debug!(node_id = self.node_id, valid_for = ?lease.valid_for, "node lease renewed");
                    last_renewed = asked;
                }
                Err(StoreError::AlreadyExists(why)) => {
                    let why = format!(
                        "node id {} was taken over by another process while this node \
                         could not renew its lease for {:.1} s; two live nodes must never \
                         share a node id, so this node stops: {why} already exists",
                        self.node_id,
                        last_renewed.elapsed().as_secs_f64()
                    );
                    error!(node_id = self.node_id, "{why}");
                    self.lost.set(why);
                    self.node_shutdown.cancel();
                    return;
                }
                Err(e) => {
                    failing = true;
                    let unrenewed = last_renewed.elapsed();
                    if unrenewed >= self.ttl {
                        error!(node_id = self.node_id, error = %e, ?unrenewed,
                            "cannot renew the node lease, and it has expired: another process \
                             may now start with this node id; this node stops if one has once \
                             the store answers");
                    } else {
                        warn!(node_id = self.node_id, error = %e, ?unrenewed,
                            "cannot renew the node lease; trying again");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use persistence::Lease;
    use tokio::sync::mpsc;

    use super::*;

    /// A lease store whose `acquire` answers from a script (then grants),
    /// reporting the time of every call.
    struct Scripted {
        /// The answers to the next calls; granted once it runs out.
        answers: Mutex<VecDeque<StoreError>>,
        /// Told the (paused) time of every call.
        calls: mpsc::UnboundedSender<Instant>,
    }

    #[async_trait]
    impl NodeLeases for Scripted {
        async fn acquire(
            &self,
            node_id: u16,
            holder: &LeaseHolder,
            ttl: Duration,
        ) -> Result<Lease, StoreError> {
            let _ = self.calls.send(Instant::now());
            if let Some(error) = self.answers.lock().unwrap().pop_front() {
                return Err(error);
            }
            Ok(Lease {
                node_id,
                holder: holder.id.clone(),
                description: holder.description.clone(),
                acquired_at_ms: 0,
                renewed_at_ms: 0,
                expires_at_ms: ttl.as_millis() as i64,
                valid_for: ttl,
            })
        }

        async fn release(&self, _node_id: u16, _holder_id: &str) -> Result<bool, StoreError> {
            Ok(true)
        }

        async fn lease(&self, _node_id: u16) -> Result<Option<Lease>, StoreError> {
            Ok(None)
        }
    }

    /// A renewal loop of node 7 with a 3 s ttl over `answers`, its task, and
    /// the calls it makes.
    struct Running {
        stop: CancellationToken,
        node_shutdown: CancellationToken,
        lost: Arc<Lost>,
        task: tokio::task::JoinHandle<()>,
        calls: mpsc::UnboundedReceiver<Instant>,
    }

    fn start(answers: Vec<StoreError>) -> Running {
        let (tx, calls) = mpsc::unbounded_channel();
        let (stop, node_shutdown) = (CancellationToken::new(), CancellationToken::new());
        let lost = Arc::new(Lost::default());
        let task = tokio::spawn(
            Renewal {
                leases: Arc::new(Scripted {
                    answers: Mutex::new(answers.into()),
                    calls: tx,
                }),
                node_id: 7,
                holder: LeaseHolder {
                    id: "me".into(),
                    description: "this node".into(),
                },
                ttl: Duration::from_secs(3),
                stop: stop.clone(),
                node_shutdown: node_shutdown.clone(),
                lost: lost.clone(),
            }
            .run(),
        );
        Running {
            stop,
            node_shutdown,
            lost,
            task,
            calls,
        }
    }

    impl Running {
        /// The times of the next `n` renewals.
        async fn next_calls(&mut self, n: usize) -> Vec<Instant> {
            let mut times = Vec::new();
            for _ in 0..n {
                times.push(self.calls.recv().await.expect("the loop renews"));
            }
            times
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renews_every_third_of_the_ttl_until_stopped() {
        let started = Instant::now();
        let mut running = start(Vec::new());
        let times = running.next_calls(3).await;
        let offsets: Vec<Duration> = times.iter().map(|t| *t - started).collect();
        assert_eq!(
            offsets,
            [1, 2, 3].map(Duration::from_secs).to_vec(),
            "renewals every ttl / 3, the first one ttl / 3 after taking the lease"
        );
        running.stop.cancel();
        running.task.await.expect("the loop ends when stopped");
        assert!(running.lost.why().is_none());
        assert!(
            !running.node_shutdown.is_cancelled(),
            "stopping the renewals does not stop the node"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_taken_by_another_holder_stops_the_node() {
        let mut running = start(vec![StoreError::AlreadyExists(
            "a live lease on node id 7 (held by the other one)".into(),
        )]);
        running.next_calls(1).await;
        running.task.await.expect("the loop ends by itself");
        assert!(
            running.node_shutdown.is_cancelled(),
            "a lost lease shuts the node down"
        );
        let why = running.lost.wait().await;
        assert!(why.contains("node id 7 was taken over"), "{why}");
        assert!(why.contains("held by the other one"), "{why}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_store_does_not_stop_the_node() {
        let unavailable = || StoreError::Unavailable("PostgreSQL is down".into());
        let mut running = start((0..4).map(|_| unavailable()).collect());
        // Four failures (the last one after the ttl), then a renewal that
        // gets through, then one more to show the loop went on.
        running.next_calls(6).await;
        assert!(running.lost.why().is_none());
        assert!(
            !running.node_shutdown.is_cancelled(),
            "renewals that cannot reach the store do not stop the node"
        );
        assert!(!running.task.is_finished(), "the loop keeps renewing");
        running.stop.cancel();
        running.task.await.expect("the loop ends when stopped");
    }
}
