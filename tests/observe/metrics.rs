//! `/metrics` of a real main and real subs (daemon processes, LiveKit stand-in, real Redis):
//! parsed by the Prometheus parser in both formats, conventions, values that prove the wiring,
//! the sub's link state in `GET /api/node`, and a scrape that does not need LiveKit.

use std::time::Duration;

use serde_json::json;

use crate::nodes::{clustered, get_json, node_state, standalone, unused_port, wait_for};
use crate::prom::{check_conventions, parse, scrape, value};
use crate::support::daemon::Daemon;
use crate::support::http;
use crate::support::node::APP_TOKEN;
use crate::support::redis::Redis;

pub const NODES: &[&str] = &["main", "node-1", "node-2", "node-3"];

async fn join(main: &Daemon, room: &str, token: Option<&str>) -> u16 {
    let mut rb = http()
        .post(format!("{}/api/rooms/{room}/join", main.api))
        .json(&json!({"identity": "ident-secret-kim", "role": "student"}));
    if let Some(t) = token {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    rb.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_and_subs_expose_parseable_conventional_metrics() {
    crate::prom::python();
    let redis = Redis::start();
    let main_dir = clustered(&redis, "main", None, "");
    let main = Daemon::spawn_ready(&main_dir, &[]).await;
    let sub_dir = clustered(&redis, "node-1", Some(&main.api), "");
    let sub = Daemon::spawn_ready(&sub_dir, &[]).await;
    // node-2 holds a wrong cluster secret: main refuses it (bad_signature)
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), "another-cluster-secret-0123456789abcdef\n").unwrap();
    let bad_extra = format!("[cluster]\nsecret_file = {:?}\n", wrong.path());
    let bad_dir = clustered(&redis, "node-2", Some(&main.api), &bad_extra);
    let bad = Daemon::spawn_ready(&bad_dir, &[]).await;
    // node-3 points at a port nobody listens on
    let (_block, port) = unused_port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let lost_dir = clustered(&redis, "node-3", Some(&nowhere), "");
    let lost = Daemon::spawn_ready(&lost_dir, &[]).await;
    wait_for("node-1 alive on main", Duration::from_secs(15), || async {
        node_state(&main, "node-1").await.as_deref() == Some("alive")
    })
    .await;

    // GET /api/node says where each sub stands with main
    let link = |d: &Daemon| {
        let d = d.api.clone();
        async move { get_json(&format!("{d}/api/node")).await.unwrap()["cluster"].clone() }
    };
    wait_for("node-1 registered", Duration::from_secs(10), || async {
        link(&sub).await["state"] == "registered"
    })
    .await;
    let l = link(&sub).await;
    assert_eq!(l["main_name"], "main", "{l}");
    assert!(l["last_heartbeat_age_ms"].as_u64().unwrap() < 5000, "{l}");
    wait_for("node-2 rejected", Duration::from_secs(10), || async {
        link(&bad).await["state"] == "rejected"
    })
    .await;
    let l = link(&bad).await;
    assert_eq!(l["error_code"], "bad_signature", "{l}");
    assert!(l["reason"].as_str().unwrap().contains("signature"), "{l}");
    wait_for("node-3 unreachable", Duration::from_secs(10), || async {
        link(&lost).await["state"] == "unreachable"
    })
    .await;
    assert_eq!(link(&main).await["role"], "main");

    // joins: three placed, one without the token
    for room in [
        "physics-secret-room",
        "maths-secret-room",
        "art-secret-room",
    ] {
        assert_eq!(join(&main, room, Some(APP_TOKEN)).await, 200);
    }
    assert_eq!(join(&main, "physics-secret-room", None).await, 401);

    // main: both formats parse with the Prometheus parser and follow the conventions
    let url = format!("{}/metrics", main.api);
    wait_for("a heartbeat on main", Duration::from_secs(10), || async {
        let fams = parse(&scrape(&url, true).await.0, "openmetrics");
        value(&fams, "airclass_cluster_heartbeats_received_total", &[]).unwrap_or(0.0) >= 1.0
    })
    .await;
    let (om, ct) = scrape(&url, true).await;
    assert!(
        ct.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ct}"
    );
    let (txt, ct) = scrape(&url, false).await;
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    for text in [&om, &txt] {
        for secret in ["secret-room", "ident-secret-kim"] {
            assert!(
                !text.contains(secret),
                "a room name or identity leaked into the metrics"
            );
        }
    }
    let fams = parse(&om, "openmetrics");
    check_conventions(&fams, NODES);
    let text_fams = parse(&txt, "text");
    assert_eq!(
        text_fams.len(),
        fams.len(),
        "both formats expose the same families"
    );
    let v = |name: &str, labels: &[(&str, &str)]| value(&fams, name, labels);
    assert_eq!(
        v("airclass_build_info", &[("node", "main"), ("mode", "main")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "airclass_cluster_node_state",
            &[("node", "node-1"), ("state", "alive")]
        ),
        Some(1.0)
    );
    assert!(v("airclass_cluster_nodes", &[("state", "alive")]).unwrap() >= 2.0);
    assert!(
        v(
            "airclass_cluster_refusals_total",
            &[("code", "bad_signature")]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        v(
            "airclass_cluster_joins_total",
            &[("node", ""), ("outcome", "unauthorized")]
        ),
        Some(1.0)
    );
    let placed: f64 = fams
        .iter()
        .flat_map(|f| &f.samples)
        .filter(|s| s.name == "airclass_cluster_joins_total" && !s.labels["node"].is_empty())
        .map(|s| s.value)
        .sum();
    assert_eq!(placed, 3.0);
    assert_eq!(
        v("airclass_cluster_placement_duration_seconds_count", &[]),
        Some(3.0)
    );
    assert!(v("airclass_cluster_heartbeats_received_total", &[]).unwrap() >= 1.0);
    assert!(v("airclass_cluster_registrations_received_total", &[]).unwrap() >= 1.0);
    assert_eq!(
        v("airclass_cluster_node_sysload", &[("node", "node-1")]),
        Some(0.1)
    );
    assert_eq!(v("airclass_cluster_sysload_limit", &[]), Some(0.7));
    assert_eq!(
        v("airclass_livekit_state", &[("state", "ready")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "airclass_livekit_time_to_ready_seconds_count",
            &[("start", "first")]
        ),
        Some(1.0)
    );
    assert!(v("airclass_livekit_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(
        v(
            "airclass_cluster_node_state_changes_total",
            &[("to", "alive")]
        )
        .unwrap()
            >= 1.0
    );
    let open = v("process_open_fds", &[]).unwrap();
    let max = v("process_max_fds", &[]).unwrap();
    assert!(open > 3.0 && open < max, "{open} of {max}");
    assert!(v("process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(v("process_cpu_seconds_total", &[]).unwrap() > 0.0);

    // the sub: heartbeats sent, link registered, Redis PINGed (every 5 s)
    wait_for("node-1 measured Redis", Duration::from_secs(10), || async {
        let (t, _) = scrape(&format!("{}/metrics", sub.api), true).await;
        t.contains("airclass_redis_up 1")
    })
    .await;
    let sub_fams = parse(
        &scrape(&format!("{}/metrics", sub.api), true).await.0,
        "openmetrics",
    );
    check_conventions(&sub_fams, NODES);
    let s = |name: &str, labels: &[(&str, &str)]| value(&sub_fams, name, labels);
    assert_eq!(
        s("airclass_cluster_link_state", &[("state", "registered")]),
        Some(1.0)
    );
    assert!(
        s(
            "airclass_cluster_heartbeats_sent_total",
            &[("result", "accepted")]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        s(
            "airclass_cluster_registrations_sent_total",
            &[("result", "accepted")]
        ),
        Some(1.0)
    );
    assert!(s("airclass_cluster_heartbeat_age_seconds", &[]).unwrap() < 5.0);
    assert_eq!(
        s("airclass_cluster_nodes", &[("state", "alive")]),
        None,
        "a sub has no membership table"
    );
    let b = parse(
        &scrape(&format!("{}/metrics", bad.api), true).await.0,
        "openmetrics",
    );
    assert_eq!(
        value(&b, "airclass_cluster_link_state", &[("state", "rejected")]),
        Some(1.0)
    );
    assert!(
        value(
            &b,
            "airclass_cluster_registrations_sent_total",
            &[("result", "refused")]
        )
        .unwrap()
            >= 1.0
    );
    let l = parse(
        &scrape(&format!("{}/metrics", lost.api), true).await.0,
        "openmetrics",
    );
    assert!(
        value(
            &l,
            "airclass_cluster_registrations_sent_total",
            &[("result", "unreachable")]
        )
        .unwrap()
            >= 1.0
    );

    // a scrape never needs LiveKit: stop node-1's LiveKit and scrape again
    let mut sub = sub;
    let pid = sub.livekit_pid().await.unwrap();
    let lk = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(lk, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let (t, _) = scrape(&format!("{}/metrics", sub.api), false).await;
    nix::sys::signal::kill(lk, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(t.contains("airclass_livekit_state"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_address_behind_a_token() {
    let (_block, port) = unused_port();
    let hash_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        hash_file.path(),
        airclass_node::app_token::token_sha256_hex("scrape-token-123"),
    )
    .unwrap();
    let extra = format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\ntoken_sha256_file = \"{}\"\n",
        hash_file.path().display()
    );
    let dir = standalone(&extra);
    let d = Daemon::spawn_ready(&dir, &[]).await;
    let c = http();
    let on_api = c.get(format!("{}/metrics", d.api)).send().await.unwrap();
    assert_eq!(
        on_api.status(),
        404,
        "not on the control API when metrics.listen is set"
    );
    let url = format!("http://127.0.0.1:{port}/metrics");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    let r = c.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(&url)
        .bearer_auth("scrape-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fams = parse(&r.text().await.unwrap(), "text");
    check_conventions(&fams, NODES);
    assert_eq!(
        value(&fams, "airclass_build_info", &[("mode", "standalone")]),
        Some(1.0)
    );
    // a bad token file stops the daemon before LiveKit runs, exit 78
    let dir = standalone("[metrics]\ntoken_sha256_file = \"/nonexistent/hash\"\n");
    let mut d = Daemon::spawn(&dir, &[]);
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)),
        Some(78),
        "{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("metrics.token_sha256_file"),
        "{}",
        d.log_text()
    );
    // a malformed listen address is a config error `check` reports
    let dir = standalone("[metrics]\nlisten = \"nowhere\"\n");
    let out = dir.cmd(&["check", "--instance", "main"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics.listen") && err.contains("HOST:PORT"),
        "{err}"
    );
}
