//! Waiting for Redis while LiveKit is down. The real server PINGs Redis at startup and exits 0
//! (`unable to connect to redis: …` on stdout) when it gets no answer, so restarting a LiveKit
//! that crashed during a Redis outage only burns the restart budget and, once that is spent,
//! takes the unit down with it. Instead the supervisor publishes `Degraded` ("waiting for
//! Redis"), keeps its loop alive for the watchdog, PINGs Redis every [`REDIS_POLL`] and starts
//! LiveKit as soon as Redis answers. A start that failed while Redis was down is given back to
//! the budget ([`Restarts::refund`](super::Restarts::refund)).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{LivekitState, Supervisor};
use crate::clock;

/// How often Redis is PINGed while LiveKit waits for it.
pub const REDIS_POLL: Duration = Duration::from_millis(500);
/// How long one of those PINGs may take (connecting included).
pub const REDIS_PING_TIMEOUT: Duration = Duration::from_millis(500);

/// How a wait for Redis ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedisWait {
    /// No Redis configured, or it answered at once: nothing was waited for.
    Up,
    /// Redis was down and answers again.
    Returned,
    Cancelled,
}

impl Supervisor {
    /// Redis is configured and does not answer a PING right now.
    pub(super) async fn redis_down(&self) -> bool {
        match &self.cfg.redis {
            Some(r) => r.ping(REDIS_PING_TIMEOUT).await.is_err(),
            None => false,
        }
    }

    /// Before (re)starting LiveKit: if Redis is configured and down, wait until it answers.
    pub(super) async fn wait_for_redis(&self, cancel: &CancellationToken) -> RedisWait {
        let Some(redis) = self.cfg.redis.clone() else {
            return RedisWait::Up;
        };
        let address = redis.address().to_owned();
        let ping = move || {
            let r = redis.clone();
            async move { r.ping(REDIS_PING_TIMEOUT).await.is_ok() }
        };
        self.wait_until_redis_answers(ping, &address, cancel).await
    }

    /// `ping()` now and then every [`REDIS_POLL`] until it says yes, `Degraded` meanwhile, the
    /// loop shown alive every round. `ping` is a parameter so paused-time tests can play Redis.
    pub(crate) async fn wait_until_redis_answers<P, F>(
        &self,
        mut ping: P,
        address: &str,
        cancel: &CancellationToken,
    ) -> RedisWait
    where
        P: FnMut() -> F,
        F: Future<Output = bool>,
    {
        if ping().await {
            return RedisWait::Up;
        }
        let t0 = clock::now();
        tracing::warn!(redis = %address, "LiveKit is down and Redis is unreachable: waiting for Redis before starting LiveKit (LiveKit cannot start without it; not counted against the restart budget)");
        self.set(|s| {
            s.state = LivekitState::Degraded;
            s.pid = None;
            s.node_id = None;
            s.failed_probes = 0;
            s.detail = format!(
                "not running, waiting for Redis at {address}: LiveKit cannot start without it"
            );
        });
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return RedisWait::Cancelled,
                _ = tokio::time::sleep(REDIS_POLL) => {}
            }
            self.touch();
            if ping().await {
                tracing::info!(redis = %address, waited_ms = t0.elapsed().as_millis() as u64, "Redis answers again: starting LiveKit");
                return RedisWait::Returned;
            }
        }
    }
}
