//! The engine's clock: once a second, sessions whose expiry passed end,
//! delayed wills are published and expired retained messages are dropped.

use std::sync::Arc;
use std::time::Duration;

use parley_engine::router::Router;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often the engine's timers are checked.
pub const TICK: Duration = Duration::from_secs(1);

/// Ticks `router` until `shutdown`.
pub async fn run(router: Arc<Router>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {
                let report = router.tick(std::time::Instant::now());
                if report != Default::default() {
                    debug!(?report, "engine timers");
                }
            }
        }
    }
}
