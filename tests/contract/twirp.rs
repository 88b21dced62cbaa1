//! Twirp RoomService: CreateRoom / ListRooms / DeleteRoom / ListParticipants in JSON and in
//! protobuf (and through the `livekit-api` SDK), and the 401 bodies: Twirp JSON from the RPC
//! vs plain text from the API-key middleware (CONTRACT §10, §16 correction 5).

use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use prost::Message as _;
use serde_json::Value;

use super::participants::{add_participant, base, hs256_jwt, http, token};
use crate::common::figures::figure;
use crate::common::livekit_proc::{base_config, free_port, LkProc, Opts, Server, KEY, SECRET};

both!(
    twirp_json_rooms,
    twirp_protobuf_and_sdk,
    twirp_list_participants,
    twirp_auth_401_bodies,
    twirp_routing_errors,
    twirp_edge_answers,
);

fn start(s: Server) -> (LkProc, String) {
    let port = free_port();
    let p = LkProc::spawn(s, &Opts::new(base_config(port, free_port())));
    p.wait_ready();
    (p, base(port))
}

fn rpc(url: &str, method: &str) -> String {
    format!("{url}/twirp/livekit.RoomService/{method}")
}

async fn twirp_json_rooms(s: Server) {
    let (_p, url) = start(s);
    let (c, n) = (http(), s.name());
    let create = token(VideoGrants {
        room_create: true,
        ..Default::default()
    });
    // JSON in (camelCase accepted, unknown fields ignored), snake_case out with defaults
    // included and int64 as strings.
    let r = c
        .post(rpc(&url, "CreateRoom"))
        .bearer_auth(&create)
        .header("Content-Type", "application/json")
        .body(r#"{"name":"class-1","maxParticipants":7,"unknown_field":1}"#)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 200, "{n}");
    assert_eq!(r.headers()["content-type"], "application/json", "{n}");
    let room: Value = r.json().await.expect("json");
    assert_eq!(room["name"], "class-1", "{n}");
    assert_eq!(room["max_participants"], 7, "{n}");
    assert_eq!(room["empty_timeout"], 300, "{n}");
    assert_eq!(room["departure_timeout"], 20, "{n}");
    assert_eq!(room["num_participants"], 0, "{n}");
    assert_eq!(room["metadata"], "", "{n}");
    assert!(room["sid"].as_str().expect("sid").starts_with("RM_"), "{n}");
    let ct = room["creation_time"]
        .as_str()
        .expect("creation_time is a string");
    assert!(ct.parse::<i64>().expect("number") > 1_600_000_000, "{n}");
    assert!(room.get("maxParticipants").is_none(), "{n}: {room}");

    // DeleteRoom; a second delete is 404 not_found in Twirp JSON.
    let del = |body: &'static str| {
        c.post(rpc(&url, "DeleteRoom"))
            .bearer_auth(&create)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let r = del(r#"{"room":"class-1"}"#).await.expect("delete");
    assert_eq!(r.status(), 200, "{n}");
    assert_eq!(r.text().await.expect("body"), "{}", "{n}");
    let r = del(r#"{"room":"class-1"}"#).await.expect("delete");
    assert_eq!(r.status(), 404, "{n}");
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["code"], "not_found", "{n}: {e}");
    // 1.13.5 wraps it: not CONTRACT §10's bare "requested room does not exist".
    assert_eq!(
        e["msg"], "twirp error unknown: requested room does not exist",
        "{n}: {e}"
    );
}

async fn twirp_protobuf_and_sdk(s: Server) {
    let (_p, url) = start(s);
    let n = s.name();
    let client = RoomClient::with_api_key(&url, KEY, SECRET);
    let opts = CreateRoomOptions {
        empty_timeout: 60,
        ..Default::default()
    };
    let created = client
        .create_room("class-2", opts)
        .await
        .expect("sdk create_room");
    assert_eq!(
        (created.name.as_str(), created.empty_timeout),
        ("class-2", 60),
        "{n}"
    );
    client
        .create_room("class-3", CreateRoomOptions::default())
        .await
        .expect("create");
    let list = token(VideoGrants {
        room_list: true,
        ..Default::default()
    });
    let body = livekit_protocol::ListRoomsRequest { names: vec![] }.encode_to_vec();
    let r = http()
        .post(rpc(&url, "ListRooms"))
        .bearer_auth(&list)
        .header("Content-Type", "application/protobuf")
        .body(body)
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200, "{n}");
    assert_eq!(r.headers()["content-type"], "application/protobuf", "{n}");
    let resp = livekit_protocol::ListRoomsResponse::decode(r.bytes().await.expect("bytes"))
        .expect("decode");
    let mut names: Vec<String> = resp.rooms.iter().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["class-2", "class-3"], "{n}");
    let only = client
        .list_rooms(vec!["class-2".into()])
        .await
        .expect("filtered");
    assert_eq!(only.len(), 1, "{n}");
    assert_eq!(only[0].sid, created.sid, "{n}");
    client.delete_room("class-2").await.expect("delete");
    assert!(
        client.delete_room("class-2").await.is_err(),
        "{n}: 2nd delete is not_found"
    );
    assert_eq!(
        client.list_rooms(vec![]).await.expect("list").len(),
        1,
        "{n}"
    );
}

async fn twirp_list_participants(s: Server) {
    let port = free_port();
    let p = LkProc::spawn(s, &Opts::new(base_config(port, free_port())));
    p.wait_ready();
    let (url, n) = (base(port), s.name());
    let client = RoomClient::with_api_key(&url, KEY, SECRET);
    client
        .create_room("class-1", CreateRoomOptions::default())
        .await
        .expect("create");
    let who = add_participant(&p, port, "class-1", "student-1").await;
    // The real server sends the JoinResponse before it stores the participant: poll.
    let t0 = std::time::Instant::now();
    let mut parts = Vec::new();
    while t0.elapsed() < std::time::Duration::from_secs(3) && parts.is_empty() {
        parts = client
            .list_participants("class-1")
            .await
            .expect("participants");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(parts.len(), 1, "{n}: {parts:?}");
    assert_eq!(parts[0].identity, "student-1", "{n}");
    assert!(parts[0].sid.starts_with("PA_"), "{n}: {:?}", parts[0]);
    // Room.num_participants is refreshed with the room proto (every 5 s): it lags.
    let mut listed = Vec::new();
    while t0.elapsed() < std::time::Duration::from_secs(12) {
        listed = client
            .list_rooms(vec!["class-1".into()])
            .await
            .expect("list");
        if listed[0].num_participants == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(listed[0].num_participants, 1, "{n}: {listed:?}");
    let tag = s.tag();
    figure(
        &format!("contract {tag}: ListRooms num_participants shows a join after"),
        format!("{:.1} s", t0.elapsed().as_secs_f64()),
    );
    // JSON: participants with snake_case keys.
    let admin = AccessToken::with_api_key(KEY, SECRET)
        .with_grants(VideoGrants {
            room_admin: true,
            room: "class-1".into(),
            ..Default::default()
        })
        .to_jwt()
        .expect("jwt");
    let r = http()
        .post(rpc(&url, "ListParticipants"))
        .bearer_auth(&admin)
        .header("Content-Type", "application/json")
        .body(r#"{"room":"class-1"}"#)
        .send()
        .await
        .expect("list participants");
    assert_eq!(r.status(), 200, "{n}");
    let v: Value = r.json().await.expect("json");
    let ps = v["participants"].as_array().expect("participants array");
    assert_eq!(ps.len(), 1, "{n}: {v}");
    assert!(ps[0]["joined_at"].is_string(), "{n}: int64 as string: {v}");
    drop(who);
}

/// POST ListRooms (JSON) with an optional `Authorization` header.
async fn list_rooms_with(url: &str, auth: Option<String>) -> reqwest::Response {
    let mut rb = http()
        .post(rpc(url, "ListRooms"))
        .header("Content-Type", "application/json")
        .body("{}");
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    rb.send().await.expect("send")
}

async fn twirp_auth_401_bodies(s: Server) {
    let (_p, url) = start(s);
    let n = s.name();
    let denied = r#"{"code":"unauthenticated","msg":"permissions denied"}"#;
    // No header, or a valid token without the grant: Twirp JSON 401.
    let r = list_rooms_with(&url, None).await;
    assert_eq!(r.status(), 401, "{n}");
    assert_eq!(r.text().await.expect("body"), denied, "{n}");
    let wrong = token(VideoGrants {
        room_create: true,
        ..Default::default()
    });
    let r = list_rooms_with(&url, Some(format!("Bearer {wrong}"))).await;
    assert_eq!(r.status(), 401, "{n}");
    assert_eq!(r.text().await.expect("body"), denied, "{n}");
    for (header, expect, exact) in middleware_cases(&wrong) {
        let r = list_rooms_with(&url, Some(header.clone())).await;
        assert_eq!(r.status(), 401, "{n}: {header}");
        let ct = r.headers()["content-type"].clone();
        assert_eq!(ct, "text/plain; charset=utf-8", "{n}: {header}");
        let body = r.text().await.expect("body");
        let ok = if exact {
            body == expect
        } else {
            body.starts_with(&expect)
        };
        assert!(ok, "{n}: {header}: {body:?}, want {expect:?}");
        assert!(
            serde_json::from_str::<Value>(&body).is_err(),
            "{n}: not JSON: {body}"
        );
    }
    // The SDK with a wrong secret fails (the plain 401 is not Twirp JSON).
    let bad = RoomClient::with_api_key(&url, KEY, "ffffffffffffffffffffffffffffffffffff");
    assert!(bad.list_rooms(vec![]).await.is_err(), "{n}");
}

/// Middleware failures, plain text in the 1.13.5 wording (`auth.go`; CONTRACT §16
/// correction 5, corrected again): (header, body, exact or prefix).
fn middleware_cases(wrong_grant: &str) -> Vec<(String, String, bool)> {
    let grant = || VideoGrants {
        room_list: true,
        ..Default::default()
    };
    let signed = |key: &str, secret: &str| {
        AccessToken::with_api_key(key, secret)
            .with_grants(grant())
            .to_jwt()
            .expect("jwt")
    };
    let bad_secret = signed(KEY, "ffffffffffffffffffffffffffffffffffff");
    let unknown_key = signed("APIother", SECRET);
    let claims =
        serde_json::json!({"iss": KEY, "exp": 1_000_000, "nbf": 0, "video": {"roomList": true}});
    let expired = hs256_jwt(&claims, SECRET);
    vec![
        (
            format!("Basic {wrong_grant}"),
            "invalid authorization header. Must start with Bearer ".into(),
            true,
        ),
        (
            "Bearer not.a.jwt".into(),
            "invalid authorization token".into(),
            true,
        ),
        (
            format!("Bearer {unknown_key}"),
            "invalid API key: APIother".into(),
            true,
        ),
        (
            format!("Bearer {bad_secret}"),
            format!("invalid token: {bad_secret}, error: "),
            false,
        ),
        (
            format!("Bearer {expired}"),
            format!("invalid token: {expired}, error: "),
            false,
        ),
    ]
}

async fn twirp_routing_errors(s: Server) {
    let (_p, url) = start(s);
    let (c, n) = (http(), s.name());
    let list = rpc(&url, "ListRooms");
    let r = c.get(&list).send().await.expect("get");
    assert_eq!(r.status(), 404, "{n}: GET");
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["code"], "bad_route", "{n}: {e}");
    let r = c
        .post(&list)
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404, "{n}: text/plain");
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["code"], "bad_route", "{n}: {e}");
}

/// Edge answers the daemon may meet: an empty room name is accepted (a room named ""),
/// malformed JSON, participants of an unknown room (an empty list), an unknown participant.
async fn twirp_edge_answers(s: Server) {
    let (_p, url) = start(s);
    let (c, n) = (http(), s.name());
    let create = token(VideoGrants {
        room_create: true,
        ..Default::default()
    });
    let admin = |room: &str| {
        token(VideoGrants {
            room_admin: true,
            room: room.into(),
            ..Default::default()
        })
    };
    let call = |method: &str, auth: String, body: &'static str| {
        c.post(rpc(&url, method))
            .bearer_auth(auth)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let r = call("CreateRoom", create.clone(), r#"{"name":""}"#)
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "{n}: empty name");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["name"], "", "{n}: {v}");
    let r = call("CreateRoom", create, "garbage").await.expect("send");
    assert_eq!(r.status(), 400, "{n}");
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v,
        serde_json::json!({"code": "malformed", "msg": "the json request could not be decoded"}),
        "{n}"
    );
    let r = call("ListParticipants", admin("nope"), r#"{"room":"nope"}"#)
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "{n}");
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        serde_json::json!({"participants": []}),
        "{n}"
    );
    let r = call(
        "GetParticipant",
        admin("nope"),
        r#"{"room":"nope","identity":"x"}"#,
    )
    .await
    .expect("send");
    assert_eq!(r.status(), 404, "{n}");
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v,
        serde_json::json!({"code": "not_found", "msg": "twirp error unknown: participant does not exist"}),
        "{n}"
    );
}
