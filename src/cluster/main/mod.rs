//! The main role: the membership table behind a mutex, the refusal bookkeeping and the ticker
//! that ages the table. Its HTTP answers are in two files below it: [`endpoints`] (signed
//! sub → main requests and the read-only views) and [`join`] (placement, join tokens and the
//! cluster-wide room list). The route table that mounts them is `api::router`.
//!
//! A standalone node runs a `Main` without a cluster secret: it answers joins for itself only.

pub mod endpoints;
pub mod join;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::{ClusterSecret, Limits, Verifier};
use super::membership::{Membership, MembershipConfig, Transition, ViewRow};
use super::node::{publish, ClusterContext, ClusterError, StatsSource};
use super::protocol::{ErrorBody, ErrorCode, NodeInfo, NodeStats, NodeView, PROTOCOL_VERSION};
use super::store::Store;
use crate::app_token::AppTokenCheck;
use crate::clock;
use crate::config::schema::{ApiSection, ClusterSection, GrantsSection};
use crate::config::{Mode, Secret};
use crate::livekit::rooms::Rooms;
use crate::status::events;
use crate::sync::lock;

/// Most bytes `GET /api/cluster/nodes` or `/api/cluster/status` can answer with a full table
/// of maximal records ([`membership`](super::membership) bounds every record; checked by test).
pub const MAX_VIEW_BYTES: usize = 8 << 20;

/// Lifetime of join tokens.
pub const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);

/// Everything main needs to know, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct MainSettings {
    pub cluster_id: String,
    pub main_name: String,
    pub heartbeat: Duration,
    pub dead_after_missed: u32,
    pub forget_after: Duration,
    pub sysload_limit: f64,
    pub max_body_bytes: usize,
    pub max_skew_secs: u64,
    pub grants: GrantsSection,
    /// LiveKit API key and secret (shared by every node): join tokens are signed with them.
    pub api_key: String,
    pub api_secret: Secret,
    pub token_ttl: Duration,
    /// This node's LiveKit HTTP port (its own rooms are listed directly).
    pub local_livekit_port: u16,
}

impl MainSettings {
    /// The shipped defaults (`[cluster]`, `[api]`, `[grants]` as in `config::schema`) for a
    /// main named `main_name` of `cluster_id`; `local_livekit_port` 0 (no local LiveKit).
    pub fn defaults(cluster_id: &str, main_name: &str, api_key: &str, api_secret: Secret) -> Self {
        let c = ClusterSection::default();
        MainSettings {
            cluster_id: cluster_id.into(),
            main_name: main_name.into(),
            heartbeat: Duration::from_secs(c.heartbeat_secs),
            dead_after_missed: c.dead_after_missed,
            forget_after: Duration::from_secs(c.forget_after_secs),
            sysload_limit: c.sysload_limit,
            max_body_bytes: ApiSection::default().max_body_bytes,
            max_skew_secs: c.max_skew_secs,
            grants: GrantsSection::default(),
            api_key: api_key.into(),
            api_secret,
            token_ttl: TOKEN_TTL,
            local_livekit_port: 0,
        }
    }

    /// The settings of this node's main (or standalone) role.
    pub fn from_context(ctx: &ClusterContext) -> Self {
        let node = &ctx.node;
        let c = &node.config.cluster;
        MainSettings {
            cluster_id: c.id.clone(),
            main_name: node.name.clone(),
            heartbeat: ctx.heartbeat(),
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
        }
    }
}

/// A refused request: the wire error plus its HTTP status.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

/// The main role: shared by every handler through `Arc<Main>`.
pub struct Main {
    settings: MainSettings,
    membership: Mutex<Membership>,
    /// `None` on a standalone node (no cluster endpoints).
    verifier: Option<Verifier>,
    app_token: Option<AppTokenCheck>,
    store: Option<Store>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Refusals in the log: one summary line per code per window (`logging::Summary`).
    refusal_log: crate::logging::Summary,
    /// Main's own LiveKit RoomService: the cluster-wide room list and CreateRoom on any node.
    rooms: Rooms,
    /// One ListRooms of main's own LiveKit at a time, its answer shared (`join::cluster_rooms`).
    room_list: super::flight::Flight<Option<Vec<crate::cluster::protocol::RoomView>>>,
    identity: String,
}

impl std::fmt::Debug for Main {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Main")
            .field("main_name", &self.settings.main_name)
            .finish_non_exhaustive()
    }
}

/// `GET /api/cluster/status`: the protocol's `ClusterStatus` (its node rows shared with the
/// table, not copied) plus `refused` (count per error code).
#[derive(Debug, Serialize)]
pub struct StatusOut {
    pub cluster_id: String,
    pub main_name: String,
    pub protocol_version: u32,
    pub heartbeat_secs: u64,
    pub sysload_limit: f64,
    pub nodes_alive: u32,
    pub nodes_suspect: u32,
    pub nodes_dead: u32,
    pub nodes_left: u32,
    pub rooms: u32,
    pub participants: u32,
    pub nodes: Vec<ViewRow>,
    pub refused: BTreeMap<&'static str, u64>,
}

impl Main {
    /// `secret: None` makes a standalone "main" that only serves joins for itself.
    pub fn new(
        settings: MainSettings,
        secret: Option<ClusterSecret>,
        app_token: Option<AppTokenCheck>,
        store: Option<Store>,
    ) -> Arc<Self> {
        let cfg = MembershipConfig::new(
            settings.heartbeat,
            settings.dead_after_missed,
            settings.forget_after,
        );
        let verifier =
            secret.map(|s| Verifier::with_budgets(s, settings.max_skew_secs, Limits::default()));
        let rooms = Rooms::new(
            settings.local_livekit_port,
            &settings.api_key,
            settings.api_secret.expose(),
        );
        Arc::new(Main {
            rooms,
            settings,
            membership: Mutex::new(Membership::new(cfg)),
            verifier,
            app_token,
            store,
            refused: Mutex::new(BTreeMap::new()),
            refusal_log: crate::logging::Summary::new(crate::logging::SUMMARY_WINDOW, log_refusals),
            room_list: Default::default(),
            identity: super::protocol::new_identity(&mut rand::thread_rng()),
        })
    }

    fn membership(&self) -> MutexGuard<'_, Membership> {
        lock(&self.membership)
    }

    pub fn settings(&self) -> &MainSettings {
        &self.settings
    }

    /// Does this main serve the cluster endpoints (a clustered main, not a standalone node)?
    pub fn is_clustered(&self) -> bool {
        self.verifier.is_some()
    }

    /// Register main itself (or refresh its stats): main is a node like any other.
    pub fn register_self(&self, info: NodeInfo, stats: NodeStats) {
        let r = self
            .membership()
            .register(info, &self.identity, stats, clock::now());
        if let Err(e) = r {
            tracing::error!(error = %e, "main cannot register itself in its own table");
        }
    }

    /// Age the table; returns the transitions (already logged).
    pub fn tick(&self) -> Vec<Transition> {
        let t = self.membership().tick(clock::now());
        for tr in &t {
            events::record(&tr.name, Some(tr.from), tr.to);
            match tr.to {
                Some(to) => {
                    tracing::warn!(node = %tr.name, from = tr.from.as_str(), to = to.as_str(), "node state changed")
                }
                None => {
                    tracing::info!(node = %tr.name, from = tr.from.as_str(), to = "forgotten", "node forgotten")
                }
            }
        }
        if let Some(v) = &self.verifier {
            v.evict(clock::unix_now());
        }
        self.refusal_log.flush();
        t
    }

    /// One line for systemd's STATUS=.
    pub fn status_text(&self) -> String {
        let c = self.membership().counts();
        format!(
            "main of {}: {} alive, {} suspect, {} dead, {} left",
            self.settings.cluster_id, c.alive, c.suspect, c.dead, c.left
        )
    }

    /// Refusals so far, per code.
    pub fn refused_counts(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.refused).clone()
    }

    /// Count a refusal (per code) and log it in a rate-limited summary: one line per code per
    /// window with the count and one sample, its header values truncated; nothing else changes.
    fn refuse(
        &self,
        path: &str,
        node: Option<&str>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Refusal {
        let message = message.into();
        *lock(&self.refused).entry(code.as_str()).or_insert(0) += 1;
        crate::metrics::refused(code);
        self.refusal_log.note(code.as_str(), || {
            let node = crate::logging::truncate(node.unwrap_or("-"), 64);
            format!("{path} node={node}: {message}")
        });
        Refusal { code, message }
    }

    /// `ClusterStatus` plus refusal counters; the rows are shared, serialised after the lock.
    pub fn cluster_status(&self) -> StatusOut {
        let (c, nodes) = {
            let m = self.membership();
            (m.counts(), m.view_rows(clock::now()))
        };
        let live = nodes.iter().filter(|n| n.state.is_live());
        let (rooms, participants) = live.fold((0u32, 0u32), |(r, p), n| {
            (
                r.saturating_add(n.stats.rooms),
                p.saturating_add(n.stats.participants),
            )
        });
        StatusOut {
            cluster_id: self.settings.cluster_id.clone(),
            main_name: self.settings.main_name.clone(),
            protocol_version: PROTOCOL_VERSION,
            heartbeat_secs: self.settings.heartbeat.as_secs(),
            sysload_limit: self.settings.sysload_limit,
            nodes_alive: c.alive,
            nodes_suspect: c.suspect,
            nodes_dead: c.dead,
            nodes_left: c.left,
            rooms,
            participants,
            nodes,
            refused: self.refused_counts(),
        }
    }

    /// The table, copied (tests and tools; the API serves [`Main::view_rows`]).
    pub fn nodes(&self) -> Vec<NodeView> {
        self.membership().snapshot(clock::now())
    }

    /// The table's rows as `GET /api/cluster/nodes` serves them (shared, not copied).
    pub fn view_rows(&self) -> Vec<ViewRow> {
        self.membership().view_rows(clock::now())
    }
}

/// One WARN per refusal code per window: how many, and the latest (truncated) sample.
fn log_refusals(r: &crate::logging::Report) {
    tracing::warn!(
        code = r.key,
        count = r.count,
        window_s = crate::logging::SUMMARY_WINDOW.as_secs(),
        sample = %r.sample,
        "requests refused"
    );
}

/// Start the main role (clustered main, or the standalone join endpoint): register main in its
/// own table and start the ticker. `status_tx` gets main's status line (a clustered main only).
pub async fn start(
    ctx: &ClusterContext,
    info: NodeInfo,
    stats: StatsSource,
    status_tx: watch::Sender<String>,
) -> Result<Arc<Main>, ClusterError> {
    let secret = ctx.cluster_secret()?;
    let app_token = match &ctx.secrets.app_token_sha256 {
        Some(h) => Some(AppTokenCheck::from_hex(h.as_str())?),
        None => None,
    };
    let main = Main::new(
        MainSettings::from_context(ctx),
        secret,
        app_token,
        ctx.store.clone(),
    );
    main.register_self(info.clone(), stats().await);
    let clustered = ctx.node.mode == Mode::Main;
    if clustered {
        let _ = status_tx.send(main.status_text());
    }
    spawn_ticker(
        main.clone(),
        info,
        stats,
        clustered.then_some(status_tx),
        &ctx.tracker,
        ctx.cancel.child_token(),
    );
    Ok(main)
}

/// Main's ticker: ages the table 4× per heartbeat, re-registers main itself with fresh
/// statistics once per heartbeat, and publishes the status line on change.
pub fn spawn_ticker(
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
            if n.is_multiple_of(4) {
                main.register_self(info.clone(), stats().await);
            }
            main.tick();
            if let Some(tx) = &status_tx {
                publish(tx, main.status_text());
            }
        }
    });
}

#[cfg(test)]
mod tests;
