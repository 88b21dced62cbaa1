//! The status page in a real browser: Debian's headless Chromium (driven over the W3C WebDriver
//! protocol through chromedriver) against a running three-node cluster of real daemons with the
//! real livekit-server and a real Redis. Rooms are created the way classes are, through main's
//! join endpoint (main places each one and has LiveKit create it on that node). The test waits
//! for the node table, sees every room exactly once under the node LiveKit holds it on (and the
//! same counts in the nodes' rows and in main's per-node room gauges), kills a node, sees that
//! node's row turn suspect and dead, and saves screenshots under target/ (status-page.png
//! before the kill, status-page-dead.png after).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "../support/mod.rs"]
mod support;

mod webdriver;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airclass_node::clock;
use serde_json::{json, Value};
use support::daemon::Daemon;
use support::node::{NodeDir, NodeSpec, APP_TOKEN};
use support::redis::Redis;
use webdriver::{Chrome, Session};

/// Each node row: [node, state, rooms].
const ROWS_JS: &str = "return Array.from(document.querySelectorAll('#nodes tbody tr')).map(r => [r.dataset.node, r.dataset.state, r.cells[6].textContent]);";
/// Each room row: [room, node].
const ROOMS_JS: &str = "return Array.from(document.querySelectorAll('#rooms tbody tr')).map(r => [r.dataset.room, r.cells[1].textContent]);";
const ROOMS: &[&str] = &["physics-101", "maths-7b", "art-3", "music-2a", "history-9"];

/// A node of cluster `browser` on the real server: heartbeat 1 s, sysload pinned at 0.2.
fn node(spec: NodeSpec, redis: &Redis, livekit: &Path) -> NodeDir {
    spec.livekit(livekit)
        .health_interval_ms(500)
        .redis(redis.url())
        .cluster_id("browser")
        .heartbeat_secs(1)
        .instance_toml("[node]\nsysload_override = 0.2\n")
        .write()
}

/// Poll `js` in the page until `done` accepts its value; the value, or a panic naming `what`.
async fn wait_page(
    s: &Session,
    js: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let t0 = clock::now();
    let mut last = Value::Null;
    while t0.elapsed() < timeout {
        last = s.execute(js).await;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the page never showed {what}; last: {last}");
}

fn state_of(rows: &Value, node: &str) -> Option<String> {
    rows.as_array()?
        .iter()
        .find(|r| r[0] == node)
        .and_then(|r| r[1].as_str().map(str::to_owned))
}

/// Join `room` through main as a teacher would; the node main answered.
async fn join(main: &Daemon, room: &str) -> String {
    let r = support::http()
        .post(format!("{}/api/rooms/{room}/join", main.api))
        .bearer_auth(APP_TOKEN)
        .json(&json!({"identity": format!("teacher-{room}"), "role": "teacher"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "join {room}");
    let v: Value = r.json().await.unwrap();
    v["node"].as_str().unwrap().to_owned()
}

/// Rooms per node as the page's room table shows them: each room must appear exactly once.
fn rooms_by_node(rows: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for r in rows.as_array().into_iter().flatten() {
        let (room, node) = (r[0].as_str().unwrap(), r[1].as_str().unwrap());
        let twice = out.insert(room.to_owned(), node.to_owned());
        assert!(twice.is_none(), "room {room} shown twice: {rows}");
    }
    out
}

/// `airclass_cluster_node_rooms{node="NODE"}` on main's `/metrics`.
async fn room_gauge(main: &Daemon, node: &str) -> Option<f64> {
    let text = support::http()
        .get(format!("{}/metrics", main.api))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let prefix = format!("airclass_cluster_node_rooms{{node=\"{node}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Wait until the page lists every room once, each under the node main placed it on, and the
/// nodes' rows and main's gauges count the same.
async fn check_rooms(s: &Session, main: &Daemon, placed: &BTreeMap<String, String>) {
    let want = placed.clone();
    let rows = wait_page(
        s,
        ROOMS_JS,
        "every room under its node",
        Duration::from_secs(30),
        |v| v.as_array().is_some_and(|a| a.len() == want.len()) && rooms_by_node(v) == want,
    )
    .await;
    println!("rooms on the page: {rows}");
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for n in placed.values() {
        *per_node.entry(n.as_str()).or_default() += 1;
    }
    let count = |n: &str| per_node.get(n).copied().unwrap_or(0);
    let nodes = wait_page(
        s,
        ROWS_JS,
        "each node's room count",
        Duration::from_secs(30),
        |v| {
            ["main", "node-1", "node-2"].iter().all(|n| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r[0] == *n && r[2].as_str() == Some(count(n).to_string().as_str()))
            })
        },
    )
    .await;
    println!("node rows: {nodes}");
    for n in ["main", "node-1", "node-2"] {
        assert_eq!(
            room_gauge(main, n).await,
            Some(count(n) as f64),
            "gauge of {n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_the_cluster_and_a_killed_node() {
    airclass_node::tls::install_crypto_provider();
    let chrome = Chrome::start();
    let livekit = support::real_livekit::real_livekit();
    let redis = Redis::start();
    let main_dir = node(NodeSpec::main("main"), &redis, &livekit);
    let main = Daemon::spawn_ready(&main_dir, &[]).await;
    let sub_dirs: Vec<NodeDir> = ["node-1", "node-2"]
        .iter()
        .map(|n| node(NodeSpec::sub(n).main_url(&main.api), &redis, &livekit))
        .collect();
    let mut subs = Vec::new();
    for d in &sub_dirs {
        subs.push(Daemon::spawn_ready(d, &[]).await);
    }

    let s = chrome.session().await;
    s.goto(&format!("{}/status", main.api)).await;
    let rows = wait_page(
        &s,
        ROWS_JS,
        "three alive nodes",
        Duration::from_secs(30),
        |v| {
            ["main", "node-1", "node-2"]
                .iter()
                .all(|n| state_of(v, n).as_deref() == Some("alive"))
        },
    )
    .await;
    println!("rows before: {rows}");
    // each node reports its LiveKit node id with its first heartbeats; main needs it to create
    // a room on the node it chose
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut placed = BTreeMap::new();
    for room in ROOMS {
        placed.insert(room.to_string(), join(&main, room).await);
    }
    println!("placed by main: {placed:?}");
    check_rooms(&s, &main, &placed).await;
    let verdict = text_of(&s, "verdict").await;
    assert!(verdict.starts_with("healthy: 3 alive"), "{verdict}");
    let shot = target("status-page.png");
    s.screenshot(&shot).await;

    // kill node-2 (its LiveKit dies with it): the row turns suspect, then dead
    subs[1].kill_all();
    let killed = clock::now();
    let seen = states_until_dead(&s, "node-2").await;
    assert_eq!(
        seen.last().map(String::as_str),
        Some("dead"),
        "node-2's row went {seen:?}"
    );
    support::figure(
        "status page: node-2 SIGKILL → row shows dead (ms, heartbeat 1 s)",
        killed.elapsed().as_millis(),
    );
    let verdict = text_of(&s, "verdict").await;
    assert!(verdict.contains("node-2 dead"), "{verdict}");
    let events = text_of(&s, "events").await;
    assert!(events.contains("node-2: suspect → dead"), "{events}");
    let shot_dead = target("status-page-dead.png");
    s.screenshot(&shot_dead).await;
    println!(
        "states of node-2's row: {seen:?}; screenshots {} and {}",
        shot.display(),
        shot_dead.display()
    );
    s.close().await;
}

/// The text of the page's element `id`.
async fn text_of(s: &Session, id: &str) -> String {
    let js = format!("return document.getElementById('{id}').textContent;");
    s.execute(&js).await.as_str().unwrap_or_default().to_owned()
}

/// The states `node`'s row shows, each change once, until `dead` (or 20 s).
async fn states_until_dead(s: &Session, node: &str) -> Vec<String> {
    let t0 = clock::now();
    let mut seen = vec!["alive".to_string()];
    while t0.elapsed() < Duration::from_secs(20) {
        let st = state_of(&s.execute(ROWS_JS).await, node).unwrap_or_default();
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        if st == "dead" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

fn target(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(file)
}
