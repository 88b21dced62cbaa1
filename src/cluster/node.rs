//! This node as the cluster role sees it: what the daemon hands over ([`ClusterContext`]), what
//! the node tells main about itself ([`node_info`], [`stats_source`]) and publishes over mDNS
//! ([`advert`]), and the secrets it needs. Both roles (`main/`, `sub/`) build on this module.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::{ClusterSecret, SecretError};
use super::discovery::{api_url, Advert, Discovery};
use super::protocol::{
    self, LivekitHealth, NodeInfo, NodeMode, NodeStats, PortRange, MAX_ROOMS_PER_NODE,
    PROTOCOL_VERSION,
};
use super::store::Store;
use crate::app_token::BadTokenHash;
use crate::config::{Mode, NodeConfig, Secrets};
use crate::livekit::rooms::{self, Rooms};
use crate::livekit::{LivekitState, LivekitStatus};
use crate::stats::Sample;
use crate::sync::lock;

/// Why the cluster role cannot start (configuration problems: exit 78).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster secret: {0}")]
    Secret(#[from] SecretError),
    #[error("cluster secret: missing for a clustered node")]
    MissingSecret,
    #[error("application token hash: {0}")]
    AppToken(#[from] BadTokenHash),
}

/// What the cluster role needs from the daemon.
pub struct ClusterContext {
    pub node: Arc<NodeConfig>,
    pub secrets: Arc<Secrets>,
    pub livekit: watch::Receiver<LivekitStatus>,
    pub stats: watch::Receiver<Sample>,
    pub store: Option<Store>,
    /// This node's LiveKit RoomService (one client for the daemon's life).
    pub rooms: Rooms,
    /// Injected discovery (tests); `None` = mDNS when `cluster.mdns` is on.
    pub discovery: Option<Arc<dyn Discovery>>,
    /// For calls to other nodes (built once by the daemon, `tls::http_client`).
    pub http: reqwest::Client,
    pub tracker: TaskTracker,
    pub cancel: CancellationToken,
}

impl ClusterContext {
    /// The cluster secret of a clustered node (`None` on a standalone node).
    pub fn cluster_secret(&self) -> Result<Option<ClusterSecret>, ClusterError> {
        match (&self.secrets.cluster_secret, self.node.mode.is_clustered()) {
            (Some(s), true) => Ok(Some(ClusterSecret::from_text(s.expose())?)),
            (None, true) => Err(ClusterError::MissingSecret),
            _ => Ok(None),
        }
    }

    /// The heartbeat period (`cluster.heartbeat_secs`, at least 1 s).
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.node.config.cluster.heartbeat_secs.max(1))
    }
}

/// Produces fresh statistics for each register/heartbeat.
pub type StatsSource =
    Arc<dyn Fn() -> Pin<Box<dyn std::future::Future<Output = NodeStats> + Send>> + Send + Sync>;

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

fn scheme(node: &NodeConfig) -> &'static str {
    let api = &node.config.api;
    let tls = api.tls_cert_file.as_deref().is_some_and(|s| !s.is_empty())
        && api.tls_key_file.as_deref().is_some_and(|s| !s.is_empty());
    if tls {
        "https"
    } else {
        "http"
    }
}

/// What this node tells main about itself.
pub fn node_info(node: &NodeConfig) -> NodeInfo {
    let addr = advertise_address(node);
    let livekit_url = node
        .config
        .livekit
        .url
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| api_url("ws", &addr, node.ports.livekit_port));
    NodeInfo {
        name: node.name.clone(),
        mode: match node.mode {
            Mode::Standalone => NodeMode::Standalone,
            Mode::Main => NodeMode::Main,
            Mode::Sub => NodeMode::Sub,
        },
        protocol_version: PROTOCOL_VERSION,
        software_version: env!("CARGO_PKG_VERSION").to_owned(),
        api_url: api_url(scheme(node), &addr, node.ports.api_port),
        livekit_url,
        rtc_range: PortRange {
            start: node.ports.rtc_udp_start,
            end: node.ports.rtc_udp_end,
        },
    }
}

/// What this node publishes over mDNS (`role=main` on main, `role=sub` otherwise).
pub fn advert(node: &NodeConfig) -> Advert {
    Advert {
        cluster_id: node.config.cluster.id.clone(),
        role: if node.mode == Mode::Main {
            "main"
        } else {
            "sub"
        }
        .to_owned(),
        node: node.name.clone(),
        api_port: node.ports.api_port,
        address: advertise_address(node),
        scheme: scheme(node).to_owned(),
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
    let own = OwnRooms::new(ctx.rooms.clone(), ctx.store.clone());
    // A slow or hung LiveKit must not delay the heartbeat itself: ask for its rooms with a
    // quarter of a heartbeat at most, and fall back to the last list we got (so main keeps
    // knowing where live rooms are and never splits a classroom because one call was slow).
    let budget = (ctx.heartbeat() / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
    let last_rooms: Arc<Mutex<Vec<rooms::RoomView>>> = Arc::default();
    Arc::new(move || {
        let sample = *stats.borrow();
        let status = lk.borrow().clone();
        let (own, last_rooms) = (own.clone(), last_rooms.clone());
        Box::pin(async move {
            let list = if status.serving() {
                match tokio::time::timeout(budget, own.list(status.node_id.as_deref())).await {
                    Ok(Ok(list)) => {
                        lock(&last_rooms).clone_from(&list);
                        list
                    }
                    _ => lock(&last_rooms).clone(),
                }
            } else {
                Vec::new()
            };
            let out = node_stats(&sample, &status, &list);
            crate::metrics::local_rooms(out.rooms, out.participants);
            out
        })
    })
}

/// The rooms that live on this node.
#[derive(Clone, Debug)]
pub struct OwnRooms {
    rooms: Rooms,
    store: Option<Store>,
}

/// Why this node's room list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OwnRoomsError {
    #[error(transparent)]
    Livekit(#[from] rooms::RoomsError),
    #[error(transparent)]
    Store(#[from] super::store::StoreError),
}

impl OwnRooms {
    /// `store`: the Redis shared with LiveKit (clustered nodes), `None` on a standalone node.
    pub fn new(rooms: Rooms, store: Option<Store>) -> Self {
        OwnRooms { rooms, store }
    }

    /// Standalone: LiveKit's ListRooms as it is. With Redis, ListRooms is cluster-wide (it reads
    /// LiveKit's shared `rooms` hash), so only the rooms LiveKit's `room_node_map` assigns to
    /// this node's LiveKit (`node_id`, from its ready line) are ours; none while it is unknown.
    pub async fn list(&self, node_id: Option<&str>) -> Result<Vec<rooms::RoomView>, OwnRoomsError> {
        let all = self.rooms.list().await?;
        let Some(store) = &self.store else {
            return Ok(all);
        };
        let Some(me) = node_id else {
            return Ok(Vec::new());
        };
        let map = store.livekit_room_node_map().await?;
        Ok(all
            .into_iter()
            .filter(|r| map.get(&r.name).is_some_and(|id| id == me))
            .collect())
    }
}

/// The wire statistics from a sample, LiveKit's status and its room list.
fn node_stats(sample: &Sample, status: &LivekitStatus, list: &[rooms::RoomView]) -> NodeStats {
    let participants = list.iter().map(|r| r.num_participants).sum();
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
        livekit_health: health(status),
        room_names,
        livekit_node_id: status.node_id.clone(),
    }
}

/// Send `text` on a status watch when it differs from the current value.
pub fn publish(tx: &watch::Sender<String>, text: String) {
    tx.send_if_modified(|cur| {
        let changed = *cur != text;
        if changed {
            *cur = text;
        }
        changed
    });
}
