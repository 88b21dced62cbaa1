//! The status page in a real browser: Debian's headless Chromium (driven over the W3C WebDriver
//! protocol through chromedriver) against a running three-node cluster of real daemons with the
//! real livekit-server and a real Redis. It waits for the node table, sees a room LiveKit holds,
//! kills a node, sees that node's row turn suspect and dead, and saves screenshots under
//! target/ (status-page.png before the kill, status-page-dead.png after).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../integration/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../common/real_livekit.rs"]
mod real_livekit;

mod webdriver;

use std::path::Path;
use std::time::{Duration, Instant};

use harness::{Daemon, NodeDir, Redis};
use serde_json::Value;
use webdriver::{Chrome, Session};

const ROWS_JS: &str = "return Array.from(document.querySelectorAll('#nodes tbody tr')).map(r => [r.dataset.node, r.dataset.state]);";
const ROOMS_JS: &str =
    "return Array.from(document.querySelectorAll('#rooms tbody tr')).map(r => r.dataset.room);";

fn cluster_toml(redis: &Redis, mode: &str, main_url: Option<&str>, livekit: &Path) -> String {
    let main = main_url
        .map(|u| format!("main_url = \"{u}\"\n"))
        .unwrap_or_default();
    format!(
        "[node]\nmode = \"{mode}\"\nsysload_override = 0.2\n[livekit]\nbinary = \"{}\"\nhealth_interval_ms = 500\n[redis]\nurl = \"{}\"\n[cluster]\nid = \"browser\"\nheartbeat_secs = 1\nmdns = false\n{main}",
        livekit.display(),
        redis.url()
    )
}

/// Poll `js` in the page until `done` accepts its value; the value, or a panic naming `what`.
async fn wait_page(
    s: &Session,
    js: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let t0 = Instant::now();
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

async fn create_room(port: u16, name: &str) {
    let client = livekit_api::services::room::RoomClient::with_api_key(
        &format!("http://127.0.0.1:{port}"),
        "APItestkey1234",
        "testsecret-0123456789abcdefghijklmnop",
    );
    let opts = livekit_api::services::room::CreateRoomOptions {
        empty_timeout: 600,
        ..Default::default()
    };
    client
        .create_room(name, opts)
        .await
        .expect("CreateRoom on the real LiveKit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_the_cluster_and_a_killed_node() {
    airclass_node::tls::install_crypto_provider();
    let chrome = Chrome::start();
    let livekit = real_livekit::real_livekit();
    let redis = Redis::start().expect("redis-server is missing: apt-get install redis-server");
    let main_dir = NodeDir::with_mode(
        "main",
        "main",
        &cluster_toml(&redis, "main", None, &livekit),
    );
    let main = Daemon::spawn_ready(&main_dir, &[]).await;
    let sub_dirs: Vec<NodeDir> = ["node-1", "node-2"]
        .iter()
        .map(|n| {
            NodeDir::with_mode(
                n,
                "sub",
                &cluster_toml(&redis, "sub", Some(&main.api), &livekit),
            )
        })
        .collect();
    let mut subs = Vec::new();
    for d in &sub_dirs {
        subs.push(Daemon::spawn_ready(d, &[]).await);
    }
    create_room(sub_dirs[0].livekit_port, "physics-101").await;

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
    wait_page(
        &s,
        ROOMS_JS,
        "the room physics-101",
        Duration::from_secs(30),
        |v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|r| r == "physics-101"))
        },
    )
    .await;
    let verdict = s
        .execute("return document.getElementById('verdict').textContent;")
        .await;
    assert!(
        verdict.as_str().unwrap().starts_with("healthy: 3 alive"),
        "{verdict}"
    );
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png");
    s.screenshot(&shot).await;

    // kill node-2 (its LiveKit dies with it): the row turns suspect, then dead
    subs[1].signal(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let mut seen = vec!["alive".to_string()];
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        let st = state_of(&s.execute(ROWS_JS).await, "node-2").unwrap_or_default();
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        if st == "dead" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen.last().map(String::as_str),
        Some("dead"),
        "node-2's row went {seen:?}"
    );
    harness::figure(
        "status page: node-2 SIGKILL → row shows dead (ms, heartbeat 1 s)",
        killed.elapsed().as_millis(),
    );
    let verdict = s
        .execute("return document.getElementById('verdict').textContent;")
        .await;
    assert!(
        verdict.as_str().unwrap().contains("node-2 dead"),
        "{verdict}"
    );
    let events = s
        .execute("return document.getElementById('events').textContent;")
        .await;
    assert!(
        events.as_str().unwrap().contains("node-2: suspect → dead"),
        "{events}"
    );
    let shot_dead = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page-dead.png");
    s.screenshot(&shot_dead).await;
    println!(
        "states of node-2's row: {seen:?}; screenshots {} and {}",
        shot.display(),
        shot_dead.display()
    );
    s.close().await;
}
