//! Main's async shell: the membership table behind a mutex, signed sub → main endpoints
//! (`/api/cluster/register|heartbeat|leave`), the read-only views (`/api/cluster/status`,
//! `/api/cluster/nodes`) and the refusal bookkeeping. Joins, placement and the cluster-wide room
//! list live in `join.rs`.
//!
//! Every cluster request goes through [`Main::signed`]: size cap (413) → HMAC verification
//! (`auth::Verifier`: headers, skew, signature, replay) → JSON (400) → `X-Airclass-Node` equals the
//! body's name → `validate()`. A refusal changes no state, is logged (node header, path, code;
//! never a secret or signature) and counted per code (shown in `/api/cluster/status` as `refused`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::auth::{self, AppTokenCheck, ClusterSecret, ReceivedHeaders, Verifier};
use super::membership::{Membership, MembershipConfig, MembershipError, Transition};
use super::protocol::{
    ClusterStatus, ErrorBody, ErrorCode, HeartbeatRequest, HeartbeatResponse, LeaveRequest,
    LeaveResponse, NodeInfo, NodeStats, NodeView, RegisterRequest, RegisterResponse,
    PROTOCOL_VERSION,
};
use super::store::Store;
use crate::config::schema::GrantsSection;
use crate::config::Secret;

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
    pub(super) settings: MainSettings,
    membership: Mutex<Membership>,
    /// `None` on a standalone node (no cluster endpoints).
    verifier: Option<Mutex<Verifier>>,
    pub(super) app_token: Option<AppTokenCheck>,
    pub(super) store: Option<Store>,
    /// room → (node, placed at): joins placed before the node's heartbeat reports the room.
    pub(super) recent: Mutex<BTreeMap<String, (String, Instant)>>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    pub(super) http: reqwest::Client,
    identity: String,
}

impl std::fmt::Debug for Main {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Main")
            .field("main_name", &self.settings.main_name)
            .finish_non_exhaustive()
    }
}

/// The clock the membership table runs on (tokio's, so paused-time tests work).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Wall clock, unix seconds (signatures).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        let verifier = secret.map(|s| {
            Mutex::new(Verifier::with_limits(
                s,
                settings.max_skew_secs,
                auth::DEFAULT_MAX_NONCES,
            ))
        });
        Arc::new(Main {
            settings,
            membership: Mutex::new(Membership::new(cfg)),
            verifier,
            app_token,
            store,
            recent: Mutex::new(BTreeMap::new()),
            refused: Mutex::new(BTreeMap::new()),
            http: reqwest::Client::new(),
            identity: super::protocol::new_identity(&mut rand::thread_rng()),
        })
    }

    pub(super) fn membership(&self) -> MutexGuard<'_, Membership> {
        lock(&self.membership)
    }

    pub fn settings(&self) -> &MainSettings {
        &self.settings
    }

    /// Register main itself (or refresh its stats): main is a node like any other.
    pub fn register_self(&self, info: NodeInfo, stats: NodeStats) {
        if let Err(e) = self
            .membership()
            .register(info, &self.identity, stats, now())
        {
            tracing::error!(error = %e, "main cannot register itself in its own table");
        }
    }

    /// Age the table; returns the transitions (already logged).
    pub fn tick(&self) -> Vec<Transition> {
        let t = self.membership().tick(now());
        for tr in &t {
            crate::status::events::record(&tr.name, Some(tr.from), tr.to);
            match tr.to {
                Some(to) => {
                    tracing::warn!(node = %tr.name, from = tr.from.as_str(), to = to.as_str(), "node state changed")
                }
                None => {
                    tracing::info!(node = %tr.name, from = tr.from.as_str(), to = "forgotten", "node forgotten")
                }
            }
        }
        let keep = self.settings.heartbeat * 3;
        lock(&self.recent).retain(|_, (_, at)| at.elapsed() < keep);
        if let Some(v) = &self.verifier {
            lock(v).evict(unix_now());
        }
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

    /// Count and log a refusal; nothing else changes.
    pub(super) fn refuse(
        &self,
        path: &str,
        node: Option<&str>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Refusal {
        let message = message.into();
        *lock(&self.refused).entry(code.as_str()).or_insert(0) += 1;
        crate::metrics::refused(code);
        tracing::warn!(path, node = node.unwrap_or("-"), code = code.as_str(), reason = %message, "request refused");
        Refusal { code, message }
    }

    /// The router: cluster endpoints when clustered, the join endpoint always.
    pub fn routes(self: &Arc<Self>) -> Router {
        let mut r = Router::new().route("/api/rooms/{room}/join", post(super::join::join));
        if self.verifier.is_some() {
            r = r
                .route("/api/cluster/register", post(register))
                .route("/api/cluster/heartbeat", post(heartbeat))
                .route("/api/cluster/leave", post(leave))
                .route("/api/cluster/status", get(status))
                .route("/api/cluster/nodes", get(nodes))
                .route("/api/livekit/rooms", get(super::join::cluster_rooms));
        }
        r.with_state(self.clone())
    }

    /// The size-capped body of `req` (413 beyond `max_body_bytes`, before anything else).
    pub(super) async fn read_body(
        &self,
        req: Request,
        node: Option<&str>,
    ) -> Result<Bytes, Refusal> {
        let path = req.uri().path().to_owned();
        let max = self.settings.max_body_bytes;
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = |m: &Main| {
            m.refuse(
                &path,
                node,
                ErrorCode::TooLarge,
                format!("body over {max} bytes"),
            )
        };
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large(self));
        }
        axum::body::to_bytes(req.into_body(), max)
            .await
            .map_err(|_| too_large(self))
    }

    /// Size cap, signature, JSON, node header = body name, validation (see the module docs).
    async fn signed<T: DeserializeOwned>(
        &self,
        req: Request,
        body_name: impl Fn(&T) -> &str,
        validate: impl Fn(&T) -> Result<(), super::protocol::ValidationError>,
    ) -> Result<(T, String), Refusal> {
        let method = req.method().as_str().to_owned();
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| req.uri().path().to_owned());
        let path = req.uri().path().to_owned();
        let headers: HeaderMap = req.headers().clone();
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let node_hdr = h(auth::HEADER_NODE).map(str::to_owned);
        let node = node_hdr.as_deref();
        let body = self.read_body(req, node).await?;
        let received = ReceivedHeaders {
            node,
            timestamp: h(auth::HEADER_TIMESTAMP),
            nonce: h(auth::HEADER_NONCE),
            signature: h(auth::HEADER_SIGNATURE),
        };
        let Some(verifier) = &self.verifier else {
            return Err(self.refuse(&path, node, ErrorCode::BadSignature, "not a clustered node"));
        };
        let verified = lock(verifier).verify(&method, &target, &received, &body, unix_now());
        if let Err(e) = verified {
            return Err(self.refuse(&path, node, e.code(), e.to_string()));
        }
        let msg: T = serde_json::from_slice(&body).map_err(|e| {
            self.refuse(
                &path,
                node,
                ErrorCode::Malformed,
                format!("invalid JSON: {e}"),
            )
        })?;
        if Some(body_name(&msg)) != node {
            return Err(self.refuse(
                &path,
                node,
                ErrorCode::Malformed,
                format!("{} does not match the body's node name", auth::HEADER_NODE),
            ));
        }
        validate(&msg)
            .map_err(|e| self.refuse(&path, node, ErrorCode::Malformed, e.to_string()))?;
        Ok((msg, node.unwrap_or_default().to_owned()))
    }

    fn membership_refusal(&self, path: &str, node: &str, e: MembershipError) -> Refusal {
        self.refuse(path, Some(node), e.code(), e.to_string())
    }

    /// `ClusterStatus` plus refusal counters.
    pub fn cluster_status(&self) -> StatusOut {
        let m = self.membership();
        let c = m.counts();
        let nodes = m.snapshot(now());
        let live = nodes.iter().filter(|n| n.state.is_live());
        let (rooms, participants) = live.fold((0u32, 0u32), |(r, p), n| {
            (
                r.saturating_add(n.stats.rooms),
                p.saturating_add(n.stats.participants),
            )
        });
        StatusOut {
            status: ClusterStatus {
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
            },
            refused: self.refused_counts(),
        }
    }

    pub fn nodes(&self) -> Vec<NodeView> {
        self.membership().snapshot(now())
    }
}

/// `GET /api/cluster/status`: protocol `ClusterStatus` plus `refused` (count per error code).
#[derive(Debug, Serialize)]
pub struct StatusOut {
    #[serde(flatten)]
    pub status: ClusterStatus,
    pub refused: BTreeMap<&'static str, u64>,
}

async fn register(State(main): State<Arc<Main>>, req: Request) -> Result<Response, Refusal> {
    const PATH: &str = "/api/cluster/register";
    let (r, node) = main
        .signed::<RegisterRequest>(req, |r| r.node.name.as_str(), RegisterRequest::validate)
        .await?;
    if r.cluster_id != main.settings.cluster_id {
        return Err(main.refuse(
            PATH,
            Some(&node),
            ErrorCode::WrongCluster,
            format!(
                "this main serves cluster {:?}, not {:?}",
                main.settings.cluster_id, r.cluster_id
            ),
        ));
    }
    let (info, rooms) = (r.node.clone(), r.stats.rooms);
    let outcome = main
        .membership()
        .register(r.node, &r.identity, r.stats, now())
        .map_err(|e| main.membership_refusal(PATH, &node, e))?;
    tracing::info!(node = %node, api_url = %info.api_url, livekit_url = %info.livekit_url, rooms, outcome = ?outcome, "node registered");
    crate::metrics::registration_received();
    crate::status::events::record(
        &node,
        outcome.previous(),
        Some(super::protocol::NodeState::Alive),
    );
    Ok(Json(RegisterResponse {
        accepted: true,
        heartbeat_secs: main.settings.heartbeat.as_secs(),
        main_name: main.settings.main_name.clone(),
        protocol_version: PROTOCOL_VERSION,
    })
    .into_response())
}

async fn heartbeat(State(main): State<Arc<Main>>, req: Request) -> Result<Response, Refusal> {
    const PATH: &str = "/api/cluster/heartbeat";
    let (h, node) = main
        .signed::<HeartbeatRequest>(req, |h| h.name.as_str(), HeartbeatRequest::validate)
        .await?;
    let previous = main
        .membership()
        .heartbeat(&h.name, &h.identity, h.stats, now())
        .map_err(|e| main.membership_refusal(PATH, &node, e))?;
    crate::metrics::heartbeat_received();
    if previous != super::protocol::NodeState::Alive {
        tracing::info!(node = %node, from = previous.as_str(), to = "alive", "node is back");
        crate::status::events::record(
            &node,
            Some(previous),
            Some(super::protocol::NodeState::Alive),
        );
    }
    Ok(Json(HeartbeatResponse {
        accepted: true,
        heartbeat_secs: main.settings.heartbeat.as_secs(),
    })
    .into_response())
}

async fn leave(State(main): State<Arc<Main>>, req: Request) -> Result<Response, Refusal> {
    const PATH: &str = "/api/cluster/leave";
    let (l, node) = main
        .signed::<LeaveRequest>(req, |l| l.name.as_str(), LeaveRequest::validate)
        .await?;
    let t = main
        .membership()
        .leave(&l.name, &l.identity, now())
        .map_err(|e| main.membership_refusal(PATH, &node, e))?;
    if let Some(tr) = &t {
        tracing::info!(node = %node, "node left the cluster");
        crate::status::events::record(&node, Some(tr.from), tr.to);
    }
    lock(&main.recent).retain(|_, (n, _)| *n != l.name);
    Ok(Json(LeaveResponse { left: true }).into_response())
}

async fn status(State(main): State<Arc<Main>>) -> Json<StatusOut> {
    Json(main.cluster_status())
}

async fn nodes(State(main): State<Arc<Main>>) -> Json<Vec<NodeView>> {
    Json(main.nodes())
}
