//! Joins: placement consistent across calls, spread over nodes, sticky for live rooms, the load
//! limit, and LiveKit tokens decoded and checked with livekit-api's TokenVerifier.

use std::collections::BTreeMap;
use std::time::Duration;

use airclass_node::cluster::placement;
use livekit_api::access_token::TokenVerifier;
use serde_json::json;

use crate::roles::*;

const HB: Duration = Duration::from_secs(1);

async fn cluster_of_three() -> (MainServer, Sub, Sub) {
    let m = MainServer::start(HB, None).await;
    let a = Sub::of(&m, "node-1", stats(0.1, &[]));
    let b = Sub::of(&m, "node-2", stats(0.1, &[]));
    wait_until(Duration::from_secs(5), || async {
        a.handle.registered() && b.handle.registered()
    })
    .await
    .unwrap();
    (m, a, b)
}

async fn place(m: &MainServer, room: &str, role: &str) -> serde_json::Value {
    let (code, v) = join(
        &m.url,
        room,
        Some(APP_TOKEN),
        json!({"identity": format!("u-{room}"), "name": "U", "role": role}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v
}

#[tokio::test]
async fn placement_is_consistent_spread_and_matches_rendezvous() {
    let (m, a, b) = cluster_of_three().await;
    let nodes = ["main", "node-1", "node-2"];
    let mut per_node = BTreeMap::new();
    let t0 = airclass_node::clock::now();
    for i in 0..60 {
        let room = format!("room-{i}");
        let first = place(&m, &room, "student").await;
        let again = place(&m, &room, "teacher").await;
        assert_eq!(first["node"], again["node"], "{room} moved between calls");
        let cands: Vec<_> = nodes
            .iter()
            .map(|n| placement::Candidate::alive(*n, 0.1))
            .collect();
        let want = placement::choose(&room, &cands, 0.7).unwrap().node;
        assert_eq!(first["node"], want.as_str(), "{room}");
        let lk = first["livekit_url"].as_str().unwrap();
        assert_eq!(
            lk,
            if want == "main" {
                "ws://127.0.0.1:7880"
            } else {
                "ws://127.0.0.1:7890"
            }
        );
        *per_node.entry(want).or_insert(0) += 1;
    }
    figure(
        "join round trip, sequential (µs/join)",
        t0.elapsed().as_micros() / 120,
    );
    println!("spread over 60 rooms: {per_node:?}");
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|&c| c >= 8), "{per_node:?}");
    // golden vectors of docs/protocol.md §6
    assert_eq!(place(&m, "physics-101", "student").await["node"], "node-2");
    assert_eq!(place(&m, "maths", "student").await["node"], "node-1");
    a.kill();
    b.kill();
}

#[tokio::test]
async fn live_rooms_stay_put_and_overloaded_nodes_get_no_new_rooms() {
    let (m, a, b) = cluster_of_three().await;
    // physics-101 hashes to node-2, but node-1 reports it live: it stays on node-1
    a.stats.send(stats(0.95, &["physics-101"])).unwrap();
    wait_until(Duration::from_secs(3), || async {
        m.main
            .nodes()
            .iter()
            .any(|n| n.name == "node-1" && n.stats.room_names == ["physics-101"])
    })
    .await
    .unwrap();
    assert_eq!(place(&m, "physics-101", "teacher").await["node"], "node-1");
    // node-1 is over the limit: no new room goes there
    for i in 0..30 {
        assert_ne!(
            place(&m, &format!("new-{i}"), "student").await["node"],
            "node-1"
        );
    }
    // a room placed moments ago stays put even before any heartbeat reports it
    let first = place(&m, "fresh-room", "student").await["node"].clone();
    b.stats.send(stats(0.95, &[])).unwrap();
    m.stats.send(stats(0.95, &[])).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(place(&m, "fresh-room", "student").await["node"], first);
    // every node over the limit: fall back to all live nodes (still answers)
    place(&m, "anything", "student").await;
    // node-1 leaves: its room moves, to the node the hash picks
    assert!(a.handle.leave(Duration::from_secs(2)).await);
    assert_eq!(place(&m, "physics-101", "teacher").await["node"], "node-2");
    b.kill();
}

#[tokio::test]
async fn tokens_verify_and_carry_the_role_grants() {
    let (m, a, b) = cluster_of_three().await;
    let verifier = TokenVerifier::with_api_key(API_KEY, API_SECRET);
    let (code, t) = join(
        &m.url,
        "physics-101",
        Some(APP_TOKEN),
        json!({"identity": "alice", "name": "Alice", "role": "teacher"}),
    )
    .await;
    assert_eq!(code, 200);
    let claims = verifier.verify(t["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.name, "Alice");
    assert_eq!(claims.iss, API_KEY);
    assert!(claims.video.room_join);
    assert_eq!(claims.video.room, "physics-101");
    assert!(
        claims.video.can_publish()
            && claims.video.can_subscribe()
            && claims.video.can_publish_data()
    );
    assert!(!claims.video.room_admin && !claims.video.room_create);
    assert_eq!(claims.exp as u64, t["expires_at"].as_u64().unwrap());
    let ttl = t["expires_at"].as_u64().unwrap() - airclass_node::clock::unix_now();
    assert!((6 * 3600 - 5..=6 * 3600).contains(&ttl), "{ttl}");

    let (_, s) = join(
        &m.url,
        "physics-101",
        Some(APP_TOKEN),
        json!({"identity": "bob", "role": "student"}),
    )
    .await;
    let claims = verifier.verify(s["token"].as_str().unwrap()).unwrap();
    assert_eq!((claims.sub.as_str(), claims.name.as_str()), ("bob", ""));
    assert!(!claims.video.can_publish());
    assert!(claims.video.can_subscribe() && claims.video.can_publish_data());
    // signed with the cluster's key: another secret does not verify it
    assert!(
        TokenVerifier::with_api_key(API_KEY, "another-secret-0123456789abcdefghijkl")
            .verify(s["token"].as_str().unwrap())
            .is_err()
    );
    a.kill();
    b.kill();
}
