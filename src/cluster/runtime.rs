//! Starting the cluster role of a node and stopping it: the daemon calls [`claim_redis`] at
//! startup, [`start`] once LiveKit is up (it returns the routes to merge and a status watch), and
//! [`ClusterHandle::leave`] / [`ClusterHandle::stop`] during the ordered shutdown.
//!
//! - main: membership table + ticker (4 ticks per heartbeat; main re-registers itself with fresh
//!   statistics every heartbeat), cluster routes, join endpoint, mDNS advert `role=main`.
//! - sub: mDNS advert `role=sub`, then the register/heartbeat loop (`sub_role.rs`).
//! - standalone: the join endpoint with itself as the only node.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::{AppTokenCheck, ClusterSecret};
use super::discovery::{Advert, Discovery, MdnsDiscovery};
use super::main_role::{Main, MainSettings};
use super::protocol::{
    self, LivekitHealth, NodeInfo, NodeMode, NodeStats, PortRange, MAX_ROOMS_PER_NODE,
    PROTOCOL_VERSION,
};
use super::store::{Claim, Store, StoreError};
use super::sub_role::{StatsSource, SubHandle, SubSettings};
use crate::config::{Mode, NodeConfig, Secrets};
use crate::livekit::health::RedisProbe;
use crate::livekit::{rooms, LivekitState, LivekitStatus};
use crate::stats::Sample;

/// Lifetime of join tokens.
pub const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);
/// Budget for `/leave` on a graceful stop.
pub const LEAVE_BUDGET: Duration = Duration::from_secs(2);

/// Why the cluster role cannot start (configuration problems: exit 78).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster secret: {0}")]
    Secret(String),
    #[error("application token hash: {0}")]
    AppToken(String),
}

/// What the cluster role needs from the daemon.
pub struct ClusterContext {
    pub node: Arc<NodeConfig>,
    pub secrets: Arc<Secrets>,
    pub livekit: watch::Receiver<LivekitStatus>,
    pub stats: watch::Receiver<Sample>,
    pub store: Option<Store>,
    /// Injected discovery (tests); `None` = mDNS when `cluster.mdns` is on.
    pub discovery: Option<Arc<dyn Discovery>>,
    pub tracker: TaskTracker,
    pub cancel: CancellationToken,
}

/// The running cluster role.
pub struct ClusterHandle {
    /// Routes to merge into the control API.
    pub routes: Router,
    /// True when `routes` carries the cluster-wide `/api/livekit/rooms` (main).
    pub replaces_node_rooms: bool,
    /// One-line cluster status for systemd's `STATUS=` (empty on a standalone node).
    pub status: watch::Receiver<String>,
    pub main: Option<Arc<Main>>,
    pub sub: Option<Arc<SubHandle>>,
    discovery: Option<Arc<dyn Discovery>>,
}

impl ClusterHandle {
    /// Graceful goodbye: a sub sends `/leave` (bounded by [`LEAVE_BUDGET`]).
    pub async fn leave(&self) {
        if let Some(s) = &self.sub {
            s.leave(LEAVE_BUDGET).await;
        }
    }

    /// Withdraw mDNS adverts and stop the mDNS daemon.
    pub fn stop(&self) {
        if let Some(d) = &self.discovery {
            d.shutdown();
        }
    }
}

/// Check Redis ownership at startup: claim `airclass:cluster_id` for our cluster id.
pub async fn claim_redis(probe: &RedisProbe, cluster_id: &str) -> Result<Store, StoreError> {
    let store = Store::new(probe.clone());
    match store.claim_cluster_id(cluster_id).await? {
        Claim::Created => {
            tracing::info!(address = %store.address(), cluster = cluster_id, "Redis claimed for this cluster")
        }
        Claim::Existing => {
            tracing::info!(address = %store.address(), cluster = cluster_id, "Redis belongs to this cluster")
        }
    }
    Ok(store)
}

/// The address peers and clients use: `node.advertise_address`, else the first non-loopback
/// IPv4 address, else 127.0.0.1.
pub fn advertise_address(node: &NodeConfig) -> String {
    if let Some(a) = node
        .config
        .node
        .advertise_address
        .as_deref()
        .filter(|a| !a.is_empty())
    {
        return a.to_owned();
    }
    if_addrs::get_if_addrs()
        .ok()
        .and_then(|list| {
            list.into_iter()
                .filter(|i| !i.is_loopback())
                .find_map(|i| match i.ip() {
                    IpAddr::V4(v4) => Some(v4.to_string()),
                    IpAddr::V6(_) => None,
                })
        })
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

fn tls(node: &NodeConfig) -> bool {
    let api = &node.config.api;
    api.tls_cert_file.as_deref().is_some_and(|s| !s.is_empty())
        && api.tls_key_file.as_deref().is_some_and(|s| !s.is_empty())
}

/// What this node tells main about itself.
pub fn node_info(node: &NodeConfig) -> NodeInfo {
    let addr = advertise_address(node);
    let scheme = if tls(node) { "https" } else { "http" };
    let livekit_url = node
        .config
        .livekit
        .url
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| super::discovery::api_url("ws", &addr, node.ports.livekit_port));
    NodeInfo {
        name: node.name.clone(),
        mode: match node.mode {
            Mode::Standalone => NodeMode::Standalone,
            Mode::Main => NodeMode::Main,
            Mode::Sub => NodeMode::Sub,
        },
        protocol_version: PROTOCOL_VERSION,
        software_version: env!("CARGO_PKG_VERSION").to_owned(),
        api_url: super::discovery::api_url(scheme, &addr, node.ports.api_port),
        livekit_url,
        rtc_range: PortRange {
            start: node.ports.rtc_udp_start,
            end: node.ports.rtc_udp_end,
        },
    }
}

fn health(s: &LivekitStatus) -> LivekitHealth {
    match s.state {
        LivekitState::Ready => LivekitHealth::Healthy,
        LivekitState::Degraded => LivekitHealth::Degraded,
        LivekitState::Starting | LivekitState::Backoff => LivekitHealth::Starting,
        LivekitState::Stopping | LivekitState::Stopped | LivekitState::Failed => {
            LivekitHealth::Down
        }
    }
}

/// Fresh statistics: the sampler's last values, LiveKit's health and its rooms (RoomService).
pub fn stats_source(ctx: &ClusterContext) -> StatsSource {
    let (stats, lk) = (ctx.stats.clone(), ctx.livekit.clone());
    let port = ctx.node.ports.livekit_port;
    let (key, secret) = (ctx.secrets.api_key.clone(), ctx.secrets.api_secret.clone());
    // A slow or hung LiveKit must not delay the heartbeat itself: ask for its rooms with a
    // quarter of a heartbeat at most, and fall back to the last list we got (so main keeps
    // knowing where live rooms are and never splits a classroom because one call was slow).
    let budget = (Duration::from_secs(ctx.node.config.cluster.heartbeat_secs) / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(2));
    let last_rooms: Arc<std::sync::Mutex<Vec<rooms::RoomView>>> = Arc::default();
    Arc::new(move || {
        let sample = *stats.borrow();
        let status = lk.borrow().clone();
        let (key, secret) = (key.clone(), secret.clone());
        let last_rooms = last_rooms.clone();
        Box::pin(async move {
            let list = if status.serving() {
                match tokio::time::timeout(budget, rooms::list_rooms(port, &key, secret.expose()))
                    .await
                {
                    Ok(Ok(list)) => {
                        if let Ok(mut last) = last_rooms.lock() {
                            *last = list.clone();
                        }
                        list
                    }
                    _ => last_rooms.lock().map(|l| l.clone()).unwrap_or_default(),
                }
            } else {
                Vec::new()
            };
            let participants = list.iter().map(|r| r.num_participants).sum();
            crate::metrics::local_rooms(list.len() as u32, participants);
            let room_names = list
                .iter()
                .map(|r| r.name.clone())
                .filter(|r| protocol::validate_room_name(r).is_ok())
                .take(MAX_ROOMS_PER_NODE)
                .collect();
            NodeStats {
                cpu_percent: f64::from(sample.cpu_percent).max(0.0),
                memory_used_bytes: sample.memory_used_bytes,
                memory_total_bytes: sample.memory_total_bytes,
                load1: sample.load1.max(0.0),
                sysload: sample.sysload.max(0.0),
                num_cpus: u32::try_from(sample.num_cpus).unwrap_or(u32::MAX),
                rooms: u32::try_from(list.len()).unwrap_or(u32::MAX),
                participants,
                livekit_health: health(&status),
                room_names,
            }
        })
    })
}

fn discovery_for(ctx: &ClusterContext) -> Option<Arc<dyn Discovery>> {
    if let Some(d) = &ctx.discovery {
        return Some(d.clone());
    }
    if !ctx.node.config.cluster.mdns || !ctx.node.mode.is_clustered() {
        return None;
    }
    match MdnsDiscovery::new() {
        Ok(d) => Some(Arc::new(d)),
        Err(e) => {
            tracing::warn!(error = %e, "mDNS unavailable; set MAIN_NODE_URL (cluster.main_url) on subs");
            None
        }
    }
}

/// Start this node's cluster role (see the module docs).
pub async fn start(ctx: ClusterContext) -> Result<ClusterHandle, ClusterError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let node = ctx.node.clone();
    let c = &node.config.cluster;
    let info = node_info(&node);
    let stats = stats_source(&ctx);
    let secret = match (&ctx.secrets.cluster_secret, node.mode.is_clustered()) {
        (Some(s), true) => Some(
            ClusterSecret::from_text(s.expose())
                .map_err(|e| ClusterError::Secret(e.to_string()))?,
        ),
        (None, true) => return Err(ClusterError::Secret("missing for a clustered node".into())),
        _ => None,
    };
    let discovery = discovery_for(&ctx);
    let advert = Advert {
        cluster_id: c.id.clone(),
        role: if node.mode == Mode::Main {
            "main"
        } else {
            "sub"
        }
        .to_owned(),
        node: node.name.clone(),
        api_port: node.ports.api_port,
        address: advertise_address(&node),
        scheme: if tls(&node) { "https" } else { "http" }.to_owned(),
    };
    if let Some(d) = &discovery {
        if let Err(e) = d.advertise(&advert) {
            tracing::warn!(error = %e, "cannot advertise over mDNS");
        }
    }
    let (status_tx, status_rx) = watch::channel(String::new());
    let heartbeat = Duration::from_secs(c.heartbeat_secs.max(1));

    if node.mode == Mode::Sub {
        let Some(secret) = secret else {
            return Err(ClusterError::Secret("missing for a sub".into()));
        };
        let main_url = c.main_url.clone().filter(|u| !u.trim().is_empty());
        let browse = match (&main_url, &discovery) {
            (None, Some(d)) => match d.browse(&c.id) {
                Ok(rx) => Some(rx),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot browse mDNS for main");
                    None
                }
            },
            _ => None,
        };
        let settings = SubSettings {
            cluster_id: c.id.clone(),
            identity: protocol::new_identity(&mut rand::thread_rng()),
            info,
            main_url,
            heartbeat,
            discovery_timeout: Duration::from_secs(c.discovery_timeout_secs),
            secret,
        };
        let sub = SubHandle::start(
            settings,
            stats,
            browse,
            status_tx,
            &ctx.tracker,
            ctx.cancel.child_token(),
        );
        return Ok(ClusterHandle {
            routes: Router::new(),
            replaces_node_rooms: false,
            status: status_rx,
            main: None,
            sub: Some(sub),
            discovery,
        });
    }

    // main, or standalone (join endpoint only)
    let app_token = match &ctx.secrets.app_token_sha256 {
        Some(h) => Some(
            AppTokenCheck::from_hex(h.as_str())
                .map_err(|e| ClusterError::AppToken(e.to_string()))?,
        ),
        None => None,
    };
    let settings = MainSettings {
        cluster_id: c.id.clone(),
        main_name: node.name.clone(),
        heartbeat,
        dead_after_missed: c.dead_after_missed,
        forget_after: Duration::from_secs(c.forget_after_secs),
        sysload_limit: c.sysload_limit,
        max_body_bytes: node.config.api.max_body_bytes,
        max_skew_secs: c.max_skew_secs,
        grants: node.config.grants.clone(),
        api_key: ctx.secrets.api_key.clone(),
        api_secret: ctx.secrets.api_secret.clone(),
        token_ttl: TOKEN_TTL,
        local_livekit_port: node.ports.livekit_port,
    };
    let clustered = node.mode == Mode::Main;
    let main = Main::new(settings, secret, app_token, ctx.store.clone());
    main.register_self(info.clone(), stats().await);
    if clustered {
        let _ = status_tx.send(main.status_text());
    }
    spawn_main_ticker(
        main.clone(),
        info,
        stats,
        clustered.then_some(status_tx),
        &ctx.tracker,
        ctx.cancel.child_token(),
    );
    let routes = match clustered {
        true => main.routes().merge(crate::status::page::routes()),
        false => main.routes(),
    };
    Ok(ClusterHandle {
        routes,
        replaces_node_rooms: clustered,
        status: status_rx,
        main: Some(main),
        sub: None,
        discovery,
    })
}

/// Main's ticker: ages the table 4× per heartbeat, re-registers main itself with fresh
/// statistics once per heartbeat, and publishes the status line on change.
pub fn spawn_main_ticker(
    main: Arc<Main>,
    info: NodeInfo,
    stats: StatsSource,
    status_tx: Option<watch::Sender<String>>,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) {
    let heartbeat = main.settings().heartbeat;
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(heartbeat / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            n += 1;
            if n % 4 == 0 {
                main.register_self(info.clone(), stats().await);
            }
            main.tick();
            if let Some(tx) = &status_tx {
                let text = main.status_text();
                tx.send_if_modified(|cur| {
                    let changed = *cur != text;
                    if changed {
                        cur.clone_from(&text);
                    }
                    changed
                });
            }
        }
    });
}
