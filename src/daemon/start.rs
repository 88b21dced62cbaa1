//! Starting the node, in the seed's order; each step records what it started in the
//! [`Daemon`] so that `stop` can unwind it on any later failure.

use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::{tasks, Daemon, DaemonError, Livekit};
use crate::api::{self, NodeState};
use crate::cluster::node::{ClusterContext, OwnRooms};
use crate::cluster::store::Store;
use crate::cluster::{self, Role};
use crate::config::NodeConfig;
use crate::livekit::render;
use crate::livekit::rooms::Rooms;
use crate::livekit::{LivekitStatus, Supervisor, SupervisorConfig};
use crate::metrics::{self, http::Access};
use crate::redis_conn::RedisConn;
use crate::stats::Sample;
use crate::tls::{self, ClientOptions};

/// The supervisor's settings from the node's `[livekit]` section.
fn supervisor_config(node: &NodeConfig, redis: Option<RedisConn>) -> SupervisorConfig {
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

/// What `/metrics` reads at scrape time.
fn metrics_sources(
    node: &NodeConfig,
    livekit: &watch::Receiver<LivekitStatus>,
    stats: &watch::Receiver<Sample>,
    role: &Role,
    api: std::sync::Arc<api::conns::Connections>,
) -> metrics::Sources {
    let (main, sub) = match role {
        Role::Main(m) | Role::Standalone(m) => (Some(m.clone()), None),
        Role::Sub(s) => (None, Some(s.clone())),
    };
    metrics::Sources {
        node: node.name.clone(),
        mode: node.mode.as_str(),
        sysload_limit: node
            .mode
            .is_clustered()
            .then_some(node.config.cluster.sysload_limit),
        livekit: livekit.clone(),
        stats: stats.clone(),
        main,
        sub,
        redis: node.redis.is_some(),
        api: Some(api),
    }
}

/// A jitter source in `0.0..1.0`: xorshift, deterministic with a seed.
fn jitter(seed: Option<u64>) -> Box<dyn FnMut() -> f64 + Send + Sync> {
    let mut state = seed.unwrap_or_else(rand::random);
    Box::new(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f64 / 10_000.0
    })
}

impl Daemon {
    /// Every step up to `READY=1` and the tasks that run after it.
    pub(super) async fn start(&mut self) -> Result<(), DaemonError> {
        // fail with a clear message here rather than a panic inside a task later
        let http = tls::http_client()?;
        self.bind_api()?;
        let metrics = self.metrics_access()?;
        self.render()?;
        let (redis, store) = self.claim_redis().await?;
        let livekit = self.start_livekit(redis).await?;
        let stats = tasks::stats(&self.node, &self.tracker, self.root.child_token());
        let lk = &self.node.ports;
        let rooms = Rooms::new(
            lk.livekit_port,
            &self.secrets.api_key,
            self.secrets.api_secret.expose(),
        );
        let own_rooms = OwnRooms::new(rooms.clone(), store.clone());
        let (role, cluster_status) = self
            .start_cluster(store, rooms, &livekit, &stats, http)
            .await?;
        self.serve_api(&livekit, &stats, &role, own_rooms, metrics)?;
        self.announce_ready(&livekit, &cluster_status);
        let (notifier, tracker) = (&self.opts.notifier, &self.tracker);
        let cancel = self.root.child_token();
        tasks::status(
            &self.node,
            &livekit,
            &cluster_status,
            notifier,
            tracker,
            cancel.clone(),
        );
        if let Some(period) = self.opts.watchdog {
            let stale_after = tasks::stale_after(&self.node);
            tasks::watchdog(period, stale_after, &livekit, notifier, tracker, cancel);
        }
        Ok(())
    }

    /// 0. The control API's port (and its TLS files), before anything starts: a port another
    ///    program holds is found here, not after LiveKit is up.
    fn bind_api(&mut self) -> Result<(), DaemonError> {
        let bound = api::serve::bind(&self.node)?;
        tracing::debug!(addr = %bound.local_addr(), "control API port bound");
        self.listener = Some(bound);
        Ok(())
    }

    /// 0. Who may read `/metrics` (token, own listener), decided before anything starts: a bad
    ///    token file or a busy `metrics.listen` address is a configuration error (exit 78).
    fn metrics_access(&self) -> Result<Access, DaemonError> {
        let cfg = &self.node.config.metrics;
        Ok(Access::prepare(cfg, self.opts.credentials_dir.as_deref())?)
    }

    /// 1. LiveKit's config and key file, written atomically.
    fn render(&self) -> Result<(), DaemonError> {
        self.opts
            .notifier
            .status("starting: rendering LiveKit config");
        let rendered = render::render(&self.node, Some(&self.secrets), false)?;
        render::write(&rendered)?;
        tracing::info!(path = %rendered.config_path.display(), mode = self.node.mode.as_str(), "LiveKit config written");
        Ok(())
    }

    /// 2. Clustered nodes need the Redis they share with LiveKit, and it must be ours.
    async fn claim_redis(&self) -> Result<(Option<RedisConn>, Option<Store>), DaemonError> {
        let Some(target) = &self.node.redis else {
            return Ok((None, None));
        };
        let conn = RedisConn::open(target, self.secrets.redis_password.as_ref())
            .map_err(DaemonError::RedisUnreachable)?;
        conn.ping(Duration::from_secs(3))
            .await
            .map_err(DaemonError::RedisUnreachable)?;
        tracing::info!(address = %target.address, "Redis reachable");
        let store = cluster::claim_redis(&conn, &self.node.config.cluster.id).await?;
        // `airclass_redis_up`: a scrape reads the pinger's last answer, never Redis itself
        metrics::redis::spawn_pinger(conn.clone(), &self.tracker, self.root.child_token());
        Ok((Some(conn), Some(store)))
    }

    /// 3. LiveKit, until ready; a failed first start aborts the daemon with the child's output.
    async fn start_livekit(
        &mut self,
        redis: Option<RedisConn>,
    ) -> Result<watch::Receiver<LivekitStatus>, DaemonError> {
        let notifier = self.opts.notifier.clone();
        notifier.status("starting: waiting for LiveKit to become ready");
        // LiveKit on loopback, plain HTTP; no pool (the child restarts on the same port)
        let probe_client = ClientOptions {
            no_pool: true,
            http_only: true,
            ..Default::default()
        }
        .build()?;
        let (sup, status) = Supervisor::new(
            supervisor_config(&self.node, redis),
            notifier,
            self.tracker.clone(),
            jitter(self.opts.jitter_seed),
            probe_client,
        );
        let cancel = self.root.child_token();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = self.tracker.spawn(sup.run(cancel.clone(), ready_tx));
        let lk = self.livekit.insert(Livekit {
            cancel,
            task: Some(task),
            status: status.clone(),
        });
        if let Ok(pid) = ready_rx.await {
            tracing::info!(pid, "LiveKit started");
            return Ok(status);
        }
        // the supervisor dropped the sender: its start failed (or was cancelled)
        let Some(task) = lk.task.take() else {
            return Err(DaemonError::StartCancelled);
        };
        Err(match task.await {
            Ok(Err(e)) => DaemonError::Livekit(e),
            Ok(Ok(())) => DaemonError::StartCancelled,
            Err(e) => DaemonError::SupervisorTask(e),
        })
    }

    /// 4. The cluster role (main: membership, placement, joins; sub: find main, heartbeats;
    ///    standalone: joins for itself), returned with its status line.
    async fn start_cluster(
        &mut self,
        store: Option<Store>,
        rooms: Rooms,
        livekit: &watch::Receiver<LivekitStatus>,
        stats: &watch::Receiver<Sample>,
        http: reqwest::Client,
    ) -> Result<(Role, watch::Receiver<String>), DaemonError> {
        let cancel = self.root.child_token();
        let handle = cluster::start(ClusterContext {
            node: self.node.clone(),
            secrets: self.secrets.clone(),
            livekit: livekit.clone(),
            stats: stats.clone(),
            store,
            rooms,
            discovery: self.opts.discovery.clone(),
            http,
            tracker: self.tracker.clone(),
            cancel: cancel.clone(),
        })
        .await?;
        let out = (handle.role.clone(), handle.status.clone());
        self.cluster = Some((handle, cancel));
        Ok(out)
    }

    /// 5. The control API: the one route table for this node's role, and `/metrics` (on it, or
    ///    on its own listener), on the bound listener, with the connection cap the file handle
    ///    limit allows.
    fn serve_api(
        &mut self,
        livekit: &watch::Receiver<LivekitStatus>,
        stats: &watch::Receiver<Sample>,
        role: &Role,
        own_rooms: OwnRooms,
        metrics: Access,
    ) -> Result<(), DaemonError> {
        let api_cfg = &self.node.config.api;
        let cap = api::serve::effective_cap(api_cfg.max_connections, crate::fds::soft_limit());
        if cap < api_cfg.max_connections {
            tracing::warn!(max_connections = api_cfg.max_connections, cap, "api.max_connections lowered to what the file handle limit allows (raise LimitNOFILE=)");
        }
        let limits = api::connection::Limits {
            header_timeout: Duration::from_secs(api_cfg.header_timeout_secs),
            request_timeout: Duration::from_secs(api_cfg.request_timeout_secs),
        };
        let connections = api::conns::Connections::new(cap);
        let state = NodeState {
            node: self.node.clone(),
            secrets: self.secrets.clone(),
            livekit: livekit.clone(),
            stats: stats.clone(),
            started: self.started,
            own_rooms,
            connections: connections.clone(),
            sub: match role {
                Role::Sub(s) => Some(s.clone()),
                _ => None,
            },
        };
        let bound = match self.listener.take() {
            Some(b) => b,
            None => api::serve::bind(&self.node)?,
        };
        let cancel = self.root.child_token();
        let sources = metrics_sources(&self.node, livekit, stats, role, connections.clone());
        let app = api::router(state, role);
        let app = metrics.attach(app, sources, &self.tracker, cancel.clone());
        api::serve::serve(
            bound,
            app,
            limits,
            connections,
            cancel.clone(),
            &self.tracker,
        );
        self.api = Some(cancel);
        Ok(())
    }

    /// 6. `READY=1` with the first status line.
    fn announce_ready(
        &mut self,
        livekit: &watch::Receiver<LivekitStatus>,
        cluster_status: &watch::Receiver<String>,
    ) {
        let cluster = cluster_status.borrow().clone();
        let line = tasks::status_line(&self.node, &livekit.borrow(), &cluster);
        self.opts.notifier.ready(&line);
        self.ready = true;
        tracing::info!(
            api_port = self.node.ports.api_port,
            livekit_port = self.node.ports.livekit_port,
            startup_ms = self.started.elapsed().as_millis() as u64,
            "node ready"
        );
    }
}
