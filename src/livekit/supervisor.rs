//! The livekit-server supervisor: an explicit state machine around one child process.
//!
//! `Starting → Ready ⇄ Degraded → (crash | unhealthy) → Backoff → Starting … → Stopping → Stopped`.
//! LiveKit exits 0 on config errors and port conflicts, so *any* exit before ready is a failed
//! start; the first one aborts the daemon with the child's last output. After ready, crashes
//! and repeated failed probes are restarted with capped exponential backoff and jitter, within
//! a restart budget — except while Redis is down: the real server cannot start without it, so
//! the supervisor waits for Redis, degraded, and starts LiveKit as soon as it answers
//! (`redis_wait.rs`). Stop is SIGTERM (never within [`FIRST_SIGTERM_AFTER_READY`] of the ready
//! line, which LiveKit would lose) → drain budget → second SIGTERM → short grace → SIGKILL:
//! LiveKit's own drain has no deadline, ours does. State is published on a `watch` channel
//! read by the API, the watchdog and `STATUS=`; the loop also shows it is alive there
//! (`checked_at`) at least every [`BEAT`], including while it legitimately waits (the readiness
//! poll, the backoff sleep), which is what the daemon's watchdog gate reads.

use std::future::Future;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::{BackoffPolicy, Restarts};
use super::health::{self, Probe, Verdict};
use super::output::{self, OutputTail};
use crate::clock::{self, Instant};
use crate::metrics::{self, DrainOutcome, RestartReason};
use crate::redis_conn::RedisConn;
use crate::systemd::Notifier;
use redis_wait::RedisWait;

pub(crate) mod redis_wait;

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
    /// Restarts since the daemon started, as charged to the restart budget (a start that
    /// failed because Redis was down is given back).
    pub restarts: u32,
    /// Consecutive failed probes.
    pub failed_probes: u32,
    /// Human-readable detail (last verdict, exit status, …).
    pub detail: String,
    /// LiveKit's node id (`ND_…`, from its ready line; new on every start, `None` until ready).
    pub node_id: Option<String>,
    /// When the supervisor loop last showed it is alive (a state change, a probe, or a beat of
    /// the readiness poll or the backoff sleep, at least every [`BEAT`]): the watchdog's gate.
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
            node_id: None,
            checked_at: clock::now(),
        }
    }

    /// LiveKit serves (fully, or degraded because Redis is down).
    pub fn serving(&self) -> bool {
        matches!(self.state, LivekitState::Ready | LivekitState::Degraded)
    }

    /// A status in `state` (tests and benches that need one without a supervisor).
    pub fn for_tests(state: LivekitState) -> Self {
        Self {
            state,
            ..Self::new()
        }
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
    pub redis: Option<RedisConn>,
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

impl SupervisorError {
    /// The daemon itself lacked a file handle (spawn failed with EMFILE/ENFILE): LiveKit did
    /// nothing wrong, so a retry spends no restart budget.
    pub fn is_local_fault(&self) -> bool {
        matches!(self, SupervisorError::Spawn { source, .. } if crate::fds::is_exhaustion(source))
    }
}

/// Pause before spawning again after a local fault (no budget spent).
const LOCAL_FAULT_RETRY: Duration = Duration::from_secs(1);

/// Local faults (out of file handles in the probe or in spawn), rate-limited: the first at
/// once, then one line per window with the count.
fn local_faults() -> &'static crate::logging::Summary {
    static LOG: std::sync::OnceLock<crate::logging::Summary> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        crate::logging::Summary::new(crate::logging::SUMMARY_WINDOW, |r| {
            tracing::error!(during = r.key, count = r.count, error = %r.sample, "out of file handles: a local fault of this daemon, not counted against LiveKit")
        })
    })
}

/// How often the supervisor shows it is alive while it legitimately waits (readiness poll,
/// backoff sleep): well inside the watchdog's staleness limit (3 probe periods + 5 s).
pub const BEAT: Duration = Duration::from_secs(1);

/// The supervisor; [`Supervisor::run`] owns the child until cancelled.
pub struct Supervisor {
    cfg: SupervisorConfig,
    status: watch::Sender<LivekitStatus>,
    notifier: Notifier,
    http: reqwest::Client,
    tracker: TaskTracker,
    jitter: Box<dyn FnMut() -> f64 + Send + Sync>,
    /// Why the child is being restarted (set by `watch_child`, counted in the metrics).
    restart_reason: RestartReason,
}

/// How a start ended.
enum StartOutcome {
    Ready(Child, OutputTail),
    Failed(SupervisorError),
    Cancelled,
}

/// How the readiness poll ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready(Duration),
    Exited(Option<ExitStatus>),
    TimedOut,
    Cancelled,
}

impl Supervisor {
    /// `jitter` yields values in `0.0..=1.0` (a parameter so tests are deterministic); `http`
    /// probes LiveKit (build it without a connection pool: the child restarts on one port).
    pub fn new(
        cfg: SupervisorConfig,
        notifier: Notifier,
        tracker: TaskTracker,
        jitter: Box<dyn FnMut() -> f64 + Send + Sync>,
        http: reqwest::Client,
    ) -> (Self, watch::Receiver<LivekitStatus>) {
        let (tx, rx) = watch::channel(LivekitStatus::new());
        (
            Self {
                cfg,
                status: tx,
                notifier,
                http,
                tracker,
                jitter,
                restart_reason: RestartReason::Crash,
            },
            rx,
        )
    }

    /// Change the published status (wakes every reader) and show the loop is alive.
    fn set(&self, f: impl FnOnce(&mut LivekitStatus)) {
        self.status.send_modify(|s| {
            f(s);
            s.checked_at = clock::now();
        });
    }

    /// Show the loop is alive without a state change (wakes no reader).
    fn touch(&self) {
        self.status.send_if_modified(|s| {
            s.checked_at = clock::now();
            false
        });
    }

    fn stopped(&self) {
        self.set(|s| {
            s.state = LivekitState::Stopped;
            s.pid = None;
            s.detail = "stopped".into();
        });
    }

    /// Publish `Failed` with the error and hand it back.
    fn fail(&self, e: SupervisorError) -> SupervisorError {
        self.set(|s| {
            s.state = LivekitState::Failed;
            s.pid = None;
            s.detail = e.to_string();
        });
        e
    }

    /// Run until `cancel`: first start (its pid sent on `first_ready`; on failure the sender is
    /// dropped and the error returned), then supervise: watch the child, restart it on failure.
    pub async fn run(
        mut self,
        cancel: CancellationToken,
        first_ready: oneshot::Sender<u32>,
    ) -> Result<(), SupervisorError> {
        let (mut child, mut tail) = match self.start(&cancel, true).await {
            StartOutcome::Ready(c, t) => (c, t),
            StartOutcome::Failed(e) => return Err(self.fail(e)),
            StartOutcome::Cancelled => {
                self.stopped();
                return Ok(());
            }
        };
        let _ = first_ready.send(child.id().unwrap_or(0));
        let cfg = &self.cfg;
        let mut restarts = Restarts::new(
            cfg.backoff,
            cfg.restart_budget,
            cfg.budget_window,
            clock::now(),
        );
        loop {
            let Some(reason) = self.watch_child(&mut child, &cancel).await else {
                let ready_at = tail.ready_line_at();
                self.stop_child(&mut child, self.cfg.drain_timeout, ready_at)
                    .await;
                self.stopped();
                return Ok(());
            };
            tracing::error!(reason = %reason, output = %tail.summary(5), "LiveKit failed; restarting it");
            restarts.child_failed(clock::now());
            match self.restart(&mut restarts, reason, &cancel).await? {
                Some((c, t)) => (child, tail) = (c, t),
                None => {
                    self.stopped();
                    return Ok(());
                }
            }
        }
    }

    /// Backoff, spawn, wait for ready; repeat while starts fail. `None` when cancelled; the
    /// error once the restart budget is exhausted. While Redis is down no start is tried (the
    /// real server cannot start without it): it waits for Redis, then starts at once.
    async fn restart(
        &mut self,
        restarts: &mut Restarts,
        mut last: String,
        cancel: &CancellationToken,
    ) -> Result<Option<(Child, OutputTail)>, SupervisorError> {
        let mut spend = true;
        loop {
            let delay = if spend {
                let redis = self.wait_for_redis(cancel).await;
                if redis == RedisWait::Cancelled {
                    return Ok(None);
                }
                let Some(delay) = restarts.next_delay(clock::now(), &mut self.jitter) else {
                    return Err(self.fail(SupervisorError::BudgetExhausted {
                        restarts: restarts.used(),
                        window: self.cfg.budget_window,
                        last,
                    }));
                };
                let delay = match redis {
                    RedisWait::Returned => Duration::ZERO,
                    _ => delay,
                };
                self.count_restart(delay, &last);
                delay
            } else {
                LOCAL_FAULT_RETRY
            };
            if !self.backoff_sleep(delay, cancel).await {
                return Ok(None);
            }
            match self.start(cancel, false).await {
                StartOutcome::Ready(child, tail) => {
                    restarts.ready(clock::now());
                    tracing::info!(
                        pid = child.id().unwrap_or(0),
                        restarts = self.status.borrow().restarts,
                        "LiveKit is ready again"
                    );
                    return Ok(Some((child, tail)));
                }
                StartOutcome::Failed(e) if e.is_local_fault() => {
                    local_faults().note("spawn", || e.to_string());
                    spend = false;
                }
                StartOutcome::Failed(e) => {
                    self.restart_reason = RestartReason::FailedStart;
                    last = e.to_string();
                    self.restart_failed(restarts, &e).await;
                    spend = true;
                }
                StartOutcome::Cancelled => return Ok(None),
            }
        }
    }

    /// A restart is charged: counted, and the state says when it comes.
    fn count_restart(&self, delay: Duration, last: &str) {
        metrics::livekit_restart(self.restart_reason);
        self.set(|s| {
            s.state = LivekitState::Backoff;
            s.pid = None;
            s.node_id = None;
            s.restarts += 1;
            s.detail = format!("restart in {delay:?} after: {last}");
        });
    }

    /// A restart failed: charged to the budget, unless Redis is down now (then LiveKit could
    /// not have started: the attempt is given back and the next round waits for Redis).
    async fn restart_failed(&self, restarts: &mut Restarts, e: &SupervisorError) {
        if self.redis_down().await {
            restarts.refund();
            self.set(|s| s.restarts = s.restarts.saturating_sub(1));
            tracing::warn!(error = %e, "LiveKit could not start while Redis is down; not counted against the restart budget");
        } else {
            tracing::error!(error = %e, "LiveKit restart failed");
        }
    }

    /// The backoff sleep, showing the loop is alive every [`BEAT`]. False when cancelled.
    pub(crate) async fn backoff_sleep(&self, delay: Duration, cancel: &CancellationToken) -> bool {
        let until = clock::now() + delay;
        loop {
            self.touch();
            let left = until.saturating_duration_since(clock::now());
            if left.is_zero() {
                return true;
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep(left.min(BEAT)) => {}
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
            s.node_id = None;
            s.failed_probes = 0;
            s.detail = "waiting for GET / to answer 200".into();
        });
        let (port, require_line) = (self.cfg.livekit_port, self.cfg.require_ready_line);
        let timeout = self.cfg.health_interval.min(Duration::from_secs(1));
        let http = self.http.clone();
        let ready = || async {
            health::probe(&http, port, timeout).await == Probe::Ok
                && (!require_line || tail.ready_line_seen())
        };
        let readiness = self.wait_ready(child.wait(), ready, cancel, first).await;
        match readiness {
            Readiness::Ready(took) => {
                metrics::livekit_ready(took, first);
                self.set(|s| {
                    s.state = LivekitState::Ready;
                    s.node_id = tail.node_id();
                    s.detail = format!("ready in {} ms", took.as_millis());
                });
                tracing::info!(
                    pid = pid.unwrap_or(0),
                    ready_ms = took.as_millis() as u64,
                    "LiveKit is ready (GET / answered 200)"
                );
                StartOutcome::Ready(child, tail)
            }
            Readiness::Exited(status) => {
                // let the readers drain the last lines (LiveKit's reason is on stdout)
                tokio::time::sleep(Duration::from_millis(100)).await;
                StartOutcome::Failed(SupervisorError::ExitedBeforeReady {
                    status: describe_exit(status),
                    output: tail_or_nothing(&tail),
                })
            }
            Readiness::TimedOut => {
                let ready_at = tail.ready_line_at();
                self.stop_child(&mut child, Duration::from_secs(2), ready_at)
                    .await;
                StartOutcome::Failed(SupervisorError::NotReady {
                    timeout: self.cfg.ready_timeout,
                    port: self.cfg.livekit_port,
                    output: tail_or_nothing(&tail),
                })
            }
            Readiness::Cancelled => {
                let ready_at = tail.ready_line_at();
                self.stop_child(&mut child, Duration::from_secs(2), ready_at)
                    .await;
                StartOutcome::Cancelled
            }
        }
    }

    /// The readiness poll: `ready()` every 5 ms for the first second (LiveKit is usually ready
    /// within ~100 ms), then every 50 ms, until it says yes, `exited` resolves, the ready timeout
    /// passes or `cancel`. Each round shows the loop is alive; on the first start it also tells
    /// systemd every 2 s that startup is progressing (EXTEND_TIMEOUT_USEC).
    pub(crate) async fn wait_ready<E, R, F>(
        &self,
        exited: E,
        mut ready: R,
        cancel: &CancellationToken,
        first: bool,
    ) -> Readiness
    where
        E: Future<Output = std::io::Result<ExitStatus>>,
        R: FnMut() -> F,
        F: Future<Output = bool>,
    {
        let started = clock::now();
        let deadline = started + self.cfg.ready_timeout;
        let mut last_extend: Option<Instant> = None;
        tokio::pin!(exited);
        loop {
            let poll = if started.elapsed() < Duration::from_secs(1) {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(50)
            };
            if first && last_extend.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
                self.notifier.extend_timeout(Duration::from_secs(10));
                last_extend = Some(clock::now());
            }
            self.touch();
            tokio::select! {
                _ = cancel.cancelled() => return Readiness::Cancelled,
                status = &mut exited => return Readiness::Exited(status.ok()),
                _ = tokio::time::sleep(poll) => {}
            }
            if ready().await {
                return Readiness::Ready(started.elapsed());
            }
            if clock::now() >= deadline {
                return Readiness::TimedOut;
            }
        }
    }

    /// For a 406: is Redis up (and past its recovery grace)? `None` for any other probe.
    async fn redis_up_for(
        &self,
        probe: &Probe,
        redis_last_down: &mut Option<Instant>,
        recovery_grace: Duration,
    ) -> Option<bool> {
        let (Probe::NotReady(_), Some(r)) = (probe, &self.cfg.redis) else {
            return None;
        };
        let up = r.ping(Duration::from_millis(500)).await.is_ok();
        if !up {
            *redis_last_down = Some(clock::now());
        }
        let recovering = redis_last_down.is_some_and(|t| t.elapsed() < recovery_grace);
        Some(up && !recovering)
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
                    self.restart_reason = RestartReason::Crash;
                    return Some(format!("LiveKit exited unexpectedly ({what})"));
                }
                _ = tick.tick() => {}
            }
            let t0 = clock::now();
            let probe = health::probe(&self.http, self.cfg.livekit_port, probe_timeout).await;
            metrics::health_probe(t0.elapsed(), probe.label());
            let redis_up = self
                .redis_up_for(&probe, &mut redis_last_down, recovery_grace)
                .await;
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
                Verdict::LocalFault(why) => {
                    // our own socket could not be opened: nothing learnt, nothing counted
                    local_faults().note("probe", || why);
                    self.touch();
                }
                Verdict::Failing(why) => {
                    let n = self.status.borrow().failed_probes + 1;
                    tracing::warn!(failed_probes = n, limit = self.cfg.health_failures, reason = %why, "LiveKit health probe failed");
                    self.set(|s| {
                        s.failed_probes = n;
                        s.detail = format!("probe failed {n}x: {why}");
                    });
                    if n >= self.cfg.health_failures {
                        self.restart_reason = failed_probe_reason(&probe);
                        let grace = self.cfg.drain_timeout.min(Duration::from_secs(3));
                        // ready for `health_failures` probe periods: its ready line is long past
                        self.stop_child(child, grace, None).await;
                        return Some(format!("health probe failed {n} times in a row ({why})"));
                    }
                }
            }
        }
    }

    /// SIGTERM → wait `drain` → second SIGTERM → 2 s → SIGKILL. Always reaps the child. The
    /// first SIGTERM waits until [`FIRST_SIGTERM_AFTER_READY`] has passed since the ready line
    /// was read (`ready_at`), or LiveKit would drop it.
    async fn stop_child(&self, child: &mut Child, drain: Duration, ready_at: Option<Instant>) {
        let Some(pid) = child.id() else {
            let _ = child.wait().await;
            return;
        };
        self.set(|s| {
            s.state = LivekitState::Stopping;
            s.detail = format!("stopping (drain budget {drain:?})");
        });
        let pid = Pid::from_raw(pid as i32);
        let t0 = clock::now();
        if let Some(status) = hold_first_sigterm(child, ready_at).await {
            tracing::info!(pid = pid.as_raw(), status = %describe_exit(status), "LiveKit exited before the first SIGTERM");
            return;
        }
        let _ = signal::kill(pid, Signal::SIGTERM);
        tracing::info!(
            pid = pid.as_raw(),
            drain_ms = drain.as_millis() as u64,
            "SIGTERM sent to LiveKit"
        );
        if let Ok(status) = tokio::time::timeout(drain, child.wait()).await {
            tracing::info!(pid = pid.as_raw(), took_ms = t0.elapsed().as_millis() as u64, status = %describe_exit(status.ok()), "LiveKit stopped");
            metrics::livekit_drained(t0.elapsed(), DrainOutcome::Exited);
            return;
        }
        tracing::warn!(
            pid = pid.as_raw(),
            "LiveKit still draining after the budget; second SIGTERM (force)"
        );
        let _ = signal::kill(pid, Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
            tracing::info!(pid = pid.as_raw(), took_ms = t0.elapsed().as_millis() as u64, status = %describe_exit(status.ok()), "LiveKit stopped");
            metrics::livekit_drained(t0.elapsed(), DrainOutcome::Forced);
            return;
        }
        tracing::warn!(pid = pid.as_raw(), "LiveKit ignored SIGTERM; SIGKILL");
        let _ = child.start_kill();
        let _ = child.wait().await;
        metrics::livekit_drained(t0.elapsed(), DrainOutcome::Killed);
    }
}

/// Why a child whose probes kept failing is restarted: no answer in time is a hang.
fn failed_probe_reason(probe: &Probe) -> RestartReason {
    if probe.is_timeout() {
        RestartReason::Hang
    } else {
        RestartReason::Health
    }
}

/// How long after LiveKit's ready line its first SIGTERM may come. The real server (1.13.5)
/// sets `running` 100 ms after logging the ready line; a first SIGTERM before that only marks
/// the node `SHUTTING_DOWN` (`Stop` returns early) and is lost, so the stop would wait the
/// whole drain budget for the second one.
pub const FIRST_SIGTERM_AFTER_READY: Duration = Duration::from_millis(150);

/// Wait until [`FIRST_SIGTERM_AFTER_READY`] has passed since `ready_at` (at once when it has,
/// or when the ready line was never read); the exit status if the child ended meanwhile.
async fn hold_first_sigterm(
    child: &mut Child,
    ready_at: Option<Instant>,
) -> Option<Option<ExitStatus>> {
    let until = ready_at? + FIRST_SIGTERM_AFTER_READY;
    let wait = until.saturating_duration_since(clock::now());
    if wait.is_zero() {
        return None;
    }
    tracing::debug!(
        wait_ms = wait.as_millis() as u64,
        "LiveKit logged its ready line just now: holding the first SIGTERM until it can act on it"
    );
    tokio::time::timeout(wait, child.wait())
        .await
        .ok()
        .map(|status| status.ok())
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
