//! HTTP side of the livekit-server stand-in (TEST DOUBLE): health on `/`, `/rtc[/v1]/validate`,
//! Twirp `livekit.RoomService` (JSON and protobuf) with the real auth answers, the prometheus
//! listener, and the stand-in-only `/standin/*` test hooks (CONTRACT §4, §10, §11).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use livekit_api::access_token::{AccessTokenError, Claims, TokenVerifier};
use livekit_protocol as proto;
use prost::Message;
use serde_json::{json, Value};

use crate::pjson;
use crate::state::{now_secs_f64, RoomEntry, Shared};

const TEXT: &str = "text/plain; charset=utf-8";
const TWIRP_PREFIX: &str = "/twirp/livekit.RoomService/";

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT)], body.into()).into_response()
}

/// Go's `http.Error`: the message plus a newline.
fn http_error(status: StatusCode, msg: &str) -> Response {
    text(status, format!("{msg}\n"))
}

/// livekit's `HandleError`: logs `error handling request` (WARN), body = the message only.
fn handle_error(status: StatusCode, msg: &str, path: &str) -> Response {
    let fields = [
        ("error", msg.into()),
        ("status", status.as_u16().into()),
        ("path", path.into()),
    ];
    crate::log::log(
        crate::log::Level::Warn,
        "service/utils.go:84",
        "error handling request",
        &fields,
    );
    text(status, msg.to_string())
}

fn query_map(uri: &axum::http::Uri) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(q) = uri.query() {
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.insert(percent_decode(k), percent_decode(v));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Result of the API-key middleware.
enum Auth {
    /// No token at all: passes the middleware, RPCs then answer `unauthenticated`.
    None,
    Valid(Box<Claims>),
}

/// The API-key middleware (`auth.go`, 1.13.5 wording): a token that is present but bad is a
/// plain-text 401: unparsable → `invalid authorization token`, unknown key → `invalid API key:
/// KEY`, bad signature or expired → `invalid token: JWT, error: REASON`.
fn authenticate(
    shared: &Shared,
    req: &Request,
    query: &HashMap<String, String>,
) -> Result<Auth, Box<Response>> {
    let path = req.uri().path();
    let deny = |msg: &str| Box::new(handle_error(StatusCode::UNAUTHORIZED, msg, path));
    let token = match req.headers().get(header::AUTHORIZATION) {
        Some(value) => match value.to_str().unwrap_or("").strip_prefix("Bearer ") {
            Some(t) => t.to_string(),
            None => {
                return Err(deny(
                    "invalid authorization header. Must start with Bearer ",
                ))
            }
        },
        None => match query.get("access_token") {
            Some(t) if !t.is_empty() => t.clone(),
            _ => return Ok(Auth::None),
        },
    };
    let unverified =
        Claims::from_unverified(&token).map_err(|_| deny("invalid authorization token"))?;
    let Some(secret) = shared.cfg.keys.get(&unverified.iss) else {
        return Err(deny(&format!("invalid API key: {}", unverified.iss)));
    };
    let claims = TokenVerifier::with_api_key(&unverified.iss, secret)
        .verify(&token)
        .map_err(|e| {
            deny(&format!(
                "invalid token: {token}, error: {}",
                token_reason(&e)
            ))
        })?;
    Ok(Auth::Valid(Box::new(claims)))
}

fn token_reason(e: &AccessTokenError) -> String {
    match e {
        AccessTokenError::Encoding(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = query_map(req.uri());
    let auth = match authenticate(&shared, &req, &query) {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    match path.as_str() {
        "/" => health(&shared),
        "/rtc/validate" | "/rtc/v1/validate" => validate(&shared, &auth, &path),
        "/standin/participants" => standin_participants(&shared, req.method(), &query).await,
        "/standin/health" => standin_health(&shared, req.method(), &query),
        p if p.starts_with("/twirp/") => twirp(&shared, req, auth).await,
        _ => http_error(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

fn health(shared: &Shared) -> Response {
    let updated = shared.stats_updated_at.load(Ordering::Relaxed);
    let age = now_secs_f64() - updated as f64;
    if shared.force_stale.load(Ordering::Relaxed) || age >= 4.0 {
        let body = format!(
            "Not Ready\nNode Updated At {}",
            crate::log::go_time_string(updated)
        );
        return text(StatusCode::NOT_ACCEPTABLE, body);
    }
    text(StatusCode::OK, "OK")
}

fn validate(shared: &Shared, auth: &Auth, path: &str) -> Response {
    let fail = |status, msg| handle_error(status, msg, path);
    let Auth::Valid(claims) = auth else {
        return fail(StatusCode::UNAUTHORIZED, "permissions denied");
    };
    if !claims.video.room_join {
        return fail(StatusCode::UNAUTHORIZED, "permissions denied");
    }
    if claims.sub.is_empty() {
        return fail(StatusCode::BAD_REQUEST, "identity cannot be empty");
    }
    if claims.video.room.is_empty() {
        return fail(StatusCode::BAD_REQUEST, "no room name");
    }
    if path == "/rtc/v1/validate" {
        return fail(StatusCode::BAD_REQUEST, "join_request is required");
    }
    if !shared.cfg.room_auto_create && !shared.rooms_lock().contains_key(&claims.video.room) {
        return fail(StatusCode::NOT_FOUND, "requested room does not exist");
    }
    text(StatusCode::OK, "success")
}

// ---------------------------------------------------------------------------------------------
// Stand-in-only hooks (never present in the real server).
// ---------------------------------------------------------------------------------------------

/// `POST /standin/participants?room=X&count=N[&identity=NAME]`: sets the number of fake
/// participants (new ones are named NAME, NAME-1, … or `standin-participant-N`).
async fn standin_participants(
    shared: &Shared,
    method: &Method,
    query: &HashMap<String, String>,
) -> Response {
    if method != Method::POST {
        return http_error(StatusCode::METHOD_NOT_ALLOWED, "stand-in hook: use POST");
    }
    let Some(room) = query.get("room").filter(|r| !r.is_empty()) else {
        return http_error(StatusCode::BAD_REQUEST, "stand-in hook: room is required");
    };
    let Ok(count) = query
        .get("count")
        .map(String::as_str)
        .unwrap_or("1")
        .parse::<usize>()
    else {
        return http_error(
            StatusCode::BAD_REQUEST,
            "stand-in hook: count must be a number",
        );
    };
    let identity = query.get("identity").map(String::as_str);
    let updated = shared.set_fake_participants_named(room, count, identity);
    shared.store_room(&updated).await;
    crate::log::info(
        "standin/http.rs:1",
        "stand-in: fake participants set",
        &[("room", room.clone().into()), ("count", count.into())],
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"room": room, "num_participants": count, "total_participants": shared.total_participants()})
            .to_string(),
    )
        .into_response()
}

/// `POST /standin/health?stale=1|0`: forces `/` to answer 406 (simulated Redis outage).
fn standin_health(shared: &Shared, method: &Method, query: &HashMap<String, String>) -> Response {
    if method != Method::POST {
        return http_error(StatusCode::METHOD_NOT_ALLOWED, "stand-in hook: use POST");
    }
    let stale = matches!(query.get("stale").map(String::as_str), Some("1" | "true"));
    shared.force_stale.store(stale, Ordering::Relaxed);
    text(StatusCode::OK, format!("stale={stale}\n"))
}

// ---------------------------------------------------------------------------------------------
// Twirp
// ---------------------------------------------------------------------------------------------

fn twirp_error(status: StatusCode, code: &str, msg: &str, meta: Option<Value>) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("code".into(), Value::from(code));
    body.insert("msg".into(), Value::from(msg));
    if let Some(meta) = meta {
        body.insert("meta".into(), meta);
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Value::Object(body).to_string(),
    )
        .into_response()
}

fn bad_route(msg: &str, method: &Method, path: &str) -> Response {
    twirp_error(
        StatusCode::NOT_FOUND,
        "bad_route",
        msg,
        Some(json!({"twirp_invalid_route": format!("{method} {path}")})),
    )
}

fn denied() -> Response {
    twirp_error(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "permissions denied",
        None,
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Protobuf,
}

fn decode<T>(codec: Codec, body: &Bytes) -> Result<T, Box<Response>>
where
    T: Message + Default + for<'de> serde::Deserialize<'de>,
{
    match codec {
        Codec::Protobuf => T::decode(body.as_ref()).map_err(|e| {
            Box::new(twirp_error(
                StatusCode::BAD_REQUEST,
                "malformed",
                &format!("failed to unmarshal protobuf request: {e}"),
                None,
            ))
        }),
        Codec::Json => {
            let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
                b"{}"
            } else {
                body
            };
            serde_json::from_slice::<T>(body).map_err(|_| {
                Box::new(twirp_error(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    "the json request could not be decoded",
                    None,
                ))
            })
        }
    }
}

fn reply<T: Message>(codec: Codec, msg: &T, json: Value) -> Response {
    match codec {
        Codec::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/protobuf")],
            msg.encode_to_vec(),
        )
            .into_response(),
        Codec::Json => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json.to_string(),
        )
            .into_response(),
    }
}

fn grants(auth: &Auth) -> Option<&livekit_api::access_token::VideoGrants> {
    match auth {
        Auth::Valid(c) => Some(&c.video),
        Auth::None => None,
    }
}

async fn twirp(shared: &Shared, req: Request, auth: Auth) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if method != Method::POST {
        return bad_route(
            &format!(
                "unsupported method {:?} (only POST is allowed)",
                method.as_str()
            ),
            &method,
            &path,
        );
    }
    let Some(rpc) = path.strip_prefix(TWIRP_PREFIX).map(str::to_string) else {
        return bad_route(&format!("no handler for path {path:?}"), &method, &path);
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let codec = match content_type.as_str() {
        "application/json" => Codec::Json,
        "application/protobuf" => Codec::Protobuf,
        other => {
            return bad_route(
                &format!("unexpected Content-Type: {other:?}"),
                &method,
                &path,
            );
        }
    };
    let body = match to_bytes(req.into_body(), 4 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return twirp_error(
                StatusCode::BAD_REQUEST,
                "malformed",
                &format!("failed to read request body: {e}"),
                None,
            )
        }
    };
    match rpc.as_str() {
        "CreateRoom" => create_room(shared, codec, &body, &auth).await,
        "ListRooms" => list_rooms(shared, codec, &body, &auth),
        "DeleteRoom" => delete_room(shared, codec, &body, &auth).await,
        "ListParticipants" => list_participants(shared, codec, &body, &auth),
        "GetParticipant" => get_participant(shared, codec, &body, &auth),
        "RemoveParticipant" => remove_participant(shared, codec, &body, &auth).await,
        "MutePublishedTrack"
        | "UpdateParticipant"
        | "UpdateSubscriptions"
        | "SendData"
        | "UpdateRoomMetadata"
        | "ForwardParticipant"
        | "MoveParticipant"
        | "PerformRpc" => twirp_error(
            StatusCode::NOT_IMPLEMENTED,
            "unimplemented",
            &format!("livekit-standin does not implement {rpc}"),
            None,
        ),
        _ => bad_route(&format!("no handler for path {path:?}"), &method, &path),
    }
}

async fn create_room(shared: &Shared, codec: Codec, body: &Bytes, auth: &Auth) -> Response {
    let req: proto::CreateRoomRequest = match decode(codec, body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if !grants(auth).is_some_and(|g| g.room_create) {
        return denied();
    }
    // An empty name is accepted, as by the real server (it creates a room named "").
    let room = {
        let mut rooms = shared.rooms_lock();
        if let Some(existing) = rooms.get_mut(&req.name) {
            existing.view()
        } else {
            if shared.draining.load(Ordering::Relaxed) && shared.redis.is_some() {
                // With Redis the selector skips SHUTTING_DOWN nodes; single-node routing
                // places the room whatever the node state.
                return twirp_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "unknown",
                    "could not find any available nodes",
                    None,
                );
            }
            let room = shared.new_room(
                &req.name,
                req.empty_timeout,
                req.departure_timeout,
                req.max_participants,
                &req.metadata,
            );
            rooms.insert(req.name.clone(), RoomEntry::new(room.clone()));
            room
        }
    };
    shared.store_room(&room).await;
    reply(codec, &room, pjson::room(&room))
}

fn list_rooms(shared: &Shared, codec: Codec, body: &Bytes, auth: &Auth) -> Response {
    let req: proto::ListRoomsRequest = match decode(codec, body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if !grants(auth).is_some_and(|g| g.room_list) {
        return denied();
    }
    let rooms: Vec<proto::Room> = shared
        .rooms_lock()
        .values_mut()
        .filter(|e| req.names.is_empty() || req.names.contains(&e.room.name))
        .map(RoomEntry::view)
        .collect();
    let json = json!({"rooms": rooms.iter().map(pjson::room).collect::<Vec<_>>()});
    reply(codec, &proto::ListRoomsResponse { rooms }, json)
}

async fn delete_room(shared: &Shared, codec: Codec, body: &Bytes, auth: &Auth) -> Response {
    let req: proto::DeleteRoomRequest = match decode(codec, body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if !grants(auth).is_some_and(|g| g.room_create) {
        return denied();
    }
    let removed = shared.rooms_lock().remove(&req.room);
    if removed.is_none() {
        return twirp_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "twirp error unknown: requested room does not exist",
            None,
        );
    }
    shared.forget_room(&req.room).await;
    reply(codec, &proto::DeleteRoomResponse {}, json!({}))
}

fn room_admin(auth: &Auth, room: &str) -> bool {
    grants(auth).is_some_and(|g| g.room_admin && g.room == room)
}

fn list_participants(shared: &Shared, codec: Codec, body: &Bytes, auth: &Auth) -> Response {
    let req: proto::ListParticipantsRequest = match decode(codec, body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if !room_admin(auth, &req.room) {
        return denied();
    }
    let participants = shared
        .rooms_lock()
        .get(&req.room)
        .map(|e| e.participants.clone())
        .unwrap_or_default();
    let json =
        json!({"participants": participants.iter().map(pjson::participant).collect::<Vec<_>>()});
    reply(
        codec,
        &proto::ListParticipantsResponse { participants },
        json,
    )
}

fn get_participant(shared: &Shared, codec: Codec, body: &Bytes, auth: &Auth) -> Response {
    let req: proto::RoomParticipantIdentity = match decode(codec, body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if !room_admin(auth, &req.room) {
        return denied();
    }
    let found = shared.rooms_lock().get(&req.room).and_then(|e| {
        e.participants
            .iter()
            .find(|p| p.identity == req.identity)
            .cloned()
    });
    match found {
        Some(p) => reply(codec, &p, pjson::participant(&p)),
        None => twirp_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "twirp error unknown: participant does not exist",
            None,
        ),
    }
}

async fn remove_participant(shared: &Shared, codec: Codec, body: &Bytes, auth: &Auth) -> Response {
    let req: proto::RoomParticipantIdentity = match decode(codec, body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if !room_admin(auth, &req.room) {
        return denied();
    }
    let updated = {
        let mut rooms = shared.rooms_lock();
        match rooms.get_mut(&req.room) {
            Some(entry) => {
                let before = entry.participants.len();
                entry.participants.retain(|p| p.identity != req.identity);
                if entry.participants.len() == before {
                    None
                } else {
                    entry.mark_dirty();
                    Some(entry.view())
                }
            }
            None => None,
        }
    };
    match updated {
        Some(room) => {
            shared.store_room(&room).await;
            reply(codec, &proto::RemoveParticipantResponse {}, json!({}))
        }
        None => twirp_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "twirp error unknown: participant does not exist",
            None,
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus listener: every path answers.
// ---------------------------------------------------------------------------------------------

pub fn prometheus_router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(prometheus).with_state(shared)
}

async fn prometheus(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some((user, pass)) = &shared.cfg.prometheus_auth {
        use base64::Engine as _;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if given != expected {
            return http_error(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
    }
    let (rooms, participants) = {
        let r = shared.rooms_lock();
        (
            r.len(),
            r.values().map(|e| e.participants.len()).sum::<usize>(),
        )
    };
    let body = format!(
        "# livekit-standin metrics (test double)\n\
         livekit_room_total{{node_id=\"{id}\"}} {rooms}\n\
         livekit_participant_total{{node_id=\"{id}\"}} {participants}\n",
        id = shared.node_id
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        Body::from(body),
    )
        .into_response()
}
