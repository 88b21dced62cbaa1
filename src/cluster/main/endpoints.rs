//! Main's cluster endpoints: the signed sub → main requests (`/api/cluster/register`,
//! `/heartbeat`, `/leave`) and the read-only views (`/api/cluster/status`, `/api/cluster/nodes`).
//!
//! Every signed request goes through [`Main::signed`]: size cap (413) → HMAC verification
//! (`auth::Verifier`: headers, skew, signature, replay) → JSON (400) → `X-Airclass-Node` equals the
//! body's name → `validate()`. A refusal changes no state, is logged (node header, path, code;
//! never a secret or signature) and counted per code (shown in `/api/cluster/status` as `refused`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use super::{Main, Refusal, StatusOut};
use crate::clock;
use crate::cluster::auth::{self, ReceivedHeaders};
use crate::cluster::membership::MembershipError;
use crate::cluster::protocol::{
    ErrorCode, HeartbeatRequest, HeartbeatResponse, LeaveRequest, LeaveResponse, NodeState,
    NodeView, RegisterRequest, RegisterResponse, ValidationError, PROTOCOL_VERSION,
};
use crate::metrics;
use crate::status::events;
use crate::sync::lock;

impl Main {
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
        validate: impl Fn(&T) -> Result<(), ValidationError>,
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
        let verified = lock(verifier).verify(&method, &target, &received, &body, clock::unix_now());
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
}

/// `POST /api/cluster/register`.
pub async fn register(State(main): State<Arc<Main>>, req: Request) -> Result<Response, Refusal> {
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
        .register(r.node, &r.identity, r.stats, clock::now())
        .map_err(|e| main.membership_refusal(PATH, &node, e))?;
    tracing::info!(node = %node, api_url = %info.api_url, livekit_url = %info.livekit_url, rooms, outcome = ?outcome, "node registered");
    metrics::registration_received();
    events::record(&node, outcome.previous(), Some(NodeState::Alive));
    Ok(Json(RegisterResponse {
        accepted: true,
        heartbeat_secs: main.settings.heartbeat.as_secs(),
        main_name: main.settings.main_name.clone(),
        protocol_version: PROTOCOL_VERSION,
    })
    .into_response())
}

/// `POST /api/cluster/heartbeat`.
pub async fn heartbeat(State(main): State<Arc<Main>>, req: Request) -> Result<Response, Refusal> {
    const PATH: &str = "/api/cluster/heartbeat";
    let (h, node) = main
        .signed::<HeartbeatRequest>(req, |h| h.name.as_str(), HeartbeatRequest::validate)
        .await?;
    let previous = main
        .membership()
        .heartbeat(&h.name, &h.identity, h.stats, clock::now())
        .map_err(|e| main.membership_refusal(PATH, &node, e))?;
    metrics::heartbeat_received();
    if previous != NodeState::Alive {
        tracing::info!(node = %node, from = previous.as_str(), to = "alive", "node is back");
        events::record(&node, Some(previous), Some(NodeState::Alive));
    }
    Ok(Json(HeartbeatResponse {
        accepted: true,
        heartbeat_secs: main.settings.heartbeat.as_secs(),
    })
    .into_response())
}

/// `POST /api/cluster/leave`.
pub async fn leave(State(main): State<Arc<Main>>, req: Request) -> Result<Response, Refusal> {
    const PATH: &str = "/api/cluster/leave";
    let (l, node) = main
        .signed::<LeaveRequest>(req, |l| l.name.as_str(), LeaveRequest::validate)
        .await?;
    let t = main
        .membership()
        .leave(&l.name, &l.identity, clock::now())
        .map_err(|e| main.membership_refusal(PATH, &node, e))?;
    if let Some(tr) = &t {
        tracing::info!(node = %node, "node left the cluster");
        events::record(&node, Some(tr.from), tr.to);
    }
    lock(&main.recent).retain(|_, (n, _)| *n != l.name);
    Ok(Json(LeaveResponse { left: true }).into_response())
}

/// `GET /api/cluster/status`.
pub async fn status(State(main): State<Arc<Main>>) -> Json<StatusOut> {
    Json(main.cluster_status())
}

/// `GET /api/cluster/nodes`.
pub async fn nodes(State(main): State<Arc<Main>>) -> Json<Vec<NodeView>> {
    Json(main.nodes())
}
