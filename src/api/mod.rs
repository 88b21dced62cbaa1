//! The control API (axum): node routes here; cluster routes are merged in by the daemon.
//!
//! Every error is JSON `{"error": CODE, "message": TEXT}`; request bodies are bounded by
//! `api.max_body_bytes` (413 beyond). Read-only routes reveal no secret.

pub mod node;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum::Router;
use serde::Serialize;
use tokio::sync::watch;

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
    /// A sub's link to main (`GET /api/node` → `cluster`).
    pub sub: Option<Arc<crate::cluster::sub_role::SubHandle>>,
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

/// The whole router: node routes, `extra` (cluster routes), body limit, JSON 404.
/// `extra_has_rooms`: `extra` carries its own `GET /api/livekit/rooms` (main's cluster-wide
/// list), which then replaces the node-level one.
pub fn router(state: NodeState, extra: Router, extra_has_rooms: bool) -> Router {
    let limit = state.node.config.api.max_body_bytes;
    node::routes(state, !extra_has_rooms)
        .merge(extra)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
}
