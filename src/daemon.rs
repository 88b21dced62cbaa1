//! The daemon: wires the subsystems in the seed's order and stops them in a fixed order.
//!
//! Start: render LiveKit's config → cluster init (Redis check for clustered nodes) → start
//! LiveKit (a failure aborts startup) → control API listening → `READY=1`.
//! Stop (SIGTERM/SIGINT): `STOPPING=1` → leave the cluster (so no new rooms land here) →
//! stop LiveKit (drain budget, then kill) → stop the API and every other task, under a deadline.
//! One `CancellationToken` tree, every task spawned on one `TaskTracker`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, NodeState};
use crate::cluster::discovery::Discovery;
use crate::cluster::runtime::{self as cluster, ClusterContext};
use crate::cluster::store::StoreError;
use crate::config::{NodeConfig, Secrets};
use crate::livekit::health::RedisProbe;
use crate::livekit::render;
use crate::livekit::supervisor::SupervisorError;
use crate::livekit::{LivekitState, LivekitStatus, Supervisor, SupervisorConfig};
use crate::stats::Sampler;
use crate::systemd::{self, Notifier};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error("Redis at {address} is unreachable: {error} (clustered nodes share Redis with LiveKit; start it or fix redis.url)")]
    RedisUnreachable { address: String, error: String },
    #[error("{0}")]
    LivekitStart(String),
    #[error("{0}")]
    Livekit(#[from] SupervisorError),
    #[error("cannot listen on {addr} for the control API: {source} (another node or program uses the port?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Http(String),
    #[error("control API TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Cluster(String),
    /// The shared Redis belongs to another cluster id (a configuration error: exit 78).
    #[error("{0}")]
    RedisOwnedByOther(StoreError),
    /// The cluster role cannot start with this configuration (exit 78).
    #[error("{0}")]
    ClusterConfig(String),
    /// `[metrics]` cannot be set up (exit 78).
    #[error(transparent)]
    Metrics(#[from] crate::metrics::http::MetricsError),
}

impl DaemonError {
    /// Exit code for `main` (see `exit.rs`).
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Tls(_)
            | DaemonError::RedisOwnedByOther(_)
            | DaemonError::ClusterConfig(_)
            | DaemonError::Metrics(_) => crate::exit::CONFIG,
            _ => crate::exit::FAILURE,
        }
    }
}

/// Knobs for tests and benches.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Seed for backoff jitter (None: from the OS).
    pub jitter_seed: Option<u64>,
    /// Discovery to use instead of mDNS (in-process tests).
    pub discovery: Option<Arc<dyn Discovery>>,
}

fn supervisor_config(node: &NodeConfig, redis: Option<RedisProbe>) -> SupervisorConfig {
    let lk = &node.config.livekit;
    SupervisorConfig {
        binary: lk.binary.clone().into(),
        config_path: node.runtime_dir.join(render::CONFIG_FILE),
        livekit_port: node.ports.livekit_port,
        drain_timeout: Duration::from_secs(lk.drain_timeout_secs),
        ready_timeout: Duration::from_secs(lk.ready_timeout_secs),
        health_interval: Duration::from_millis(lk.health_interval_ms),
        health_failures: lk.health_failures,
        restart_budget: lk.restart_budget,
        budget_window: Duration::from_secs(600),
        backoff: Default::default(),
        require_ready_line: matches!(lk.log_level.as_str(), "debug" | "info"),
        redis,
    }
}

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

/// Run the node until `shutdown` resolves (or LiveKit fails for good).
pub async fn run(
    node: NodeConfig,
    secrets: Secrets,
    opts: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    // fail with a clear message here rather than a panic inside a task later
    crate::tls::http_client().map_err(DaemonError::Http)?;
    let started = Instant::now();
    let notifier = Notifier::new();
    let tracker = TaskTracker::new();
    let root = CancellationToken::new();
    let node = Arc::new(node);
    let secrets = Arc::new(secrets);

    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let metrics_access =
        crate::metrics::http::Access::prepare(&node.config.metrics, credentials.as_deref())?;

    // 1. render LiveKit's config
    notifier.status("starting: rendering LiveKit config");
    let rendered = render::render(&node, Some(&secrets), false)?;
    render::write(&rendered)?;
    tracing::info!(path = %rendered.config_path.display(), mode = node.mode.as_str(), "LiveKit config written");

    // 2. cluster init: clustered nodes need the Redis they share with LiveKit, and it must be ours
    let mut store = None;
    let redis = match &node.redis {
        Some(target) => {
            let probe = RedisProbe::new(target, secrets.redis_password.as_ref()).map_err(|e| {
                DaemonError::RedisUnreachable {
                    address: target.address.clone(),
                    error: e.to_string(),
                }
            })?;
            probe.ping(Duration::from_secs(3)).await.map_err(|error| {
                DaemonError::RedisUnreachable {
                    address: target.address.clone(),
                    error,
                }
            })?;
            tracing::info!(address = %target.address, "Redis reachable");
            crate::metrics::redis::spawn_pinger(probe.clone(), &tracker, root.child_token());
            store = Some(
                cluster::claim_redis(&probe, &node.config.cluster.id)
                    .await
                    .map_err(|e| match e {
                        StoreError::OwnedByOther { .. } => DaemonError::RedisOwnedByOther(e),
                        StoreError::Redis { address, error } => {
                            DaemonError::RedisUnreachable { address, error }
                        }
                    })?,
            );
            Some(probe)
        }
        None => None,
    };

    // 3. start LiveKit; failure aborts startup
    notifier.status("starting: waiting for LiveKit to become ready");
    let mut rng_state = opts.jitter_seed.unwrap_or_else(rand::random);
    let jitter = Box::new(move || {
        // xorshift: deterministic with a seed, no shared RNG state across tasks
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        (rng_state % 10_000) as f64 / 10_000.0
    });
    let (sup, lk_rx) = Supervisor::new(
        supervisor_config(&node, redis),
        notifier.clone(),
        tracker.clone(),
        jitter,
    );
    let lk_cancel = root.child_token();
    let (ready_tx, ready_rx) = oneshot::channel();
    let sup_task = tracker.spawn(sup.run(lk_cancel.clone(), ready_tx));
    let mut sup_task = Some(sup_task);
    match ready_rx.await {
        Ok(Ok(pid)) => tracing::info!(pid, "LiveKit started"),
        Ok(Err(msg)) => {
            if let Some(t) = sup_task.take() {
                let _ = t.await;
            }
            return Err(DaemonError::LivekitStart(msg));
        }
        Err(_) => {
            return Err(DaemonError::LivekitStart(
                "supervisor ended during start".into(),
            ))
        }
    }

    // statistics, sampled every 2 s
    let (stats_tx, stats_rx) = {
        let mut sampler = Sampler::new(node.config.node.sysload_override);
        watch::channel(sampler.sample())
    };
    {
        let cancel = root.child_token();
        let mut sampler = Sampler::with_override_file(
            node.config.node.sysload_override,
            Some(node.runtime_dir.join(crate::stats::SYSLOAD_OVERRIDE_FILE)),
        );
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => { let _ = stats_tx.send(sampler.sample()); }
                }
            }
        });
    }

    // 4. control API
    let state = NodeState {
        node: node.clone(),
        secrets: secrets.clone(),
        livekit: lk_rx.clone(),
        stats: stats_rx.clone(),
        started,
        sub: None,
    };
    // the cluster role: main (membership, placement, joins), sub (find main, heartbeats) or
    // standalone (joins for itself)
    let cluster_cancel = root.child_token();
    let cluster = cluster::start(ClusterContext {
        node: node.clone(),
        secrets: secrets.clone(),
        livekit: lk_rx.clone(),
        stats: stats_rx.clone(),
        store,
        discovery: opts.discovery.clone(),
        tracker: tracker.clone(),
        cancel: cluster_cancel.clone(),
    })
    .await;
    let cluster = match cluster {
        Ok(c) => c,
        Err(e) => {
            lk_cancel.cancel();
            if let Some(t) = sup_task.take() {
                let _ = t.await;
            }
            return Err(DaemonError::ClusterConfig(e.to_string()));
        }
    };
    let state = NodeState {
        sub: cluster.sub.clone(),
        ..state
    };
    let app = api::router(state, cluster.routes.clone(), cluster.replaces_node_rooms);
    let app = metrics_access.attach(
        app,
        metrics_sources(&node, &lk_rx, &stats_rx, &cluster),
        &tracker,
        root.child_token(),
    );
    let api_cancel = root.child_token();
    if let Err(e) = serve_api(&node, app, api_cancel.clone(), &tracker).await {
        cluster_cancel.cancel();
        cluster.stop();
        lk_cancel.cancel();
        if let Some(t) = sup_task.take() {
            let _ = t.await;
        }
        return Err(e);
    }

    // 5. READY
    let cluster_status = cluster.status.borrow().clone();
    let line = status_line(&node, &lk_rx.borrow(), &cluster_status);
    notifier.ready(&line);
    tracing::info!(
        api_port = node.ports.api_port,
        livekit_port = node.ports.livekit_port,
        startup_ms = started.elapsed().as_millis() as u64,
        "node ready"
    );

    // STATUS= on every change
    {
        let cancel = root.child_token();
        let mut rx = lk_rx.clone();
        let mut crx = cluster.status.clone();
        let node = node.clone();
        let notifier = notifier.clone();
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

    // watchdog: ping only while the loop runs and LiveKit is healthy or inside its budget
    if let Some(period) = systemd::watchdog_period() {
        let cancel = root.child_token();
        let rx = lk_rx.clone();
        let notifier = notifier.clone();
        let stale_after = Duration::from_millis(node.config.livekit.health_interval_ms) * 3
            + Duration::from_secs(5);
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
                let fresh = s.checked_at.elapsed() < stale_after;
                if fresh && s.state != LivekitState::Failed {
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

    // 6. run until asked to stop, or until LiveKit fails for good
    let mut fatal = None;
    let sup_done = async {
        match sup_task.take() {
            Some(t) => t.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown => tracing::info!("stop requested"),
        r = sup_done => {
            match r {
                Ok(Err(e)) => { tracing::error!(error = %e, "LiveKit supervisor gave up"); fatal = Some(DaemonError::Livekit(e)); }
                Ok(Ok(())) => tracing::warn!("LiveKit supervisor ended"),
                Err(e) => { fatal = Some(DaemonError::LivekitStart(format!("supervisor task failed: {e}"))); }
            }
        }
    }

    // 7. ordered shutdown
    notifier.stopping("stopping: draining LiveKit");
    let t0 = Instant::now();
    // leave the cluster first (bounded, ~2 s) so main places no new room here while LiveKit drains
    cluster.leave().await;
    tracing::info!(took_ms = t0.elapsed().as_millis() as u64, "cluster left");
    lk_cancel.cancel();
    // the supervisor's own drain deadline bounds this wait
    tracker.close();
    let drain_deadline =
        Duration::from_secs(node.config.livekit.drain_timeout_secs) + Duration::from_secs(5);
    let mut rx = lk_rx.clone();
    let _ = tokio::time::timeout(
        drain_deadline,
        rx.wait_for(|s| matches!(s.state, LivekitState::Stopped | LivekitState::Failed)),
    )
    .await;
    api_cancel.cancel();
    cluster_cancel.cancel();
    cluster.stop();
    root.cancel();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 5 s");
    }
    tracing::info!(took_ms = t0.elapsed().as_millis() as u64, "stopped");
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What `/metrics` reads at scrape time.
fn metrics_sources(
    node: &NodeConfig,
    livekit: &watch::Receiver<LivekitStatus>,
    stats: &watch::Receiver<crate::stats::Sample>,
    cluster: &cluster::ClusterHandle,
) -> crate::metrics::Sources {
    crate::metrics::Sources {
        node: node.name.clone(),
        mode: node.mode.as_str(),
        sysload_limit: node
            .mode
            .is_clustered()
            .then_some(node.config.cluster.sysload_limit),
        livekit: livekit.clone(),
        stats: stats.clone(),
        main: cluster.main.clone(),
        sub: cluster.sub.clone(),
        redis: node.redis.is_some(),
    }
}

/// Bind and serve the control API (TLS when configured) until `cancel`.
async fn serve_api(
    node: &NodeConfig,
    app: Router,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), DaemonError> {
    let ip: IpAddr = node
        .config
        .api
        .bind
        .parse()
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let addr = SocketAddr::new(ip, node.ports.api_port);
    let api = &node.config.api;
    if let (Some(cert), Some(key)) = (
        api.tls_cert_file.as_deref().filter(|s| !s.is_empty()),
        api.tls_key_file.as_deref().filter(|s| !s.is_empty()),
    ) {
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .map_err(|e| DaemonError::Tls(format!("cannot load {cert} / {key}: {e}")))?;
        let std_listener = std::net::TcpListener::bind(addr)
            .map_err(|source| DaemonError::Bind { addr, source })?;
        std_listener
            .set_nonblocking(true)
            .map_err(|source| DaemonError::Bind { addr, source })?;
        let handle = axum_server::Handle::new();
        let h2 = handle.clone();
        tracker.spawn(async move {
            cancel.cancelled().await;
            h2.graceful_shutdown(Some(Duration::from_secs(2)));
        });
        let server = axum_server::from_tcp_rustls(std_listener, tls)
            .map_err(|source| DaemonError::Bind { addr, source })?
            .handle(handle);
        tracker.spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::error!(error = %e, "control API (TLS) failed");
            }
        });
        tracing::info!(%addr, tls = true, "control API listening");
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { addr, source })?;
    tracker.spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "control API failed");
        }
    });
    tracing::info!(%addr, tls = false, "control API listening");
    Ok(())
}
