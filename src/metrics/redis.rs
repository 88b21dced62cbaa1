//! The Redis pinger behind `airclass_redis_up`: clustered nodes PING the Redis they share with
//! LiveKit every few seconds, so a scrape reads the last answer and never waits for Redis.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock;
use crate::redis_conn::RedisConn;

/// How often the pinger asks, and how long it waits for an answer.
pub const PERIOD: Duration = Duration::from_secs(5);
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// PING `probe` every [`PERIOD`] until `cancel`, recording each answer.
pub fn spawn_pinger(probe: RedisConn, tracker: &TaskTracker, cancel: CancellationToken) {
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_up = true;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let t0 = clock::now();
            let r = probe.ping(TIMEOUT).await;
            super::redis_ping(t0.elapsed(), r.is_ok());
            match (&r, was_up) {
                (Err(e), true) => tracing::warn!(address = %probe.address(), error = %e, "Redis does not answer PING"),
                (Ok(()), false) => tracing::info!(address = %probe.address(), "Redis answers PING again"),
                _ => {}
            }
            was_up = r.is_ok();
        }
    });
}
