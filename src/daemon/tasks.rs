//! The daemon's own tasks after READY, each a named function taking the cancellation token and
//! the tracker: [`stats`] (the sampler), [`status`] (systemd `STATUS=` on every change) and
//! [`watchdog`] (`WATCHDOG=1` only while the supervisor shows progress).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::NodeConfig;
use crate::livekit::{LivekitState, LivekitStatus};
use crate::stats::{Sample, Sampler, SYSLOAD_OVERRIDE_FILE};
use crate::systemd::Notifier;

/// How often statistics are sampled.
pub const STATS_PERIOD: Duration = Duration::from_secs(2);

/// The `STATUS=` line a person reads in `systemctl status`.
pub fn status_line(node: &NodeConfig, lk: &LivekitStatus, cluster: &str) -> String {
    let pid = lk.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
    let what = match lk.state {
        LivekitState::Ready => "healthy".to_string(),
        LivekitState::Degraded => format!("degraded ({})", lk.detail),
        LivekitState::Starting => "starting".to_string(),
        LivekitState::Backoff => format!("restarting ({})", lk.detail),
        s => s.as_str().to_string(),
    };
    let mut line = format!(
        "{} node {}: LiveKit{pid} {what}; restarts {}",
        node.mode.as_str(),
        node.name,
        lk.restarts
    );
    if !cluster.is_empty() {
        line.push_str("; ");
        line.push_str(cluster);
    }
    line
}

/// Sample CPU, memory and load every [`STATS_PERIOD`] (the drill file in the runtime directory
/// overrides sysload); returns the watch the API and the cluster role read.
pub fn stats(
    node: &NodeConfig,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> watch::Receiver<Sample> {
    let first = Sampler::new(node.config.node.sysload_override).sample();
    let (tx, rx) = watch::channel(first);
    let mut sampler = Sampler::with_override_file(
        node.config.node.sysload_override,
        Some(node.runtime_dir.join(SYSLOAD_OVERRIDE_FILE)),
    );
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(STATS_PERIOD);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => { let _ = tx.send(sampler.sample()); }
            }
        }
    });
    rx
}

/// Send `STATUS=` whenever LiveKit's status or the cluster's status line changes the text.
pub fn status(
    node: &Arc<NodeConfig>,
    livekit: &watch::Receiver<LivekitStatus>,
    cluster: &watch::Receiver<String>,
    notifier: &Notifier,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) {
    let (mut rx, mut crx) = (livekit.clone(), cluster.clone());
    let (node, notifier) = (node.clone(), notifier.clone());
    tracker.spawn(async move {
        let mut last = String::new();
        let mut cluster_open = true;
        loop {
            let text = crx.borrow_and_update().clone();
            let line = status_line(&node, &rx.borrow_and_update(), &text);
            if line != last {
                notifier.status(&line);
                last = line;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = rx.changed() => if r.is_err() { break },
                r = crx.changed(), if cluster_open => if r.is_err() { cluster_open = false },
            }
        }
    });
}

/// How long the supervisor may show no sign of life before pings stop: three probe periods
/// plus 5 s (it shows one at least every `livekit::supervisor::BEAT`).
pub fn stale_after(node: &NodeConfig) -> Duration {
    Duration::from_millis(node.config.livekit.health_interval_ms) * 3 + Duration::from_secs(5)
}

/// Does the supervisor deserve a ping? Its loop showed life within `stale_after` and LiveKit
/// is not failed for good (healthy, degraded, starting or inside its restart budget).
pub fn deserves_ping(s: &LivekitStatus, stale_after: Duration) -> bool {
    s.checked_at.elapsed() < stale_after && s.state != LivekitState::Failed
}

/// `WATCHDOG=1` every `period` while [`deserves_ping`]; withheld (and logged) otherwise, so
/// systemd restarts a daemon whose supervisor is stuck. The pings come from a task on the
/// runtime, so a stuck runtime stops them too.
pub fn watchdog(
    period: Duration,
    stale_after: Duration,
    livekit: &watch::Receiver<LivekitStatus>,
    notifier: &Notifier,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) {
    let (rx, notifier) = (livekit.clone(), notifier.clone());
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let s = rx.borrow().clone();
            if deserves_ping(&s, stale_after) {
                notifier.watchdog();
            } else {
                tracing::warn!(
                    state = s.state.as_str(),
                    stale_ms = s.checked_at.elapsed().as_millis() as u64,
                    "withholding the watchdog ping: supervisor not making progress"
                );
            }
        }
    });
}

#[cfg(test)]
mod tests;
