//! Redis: the cluster-id marker (claimed once, refused for another cluster; that the daemon
//! then exits 78 is in `process`), and LiveKit's `room_node_map` keeping a live room on its node.

use std::time::Duration;

use airclass_node::cluster::claim_redis;
use airclass_node::cluster::placement;
use airclass_node::cluster::store::{Claim, Store, StoreError, CLUSTER_ID_KEY};
use airclass_node::redis_conn::RedisConn;
use prost::Message;
use serde_json::json;

use crate::roles::*;
use crate::support::redis::Redis;

async fn cmd<T: redis::FromRedisValue>(p: &RedisConn, c: &redis::Cmd) -> T {
    p.query(c, Duration::from_secs(3)).await.unwrap()
}

#[tokio::test]
async fn marker_is_claimed_once_and_another_cluster_is_refused() {
    let r = Redis::start();
    let p = redis_conn(&r);
    let store = Store::new(p.clone());
    assert_eq!(
        store.claim_cluster_id("alpha").await.unwrap(),
        Claim::Created
    );
    assert_eq!(
        store.claim_cluster_id("alpha").await.unwrap(),
        Claim::Existing
    );
    let err = claim_redis(&p, "beta").await.unwrap_err();
    assert!(matches!(&err, StoreError::OwnedByOther { theirs, .. } if theirs == "alpha"));
    assert!(
        err.to_string().contains("belongs to cluster \"alpha\""),
        "{err}"
    );
    let v: String = cmd(&p, redis::cmd("GET").arg(CLUSTER_ID_KEY)).await;
    assert_eq!(v, "alpha", "the loser must not overwrite the marker");
    // only our prefix was written
    let keys: Vec<String> = cmd(&p, redis::cmd("KEYS").arg("*")).await;
    assert!(keys.iter().all(|k| k.starts_with("airclass:")), "{keys:?}");
}

#[tokio::test]
async fn livekit_room_node_map_keeps_a_live_room_on_its_node() {
    let r = Redis::start();
    let p = redis_conn(&r);
    let m = MainServer::start(Duration::from_secs(1), Some(Store::new(p.clone()))).await;
    // node-1 reports its LiveKit's node id (ND_x) in its heartbeats, as a daemon does from
    // LiveKit's ready line
    let mut s = sub_settings("node-1", Some(m.url.clone()), Duration::from_secs(1));
    s.info.livekit_url = "ws://127.0.0.5:7890".into();
    let mut st = stats(0.1, &[]);
    st.livekit_node_id = Some("ND_x".into());
    let sub = Sub::start(s, st, None);
    wait_until(Duration::from_secs(5), || async { sub.handle.registered() })
        .await
        .unwrap();
    // a room the hash would put on main
    let cands = [
        placement::Candidate::alive("main", 0.1),
        placement::Candidate::alive("node-1", 0.1),
    ];
    let room = (0..100)
        .map(|i| format!("lk-room-{i}"))
        .find(|r| placement::choose(r, &cands, 0.7).unwrap().node == "main")
        .unwrap();
    // what LiveKit writes when the room is live on its node ND_x
    let node = livekit_protocol::Node {
        id: "ND_x".into(),
        ip: "127.0.0.5".into(),
        num_cpus: 4,
        ..Default::default()
    };
    let _: () = cmd(
        &p,
        redis::cmd("HSET")
            .arg("nodes")
            .arg("ND_x")
            .arg(node.encode_to_vec()),
    )
    .await;
    let _: () = cmd(
        &p,
        redis::cmd("HSET")
            .arg("room_node_map")
            .arg(&room)
            .arg("ND_x"),
    )
    .await;
    let (code, v) = join(
        &m.url,
        &room,
        Some(APP_TOKEN),
        json!({"identity": "a", "role": "student"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["node"], "node-1",
        "the live room must stay on LiveKit's node"
    );
    assert_eq!(v["livekit_url"], "ws://127.0.0.5:7890");
    // LiveKit's keys were only read
    let still: String = cmd(&p, redis::cmd("HGET").arg("room_node_map").arg(&room)).await;
    assert_eq!(still, "ND_x");
    sub.kill();
}
