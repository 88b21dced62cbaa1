//! Main's answers to the application (and a standalone node's, for itself):
//! `POST /api/rooms/{room}/join` (placement + a LiveKit access token) and the cluster-wide
//! `GET /api/livekit/rooms`.
//!
//! Where a join goes, in order:
//! 1. the room's current host: the live node whose heartbeats report it, the node main placed
//!    it on moments ago, or the node LiveKit's own `room_node_map` names (LiveKit node id →
//!    our node through the `livekit_node_id` each node reports);
//! 2. otherwise rendezvous hashing among live nodes under `cluster.sysload_limit`
//!    (`placement.rs`) — and then main makes that choice LiveKit's: left alone, LiveKit places
//!    a new room itself when its first participant connects (its own node selector; which
//!    node's URL the client used does not matter), so main calls CreateRoom with the chosen
//!    node's LiveKit id before answering, and reads `room_node_map` back (a concurrent join may
//!    have created the room elsewhere first; LiveKit keeps a live room where it is). When that
//!    fails, the answer stays advisory (LiveKit then places the room itself; the class works,
//!    only the balance suffers) and a warning says so.
//!
//! Cost: a room in step 1 is found in O(1) under one short lock of the table (its indexes); a
//! new room is hashed over the table's shared candidate list with no lock held and nothing
//! copied but the winner's name. Redis is reached over one shared connection.
//!
//! The token is signed with the cluster's LiveKit API key/secret through the official
//! `livekit-api` crate; grants come from `[grants.teacher]` / `[grants.student]`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use livekit_api::access_token::{AccessToken, VideoGrants};

use super::{Main, Refusal};
use crate::app_token::parse_bearer;
use crate::clock;
use crate::cluster::placement;
use crate::cluster::protocol::{
    validate_room_name, ErrorCode, JoinRequest, JoinResponse, Role, RoomView,
};
use crate::metrics;

const PATH: &str = "/api/rooms/{room}/join";

/// Budget of `GET /api/livekit/rooms` on main for LiveKit's records (one ListRooms in flight,
/// shared by every caller); past it, the rooms from the heartbeats.
pub const ROOMS_BUDGET: Duration = Duration::from_secs(2);

/// A placement: node, its LiveKit URL, why.
pub type Placed = (String, String, placement::Reason);

impl Main {
    /// Check `Authorization: Bearer` against the stored hash (401 `unauthorized` otherwise).
    fn check_app_token(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_bearer);
        match (&self.app_token, bearer) {
            (Some(check), Some(token)) if check.check(token) => Ok(()),
            (None, _) => Err(self.refuse(
                PATH,
                None,
                ErrorCode::Unauthorized,
                "no application token is configured on this node",
            )),
            (_, None) => Err(self.refuse(
                PATH,
                None,
                ErrorCode::Unauthorized,
                "missing Authorization: Bearer <application token>",
            )),
            (_, Some(_)) => Err(self.refuse(
                PATH,
                None,
                ErrorCode::Unauthorized,
                "wrong application token",
            )),
        }
    }

    /// Where `room` lives now, if the table knows (step 1 without Redis): one lock, O(1).
    fn known_host(&self, room: &str) -> Option<Placed> {
        let mut m = self.membership();
        let e = m.known_host(room, clock::now())?;
        Some((
            e.info.name.clone(),
            e.info.livekit_url.clone(),
            placement::Reason::Sticky,
        ))
    }

    /// The live node LiveKit's `room_node_map` names for `room` (step 1 with Redis).
    async fn livekit_host(&self, room: &str) -> Option<String> {
        match self.store.as_ref()?.livekit_room_node(room).await {
            Ok(Some(id)) => self.membership().node_by_livekit_id(&id).map(str::to_owned),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read LiveKit's room_node_map; placing by hash");
                None
            }
        }
    }

    /// Choose the node for `room` (see the module docs); returns (node, LiveKit URL, reason).
    pub async fn place(&self, room: &str) -> Result<Placed, Refusal> {
        if let Some(p) = self.known_host(room) {
            return Ok(p);
        }
        let (node, reason) = match self.livekit_host(room).await {
            Some(node) => (node, placement::Reason::Sticky),
            None => {
                // the shared candidate list: hashed with no lock held, nothing copied
                let slots = self.membership().slots();
                let choice =
                    placement::choose_among(room, slots.iter(), self.settings.sysload_limit)
                        .ok_or_else(|| {
                            self.refuse(
                                PATH,
                                None,
                                ErrorCode::NoNode,
                                "no live node can take the room",
                            )
                        })?;
                self.create_on(room, choice.node, choice.reason).await
            }
        };
        let mut m = self.membership();
        m.note_placement(room, &node, clock::now());
        let url = m
            .get(&node)
            .map(|e| e.info.livekit_url.clone())
            .unwrap_or_default();
        Ok((node, url, reason))
    }

    /// Make LiveKit host the new `room` on `node` (step 2 of the module docs); returns the node
    /// that hosts it. Nothing to do without Redis (a standalone node hosts every room itself).
    async fn create_on(
        &self,
        room: &str,
        node: String,
        reason: placement::Reason,
    ) -> (String, placement::Reason) {
        let Some(store) = &self.store else {
            return (node, reason);
        };
        let id = self
            .membership()
            .get(&node)
            .and_then(|e| e.stats.livekit_node_id.clone());
        let Some(id) = id else {
            tracing::warn!(room, node = %node, "node has not reported its LiveKit node id yet; LiveKit will place the room itself");
            return (node, reason);
        };
        if let Err(e) = self.rooms.create_on(room, &id).await {
            tracing::warn!(room, node = %node, error = %e, "CreateRoom failed; LiveKit will place the room itself");
            return (node, reason);
        }
        match store.livekit_room_node(room).await {
            Ok(Some(host)) if host != id => match self.membership().node_by_livekit_id(&host) {
                Some(other) => (other.to_owned(), placement::Reason::Sticky),
                None => (node, reason),
            },
            _ => (node, reason),
        }
    }

    /// A LiveKit access token for `identity` in `room` with the role's grants.
    pub fn mint_token(&self, room: &str, req: &JoinRequest) -> Result<(String, u64), Refusal> {
        let s = &self.settings;
        let g = match req.role {
            Role::Teacher => &s.grants.teacher,
            Role::Student => &s.grants.student,
        };
        let grants = VideoGrants {
            room_join: true,
            room: room.to_owned(),
            can_publish: Some(g.can_publish),
            can_subscribe: Some(g.can_subscribe),
            can_publish_data: Some(g.can_publish_data),
            ..Default::default()
        };
        let jwt = AccessToken::with_api_key(&s.api_key, s.api_secret.expose())
            .with_identity(&req.identity)
            .with_name(&req.name)
            .with_ttl(s.token_ttl)
            .with_grants(grants)
            .to_jwt()
            .map_err(|e| Refusal {
                code: ErrorCode::Busy,
                message: format!("cannot sign the token: {e}"),
            })?;
        let expires_at = clock::unix_now().saturating_add(s.token_ttl.as_secs());
        Ok((jwt, expires_at))
    }
}

/// `POST /api/rooms/{room}/join` (counted in `airclass_cluster_joins_total` by node and outcome).
pub async fn join(
    State(main): State<Arc<Main>>,
    Path(room): Path<String>,
    req: Request,
) -> Result<Json<JoinResponse>, Refusal> {
    let r = join_inner(main, room, req).await;
    metrics::join(
        r.as_ref()
            .map(|(j, reason)| (j.node.as_str(), *reason))
            .map_err(|e| e.code),
    );
    r.map(|(j, _)| Json(j))
}

/// The join itself: application token, body, validation, placement, token.
async fn join_inner(
    main: Arc<Main>,
    room: String,
    req: Request,
) -> Result<(JoinResponse, placement::Reason), Refusal> {
    main.check_app_token(req.headers())?;
    let body = main.read_body(req, None).await?;
    let jr: JoinRequest = serde_json::from_slice(&body).map_err(|e| {
        main.refuse(
            PATH,
            None,
            ErrorCode::Malformed,
            format!("invalid JSON: {e}"),
        )
    })?;
    jr.validate()
        .and_then(|_| validate_room_name(&room))
        .map_err(|e| main.refuse(PATH, None, ErrorCode::Malformed, e.to_string()))?;
    let t0 = clock::now();
    let (node, livekit_url, reason) = main.place(&room).await?;
    metrics::placement(t0.elapsed());
    let (token, expires_at) = main.mint_token(&room, &jr)?;
    tracing::debug!(room = %room, node = %node, role = ?jr.role, outcome = metrics::placement_outcome(reason), "join placed");
    let answer = JoinResponse {
        room,
        node,
        livekit_url,
        token,
        expires_at,
    };
    Ok((answer, reason))
}

/// `GET /api/livekit/rooms` on main: every room of the cluster, labelled by the node that hosts
/// it. With Redis, one ListRooms on main's own LiveKit (it reads the shared `rooms` hash) and
/// LiveKit's `room_node_map` name them all — no call to any other node; a room whose LiveKit
/// node is not a live member shows `node: "unknown"`. Without Redis, or when main's LiveKit does
/// not answer, the rooms the live nodes' heartbeats reported (`num_participants: null`).
pub async fn cluster_rooms(State(main): State<Arc<Main>>) -> Json<Vec<RoomView>> {
    let shared = main
        .room_list
        .get(ROOMS_BUDGET, || livekit_rooms(&main))
        .await;
    let mut out = match shared.as_deref() {
        Some(Some(list)) => list.clone(),
        _ => main.membership().rooms(),
    };
    out.sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
    Json(out)
}

/// The cluster's rooms from LiveKit's own records (see [`cluster_rooms`]).
async fn livekit_rooms(main: &Main) -> Option<Vec<RoomView>> {
    let store = main.store.as_ref()?;
    let list = main.rooms.list().await.ok()?;
    let map = store.livekit_room_node_map().await.ok()?;
    let m = main.membership();
    Some(
        list.into_iter()
            .map(|r| {
                let node = map
                    .get(&r.name)
                    .and_then(|id| m.node_by_livekit_id(id))
                    .unwrap_or("unknown")
                    .to_owned();
                RoomView {
                    name: r.name,
                    node,
                    num_participants: Some(r.num_participants),
                }
            })
            .collect(),
    )
}
