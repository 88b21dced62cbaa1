//! Paused-time tests of main's ticker over the membership table: a silent node goes Suspect,
//! Dead and is forgotten at the configured times (detection lags by at most one tick,
//! `heartbeat / 4`); a heartbeat brings it back; main itself stays Alive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::clock::Instant;
use crate::cluster::protocol::{LivekitHealth, NodeMode, NodeState, PortRange};

const SECRET: &str = "clustersecret-0123456789abcdefghijklm";

/// The shipped defaults: heartbeat 5 s, dead after 3 missed, forgotten after 300 s.
fn settings() -> MainSettings {
    let s = MainSettings::defaults("airclass", "main", "APIkey", Secret::new("s".repeat(32)));
    assert_eq!(
        (s.heartbeat, s.dead_after_missed, s.forget_after),
        (Duration::from_secs(5), 3, Duration::from_secs(300))
    );
    s
}

fn info(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        mode: NodeMode::Sub,
        protocol_version: PROTOCOL_VERSION,
        software_version: "test".into(),
        api_url: format!("http://127.0.0.1:1/{name}"),
        livekit_url: "ws://127.0.0.1:7890".into(),
        rtc_range: PortRange {
            start: 51000,
            end: 51020,
        },
    }
}

fn stats() -> NodeStats {
    NodeStats {
        cpu_percent: 1.0,
        memory_used_bytes: 1,
        memory_total_bytes: 2,
        load1: 0.1,
        sysload: 0.1,
        num_cpus: 1,
        rooms: 0,
        participants: 0,
        livekit_health: LivekitHealth::Healthy,
        room_names: Vec::new(),
        livekit_node_id: None,
    }
}

/// Main with its ticker running; node-1 registered at the returned instant.
fn main_with_node() -> (Arc<Main>, Instant, CancellationToken) {
    let secret = ClusterSecret::from_text(SECRET).unwrap();
    let main = Main::new(settings(), Some(secret), None, None);
    main.register_self(info("main"), stats());
    let t0 = clock::now();
    main.membership()
        .register(info("node-1"), "id-1", stats(), t0)
        .unwrap();
    let cancel = CancellationToken::new();
    let source: StatsSource = Arc::new(|| Box::pin(async { stats() }));
    spawn_ticker(
        main.clone(),
        info("main"),
        source,
        None,
        &TaskTracker::new(),
        cancel.clone(),
    );
    (main, t0, cancel)
}

fn state(main: &Main, node: &str) -> Option<NodeState> {
    main.nodes()
        .into_iter()
        .find(|n| n.name == node)
        .map(|n| n.state)
}

async fn at(t0: Instant, ms: u64) {
    sleep_until(t0 + Duration::from_millis(ms)).await;
}

/// The ticker's period, `heartbeat / 4`: a transition is seen at most this late.
const TICK: u64 = 1_250;

#[tokio::test(start_paused = true)]
async fn a_silent_node_is_suspect_dead_and_forgotten_on_time() {
    let (main, t0, cancel) = main_with_node();
    // suspect after heartbeat + grace = 7.5 s; the ticker runs every 1.25 s (TICK), and 7.5 s,
    // 17.5 s and 317.5 s fall on ticks, so each transition is seen at its exact time
    at(t0, 7_400).await;
    assert_eq!(state(&main, "node-1"), Some(NodeState::Alive));
    at(t0, 7_600).await;
    assert_eq!(state(&main, "node-1"), Some(NodeState::Suspect));
    assert_eq!(
        main.status_text(),
        "main of airclass: 1 alive, 1 suspect, 0 dead, 0 left"
    );
    // dead after 3 × heartbeat + grace = 17.5 s
    at(t0, 17_400).await;
    assert_eq!(state(&main, "node-1"), Some(NodeState::Suspect));
    at(t0, 17_600).await;
    assert_eq!(state(&main, "node-1"), Some(NodeState::Dead));
    // forgotten 300 s after it became dead; main, re-registering itself, stays alive
    at(t0, 317_400).await;
    assert_eq!(state(&main, "node-1"), Some(NodeState::Dead));
    at(t0, 317_600).await;
    assert_eq!(state(&main, "node-1"), None);
    assert_eq!(state(&main, "main"), Some(NodeState::Alive));
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_brings_a_suspect_node_back_and_restarts_its_silence() {
    let (main, t0, cancel) = main_with_node();
    at(t0, 8_000).await;
    assert_eq!(state(&main, "node-1"), Some(NodeState::Suspect));
    let previous = main
        .membership()
        .heartbeat("node-1", "id-1", stats(), clock::now())
        .unwrap();
    assert_eq!(previous, NodeState::Suspect);
    assert_eq!(state(&main, "node-1"), Some(NodeState::Alive));
    // silent again: suspect 7.5 s after that heartbeat (seen within a tick), not before
    at(t0, 8_000 + 7_400).await;
    assert_eq!(state(&main, "node-1"), Some(NodeState::Alive));
    at(t0, 8_000 + 7_500 + TICK).await;
    assert_eq!(state(&main, "node-1"), Some(NodeState::Suspect));
    cancel.cancel();
}
