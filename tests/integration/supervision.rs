//! Failures after ready: crash, hang, drain deadline, daemon death, Redis outage, a crash while
//! Redis is down — with the real livekit-server (`NodeSpec`'s default). Two tests use the
//! stand-in (a TEST DOUBLE) for a fault the real server cannot be made to show; each says which.

use std::time::Duration;

use airclass_node::clock::Instant;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::daemon::{alive, Daemon};
use crate::support::node::{NodeDir, NodeSpec, API_KEY, API_SECRET};
use crate::support::redis::Redis;
use crate::support::signal::{self, join_token};
use crate::support::{figure, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_livekit_is_restarted() {
    let node = NodeSpec::standalone("main").write();
    let mut d = Daemon::spawn_ready(&node, &[]).await;
    let old = d.livekit_pid().await.unwrap();
    let t0 = Instant::now();
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    let new = d.wait_ready_pid(Some(old), Duration::from_secs(20)).await;
    let new = new.unwrap_or_else(|| panic!("not restarted:\n{}", d.log_text()));
    assert_ne!(new, old);
    figure("real_kill9_to_ready_again_ms", t0.elapsed().as_millis());
    let (_, v) = d.get_json("/api/node").await;
    assert_eq!(v["livekit"]["restarts"], 1);
    assert!(d
        .log_text()
        .contains("LiveKit exited unexpectedly (signal 9 (SIGKILL))"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_livekit_is_detected_and_restarted() {
    // a stopped child still accepts connections: 3 probes time out (200 ms each), then it is
    // stopped within min(drain, 3 s) + 2 s and restarted
    let node = NodeSpec::standalone("main")
        .health_interval_ms(200)
        .drain_timeout_secs(3)
        .write();
    let mut d = Daemon::spawn_ready(&node, &[]).await;
    let old = d.livekit_pid().await.unwrap();
    let t0 = Instant::now();
    kill(Pid::from_raw(old as i32), Signal::SIGSTOP).unwrap();
    let new = d.wait_ready_pid(Some(old), Duration::from_secs(30)).await;
    let new = new.unwrap_or_else(|| panic!("hung child not replaced:\n{}", d.log_text()));
    assert_ne!(new, old);
    assert!(!alive(old), "the hung LiveKit is still there");
    let log = d.log_text();
    assert!(
        log.contains("health probe failed 3 times in a row"),
        "{log}"
    );
    figure("real_sigstop_to_ready_again_ms", t0.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_livekit_is_sigkilled_after_the_drain_budget() {
    // a SIGSTOPped LiveKit cannot act on SIGTERM (it stays pending): the daemon must SIGKILL
    // it after drain (3 s) + the second SIGTERM's 2 s
    let node = NodeSpec::standalone("main").drain_timeout_secs(3).write();
    let mut d = Daemon::spawn_ready(&node, &[]).await;
    let lk = d.livekit_pid().await.unwrap();
    kill(Pid::from_raw(lk as i32), Signal::SIGSTOP).unwrap();
    let took = d.sigterm_and_exit_0(Duration::from_secs(20));
    assert!(!alive(lk), "LiveKit survived");
    let log = d.log_text();
    assert!(log.contains("second SIGTERM"), "{log}");
    assert!(log.contains("LiveKit ignored SIGTERM; SIGKILL"), "{log}");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(12),
        "stop took {took:?}"
    );
    figure("real_stop_with_frozen_livekit_ms", took.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_daemon_leaves_no_livekit() {
    let node = NodeSpec::standalone("main").write();
    let mut d = Daemon::spawn_ready(&node, &[]).await;
    let lk = d.livekit_pid().await.unwrap();
    assert!(alive(lk));
    d.signal(Signal::SIGKILL);
    let _ = d.wait_exit(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(lk) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(lk), "orphaned LiveKit {lk} survived the daemon");
}

/// Poll `/api/node` until LiveKit's state is `want`; how long it took.
async fn wait_state(d: &Daemon, want: &str, timeout: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if d.livekit_state().await == want {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// A clustered node with a health probe every 200 ms on `redis`, under systemd's
/// `WatchdogSec=400ms` (a ping every 200 ms).
async fn clustered_node(redis: &Redis, budget: u32) -> (NodeDir, Daemon) {
    let node = NodeSpec::main("main")
        .redis(redis.url())
        .health_interval_ms(200)
        .restart_budget(budget)
        .write();
    let d = Daemon::spawn_ready(&node, &[("WATCHDOG_USEC", "400000")]).await;
    (node, d)
}

fn watchdog_pings_since(d: &Daemon, t0: Instant) -> usize {
    d.notes
        .iter()
        .filter(|n| n.at >= t0 && n.text.contains("WATCHDOG=1"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_degraded_not_a_restart_storm() {
    let mut redis = Redis::start();
    let (_node, mut d) = clustered_node(&redis, 5).await;
    let pid = d.livekit_pid().await.unwrap();
    redis.stop(); // the real server's keepalive goes through Redis: `/` turns 406 Not Ready
    let degraded = wait_state(&d, "degraded", Duration::from_secs(15)).await;
    let degraded = degraded.unwrap_or_else(|| panic!("not degraded:\n{}", d.log_text()));
    // stays degraded, no restart, and the watchdog keeps being fed
    let t0 = Instant::now();
    d.collect_notes(Duration::from_secs(3)).await;
    assert_eq!(
        d.livekit_pid().await,
        Some(pid),
        "LiveKit was restarted during a Redis outage"
    );
    assert!(watchdog_pings_since(&d, t0) >= 5);
    let (code, v) = d.get_json("/readyz").await;
    assert_eq!(code, 503, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("406"), "{v}");
    // Redis back -> the same LiveKit recovers by itself (livekit#4663): ready again
    redis.resume();
    let t1 = Instant::now();
    let back = d.wait_ready_pid(None, Duration::from_secs(30)).await;
    assert_eq!(back, Some(pid), "{}", d.log_text());
    let (_, v) = d.get_json("/api/node").await;
    assert_eq!(v["livekit"]["restarts"], 0, "{v}");
    figure("real_redis_stop_to_degraded_ms", degraded.as_millis());
    figure("real_redis_back_to_healthy_ms", t1.elapsed().as_millis());
}

/// LiveKit crashes while Redis is down: the real server cannot start without Redis (it exits 0
/// with `unable to connect to redis`), so the daemon waits for Redis, degraded, instead of
/// spending its restart budget (2 here: the old behaviour exited 1 within ~2 s), and starts
/// LiveKit as soon as Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_crash_while_redis_is_down_waits_for_redis() {
    let mut redis = Redis::start();
    let (_node, mut d) = clustered_node(&redis, 2).await;
    let old = d.livekit_pid().await.unwrap();
    redis.stop();
    wait_state(&d, "degraded", Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("not degraded:\n{}", d.log_text()));
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    let t0 = Instant::now();
    d.collect_notes(Duration::from_secs(8)).await;
    assert_eq!(d.child.try_wait().unwrap(), None, "{}", d.log_text());
    let (_, v) = d.get_json("/api/node").await;
    assert_eq!(v["livekit"]["state"], "degraded", "{v}");
    assert!(v["livekit"]["pid"].is_null(), "{v}");
    assert_eq!(
        v["livekit"]["restarts"], 0,
        "budget spent while Redis is down: {v}"
    );
    assert!(
        v["livekit"]["detail"]
            .as_str()
            .unwrap()
            .contains("waiting for Redis"),
        "{v}"
    );
    assert!(
        d.notes.iter().any(|n| n.at >= t0
            && n.text.contains(
                "STATUS=main node main: LiveKit degraded (not running, waiting for Redis"
            )),
        "{:?}",
        d.notes
    );
    assert!(
        watchdog_pings_since(&d, t0) >= 20,
        "the watchdog went quiet"
    );
    redis.resume();
    let t1 = Instant::now();
    let new = d.wait_ready_pid(Some(old), Duration::from_secs(20)).await;
    let back = t1.elapsed();
    assert!(
        new.is_some(),
        "LiveKit not started again:\n{}",
        d.log_text()
    );
    let (_, v) = d.get_json("/api/node").await;
    assert_eq!(v["livekit"]["restarts"], 1, "{v}");
    assert!(d
        .log_text()
        .contains("Redis answers again: starting LiveKit"));
    figure("real_redis_back_to_livekit_ready_ms", back.as_millis());
}

/// Redis goes down between the crash and the restart (during the backoff, 250–500 ms): the
/// real server's start fails (`unable to connect to redis`), and that failure is given back to
/// the budget. With a budget of 1 the restart after Redis returns would otherwise be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_failed_because_redis_went_down_is_not_charged() {
    let mut redis = Redis::start();
    let (_node, mut d) = clustered_node(&redis, 1).await;
    let old = d.livekit_pid().await.unwrap();
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    // the daemon PINGs Redis at once (up), then sleeps at least 250 ms before the restart
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.stop();
    let refunded =
        "LiveKit could not start while Redis is down; not counted against the restart budget";
    let deadline = Instant::now() + Duration::from_secs(15);
    while !d.log_text().contains(refunded) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = d.log_text();
    assert!(log.contains(refunded), "{log}");
    assert!(log.contains("unable to connect to redis"), "{log}");
    wait_state(&d, "degraded", Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("not waiting for Redis:\n{}", d.log_text()));
    let (_, v) = d.get_json("/api/node").await;
    assert_eq!(v["livekit"]["restarts"], 0, "{v}");
    redis.resume();
    let new = d.wait_ready_pid(Some(old), Duration::from_secs(20)).await;
    assert!(
        new.is_some(),
        "LiveKit not started again:\n{}",
        d.log_text()
    );
    let (_, v) = d.get_json("/api/node").await;
    assert_eq!(v["livekit"]["restarts"], 1, "{v}");
    assert_eq!(d.child.try_wait().unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_exhausts_the_restart_budget_and_exits_1() {
    // every LiveKit crashes 300 ms after ready (exit 2, like a Go panic); budget 2 restarts
    let node = NodeSpec::standalone("main")
        .standin("a LiveKit that panics (exit 2) 300 ms after every start: the real server cannot be made to crash on demand")
        .restart_budget(2)
        .write();
    let mut d = Daemon::spawn_ready(&node, &[("STANDIN_CRASH_AFTER_MS", "300")]).await;
    let t0 = Instant::now();
    let code = d.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(1), "{}", d.log_text());
    let log = d.log_text();
    assert!(
        log.contains("LiveKit exited unexpectedly (exit code 2)"),
        "{log}"
    );
    assert!(log.contains("budget exhausted"), "{log}");
    figure("crash_loop_to_exit_ms", t0.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_redis_is_up_is_restarted() {
    let redis = Redis::start();
    let node = NodeSpec::main("main")
        .standin("406 Not Ready while Redis is up: the real server answers 406 only when its own Redis keepalive fails")
        .redis(redis.url())
        .health_interval_ms(200)
        .write();
    let mut d = Daemon::spawn_ready(&node, &[]).await;
    let old = d.livekit_pid().await.unwrap();
    // the stand-in's test hook: answer 406 Not Ready although Redis is fine
    let r = http()
        .post(format!(
            "http://127.0.0.1:{}/standin/health?stale=1",
            d.livekit_port
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let new = d.wait_ready_pid(Some(old), Duration::from_secs(20)).await;
    assert!(
        new.is_some(),
        "a LiveKit stuck in 406 with Redis up was not restarted:\n{}",
        d.log_text()
    );
    assert!(d.log_text().contains("406"), "{}", d.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_with_participants_is_cut_by_the_second_sigterm() {
    let node = NodeSpec::standalone("main").drain_timeout_secs(3).write();
    let mut d = Daemon::spawn_ready(&node, &[]).await;
    let lk = d.livekit_pid().await.unwrap();
    // a participant connected to the real server: its drain waits for it, with no deadline
    let host = format!("http://127.0.0.1:{}", d.livekit_port);
    let token = join_token(API_KEY, API_SECRET, "algebra", "student-1");
    let _student = signal::join(&host, &token).await.unwrap();
    let took = d.sigterm_and_exit_0(Duration::from_secs(20));
    assert!(!alive(lk));
    let log = d.log_text();
    // the real server's own lines: the first SIGTERM drains, the daemon's second one forces
    assert!(
        log.contains(r#"exit requested, shutting down	{"signal": "terminated", "force": false}"#),
        "{log}"
    );
    assert!(log.contains("second SIGTERM (force)"), "{log}");
    assert!(
        log.contains(r#"exit requested, shutting down	{"signal": "terminated", "force": true}"#),
        "{log}"
    );
    assert!(
        !log.contains("SIGKILL"),
        "LiveKit honours the second SIGTERM: no SIGKILL needed\n{log}"
    );
    // drain budget 3 s: LiveKit alone would wait for the participant forever
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(8),
        "{took:?}"
    );
    figure("real_stop_with_a_participant_ms", took.as_millis());
}
