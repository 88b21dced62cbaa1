//! Main's answers to the application: `POST /api/rooms/{room}/join` (placement + a LiveKit access
//! token) and the cluster-wide `GET /api/livekit/rooms`.
//!
//! Placement of a join, in order:
//! 1. the live node whose heartbeats report the room (membership `room_names`);
//! 2. the node main placed the room on moments ago (kept 3 heartbeats: covers the gap before the
//!    node's next heartbeat reports the new room);
//! 3. LiveKit's own Redis record (`room_node_map` → `nodes` → IP) when exactly one live node
//!    advertises that IP in its LiveKit URL (on a single host every node shares one IP, so this
//!    step only helps across hosts);
//! 4. rendezvous hashing among live nodes under `cluster.sysload_limit` (`placement.rs`).
//!
//! The token is signed with the cluster's LiveKit API key/secret through the official
//! `livekit-api` crate; grants come from `[grants.teacher]` / `[grants.student]`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use livekit_api::access_token::{AccessToken, VideoGrants};

use super::main_role::{lock, now, Main, Refusal};
use super::placement;
use super::protocol::{validate_room_name, ErrorCode, JoinRequest, JoinResponse, Role, RoomView};
use crate::livekit::rooms;

const PATH: &str = "/api/rooms/{room}/join";

/// The host part of a `ws://HOST:PORT` URL.
fn url_host(u: &str) -> Option<String> {
    url::Url::parse(u)
        .ok()?
        .host_str()
        .map(|h| h.trim_matches(['[', ']']).to_owned())
}

impl Main {
    /// Check `Authorization: Bearer` against the stored hash (401 `unauthorized` otherwise).
    fn check_app_token(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(super::auth::parse_bearer);
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

    /// The live node whose LiveKit URL host is `ip`, if exactly one.
    fn node_by_ip(&self, ip: &str) -> Option<String> {
        let m = self.membership();
        let mut hits = m
            .live_nodes()
            .filter(|e| url_host(&e.info.livekit_url).as_deref() == Some(ip));
        let first = hits.next()?.info.name.clone();
        hits.next().is_none().then_some(first)
    }

    /// Choose the node for `room` (see the module docs); returns (node, LiveKit URL, reason).
    pub async fn place(&self, room: &str) -> Result<(String, String, placement::Reason), Refusal> {
        let known = {
            let m = self.membership();
            m.room_node(room).map(str::to_owned).or_else(|| {
                lock(&self.recent)
                    .get(room)
                    .filter(|(n, _)| m.get(n).is_some_and(|e| e.state.is_live()))
                    .map(|(n, _)| n.clone())
            })
        };
        let existing = match (known, &self.store) {
            (Some(n), _) => Some(n),
            (None, Some(store)) => match store.room_host_ip(room).await {
                Ok(Some(ip)) => self.node_by_ip(&ip),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read LiveKit's room_node_map; placing by hash");
                    None
                }
            },
            (None, None) => None,
        };
        let m = self.membership();
        let choice = placement::choose_with_existing(
            room,
            existing.as_deref(),
            &m.candidates(),
            self.settings.sysload_limit,
        )
        .ok_or_else(|| {
            self.refuse(
                PATH,
                None,
                ErrorCode::NoNode,
                "no live node can take the room",
            )
        })?;
        let url = m
            .get(&choice.node)
            .map(|e| e.info.livekit_url.clone())
            .unwrap_or_default();
        lock(&self.recent).insert(room.to_owned(), (choice.node.clone(), now()));
        Ok((choice.node, url, choice.reason))
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
        let expires_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .saturating_add(s.token_ttl)
            .as_secs();
        Ok((jwt, expires_at))
    }
}

/// `POST /api/rooms/{room}/join` (counted in `airclass_cluster_joins_total` by outcome).
pub async fn join(
    State(main): State<Arc<Main>>,
    Path(room): Path<String>,
    req: Request,
) -> Result<Json<JoinResponse>, Refusal> {
    let r = join_inner(main, room, req).await;
    crate::metrics::join(
        r.as_ref()
            .map(|(j, reason)| (j.node.as_str(), *reason))
            .map_err(|e| e.code),
    );
    r.map(|(j, _)| Json(j))
}

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
    let t0 = tokio::time::Instant::now();
    let (node, livekit_url, reason) = main.place(&room).await?;
    crate::metrics::placement(t0.elapsed());
    let (token, expires_at) = main.mint_token(&room, &jr)?;
    tracing::info!(room = %room, node = %node, role = ?jr.role, outcome = crate::metrics::placement_outcome(reason), "join placed");
    let answer = JoinResponse {
        room,
        node,
        livekit_url,
        token,
        expires_at,
    };
    Ok((answer, reason))
}

/// One live node as the room listing needs it.
struct Host {
    name: String,
    api_url: String,
    room_names: Vec<String>,
    is_self: bool,
}

/// `GET /api/livekit/rooms` on main: every live node's rooms, labelled by node. Each node's own
/// `/api/livekit/rooms` is asked (2 s budget; main lists its LiveKit directly); a node that does
/// not answer is shown from its last heartbeat (`num_participants: null`).
pub async fn cluster_rooms(State(main): State<Arc<Main>>) -> Json<Vec<RoomView>> {
    let hosts: Vec<Host> = main
        .membership()
        .live_nodes()
        .map(|e| Host {
            name: e.info.name.clone(),
            api_url: e.info.api_url.clone(),
            room_names: e.stats.room_names.clone(),
            is_self: e.info.name == main.settings.main_name,
        })
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for h in hosts {
        let main = main.clone();
        set.spawn(async move {
            let fetched = tokio::time::timeout(Duration::from_secs(2), fetch_rooms(&main, &h))
                .await
                .ok()
                .flatten();
            fetched.unwrap_or_else(|| {
                h.room_names
                    .iter()
                    .map(|r| RoomView {
                        name: r.clone(),
                        node: h.name.clone(),
                        num_participants: None,
                    })
                    .collect()
            })
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.extend(r.unwrap_or_default());
    }
    out.sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
    Json(out)
}

async fn fetch_rooms(main: &Main, h: &Host) -> Option<Vec<RoomView>> {
    let to_view = |name: String, n: Option<u32>| RoomView {
        name,
        node: h.name.clone(),
        num_participants: n,
    };
    if h.is_self {
        let s = &main.settings;
        let list = rooms::list_rooms(s.local_livekit_port, &s.api_key, s.api_secret.expose())
            .await
            .ok()?;
        return Some(
            list.into_iter()
                .map(|r| to_view(r.name, Some(r.num_participants)))
                .collect(),
        );
    }
    let v: serde_json::Value = main
        .http
        .get(format!(
            "{}/api/livekit/rooms",
            h.api_url.trim_end_matches('/')
        ))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .json()
        .await
        .ok()?;
    let list = v.get("rooms")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|r| {
                let name = r.get("name")?.as_str()?.to_owned();
                let n = r
                    .get("num_participants")
                    .and_then(|n| n.as_u64())
                    .and_then(|n| u32::try_from(n).ok());
                Some(to_view(name, n))
            })
            .collect(),
    )
}
