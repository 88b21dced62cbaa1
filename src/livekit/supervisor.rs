//! The livekit-server supervisor: an explicit state machine around one child process.
//!
//! `Starting → Ready ⇄ Degraded → (crash | unhealthy) → Backoff → Starting … → Stopping → Stopped`.
//! LiveKit exits 0 on config errors and port conflicts, so *any* exit before ready is a failed
//! start; the first one aborts the daemon with the child's last output. After ready, crashes
//! and repeated failed probes are restarted with capped exponential backoff and jitter, within
//! a restart budget. Stop is SIGTERM → drain budget → second SIGTERM → short grace → SIGKILL:
//! LiveKit's own drain has no deadline, ours does. State is published on a `watch` channel
//! read by the API, the watchdog and `STATUS=`.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::{BackoffPolicy, RestartBudget};
use super::health::{self, Probe, RedisProbe, Verdict};
use super::output::{self, OutputTail};
use crate::systemd::Notifier;

/// Environment variables the child must not inherit (LiveKit treats even an empty one as set).
const SCRUB_EXACT: &[&str] = &[
    "NODE_IP",
    "UDP_PORT",
    "REDIS_HOST",
    "REDIS_PASSWORD",
    "NOTIFY_SOCKET",
    "CREDENTIALS_DIRECTORY",
    // our own settings (original AirClass names)
    "MODE",
    "NODE_NAME",
    "MAIN_NODE_URL",
    "REDIS_URL",
];
const SCRUB_PREFIXES: &[&str] = &["LIVEKIT_", "WATCHDOG_", "AIRCLASS_"];

/// Should `name` be removed from the child's environment?
pub fn scrubbed(name: &str) -> bool {
    SCRUB_EXACT.contains(&name) || SCRUB_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Where the supervisor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LivekitState {
    Starting,
    Ready,
    Degraded,
    Backoff,
    Stopping,
    Stopped,
    Failed,
}

impl LivekitState {
    pub fn as_str(self) -> &'static str {
        match self {
            LivekitState::Starting => "starting",
            LivekitState::Ready => "ready",
            LivekitState::Degraded => "degraded",
            LivekitState::Backoff => "backoff",
            LivekitState::Stopping => "stopping",
            LivekitState::Stopped => "stopped",
            LivekitState::Failed => "failed",
        }
    }
}

/// Published status of the child.
#[derive(Debug, Clone, Serialize)]
pub struct LivekitStatus {
    pub state: LivekitState,
    pub pid: Option<u32>,
    /// Restarts since the daemon started.
    pub restarts: u32,
    /// Consecutive failed probes.
    pub failed_probes: u32,
    /// Human-readable detail (last verdict, exit status, …).
    pub detail: String,
    /// When the supervisor loop last did its work (probe or state change): liveness for the watchdog.
    #[serde(skip)]
    pub checked_at: Instant,
}

impl LivekitStatus {
    fn new() -> Self {
        Self {
            state: LivekitState::Starting,
            pid: None,
            restarts: 0,
            failed_probes: 0,
            detail: "not started".into(),
            checked_at: Instant::now(),
        }
    }

    /// A status in `state` (tests and benches that need one without a supervisor).
    pub fn for_tests(state: LivekitState) -> Self {
        Self {
            state,
            ..Self::new()
        }
    }

    /// LiveKit serves (fully, or degraded because Redis is down).
    pub fn serving(&self) -> bool {
        matches!(self.state, LivekitState::Ready | LivekitState::Degraded)
    }
}

/// Everything the supervisor needs.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub binary: PathBuf,
    pub config_path: PathBuf,
    pub livekit_port: u16,
    pub drain_timeout: Duration,
    pub ready_timeout: Duration,
    pub health_interval: Duration,
    pub health_failures: u32,
    pub restart_budget: u32,
    pub budget_window: Duration,
    pub backoff: BackoffPolicy,
    /// Require the `starting LiveKit server` line (only visible at log level info or debug).
    pub require_ready_line: bool,
    /// Clustered nodes: PING Redis to tell "degraded" from "failing" on a 406.
    pub redis: Option<RedisProbe>,
}

/// Why the supervisor ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("LiveKit server failed to start: cannot run {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("LiveKit server failed to start: it exited ({status}) before it was ready; its last output: {output}")]
    ExitedBeforeReady { status: String, output: String },
    #[error("LiveKit server failed to start: not ready within {timeout:?} (GET / on port {port}); its last output: {output}")]
    NotReady {
        timeout: Duration,
        port: u16,
        output: String,
    },
    #[error("LiveKit keeps failing: {restarts} restarts within {window:?} (budget exhausted); last: {last}")]
    BudgetExhausted {
        restarts: usize,
        window: Duration,
        last: String,
    },
}

/// The supervisor; [`Supervisor::run`] owns the child until cancelled.
pub struct Supervisor {
    cfg: SupervisorConfig,
    status: watch::Sender<LivekitStatus>,
    notifier: Notifier,
    http: reqwest::Client,
    tracker: TaskTracker,
    jitter: Box<dyn FnMut() -> f64 + Send + Sync>,
    /// Why the child is being restarted (set by `watch_child`, counted in the metrics).
    restart_reason: crate::metrics::RestartReason,
}

/// How a wait for readiness ended.
enum StartOutcome {
    Ready(Child, OutputTail),
    Failed(SupervisorError),
    Cancelled,
}

impl Supervisor {
    /// `jitter` yields values in `0.0..=1.0` (a parameter so tests are deterministic).
    pub fn new(
        cfg: SupervisorConfig,
        notifier: Notifier,
        tracker: TaskTracker,
        jitter: Box<dyn FnMut() -> f64 + Send + Sync>,
    ) -> (Self, watch::Receiver<LivekitStatus>) {
        let (tx, rx) = watch::channel(LivekitStatus::new());
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default();
        (
            Self {
                cfg,
                status: tx,
                notifier,
                http,
                tracker,
                jitter,
                restart_reason: crate::metrics::RestartReason::Crash,
            },
            rx,
        )
    }

    fn set(&self, f: impl FnOnce(&mut LivekitStatus)) {
        self.status.send_modify(|s| {
            f(s);
            s.checked_at = Instant::now();
        });
    }

    /// Run until `cancel`: first start (result reported on `first_ready`), then supervise.
    pub async fn run(
        mut self,
        cancel: CancellationToken,
        first_ready: oneshot::Sender<Result<u32, String>>,
    ) -> Result<(), SupervisorError> {
        let mut budget = RestartBudget::new(self.cfg.restart_budget, self.cfg.budget_window);
        let (mut child, mut tail) = match self.start(&cancel, true).await {
            StartOutcome::Ready(c, t) => (c, t),
            StartOutcome::Failed(e) => {
                self.set(|s| {
                    s.state = LivekitState::Failed;
                    s.detail = e.to_string();
                    s.pid = None;
                });
                let _ = first_ready.send(Err(e.to_string()));
                return Err(e);
            }
            StartOutcome::Cancelled => {
                let _ = first_ready.send(Err("cancelled during start".into()));
                return Ok(());
            }
        };
        let _ = first_ready.send(Ok(child.id().unwrap_or(0)));
        let mut attempt: u32 = 0;
        let mut ready_since = Instant::now();

        loop {
            let reason = self.watch_child(&mut child, &cancel).await;
            let reason = match reason {
                None => {
                    self.stop_child(&mut child, self.cfg.drain_timeout).await;
                    self.set(|s| {
                        s.state = LivekitState::Stopped;
                        s.pid = None;
                        s.detail = "stopped".into();
                    });
                    return Ok(());
                }
                Some(r) => r,
            };
            tracing::error!(reason = %reason, output = %tail.summary(5), "LiveKit failed; restarting it");
            if ready_since.elapsed() >= self.cfg.backoff.reset_after {
                attempt = 0;
            }
            // Restart loop: backoff, spawn, wait for ready; repeat while starts fail.
            let mut last = reason;
            loop {
                if !budget.try_spend(Instant::now()) {
                    let e = SupervisorError::BudgetExhausted {
                        restarts: budget.used(),
                        window: self.cfg.budget_window,
                        last: last.clone(),
                    };
                    self.set(|s| {
                        s.state = LivekitState::Failed;
                        s.pid = None;
                        s.detail = e.to_string();
                    });
                    return Err(e);
                }
                let delay = self.cfg.backoff.delay(attempt, (self.jitter)());
                attempt = attempt.saturating_add(1);
                crate::metrics::livekit_restart(self.restart_reason);
                self.set(|s| {
                    s.state = LivekitState::Backoff;
                    s.pid = None;
                    s.restarts += 1;
                    s.detail = format!("restart in {delay:?} after: {last}");
                });
                tokio::select! {
                    _ = cancel.cancelled() => {
                        self.set(|s| { s.state = LivekitState::Stopped; s.detail = "stopped".into(); });
                        return Ok(());
                    }
                    _ = tokio::time::sleep(delay) => {}
                }
                match self.start(&cancel, false).await {
                    StartOutcome::Ready(c, t) => {
                        child = c;
                        tail = t;
                        ready_since = Instant::now();
                        tracing::info!(
                            pid = child.id().unwrap_or(0),
                            restarts = self.status.borrow().restarts,
                            "LiveKit is ready again"
                        );
                        break;
                    }
                    StartOutcome::Failed(e) => {
                        tracing::error!(error = %e, "LiveKit restart failed");
                        self.restart_reason = crate::metrics::RestartReason::FailedStart;
                        last = e.to_string();
                    }
                    StartOutcome::Cancelled => {
                        self.set(|s| {
                            s.state = LivekitState::Stopped;
                            s.detail = "stopped".into();
                        });
                        return Ok(());
                    }
                }
            }
        }
    }

    fn spawn(&self) -> Result<(Child, OutputTail), SupervisorError> {
        let mut cmd = Command::new(&self.cfg.binary);
        cmd.arg("--config").arg(&self.cfg.config_path);
        for (name, _) in std::env::vars_os() {
            if scrubbed(&name.to_string_lossy()) {
                cmd.env_remove(&name);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // own process group: a terminal's Ctrl-C reaches only the daemon, which then
            // stops LiveKit in its own order
            .process_group(0);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|source| SupervisorError::Spawn {
            binary: self.cfg.binary.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let tail = OutputTail::new();
        if let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) {
            output::forward(out, err, &tail, pid, &self.tracker);
        }
        Ok((child, tail))
    }

    /// Spawn and wait until `GET /` answers 200 (and the ready line was seen).
    async fn start(&mut self, cancel: &CancellationToken, first: bool) -> StartOutcome {
        let (mut child, tail) = match self.spawn() {
            Ok(x) => x,
            Err(e) => return StartOutcome::Failed(e),
        };
        let pid = child.id();
        tracing::info!(pid = pid.unwrap_or(0), binary = %self.cfg.binary.display(), config = %self.cfg.config_path.display(), "LiveKit spawned");
        self.set(|s| {
            s.state = LivekitState::Starting;
            s.pid = pid;
            s.failed_probes = 0;
            s.detail = "waiting for GET / to answer 200".into();
        });
        let started = Instant::now();
        let deadline = started + self.cfg.ready_timeout;
        let mut last_extend = Instant::now() - Duration::from_secs(60);
        loop {
            // poll fast at first (LiveKit is usually ready within ~100 ms), then every 50 ms
            let poll = if started.elapsed() < Duration::from_secs(1) {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(50)
            };
            if first && last_extend.elapsed() >= Duration::from_secs(2) {
                // tell systemd we are still making progress while LiveKit is slow to start
                self.notifier.extend_timeout(Duration::from_secs(10));
                last_extend = Instant::now();
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    self.stop_child(&mut child, Duration::from_secs(2)).await;
                    return StartOutcome::Cancelled;
                }
                status = child.wait() => {
                    // let the readers drain the last lines (LiveKit's reason is on stdout)
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return StartOutcome::Failed(SupervisorError::ExitedBeforeReady {
                        status: describe_exit(status.ok()),
                        output: tail_or_nothing(&tail),
                    });
                }
                _ = tokio::time::sleep(poll) => {}
            }
            let timeout = self.cfg.health_interval.min(Duration::from_secs(1));
            if health::probe(&self.http, self.cfg.livekit_port, timeout).await == Probe::Ok
                && (!self.cfg.require_ready_line || tail.ready_line_seen())
            {
                let took = started.elapsed();
                crate::metrics::livekit_ready(took, first);
                self.set(|s| {
                    s.state = LivekitState::Ready;
                    s.detail = format!("ready in {} ms", took.as_millis());
                });
                tracing::info!(
                    pid = pid.unwrap_or(0),
                    ready_ms = took.as_millis() as u64,
                    "LiveKit is ready (GET / answered 200)"
                );
                return StartOutcome::Ready(child, tail);
            }
            if Instant::now() >= deadline {
                self.stop_child(&mut child, Duration::from_secs(2)).await;
                return StartOutcome::Failed(SupervisorError::NotReady {
                    timeout: self.cfg.ready_timeout,
                    port: self.cfg.livekit_port,
                    output: tail_or_nothing(&tail),
                });
            }
        }
    }

    /// Watch a ready child; `None` when cancelled, `Some(reason)` when it must be restarted.
    async fn watch_child(
        &mut self,
        child: &mut Child,
        cancel: &CancellationToken,
    ) -> Option<String> {
        let mut tick = tokio::time::interval(self.cfg.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let probe_timeout = self.cfg.health_interval.min(Duration::from_secs(2));
        // LiveKit's stats (and so `/`) recover only on its next keepalive after Redis returns:
        // keep treating 406 as degraded for a while after the last failed Redis PING.
        let recovery_grace = Duration::from_secs(10).max(self.cfg.health_interval * 5);
        let mut redis_last_down: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return None,
                status = child.wait() => {
                    let what = describe_exit(status.ok());
                    self.restart_reason = crate::metrics::RestartReason::Crash;
                    return Some(format!("LiveKit exited unexpectedly ({what})"));
                }
                _ = tick.tick() => {}
            }
            let t0 = Instant::now();
            let probe = health::probe(&self.http, self.cfg.livekit_port, probe_timeout).await;
            crate::metrics::health_probe(t0.elapsed(), probe.label());
            let redis_up = match (&probe, &self.cfg.redis) {
                (Probe::NotReady(_), Some(r)) => {
                    let up = r.ping(Duration::from_millis(500)).await.is_ok();
                    if !up {
                        redis_last_down = Some(Instant::now());
                    }
                    let recovering = redis_last_down.is_some_and(|t| t.elapsed() < recovery_grace);
                    Some(up && !recovering)
                }
                _ => None,
            };
            match health::classify(&probe, redis_up) {
                Verdict::Healthy => {
                    let was = self.status.borrow().state;
                    if was != LivekitState::Ready {
                        tracing::info!("LiveKit healthy");
                    }
                    self.set(|s| {
                        s.state = LivekitState::Ready;
                        s.failed_probes = 0;
                        s.detail = "healthy".into();
                    });
                }
                Verdict::Degraded(why) => {
                    let was = self.status.borrow().state;
                    if was != LivekitState::Degraded {
                        tracing::warn!(reason = %why, "LiveKit degraded");
                    }
                    self.set(|s| {
                        s.state = LivekitState::Degraded;
                        s.failed_probes = 0;
                        s.detail = why;
                    });
                }
                Verdict::Failing(why) => {
                    let n = self.status.borrow().failed_probes + 1;
                    tracing::warn!(failed_probes = n, limit = self.cfg.health_failures, reason = %why, "LiveKit health probe failed");
                    self.set(|s| {
                        s.failed_probes = n;
                        s.detail = format!("probe failed {n}x: {why}");
                    });
                    if n >= self.cfg.health_failures {
                        self.restart_reason = if probe.is_timeout() {
                            crate::metrics::RestartReason::Hang
                        } else {
                            crate::metrics::RestartReason::Health
                        };
                        let grace = self.cfg.drain_timeout.min(Duration::from_secs(3));
                        self.stop_child(child, grace).await;
                        return Some(format!("health probe failed {n} times in a row ({why})"));
                    }
                }
            }
        }
    }

    /// SIGTERM → wait `drain` → second SIGTERM → 2 s → SIGKILL. Always reaps the child.
    async fn stop_child(&self, child: &mut Child, drain: Duration) {
        let Some(pid) = child.id() else {
            let _ = child.wait().await;
            return;
        };
        self.set(|s| {
            s.state = LivekitState::Stopping;
            s.detail = format!("stopping (drain budget {drain:?})");
        });
        let pid = Pid::from_raw(pid as i32);
        let t0 = Instant::now();
        let _ = signal::kill(pid, Signal::SIGTERM);
        tracing::info!(
            pid = pid.as_raw(),
            drain_ms = drain.as_millis() as u64,
            "SIGTERM sent to LiveKit"
        );
        if let Ok(status) = tokio::time::timeout(drain, child.wait()).await {
            tracing::info!(pid = pid.as_raw(), took_ms = t0.elapsed().as_millis() as u64, status = %describe_exit(status.ok()), "LiveKit stopped");
            crate::metrics::livekit_drained(t0.elapsed(), crate::metrics::DrainOutcome::Exited);
            return;
        }
        tracing::warn!(
            pid = pid.as_raw(),
            "LiveKit still draining after the budget; second SIGTERM (force)"
        );
        let _ = signal::kill(pid, Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
            tracing::info!(pid = pid.as_raw(), took_ms = t0.elapsed().as_millis() as u64, status = %describe_exit(status.ok()), "LiveKit stopped");
            crate::metrics::livekit_drained(t0.elapsed(), crate::metrics::DrainOutcome::Forced);
            return;
        }
        tracing::warn!(pid = pid.as_raw(), "LiveKit ignored SIGTERM; SIGKILL");
        let _ = child.start_kill();
        let _ = child.wait().await;
        crate::metrics::livekit_drained(t0.elapsed(), crate::metrics::DrainOutcome::Killed);
    }
}

fn tail_or_nothing(tail: &OutputTail) -> String {
    let s = tail.summary(8);
    if s.is_empty() {
        "(no output)".into()
    } else {
        s
    }
}

/// `exit code 0`, `signal 9 (SIGKILL)`, …
pub fn describe_exit(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "unknown status".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (_, Some(sig)) => {
                let name = Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("?");
                format!("signal {sig} ({name})")
            }
            _ => "unknown status".into(),
        },
    }
}

/// Make the child die with its parent (`PR_SET_PDEATHSIG`), so a crashed or SIGKILLed daemon
/// never leaves an orphaned LiveKit behind outside systemd (under systemd `KillMode=mixed`
/// also kills the cgroup). The death signal fires when the *spawning thread* exits: children
/// are spawned from tokio worker threads, which live as long as the runtime.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe system calls (prctl, getppid); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // the parent may have died between fork and prctl: then nobody would kill us
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(std::io::Error::other("parent died before exec"));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_list() {
        for v in [
            "LIVEKIT_KEYS",
            "LIVEKIT_CONFIG",
            "LIVEKIT_PORT",
            "NODE_IP",
            "UDP_PORT",
            "REDIS_HOST",
            "REDIS_PASSWORD",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "AIRCLASS_CONFIG",
            "MAIN_NODE_URL",
        ] {
            assert!(scrubbed(v), "{v}");
        }
        for v in ["PATH", "LANG", "HOME", "STANDIN_HANG", "TZ"] {
            assert!(!scrubbed(v), "{v}");
        }
    }

    #[test]
    fn exit_descriptions() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(describe_exit(Some(ExitStatus::from_raw(0))), "exit code 0");
        assert_eq!(
            describe_exit(Some(ExitStatus::from_raw(9))),
            "signal 9 (SIGKILL)"
        );
    }
}
