//! Node routes: `/healthz`, `/readyz`, `/api/node` (with a sub's link to main), `/api/livekit/rooms`
//! (this node's rooms).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::{ApiError, NodeState};
use crate::livekit::LivekitState;

/// The daemon's event loop answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// LiveKit is ready (answers 200 on `/`); 503 with the reason otherwise.
pub async fn readyz(State(s): State<NodeState>) -> impl IntoResponse {
    let lk = s.livekit.borrow().clone();
    if lk.state == LivekitState::Ready {
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

/// This node: name, mode, ports, LiveKit's state, uptime, statistics, the API's connections.
pub async fn node(State(s): State<NodeState>) -> impl IntoResponse {
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
            "node_id": lk.node_id,
        },
        "uptime_secs": s.started.elapsed().as_secs(),
        "stats": st,
        "api": s.connections.snapshot(),
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

/// This node's rooms, from its LiveKit's RoomService (with Redis: those LiveKit maps to it).
pub async fn local_rooms(State(s): State<NodeState>) -> Result<impl IntoResponse, ApiError> {
    let node_id = s.livekit.borrow().node_id.clone();
    let rooms = s.own_rooms.list(node_id.as_deref()).await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "livekit_unavailable",
            e.to_string(),
        )
    })?;
    Ok(Json(json!({ "node": s.node.name, "rooms": rooms })))
}
