//! The one unwind, for a requested stop, a fatal error after READY and every failed start:
//! whatever [`Daemon`] holds is stopped in the fixed order.

use std::time::Duration;

use super::Daemon;
use crate::clock;
use crate::livekit::LivekitState;

/// How long the other tasks get once LiveKit is down.
const TASKS_DEADLINE: Duration = Duration::from_secs(5);

impl Daemon {
    /// `STOPPING=1` (after READY, or on a stop requested during start) → leave the cluster (bounded, ~2 s, so main places no new
    /// room here while LiveKit drains) → stop LiveKit (its own drain deadline bounds the wait)
    /// → stop the API, the cluster role and every other task, under a deadline.
    pub(super) async fn stop(self) {
        if self.ready || self.stop_requested {
            self.opts.notifier.stopping("stopping: draining LiveKit");
        }
        let t0 = clock::now();
        if let Some((cluster, _)) = &self.cluster {
            cluster.leave().await;
            tracing::info!(took_ms = t0.elapsed().as_millis() as u64, "cluster left");
        }
        self.tracker.close();
        if let Some(lk) = &self.livekit {
            lk.cancel.cancel();
            let drain = Duration::from_secs(self.node.config.livekit.drain_timeout_secs)
                + Duration::from_secs(5);
            let mut rx = lk.status.clone();
            let down = |s: &crate::livekit::LivekitStatus| {
                matches!(s.state, LivekitState::Stopped | LivekitState::Failed)
            };
            let _ = tokio::time::timeout(drain, rx.wait_for(down)).await;
        }
        if let Some(api) = &self.api {
            api.cancel();
        }
        if let Some((cluster, cancel)) = &self.cluster {
            cancel.cancel();
            cluster.stop();
        }
        self.root.cancel();
        if tokio::time::timeout(TASKS_DEADLINE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop within 5 s");
        }
        tracing::info!(took_ms = t0.elapsed().as_millis() as u64, "stopped");
    }
}
