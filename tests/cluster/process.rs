//! Real daemon processes (each with the real livekit-server) and a real redis-server: a main and
//! two subs form a cluster, joins are placed and verified, a killed sub is detected, a stopped
//! sub leaves at once, a sub without main says so in its STATUS line, a node's room list holds
//! only the rooms LiveKit maps to it, a node on another cluster's Redis exits 78.

use std::time::Duration;

use airclass_node::clock::Instant;

use livekit_api::access_token::TokenVerifier;
use serde_json::json;

use airclass_node::cluster::store::CLUSTER_ID_KEY;
use airclass_node::config::RedisTarget;
use airclass_node::redis_conn::RedisConn;

use crate::roles::{figure, join, wait_until, API_KEY, API_SECRET, APP_TOKEN};
use crate::support::daemon::Daemon;
use crate::support::node::NodeSpec;
use crate::support::redis::Redis;
use crate::support::signal::{self, join_token};

/// A node of cluster `proc-test` on `redis`: heartbeats every second, main given up on after
/// 1 s of discovery, a 3 s drain budget.
fn member(spec: NodeSpec, redis: &Redis) -> NodeSpec {
    spec.redis(redis.url())
        .cluster_id("proc-test")
        .heartbeat_secs(1)
        .discovery_timeout_secs(1)
        .drain_timeout_secs(3)
}

fn redis_conn(r: &Redis) -> RedisConn {
    let target = RedisTarget {
        address: format!("127.0.0.1:{}", r.port),
        username: None,
        db: 0,
        tls: false,
    };
    RedisConn::open(&target, None).unwrap()
}

async fn node_state(main: &Daemon, name: &str) -> Option<String> {
    let (_, v) = main.get_json("/api/cluster/nodes").await;
    v.as_array()?
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["state"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_form_a_cluster_place_joins_and_detect_failures() {
    let redis = Redis::start();
    let main_dir = member(NodeSpec::main("main"), &redis).write();
    let mut main = Daemon::spawn_ready(&main_dir, &[]).await;
    let main_url = main.api.clone();
    let subs_dirs: Vec<_> = ["node-1", "node-2"]
        .iter()
        .map(|n| member(NodeSpec::sub(n), &redis).main_url(&main_url).write())
        .collect();
    let t0 = Instant::now();
    let mut subs: Vec<Daemon> = subs_dirs.iter().map(|d| Daemon::spawn(d, &[])).collect();
    let took = wait_until(Duration::from_secs(20), || async {
        node_state(&main, "node-1").await.as_deref() == Some("alive")
            && node_state(&main, "node-2").await.as_deref() == Some("alive")
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "cluster did not form:\n{}\n{}",
            main.log_text(),
            subs[0].log_text()
        )
    });
    figure(
        "sub process spawn → registered on main (ms, includes the real LiveKit's start)",
        took.as_millis(),
    );
    let ready_at = subs[0]
        .wait_note("READY=1", Duration::from_secs(5))
        .await
        .unwrap();
    let reg_at = subs[0]
        .wait_note("registered with main", Duration::from_secs(5))
        .await;
    assert!(
        reg_at.is_some(),
        "sub STATUS never said registered: {:?}",
        subs[0].notes
    );
    figure(
        "sub READY → STATUS registered (ms)",
        reg_at
            .unwrap()
            .saturating_duration_since(ready_at)
            .as_millis(),
    );
    let _ = t0;
    assert!(
        main.wait_note("main of proc-test: 3 alive", Duration::from_secs(5))
            .await
            .is_some(),
        "{:?}",
        main.notes
    );

    // joins: placed on a live node, the token verifies, the URL is that node's LiveKit
    let verifier = TokenVerifier::with_api_key(API_KEY, API_SECRET);
    let mut seen = std::collections::BTreeSet::new();
    let mut named = std::collections::BTreeMap::new();
    for i in 0..12 {
        let room = format!("class-{i}");
        let (code, v) = join(
            &main_url,
            &room,
            Some(APP_TOKEN),
            json!({"identity": "t", "role": "teacher"}),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let (_, again) = join(
            &main_url,
            &room,
            Some(APP_TOKEN),
            json!({"identity": "s", "role": "student"}),
        )
        .await;
        assert_eq!(v["node"], again["node"]);
        let claims = verifier.verify(v["token"].as_str().unwrap()).unwrap();
        assert_eq!(claims.video.room, room);
        let port = match v["node"].as_str().unwrap() {
            "main" => main_dir.livekit_port,
            "node-1" => subs_dirs[0].livekit_port,
            _ => subs_dirs[1].livekit_port,
        };
        assert_eq!(v["livekit_url"], format!("ws://127.0.0.1:{port}"));
        seen.insert(v["node"].as_str().unwrap().to_owned());
        named.insert(room, v["node"].as_str().unwrap().to_owned());
    }
    assert!(seen.len() >= 2, "{seen:?}");
    // main made its choice LiveKit's: each room is mapped to the named node's LiveKit id in
    // LiveKit's own room_node_map, and main's room list says the same
    let mut ids = std::collections::BTreeMap::new();
    for d in std::iter::once(&main).chain(subs.iter()) {
        let (_, n) = d.get_json("/api/node").await;
        let id = n["livekit"]["node_id"]
            .as_str()
            .expect("node_id in /api/node");
        ids.insert(n["name"].as_str().unwrap().to_owned(), id.to_owned());
    }
    let conn = redis_conn(&redis);
    for (room, node) in &named {
        let host: Option<String> = conn
            .query(
                redis::cmd("HGET").arg("room_node_map").arg(room),
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        assert_eq!(host.as_ref(), ids.get(node), "{room}: main named {node}");
    }
    let (code, rooms) = main.get_json("/api/livekit/rooms").await;
    assert_eq!(code, 200);
    for (room, node) in &named {
        let listed = rooms
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == *room);
        assert_eq!(listed.map(|r| &r["node"]), Some(&json!(node)), "{rooms}");
    }
    let (code, _) = subs[0].get_json("/api/livekit/rooms").await;
    assert_eq!(code, 200, "a sub keeps its node-level room list");

    // SIGKILL node-1 (its LiveKit dies with it): suspect, then dead
    subs[0].signal(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let dead = wait_until(Duration::from_secs(10), || async {
        node_state(&main, "node-1").await.as_deref() == Some("dead")
    })
    .await
    .expect("killed node never declared dead");
    figure(
        "killed sub process declared dead after (ms, heartbeat 1 s, dead_after_missed 3)",
        dead.as_millis(),
    );
    assert!(killed.elapsed() < Duration::from_secs(6));

    // SIGTERM node-2: it leaves before LiveKit drains, main sees `left` at once
    subs[1].signal(nix::sys::signal::Signal::SIGTERM);
    let left = wait_until(Duration::from_secs(5), || async {
        node_state(&main, "node-2").await.as_deref() == Some("left")
    })
    .await
    .expect("stopped sub never left");
    figure("SIGTERM of a sub → left on main (ms)", left.as_millis());
    assert_eq!(
        subs[1].wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        subs[1].log_text()
    );
    assert!(
        subs[1].log_text().contains("left the cluster"),
        "{}",
        subs[1].log_text()
    );
    // every new room now goes to main
    let (_, v) = join(
        &main_url,
        "after-all",
        Some(APP_TOKEN),
        json!({"identity": "x", "role": "student"}),
    )
    .await;
    assert_eq!(v["node"], "main");
    main.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        main.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        main.log_text()
    );
}

#[tokio::test]
async fn sub_without_main_keeps_livekit_and_says_main_node_not_found() {
    let redis = Redis::start();
    let dir = member(NodeSpec::sub("node-1"), &redis).write();
    let mut d = Daemon::spawn_ready(&dir, &[]).await;
    assert!(
        d.wait_note(
            "Main Node not found (set MAIN_NODE_URL",
            Duration::from_secs(5)
        )
        .await
        .is_some(),
        "{:?}\n{}",
        d.notes,
        d.log_text()
    );
    assert_eq!(d.livekit_state().await, "ready");
}

/// The names `/api/livekit/rooms` of a node lists.
async fn listed_rooms(d: &Daemon) -> Vec<String> {
    let (code, v) = d.get_json("/api/livekit/rooms").await;
    assert_eq!(code, 200, "{v}");
    v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

/// With Redis, LiveKit's ListRooms is cluster-wide; a node's `/api/livekit/rooms` holds only
/// the rooms LiveKit's `room_node_map` maps to its own LiveKit node id. Two subs (no main) on
/// one Redis; a real participant creates a room through node-1's LiveKit, which places it on
/// either node by its own selector: the owner lists it, the other does not, although its
/// LiveKit does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lists_only_the_rooms_livekit_maps_to_it() {
    let redis = Redis::start();
    let dirs: Vec<_> = ["node-1", "node-2"]
        .iter()
        .map(|n| member(NodeSpec::sub(n), &redis).write())
        .collect();
    let mut nodes = Vec::new();
    for d in &dirs {
        nodes.push(Daemon::spawn_ready(d, &[]).await);
    }
    let host = format!("http://127.0.0.1:{}", dirs[0].livekit_port);
    let token = join_token(API_KEY, API_SECRET, "geometry", "teacher");
    let _teacher = signal::join(&host, &token).await.unwrap();
    let owner: String = redis_conn(&redis)
        .query(
            redis::cmd("HGET").arg("room_node_map").arg("geometry"),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    let mut owners = 0;
    for (d, dir) in nodes.iter().zip(&dirs) {
        let (_, n) = d.get_json("/api/node").await;
        let mine = n["livekit"]["node_id"].as_str() == Some(owner.as_str());
        let listed = listed_rooms(d).await;
        assert_eq!(
            listed.contains(&"geometry".to_owned()),
            mine,
            "{}: LiveKit node {} (room on {owner}) lists {listed:?}",
            dir.instance,
            n["livekit"]["node_id"]
        );
        owners += usize::from(mine);
        // its LiveKit lists the room either way (cluster-wide ListRooms)
        let lk = format!("http://127.0.0.1:{}", dir.livekit_port);
        let client =
            livekit_api::services::room::RoomClient::with_api_key(&lk, API_KEY, API_SECRET);
        let all = client.list_rooms(Vec::new()).await.unwrap();
        assert!(all.iter().any(|r| r.name == "geometry"), "{all:?}");
    }
    assert_eq!(
        owners, 1,
        "room_node_map names {owner}, which is neither node"
    );
}

#[tokio::test]
async fn daemon_on_another_clusters_redis_exits_78() {
    let r = Redis::start();
    let conn = redis_conn(&r);
    let set = redis::cmd("SET")
        .arg(CLUSTER_ID_KEY)
        .arg("someone-else")
        .clone();
    let _: () = conn.query(&set, Duration::from_secs(3)).await.unwrap();
    let node = NodeSpec::main("main")
        .redis(r.url())
        .cluster_id("ours")
        .write();
    let mut d = Daemon::spawn(&node, &[]);
    let code = d.wait_exit(Duration::from_secs(20));
    let log = d.log_text();
    assert_eq!(code, Some(78), "log:\n{log}");
    assert!(
        log.contains("belongs to cluster \\\"someone-else\\\"")
            || log.contains("belongs to cluster \"someone-else\""),
        "log:\n{log}"
    );
    // LiveKit was never started and the marker is untouched
    assert!(!log.contains("LiveKit started"), "log:\n{log}");
    let get = redis::cmd("GET").arg(CLUSTER_ID_KEY).clone();
    let v: String = conn.query(&get, Duration::from_secs(3)).await.unwrap();
    assert_eq!(v, "someone-else");
}
