//! Main's cluster endpoints: the signed sub → main requests (`/api/cluster/register`,
//! `/heartbeat`, `/leave`) and the read-only views (`/api/cluster/status`, `/api/cluster/nodes`).
//!
//! Every signed request goes through [`Main::signed`]: size cap (413) → HMAC authentication
//! (`auth::Verifier::authenticate`: headers, skew, signature; no lock) → JSON (400) →
//! `X-Airclass-Node` equals the body's name → replay check under the sender's own budget
//! (`auth::Verifier::admit`: a member of the table by name and identity, else a stranger) →
//! `validate()`. A refusal changes no state, is logged (node header, path, code; never a secret
//! or signature) and counted per code (shown in `/api/cluster/status` as `refused`).
//!
//! The views serve the table's rows shared (no copy under its lock); every record is bounded
//! (`membership`), so a full table answers within [`super::MAX_VIEW_BYTES`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use super::{Main, Refusal, StatusOut};
use crate::clock;
use crate::cluster::auth::{self, ReceivedHeaders, Sender};
use crate::cluster::membership::{MembershipError, ViewRow};
use crate::cluster::protocol::{
    ErrorCode, HeartbeatRequest, HeartbeatResponse, LeaveRequest, LeaveResponse, NodeState,
    RegisterRequest, RegisterResponse, ValidationError, PROTOCOL_VERSION,
};

/// A signed request body: who it says it is, and its validation.
pub trait SignedBody: DeserializeOwned {
    fn node_name(&self) -> &str;
    fn identity(&self) -> &str;
    fn check(&self) -> Result<(), ValidationError>;
}

impl SignedBody for RegisterRequest {
    fn node_name(&self) -> &str {
        &self.node.name
    }
    fn identity(&self) -> &str {
        &self.identity
    }
    fn check(&self) -> Result<(), ValidationError> {
        self.validate()
    }
}

impl SignedBody for HeartbeatRequest {
    fn node_name(&self) -> &str {
        &self.name
    }
    fn identity(&self) -> &str {
        &self.identity
    }
    fn check(&self) -> Result<(), ValidationError> {
        self.validate()
    }
}

impl SignedBody for LeaveRequest {
    fn node_name(&self) -> &str {
        &self.name
    }
    fn identity(&self) -> &str {
        &self.identity
    }
    fn check(&self) -> Result<(), ValidationError> {
        self.validate()
    }
}
use crate::metrics;
use crate::status::events;

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

    /// Size cap, signature, JSON, node header = body name, replay budget, validation (see the
    /// module docs).
    async fn signed<T: SignedBody>(&self, req: Request) -> Result<(T, String), Refusal> {
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
        let now = clock::unix_now();
        let authentic = verifier
            .authenticate(&method, &target, &received, &body, now)
            .map_err(|e| self.refuse(&path, node, e.code(), e.to_string()))?;
        let msg: T = serde_json::from_slice(&body).map_err(|e| {
            self.refuse(
                &path,
                node,
                ErrorCode::Malformed,
                format!("invalid JSON: {e}"),
            )
        })?;
        let name = msg.node_name();
        if Some(name) != node {
            return Err(self.refuse(
                &path,
                node,
                ErrorCode::Malformed,
                format!("{} does not match the body's node name", auth::HEADER_NODE),
            ));
        }
        let sender = if self.membership().is_member(name, msg.identity()) {
            Sender::Member(name)
        } else {
            Sender::Stranger(name)
        };
        verifier
            .admit(&authentic, sender, now)
            .map_err(|e| self.refuse(&path, node, e.code(), e.to_string()))?;
        msg.check()
            .map_err(|e| self.refuse(&path, node, ErrorCode::Malformed, e.to_string()))?;
        let name = name.to_owned();
        Ok((msg, name))
    }

    fn membership_refusal(&self, path: &str, node: &str, e: MembershipError) -> Refusal {
        self.refuse(path, Some(node), e.code(), e.to_string())
    }
}

/// `POST /api/cluster/register`.
pub async fn register(State(main): State<Arc<Main>>, req: Request) -> Result<Response, Refusal> {
    const PATH: &str = "/api/cluster/register";
    let (r, node) = main.signed::<RegisterRequest>(req).await?;
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
    let (h, node) = main.signed::<HeartbeatRequest>(req).await?;
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
    let (l, node) = main.signed::<LeaveRequest>(req).await?;
    let t = main
        .membership()
        .leave(&l.name, &l.identity, clock::now())
        .map_err(|e| main.membership_refusal(PATH, &node, e))?;
    if let Some(tr) = &t {
        tracing::info!(node = %node, "node left the cluster");
        events::record(&node, Some(tr.from), tr.to);
    }
    Ok(Json(LeaveResponse { left: true }).into_response())
}

/// `GET /api/cluster/status`.
pub async fn status(State(main): State<Arc<Main>>) -> Json<StatusOut> {
    Json(main.cluster_status())
}

/// `GET /api/cluster/nodes`.
pub async fn nodes(State(main): State<Arc<Main>>) -> Json<Vec<ViewRow>> {
    Json(main.view_rows())
}
