//! A main and subs talking over loopback HTTP: registration, heartbeat statistics, expiry,
//! graceful leave, main restart, wrong secret, duplicate names.

use std::time::Duration;

use airclass_node::clock::Instant;

use airclass_node::cluster::auth::ClusterSecret;
use airclass_node::cluster::protocol::NodeView;

use crate::roles::*;

const HB: Duration = Duration::from_secs(1);

async fn nodes(m: &MainServer) -> Vec<NodeView> {
    let (code, v) = m.get("/api/cluster/nodes").await;
    assert_eq!(code, 200);
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn sub_registers_and_its_heartbeat_stats_show_in_nodes() {
    let m = MainServer::start(HB, None).await;
    let t0 = Instant::now();
    let sub = Sub::of(&m, "node-1", stats(0.2, &["physics-101"]));
    let took = wait_until(Duration::from_secs(5), || async {
        m.state_of("node-1").as_deref() == Some("alive")
    })
    .await
    .expect("node-1 never registered");
    figure("in-process sub registration (ms)", took.as_millis());
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(
        sub.status_text().contains("registered with main main"),
        "{}",
        sub.status_text()
    );

    // new statistics reach main with the next heartbeat
    sub.stats
        .send(stats(0.55, &["physics-101", "maths"]))
        .unwrap();
    wait_until(Duration::from_secs(3), || async {
        nodes(&m)
            .await
            .iter()
            .any(|n| n.name == "node-1" && n.stats.rooms == 2)
    })
    .await
    .expect("heartbeat stats never arrived");
    let list = nodes(&m).await;
    let n1 = list.iter().find(|n| n.name == "node-1").unwrap();
    assert_eq!(n1.stats.sysload, 0.55);
    assert_eq!(n1.stats.room_names, vec!["physics-101", "maths"]);
    assert_eq!(n1.stats.participants, 6);
    assert!(n1.last_seen_ms < 1500);
    // main lists itself like any other node
    assert!(list.iter().any(|n| n.name == "main"));
    let (_, st) = m.get("/api/cluster/status").await;
    assert_eq!(st["nodes_alive"], 2);
    assert_eq!(st["cluster_id"], CLUSTER);
    assert!(!st.to_string().contains(SECRET));
    // cluster-wide rooms: node-1's API does not answer, so they come from its heartbeats
    let (code, rooms) = m.get("/api/livekit/rooms").await;
    assert_eq!(code, 200);
    let names: Vec<_> = rooms
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["node"].as_str().unwrap()))
        .collect();
    assert_eq!(names, vec![("maths", "node-1"), ("physics-101", "node-1")]);
    sub.kill();
}

#[tokio::test]
async fn killed_sub_goes_suspect_then_dead_and_leave_is_immediate() {
    let m = MainServer::start(HB, None).await;
    let a = Sub::of(&m, "node-1", stats(0.1, &[]));
    let b = Sub::of(&m, "node-2", stats(0.1, &[]));
    for n in ["node-1", "node-2"] {
        wait_until(Duration::from_secs(5), || async {
            m.state_of(n).as_deref() == Some("alive")
        })
        .await
        .unwrap();
    }
    // crash node-1 right after a heartbeat
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.kill();
    let killed = Instant::now();
    wait_until(Duration::from_secs(5), || async {
        m.state_of("node-1").as_deref() == Some("suspect")
    })
    .await
    .expect("never suspect");
    let suspect = killed.elapsed();
    wait_until(Duration::from_secs(8), || async {
        m.state_of("node-1").as_deref() == Some("dead")
    })
    .await
    .expect("never dead");
    let dead = killed.elapsed();
    figure(
        "killed node suspect after (ms, heartbeat 1 s)",
        suspect.as_millis(),
    );
    figure(
        "killed node dead after (ms, heartbeat 1 s, dead_after_missed 3)",
        dead.as_millis(),
    );
    assert!(suspect <= Duration::from_millis(2000), "{suspect:?}");
    assert!(
        dead >= Duration::from_millis(2400) && dead <= Duration::from_millis(4200),
        "{dead:?}"
    );
    // node-2 stays alive throughout
    assert_eq!(m.state_of("node-2").as_deref(), Some("alive"));

    // graceful leave: gone at once
    let t = Instant::now();
    assert!(b.handle.leave(Duration::from_secs(2)).await);
    figure("graceful leave round trip (ms)", t.elapsed().as_millis());
    assert_eq!(m.state_of("node-2").as_deref(), Some("left"));
    let (_, st) = m.get("/api/cluster/status").await;
    assert_eq!(st["nodes_left"], 1);
    assert_eq!(st["nodes_dead"], 1);
}

#[tokio::test]
async fn main_restart_sub_reregisters_within_one_heartbeat() {
    let m = MainServer::start(HB, None).await;
    let sub = Sub::of(&m, "node-1", stats(0.1, &["room-a"]));
    wait_until(Duration::from_secs(5), || async {
        m.state_of("node-1").as_deref() == Some("alive")
    })
    .await
    .unwrap();
    let port = m.kill().await;
    let m2 = MainServer::start_on(port, HB, None).await;
    let restarted = Instant::now();
    assert_eq!(m2.state_of("node-1"), None, "a restarted main knows nobody");
    let took = wait_until(Duration::from_secs(5), || async {
        m2.state_of("node-1").as_deref() == Some("alive")
    })
    .await
    .expect("sub never re-registered");
    figure(
        "re-registration after main restart (ms, heartbeat 1 s)",
        took.as_millis(),
    );
    assert!(
        restarted.elapsed() <= HB + Duration::from_millis(700),
        "{:?}",
        restarted.elapsed()
    );
    // its room stays known (sticky placement keeps working)
    let row = m2
        .main
        .nodes()
        .into_iter()
        .find(|n| n.name == "node-1")
        .unwrap();
    assert_eq!(row.stats.room_names, vec!["room-a"]);
    sub.kill();
}

#[tokio::test]
async fn wrong_secret_is_refused_and_the_sub_says_why() {
    let m = MainServer::start(HB, None).await;
    let mut s = sub_settings("node-1", Some(m.url.clone()), HB);
    s.secret = ClusterSecret::from_text("another-secret-0123456789abcdefghijkl").unwrap();
    let sub = Sub::start(s, stats(0.1, &[]), None);
    wait_until(Duration::from_secs(5), || async {
        sub.status_text()
            .contains("rejected by main: bad_signature")
    })
    .await
    .unwrap_or_else(|| panic!("status: {}", sub.status_text()));
    assert_eq!(m.state_of("node-1"), None);
    assert!(!sub.handle.registered());
    assert!(
        m.main
            .refused_counts()
            .get("bad_signature")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    sub.kill();
}

#[tokio::test]
async fn duplicate_name_with_another_identity_is_refused_until_the_holder_dies() {
    let m = MainServer::start(HB, None).await;
    let first = Sub::of(&m, "node-1", stats(0.1, &[]));
    wait_until(Duration::from_secs(5), || async {
        first.handle.registered()
    })
    .await
    .unwrap();
    let second = Sub::of(&m, "node-1", stats(0.1, &[]));
    wait_until(Duration::from_secs(5), || async {
        second.status_text().contains("name_taken")
    })
    .await
    .unwrap_or_else(|| panic!("status: {}", second.status_text()));
    assert!(!second.handle.registered());
    // the holder crashes; once it is dead the newcomer (retrying every heartbeat) takes over
    first.kill();
    let took = wait_until(Duration::from_secs(8), || async {
        second.handle.registered()
    })
    .await
    .expect("newcomer never took over");
    figure(
        "name takeover after the holder crashed (ms)",
        took.as_millis(),
    );
    assert_eq!(m.state_of("node-1").as_deref(), Some("alive"));
    second.kill();
}
