//! Two LiveKit nodes on one Redis — what a cluster changes about the RoomService, which the
//! daemon's placement rests on (issue 9): ListRooms is **cluster-wide** (every node lists every
//! room: it reads the shared `rooms` hash), and CreateRoom with another node's `node_id` maps the
//! room to that node in `room_node_map`, on whichever node the request arrives; a room that is
//! already live stays where it is.

use std::time::Duration;

use livekit_api::access_token::VideoGrants;
use livekit_api::services::room::{CreateRoomOptions, RoomClient};

use super::participants::{base, token};
use crate::common::livekit_proc::{base_config, free_port, LkProc, Opts, Server, KEY, SECRET};
use crate::common::redis_proc::RedisProc;

both!(create_room_on_another_node_and_list_cluster_wide);

/// A node on `redis`: (process, its LiveKit node id, its RoomService client).
fn node(s: Server, redis: &RedisProc) -> (LkProc, String, RoomClient) {
    let port = free_port();
    let cfg = format!(
        "{}redis:\n  address: {}\n",
        base_config(port, free_port()),
        redis.address()
    );
    let p = LkProc::spawn(s, &Opts::new(cfg));
    let ready = p.wait_ready();
    let id = ready.fields["nodeID"]
        .as_str()
        .expect("nodeID in the ready line")
        .to_owned();
    (p, id, RoomClient::with_api_key(&base(port), KEY, SECRET))
}

fn room_host(redis: &RedisProc, room: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg("room_node_map")
        .arg(room)
        .query(&mut redis.conn())
        .expect("HGET room_node_map")
}

async fn names(c: &RoomClient) -> Vec<String> {
    let mut v: Vec<String> = c
        .list_rooms(Vec::new())
        .await
        .expect("ListRooms")
        .into_iter()
        .map(|r| r.name)
        .collect();
    v.sort();
    v
}

async fn create_room_on_another_node_and_list_cluster_wide(s: Server) {
    let _ = token(VideoGrants::default()); // the key pair the clients sign with
    let redis = RedisProc::start();
    let (_a, a_id, a) = node(s, &redis);
    let (_b, b_id, b) = node(s, &redis);
    let n = s.name();
    let on = |id: &str| CreateRoomOptions {
        node_id: id.to_owned(),
        ..Default::default()
    };
    // asked on A, placed on B
    a.create_room("class-b", on(&b_id))
        .await
        .expect("CreateRoom on A for B");
    assert_eq!(
        room_host(&redis, "class-b").as_deref(),
        Some(b_id.as_str()),
        "{n}"
    );
    // asked on B, placed on A
    b.create_room("class-a", on(&a_id))
        .await
        .expect("CreateRoom on B for A");
    assert_eq!(
        room_host(&redis, "class-a").as_deref(),
        Some(a_id.as_str()),
        "{n}"
    );
    // a live room stays where it is, whatever node_id a later CreateRoom names
    a.create_room("class-b", on(&a_id))
        .await
        .expect("CreateRoom again");
    assert_eq!(
        room_host(&redis, "class-b").as_deref(),
        Some(b_id.as_str()),
        "{n}"
    );
    // every node lists every room of the cluster (the rooms hash is written by the host node,
    // asynchronously for the real server: give it a moment)
    let want = vec!["class-a".to_owned(), "class-b".to_owned()];
    let t0 = std::time::Instant::now();
    while (names(&a).await != want || names(&b).await != want)
        && t0.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(names(&a).await, want, "{n}: ListRooms on A");
    assert_eq!(names(&b).await, want, "{n}: ListRooms on B");
}
