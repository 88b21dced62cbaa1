//! Start, READY, watchdog, STATUS, STOPPING, env scrubbing, capabilities, rooms — with the real
//! livekit-server (`NodeSpec`'s default).

use std::time::Duration;

use airclass_node::clock::Instant;
use nix::sys::signal::Signal;

use crate::support::daemon::{alive, status_field, Daemon};
use crate::support::node::{NodeSpec, API_KEY, API_SECRET};
use crate::support::signal::{self, join_token};
use crate::support::{figure, http};

/// Probe LiveKit's `/` every 2 ms from now on, each on a fresh connection; the send time of
/// every probe that got no 200 (LiveKit not listening or not serving yet).
fn watch_livekit_health(port: u16) -> tokio::task::JoinHandle<Vec<Instant>> {
    tokio::spawn(async move {
        let client = airclass_node::tls::ClientOptions {
            no_pool: true,
            http_only: true,
            timeout: Some(Duration::from_secs(1)),
        }
        .build()
        .unwrap();
        let mut not_ok = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let sent = Instant::now();
            match client.get(format!("http://127.0.0.1:{port}/")).send().await {
                Ok(r) if r.status().as_u16() == 200 => return not_ok,
                _ => not_ok.push(sent),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        not_ok
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_after_livekit_answers_200() {
    let node = NodeSpec::standalone("main").write();
    let observer = watch_livekit_health(node.livekit_port);
    let mut d = Daemon::spawn(&node, &[]);
    let ready = d.wait_note("READY=1", Duration::from_secs(20)).await;
    let ready = ready.unwrap_or_else(|| panic!("no READY=1; log:\n{}", d.log_text()));
    // LiveKit answers 200 at the moment READY arrives …
    let r = reqwest::get(format!("http://127.0.0.1:{}/", d.livekit_port))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "OK");
    // … and did not before: every probe that found it not serving was sent before READY
    let not_ok = observer.await.unwrap();
    assert!(
        !not_ok.is_empty(),
        "the observer never saw LiveKit before it served: the test proves nothing"
    );
    let last = *not_ok.last().unwrap();
    assert!(
        last < ready,
        "READY=1 came {:?} before LiveKit answered 200",
        last - ready
    );
    let log = d.log_text();
    let (lk_ready, node_ready) = (
        log.find("LiveKit is ready (GET / answered 200)"),
        log.find("node ready"),
    );
    assert!(
        lk_ready.is_some() && lk_ready < node_ready,
        "the daemon did not wait for GET /:\n{log}"
    );
    assert!(log.contains("starting LiveKit server"), "{log}");
    assert!(
        d.notes
            .iter()
            .any(|n| n.text.contains("EXTEND_TIMEOUT_USEC=")),
        "no EXTEND_TIMEOUT_USEC during startup: {:?}",
        d.notes
    );
    figure("real_spawn_to_ready_ms", (ready - d.spawned).as_millis());
    figure(
        "real_ready_after_last_refused_probe_ms",
        (ready - last).as_millis(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_cadence_and_status() {
    let node = NodeSpec::standalone("main").write();
    // systemd's WatchdogSec=400ms: a ping every 200 ms
    let mut d = Daemon::spawn_ready(&node, &[("WATCHDOG_USEC", "400000")]).await;
    let ready_note = d
        .notes
        .iter()
        .find(|n| n.text.contains("READY=1"))
        .unwrap()
        .text
        .clone();
    assert!(
        ready_note.contains("STATUS=standalone node main: LiveKit pid"),
        "{ready_note}"
    );
    assert!(ready_note.contains("healthy"), "{ready_note}");
    let t0 = airclass_node::clock::now();
    d.collect_notes(Duration::from_secs(2)).await;
    let pings: Vec<_> = d
        .notes
        .iter()
        .filter(|n| n.text.contains("WATCHDOG=1") && n.at >= t0)
        .map(|n| n.at)
        .collect();
    // WATCHDOG_USEC=400000 -> a ping every 200 ms
    assert!(pings.len() >= 7, "only {} pings in 2 s", pings.len());
    let max_gap = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        max_gap < Duration::from_millis(400),
        "gap {max_gap:?} would trip the watchdog"
    );
    figure("watchdog_pings_in_2s", pings.len());
    figure("watchdog_max_gap_ms", max_gap.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_stopping_drains_livekit_and_exits_0() {
    let node = NodeSpec::standalone("main").write();
    let mut d = Daemon::spawn_ready(&node, &[]).await;
    let lk = d.livekit_pid().await.unwrap();
    d.signal(Signal::SIGTERM);
    assert!(d
        .wait_note("STOPPING=1", Duration::from_secs(5))
        .await
        .is_some());
    assert_eq!(
        d.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        d.log_text()
    );
    assert!(!alive(lk), "LiveKit survived the daemon's stop");
    let log = d.log_text();
    assert!(log.contains("SIGTERM sent to LiveKit"), "{log}");
    assert!(
        log.contains("[LiveKit]") && log.contains("exit requested, shutting down"),
        "child did not get SIGTERM:\n{log}"
    );
}

/// The real server loses a first SIGTERM within ~100 ms of its ready line (it sets `running`
/// only then), and the daemon's READY can fall inside that window: a stop right after READY
/// must still be LiveKit's graceful stop, not a wait for the drain budget's second SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_ready_is_not_lost() {
    let node = NodeSpec::standalone("main").drain_timeout_secs(10).write();
    let mut d = Daemon::spawn(&node, &[]);
    let ready = d.wait_note("READY=1", Duration::from_secs(20)).await;
    let ready = ready.unwrap_or_else(|| panic!("no READY=1; log:\n{}", d.log_text()));
    let t0 = Instant::now();
    d.signal(Signal::SIGTERM);
    let code = d.wait_exit(Duration::from_secs(20));
    let took = t0.elapsed();
    let log = d.log_text();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains(r#"exit requested, shutting down	{"signal": "terminated", "force": false}"#),
        "{log}"
    );
    assert!(
        !log.contains("second SIGTERM") && !log.contains(r#""force": true"#),
        "the first SIGTERM was lost; the drain budget's second one stopped LiveKit:\n{log}"
    );
    assert!(took < Duration::from_secs(10), "stop took {took:?}\n{log}");
    figure("real_ready_note_to_sigterm_ms", (t0 - ready).as_millis());
    figure("real_stop_right_after_ready_ms", took.as_millis());
}

/// The exit-0 trap, with the real server: LiveKit's port is taken, it prints
/// `listen tcp :PORT: bind: address already in use` on stdout and exits 0 before its ready
/// line; the daemon fails its start with that line in the error and exits 1 (README "Exit
/// codes": LiveKit failed to start), never READY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_port_conflict_fails_the_daemon_with_livekits_own_line() {
    let node = NodeSpec::standalone("main").write();
    let _squatter = std::net::TcpListener::bind(("0.0.0.0", node.livekit_port)).unwrap();
    let mut d = Daemon::spawn(&node, &[]);
    let code = d.wait_exit(Duration::from_secs(20));
    let log = d.log_text();
    assert_eq!(code, Some(1), "{log}");
    let line = format!(
        "listen tcp :{}: bind: address already in use",
        node.livekit_port
    );
    let error = log
        .lines()
        .find(|l| l.contains("LiveKit server failed to start"))
        .unwrap_or_else(|| panic!("no start failure in the log:\n{log}"));
    assert!(
        error.contains("exited (exit code 0) before it was ready") && error.contains(&line),
        "the error does not carry LiveKit's own line {line:?}: {error}"
    );
    assert!(!d.notes.iter().any(|n| n.text.contains("READY=1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherited_livekit_variables_are_scrubbed() {
    // each of these would break the real server (and the stand-in) if it leaked
    let node = NodeSpec::standalone("main").write();
    let mut d = Daemon::spawn(
        &node,
        &[
            ("LIVEKIT_KEYS", ""),
            ("LIVEKIT_CONFIG", "port: [broken"),
            ("REDIS_HOST", ""),
            ("NODE_IP", ""),
            ("LIVEKIT_PORT", ""),
        ],
    );
    assert!(
        d.wait_note("READY=1", Duration::from_secs(20))
            .await
            .is_some(),
        "scrubbing failed:\n{}",
        d.log_text()
    );
    let pid = d.livekit_pid().await.unwrap();
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let env = String::from_utf8_lossy(&env);
    for v in [
        "LIVEKIT_",
        "NOTIFY_SOCKET",
        "WATCHDOG_",
        "REDIS_HOST",
        "NODE_IP",
    ] {
        assert!(!env.contains(v), "{v} leaked into the child");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_child_has_no_capabilities() {
    let node = NodeSpec::standalone("main").write();
    let mut d = Daemon::spawn_ready(&node, &[]).await;
    let pid = d.livekit_pid().await.unwrap();
    for f in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let v = status_field(pid, f).unwrap();
        assert_eq!(v, "0000000000000000", "{f} of LiveKit is {v}");
    }
    // and it dies with the daemon
    assert!(status_field(pid, "NoNewPrivs").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_endpoint_lists_a_room_a_real_participant_created() {
    let node = NodeSpec::standalone("main").write();
    let d = Daemon::spawn_ready(&node, &[]).await;
    // the room does not exist until a participant joins (LiveKit's room.auto_create)
    let host = format!("http://127.0.0.1:{}", d.livekit_port);
    let token = join_token(API_KEY, API_SECRET, "algebra-101", "teacher");
    let _teacher = signal::join(&host, &token).await.unwrap();
    let (code, v) = d.get_json("/api/livekit/rooms").await;
    assert_eq!(code, 200, "{v}");
    let names: Vec<_> = v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["algebra-101".to_string()]);
    let (code, v) = d.get_json("/readyz").await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = d.get_json("/healthz").await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = d.get_json("/api/nope").await;
    assert_eq!(code, 404);
    assert_eq!(v["error"], "not_found");
    let (_, v) = d.get_json("/api/node").await;
    assert_eq!(v["mode"], "standalone");
    assert!(v["stats"]["memory_total_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_over_tls() {
    let node = NodeSpec::standalone("main").write();
    let (cert, _key) = node.use_self_signed_tls();
    let _daemon = Daemon::spawn_ready(&node, &[]).await;
    let pem = std::fs::read(&cert).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let r = client
        .get(format!("https://127.0.0.1:{}/healthz", node.api_port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // plain HTTP is not served on the TLS port
    let plain = http()
        .get(format!("http://127.0.0.1:{}/healthz", node.api_port))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(plain.map(|r| r.status().as_u16() != 200).unwrap_or(true));
}

/// The PID in the daemon's "LiveKit spawned" line, once it is there.
async fn wait_livekit_spawned(d: &Daemon, timeout: Duration) -> Option<u32> {
    let deadline = airclass_node::clock::now() + timeout;
    while airclass_node::clock::now() < deadline {
        let log = d.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("LiveKit spawned")) {
            let pid = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("pid="))
                .and_then(|p| p.parse().ok());
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Issue 10: SIGTERM while LiveKit is still starting unwinds through the one stop path —
/// `STOPPING=1`, LiveKit stopped, exit 0 — instead of killing the daemon with 143. The
/// stand-in (a test double) starts slowly on purpose: the real server cannot be told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_livekit_is_starting_stops_gracefully() {
    let node = NodeSpec::standalone("main")
        .standin("a LiveKit that takes 30 s to start (STANDIN_START_DELAY_MS)")
        .write();
    let mut d = Daemon::spawn(&node, &[("STANDIN_START_DELAY_MS", "30000")]);
    let lk = wait_livekit_spawned(&d, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("LiveKit never spawned:\n{}", d.log_text()));
    assert!(alive(lk));
    d.signal(Signal::SIGTERM);
    let code = d.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", d.log_text());
    d.collect_notes(Duration::from_millis(50)).await;
    assert!(
        d.notes.iter().all(|n| !n.text.contains("READY=1")),
        "{:?}",
        d.notes
    );
    assert!(
        d.notes.iter().any(|n| n.text.contains("STOPPING=1")),
        "no STOPPING=1: {:?}",
        d.notes
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!alive(lk), "LiveKit {lk} outlived the daemon");
    assert!(d.log_text().contains("LiveKit stopped"), "{}", d.log_text());
}

/// Issue 10: a SIGTERM at the very first instant (as soon as the daemon has written its first
/// line, before the runtime and its handlers exist) is not the default action (143) either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_at_the_first_instant_exits_0() {
    let node = NodeSpec::standalone("main").write();
    let mut d = Daemon::spawn(&node, &[]);
    let deadline = airclass_node::clock::now() + Duration::from_secs(10);
    while d.log_text().is_empty() && airclass_node::clock::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    d.signal(Signal::SIGTERM);
    let code = d.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", d.log_text());
    assert!(
        !d.log_text().contains("LiveKit is ready"),
        "the daemon went on starting: {}",
        d.log_text()
    );
}

/// Issue 10: the control API's port is checked before LiveKit starts: taken, the daemon fails
/// at once naming the address, and never starts (nor kills) a LiveKit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_api_port_is_found_before_livekit_starts() {
    let node = NodeSpec::standalone("main")
        .livekit(crate::support::real_livekit::real_livekit())
        .write();
    let _squatter = std::net::TcpListener::bind(("0.0.0.0", node.api_port)).unwrap();
    let mut d = Daemon::spawn(&node, &[]);
    let code = d.wait_exit(Duration::from_secs(15));
    let log = d.log_text();
    assert!(
        matches!(code, Some(c) if c != 0 && c != 143),
        "exit {code:?}: {log}"
    );
    assert!(log.contains("cannot listen on"), "{log}");
    assert!(log.contains(&node.api_port.to_string()), "{log}");
    assert!(
        !log.contains("LiveKit spawned"),
        "LiveKit was started: {log}"
    );
    assert!(!node.path().join("run/livekit.yaml").exists());
}
