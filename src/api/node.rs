//! Node routes: `/healthz`, `/readyz`, `/api/node`, `/api/livekit/rooms` (this node's rooms).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{ApiError, NodeState};
use crate::livekit::rooms;

/// `with_rooms = false` leaves `/api/livekit/rooms` to the cluster's router (main).
pub fn routes(state: NodeState, with_rooms: bool) -> Router {
    let r = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/node", get(node));
    let r = if with_rooms {
        r.route("/api/livekit/rooms", get(local_rooms))
    } else {
        r
    };
    r.with_state(state)
}

/// The daemon's event loop answers.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// LiveKit is ready (answers 200 on `/`); 503 with the reason otherwise.
async fn readyz(State(s): State<NodeState>) -> impl IntoResponse {
    let lk = s.livekit.borrow().clone();
    if lk.state == crate::livekit::LivekitState::Ready {
        (
            StatusCode::OK,
            Json(json!({ "ready": true, "livekit": lk.state })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "livekit": lk.state, "reason": lk.detail })),
        )
    }
}

async fn node(State(s): State<NodeState>) -> impl IntoResponse {
    let lk = s.livekit.borrow().clone();
    let st = *s.stats.borrow();
    let n = &s.node;
    Json(json!({
        "name": n.name,
        "instance": n.instance,
        "mode": n.mode,
        "version": env!("CARGO_PKG_VERSION"),
        "ports": n.ports,
        "livekit": {
            "state": lk.state,
            "pid": lk.pid,
            "restarts": lk.restarts,
            "failed_probes": lk.failed_probes,
            "detail": lk.detail,
        },
        "uptime_secs": s.started.elapsed().as_secs(),
        "stats": st,
        "cluster": cluster_view(&s),
    }))
}

/// A sub: its link to main (registered / rejected and why / unreachable / searching); main:
/// `{"role":"main"}`; standalone: `null`.
fn cluster_view(s: &NodeState) -> serde_json::Value {
    match (&s.sub, s.node.mode) {
        (Some(sub), _) => serde_json::to_value(sub.link()).unwrap_or_default(),
        (None, crate::config::Mode::Main) => json!({ "role": "main" }),
        (None, _) => serde_json::Value::Null,
    }
}

async fn local_rooms(State(s): State<NodeState>) -> Result<impl IntoResponse, ApiError> {
    let rooms = rooms::list_rooms(
        s.node.ports.livekit_port,
        &s.secrets.api_key,
        s.secrets.api_secret.expose(),
    )
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "livekit_unavailable",
            e.to_string(),
        )
    })?;
    Ok(Json(json!({ "node": s.node.name, "rooms": rooms })))
}
