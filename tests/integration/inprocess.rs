//! The daemon in this process (`daemon::run` with a token for SIGTERM and a recording notifier
//! for systemd); LiveKit is the real livekit-server, a child process.

use std::time::Duration;

use airclass_node::daemon::RunOptions;
use airclass_node::systemd::Notification;

use crate::support::daemon::alive;
use crate::support::http;
use crate::support::inproc::InProcess;
use crate::support::node::NodeSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_ready_serves_and_returns_ok_when_its_token_is_cancelled() {
    let node = NodeSpec::standalone("main").write();
    let opts = RunOptions {
        watchdog: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let d = InProcess::start(&node, opts);
    d.wait_ready(Duration::from_secs(20)).await;
    let v: serde_json::Value = http()
        .get(format!("{}/api/node", d.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["livekit"]["state"], "ready", "{v}");
    let pid = v["livekit"]["pid"].as_u64().unwrap() as u32;
    assert!(alive(pid));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notes = d.notifications();
    let ready = notes
        .iter()
        .position(|n| matches!(n, Notification::Ready(_)))
        .unwrap();
    let first_ping = notes
        .iter()
        .position(|n| *n == Notification::Watchdog)
        .expect("no watchdog ping");
    assert!(
        ready < first_ping,
        "READY=1 must come before WATCHDOG=1: {notes:?}"
    );
    assert!(
        d.statuses()[ready].starts_with("standalone node main: LiveKit pid"),
        "{:?}",
        d.statuses()
    );
    d.stop().await.unwrap();
    assert!(!alive(pid), "LiveKit outlived run()");
    // the API is gone with it
    let r = http()
        .get(format!("http://127.0.0.1:{}/healthz", node.api_port))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(r.is_err(), "the API still answers after run() returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_is_announced_after_ready() {
    let node = NodeSpec::standalone("main").write();
    let d = InProcess::start(&node, RunOptions::default());
    d.wait_ready(Duration::from_secs(20)).await;
    let notes = d.notes.clone();
    d.stop().await.unwrap();
    let notes: Vec<Notification> = airclass_node::sync::lock(&notes)
        .iter()
        .map(|(_, n)| n.clone())
        .collect();
    let at = |f: &dyn Fn(&Notification) -> bool| notes.iter().position(f);
    let ready = at(&|n| matches!(n, Notification::Ready(_))).unwrap();
    let stopping = at(&|n| *n == Notification::Stopping("stopping: draining LiveKit".into()));
    assert!(matches!(stopping, Some(s) if s > ready), "{notes:?}");
}
