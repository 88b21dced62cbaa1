//! Redis under load and after a restart, with a real `redis-server`: joins for new rooms share
//! one connection (counted by Redis itself, `INFO stats` total_connections_received), and a
//! Redis restarted empty gets the cluster-id marker back; a foreign marker found mid-run is
//! reported (degraded) while LiveKit keeps running.

use std::process::Command;
use std::time::Duration;

use airclass_node::clock::Instant;
use airclass_node::cluster::store::{Store, CLUSTER_ID_KEY};
use airclass_node::daemon::RunOptions;
use serde_json::json;

use crate::roles::*;
use crate::support::inproc::InProcess;
use crate::support::node::NodeSpec;
use crate::support::redis::Redis;

/// `redis-cli` against the test's Redis (its own connection counts once per call).
fn cli(r: &Redis, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &r.port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run redis-cli ({e}): apt-get install -y redis-tools (scripts/test.sh)")
        });
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn connections_received(r: &Redis) -> u64 {
    cli(r, &["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO stats has total_connections_received")
}

/// 400 joins for rooms main has never seen (each reads LiveKit's `room_node_map`), 8 at a time:
/// Redis sees one connection from main, not one per join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_room_joins_share_one_redis_connection() {
    let redis = Redis::start();
    let m = MainServer::start(Duration::from_secs(5), Some(Store::new(redis_conn(&redis)))).await;
    let before = connections_received(&redis);
    let n = 400;
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let url = m.url.clone();
            tokio::spawn(async move {
                for i in 0..n / 8 {
                    let body = json!({"identity": format!("u{w}-{i}"), "role": "student"});
                    let (code, v) =
                        join(&url, &format!("new-{w}-{i}"), Some(APP_TOKEN), body).await;
                    assert_eq!(code, 200, "{v}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let took = t0.elapsed();
    // minus the INFO call's own connection
    let opened = connections_received(&redis) - before - 1;
    figure(
        "Redis connections opened by main for new-room joins",
        format!("{opened} for {n} joins ({took:?})"),
    );
    assert!(opened <= 1, "{opened} Redis connections for {n} joins");
}

/// A main daemon (stand-in LiveKit) on a real Redis: Redis is killed and restarted empty, and
/// the `airclass:cluster_id` marker comes back without a restart of the daemon. Then another
/// cluster's id appears in the marker: the node reports it (STATUS=, degraded) and keeps
/// LiveKit running; once the marker is gone again, it is claimed again and the report clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_claimed_again_and_a_foreign_marker_is_reported() {
    let mut redis = Redis::start();
    let dir = NodeSpec::main("main")
        .redis(redis.url())
        .cluster_id("ours")
        .write();
    let node = InProcess::start(&dir, RunOptions::default());
    node.wait_ready(Duration::from_secs(20)).await;
    assert_eq!(cli(&redis, &["GET", CLUSTER_ID_KEY]), "ours");
    let lk_pid = || async {
        let v: serde_json::Value = http()
            .get(format!("{}/api/node", dir.api_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["livekit"]["pid"].as_u64()
    };
    let pid = lk_pid().await.expect("LiveKit runs");

    redis.stop();
    redis.resume();
    let back = Instant::now();
    assert_eq!(cli(&redis, &["GET", CLUSTER_ID_KEY]), "", "restarted empty");
    let reclaimed = wait_until(Duration::from_secs(15), || async {
        cli(&redis, &["GET", CLUSTER_ID_KEY]) == "ours"
    })
    .await;
    figure(
        "cluster-id marker re-claimed after Redis restarted empty",
        format!("{:?}", reclaimed.map(|_| back.elapsed())),
    );
    assert!(
        reclaimed.is_some(),
        "the marker never came back; statuses {:?}",
        node.statuses()
    );

    cli(&redis, &["SET", CLUSTER_ID_KEY, "theirs"]);
    let t = Instant::now();
    let reported = wait_until(Duration::from_secs(15), || async {
        node.status().contains("belongs to cluster \"theirs\"")
    })
    .await;
    figure(
        "foreign cluster-id marker reported",
        format!("{:?}: {:?}", reported.map(|_| t.elapsed()), node.status()),
    );
    assert!(reported.is_some(), "not reported: {:?}", node.statuses());
    assert!(node.status().contains("degraded"), "{}", node.status());
    assert_eq!(
        cli(&redis, &["GET", CLUSTER_ID_KEY]),
        "theirs",
        "never overwritten"
    );
    assert_eq!(
        lk_pid().await,
        Some(pid),
        "LiveKit keeps running, same process"
    );

    cli(&redis, &["DEL", CLUSTER_ID_KEY]);
    let cleared = wait_until(Duration::from_secs(15), || async {
        cli(&redis, &["GET", CLUSTER_ID_KEY]) == "ours" && !node.status().contains("theirs")
    })
    .await;
    assert!(cleared.is_some(), "{:?}", node.statuses());
    assert_eq!(lk_pid().await, Some(pid));
    let _ = node.stop().await;
}
