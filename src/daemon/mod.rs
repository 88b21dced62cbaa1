//! The daemon: [`run`] = [`start`] → wait → [`stop`](Daemon::stop), callable from `main` with the
//! signal future and from tests with a cancellation token (`token.cancelled_owned()`).
//!
//! - start (`start.rs`): bind the control API's port (a taken port is found before anything
//!   starts) → check `/metrics` access (token, own listener) → render LiveKit's config → claim
//!   the shared Redis (clustered nodes; its pinger for `/metrics`) → start LiveKit (a failure
//!   aborts startup) → statistics → the cluster role → serve the control API (with `/metrics`)
//!   on the bound listener → `READY=1` → the STATUS publisher and the watchdog (`tasks.rs`).
//! - wait: until `shutdown` resolves or the supervisor gives up for good. `shutdown` is watched
//!   during start too: a stop requested while LiveKit is still starting unwinds at once.
//! - stop (`stop.rs`): one unwind for every path, whatever was started: `STOPPING=1` (after
//!   READY, or whenever a stop was requested) → leave the cluster (so no new rooms land here) →
//!   stop LiveKit (drain budget, then kill) → stop the API and every other task, under a
//!   deadline.
//!
//! `signals.rs`: SIGTERM/SIGINT caught from the first instant of `run` and handled by `main`.
//!
//! One `CancellationToken` tree; every task spawned on one `TaskTracker`.

pub mod signals;
mod start;
mod stop;
pub mod tasks;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::serve::ServeError;
use crate::clock::{self, Instant};
use crate::cluster::discovery::Discovery;
use crate::cluster::node::ClusterError;
use crate::cluster::store::StoreError;
use crate::cluster::ClusterHandle;
use crate::config::{NodeConfig, Secrets};
use crate::livekit::render::RenderError;
use crate::livekit::supervisor::SupervisorError;
use crate::livekit::LivekitStatus;
use crate::metrics::http::MetricsError;
use crate::redis_conn::RedisError;
use crate::systemd::{self, Notifier};
use crate::tls::HttpClientError;

pub use tasks::status_line;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("Redis at {} is unreachable: {} (clustered nodes share Redis with LiveKit; start it or fix redis.url)", .0.address, .0.cause)]
    RedisUnreachable(RedisError),
    /// The shared Redis belongs to another cluster id (a configuration error: exit 78).
    #[error("{0}")]
    RedisOwnedByOther(StoreError),
    #[error("{0}")]
    Livekit(#[from] SupervisorError),
    #[error("LiveKit server failed to start: the supervisor ended during the start")]
    StartCancelled,
    #[error("LiveKit supervisor task failed: {0}")]
    SupervisorTask(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Api(#[from] ServeError),
    #[error(transparent)]
    Http(#[from] HttpClientError),
    /// The cluster role cannot start with this configuration (exit 78).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// `[metrics]` cannot be set up (exit 78).
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

impl DaemonError {
    /// Exit code for `main` (see `exit.rs`).
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::RedisOwnedByOther(_)
            | DaemonError::Cluster(_)
            | DaemonError::Metrics(_) => crate::exit::CONFIG,
            DaemonError::Api(e) if e.is_config() => crate::exit::CONFIG,
            _ => crate::exit::FAILURE,
        }
    }
}

impl From<StoreError> for DaemonError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Redis(r) => DaemonError::RedisUnreachable(r),
            other => DaemonError::RedisOwnedByOther(other),
        }
    }
}

/// What the daemon takes from its surroundings besides the configuration: the binary passes
/// [`RunOptions::from_env`] (systemd's `NOTIFY_SOCKET` and `WATCHDOG_USEC`); tests pass their own.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Seed for backoff jitter (None: from the OS).
    pub jitter_seed: Option<u64>,
    /// Discovery to use instead of mDNS (in-process tests).
    pub discovery: Option<Arc<dyn Discovery>>,
    /// Where READY/STATUS/WATCHDOG/STOPPING go (default: nowhere).
    pub notifier: Notifier,
    /// Watchdog ping period, half of `WATCHDOG_USEC` (None: no watchdog).
    pub watchdog: Option<Duration>,
    /// systemd's `$CREDENTIALS_DIRECTORY` (the metrics token's hash may be a credential).
    pub credentials_dir: Option<PathBuf>,
}

impl RunOptions {
    /// systemd's notify socket and watchdog from the environment, as `main` runs the daemon.
    pub fn from_env() -> Self {
        RunOptions {
            notifier: Notifier::from_env(),
            watchdog: systemd::watchdog_period(),
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            ..Default::default()
        }
    }
}

/// The running LiveKit supervisor.
struct Livekit {
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<(), SupervisorError>>>,
    status: watch::Receiver<LivekitStatus>,
}

/// Everything the daemon started so far; [`Daemon::stop`] unwinds whatever is here.
struct Daemon {
    node: Arc<NodeConfig>,
    secrets: Arc<Secrets>,
    opts: RunOptions,
    started: Instant,
    tracker: TaskTracker,
    root: CancellationToken,
    livekit: Option<Livekit>,
    cluster: Option<(ClusterHandle, CancellationToken)>,
    /// The control API's listener, bound first and served once the role is known.
    listener: Option<crate::api::serve::Bound>,
    api: Option<CancellationToken>,
    /// `READY=1` was sent (so stopping says `STOPPING=1`).
    ready: bool,
    /// A stop was asked for (so stopping says `STOPPING=1`, even before READY).
    stop_requested: bool,
}

/// Run the node until `shutdown` resolves (or LiveKit fails for good).
pub async fn run(
    node: NodeConfig,
    secrets: Secrets,
    opts: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    let mut daemon = Daemon {
        node: Arc::new(node),
        secrets: Arc::new(secrets),
        opts,
        started: clock::now(),
        tracker: TaskTracker::new(),
        root: CancellationToken::new(),
        livekit: None,
        cluster: None,
        listener: None,
        api: None,
        ready: false,
        stop_requested: false,
    };
    tokio::pin!(shutdown);
    // a stop requested while starting drops the start where it is; `stop` unwinds what it left
    let started = tokio::select! {
        r = daemon.start() => Some(r),
        _ = &mut shutdown => None,
    };
    let result = match started {
        Some(Ok(())) => daemon.wait(shutdown).await,
        Some(Err(e)) => Err(e),
        None => {
            tracing::info!("stop requested while starting");
            daemon.stop_requested = true;
            Ok(())
        }
    };
    daemon.stop().await;
    result
}

impl Daemon {
    /// Until asked to stop (Ok), or until the supervisor ends on its own (its error).
    async fn wait(&mut self, shutdown: impl Future<Output = ()> + Send) -> Result<(), DaemonError> {
        let task = self.livekit.as_mut().and_then(|lk| lk.task.take());
        let supervisor = async {
            match task {
                Some(t) => t.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown => {
                tracing::info!("stop requested");
                self.stop_requested = true;
                Ok(())
            }
            r = supervisor => match r {
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "LiveKit supervisor gave up");
                    Err(DaemonError::Livekit(e))
                }
                Ok(Ok(())) => {
                    tracing::warn!("LiveKit supervisor ended");
                    Ok(())
                }
                Err(e) => Err(DaemonError::SupervisorTask(e)),
            }
        }
    }
}
