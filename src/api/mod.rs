//! The control API (axum): [`router`] is its one route table — node routes, and by role the
//! cluster endpoints and the join endpoint, whose handlers live with main (`cluster::main`),
//! and on a clustered main the status page (`status::page`). `/metrics` is attached by the
//! daemon (`metrics::http::Access`): on this router or on a listener of its own.
//! [`serve`] binds it (plain or TLS) until cancelled.
//!
//! Every error is JSON `{"error": CODE, "message": TEXT}` (axum's own rejections through
//! [`errors`], hyper's through `conn_io`); request bodies are bounded by `api.max_body_bytes`
//! (413 beyond). Read-only routes reveal no secret. Connections are capped and timed
//! ([`conns`], [`connection`]).

mod conn_io;
pub mod connection;
pub mod conns;
pub mod errors;
pub mod node;
pub mod serve;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use serde::Serialize;
use tokio::sync::watch;

use crate::clock::Instant;
use crate::cluster::main::{endpoints, join, Main};
use crate::cluster::Role;
use crate::config::{NodeConfig, Secrets};
use crate::livekit::LivekitStatus;
use crate::stats::Sample;

/// What the node routes read.
#[derive(Clone)]
pub struct NodeState {
    pub node: Arc<NodeConfig>,
    pub secrets: Arc<Secrets>,
    pub livekit: watch::Receiver<LivekitStatus>,
    pub stats: watch::Receiver<Sample>,
    pub started: Instant,
    /// The rooms that live on this node (`GET /api/livekit/rooms` on subs and standalone).
    pub own_rooms: crate::cluster::node::OwnRooms,
    /// The control API's connections (their counters are shown in `GET /api/node`).
    pub connections: Arc<conns::Connections>,
    /// A sub's link to main (`GET /api/node` → `cluster`).
    pub sub: Option<Arc<crate::cluster::sub::SubHandle>>,
}

/// A JSON error answer.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self)).into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Every route of the control API. `GET /api/livekit/rooms` is this node's rooms, except on a
/// clustered main, where it is every live node's.
pub fn router(state: NodeState, role: &Role) -> Router {
    let limit = state.node.config.api.max_body_bytes;
    let node = Router::new()
        .route("/healthz", get(node::healthz))
        .route("/readyz", get(node::readyz))
        .route("/api/node", get(node::node));
    let local_rooms = Router::new().route("/api/livekit/rooms", get(node::local_rooms));
    let by_role = match role {
        Role::Main(main) => cluster_routes(main).merge(crate::status::page::routes()),
        Role::Standalone(main) => local_rooms.merge(join_route(main)),
        Role::Sub(_) => local_rooms,
    };
    node.merge(by_role)
        .with_state(state)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(errors::json_errors))
}

/// `POST /api/rooms/{room}/join`, answered by `main` (or a standalone node for itself).
fn join_route<S: Clone + Send + Sync + 'static>(main: &Arc<Main>) -> Router<S> {
    Router::new()
        .route("/api/rooms/{room}/join", post(join::join))
        .with_state(main.clone())
}

/// A clustered main's routes: joins, the cluster-wide room list, the signed cluster endpoints,
/// the views (public so tests can serve a main without a whole node).
pub fn cluster_routes<S: Clone + Send + Sync + 'static>(main: &Arc<Main>) -> Router<S> {
    Router::new()
        .route("/api/rooms/{room}/join", post(join::join))
        .route("/api/livekit/rooms", get(join::cluster_rooms))
        .route("/api/cluster/register", post(endpoints::register))
        .route("/api/cluster/heartbeat", post(endpoints::heartbeat))
        .route("/api/cluster/leave", post(endpoints::leave))
        .route("/api/cluster/status", get(endpoints::status))
        .route("/api/cluster/nodes", get(endpoints::nodes))
        .with_state(main.clone())
}
