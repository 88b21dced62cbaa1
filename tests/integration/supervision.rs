//! Failures after ready: crash, hang, drain deadline, daemon death, Redis outage.

use std::time::Duration;

use airclass_node::clock::Instant;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::daemon::{alive, Daemon};
use crate::support::node::NodeSpec;
use crate::support::redis::Redis;
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
    figure("kill9_to_ready_again_ms", t0.elapsed().as_millis());
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
    figure("sigstop_to_ready_again_ms", t0.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_budget_then_sigkill() {
    // the stand-in ignores SIGTERM: the daemon must SIGKILL it after drain (3 s) + 2 s
    let node = NodeSpec::standalone("main").drain_timeout_secs(3).write();
    let mut d = Daemon::spawn_ready(&node, &[("STANDIN_IGNORE_SIGTERM", "1")]).await;
    let lk = d.livekit_pid().await.unwrap();
    let took = d.sigterm_and_exit_0(Duration::from_secs(20));
    assert!(!alive(lk), "LiveKit survived");
    let log = d.log_text();
    assert!(log.contains("second SIGTERM"), "{log}");
    assert!(log.contains("LiveKit ignored SIGTERM; SIGKILL"), "{log}");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(12),
        "stop took {took:?}"
    );
    figure("stop_with_unresponsive_livekit_ms", took.as_millis());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_degraded_not_a_restart_storm() {
    let mut redis = Redis::start();
    let node = NodeSpec::main("main")
        .redis(redis.url())
        .health_interval_ms(200)
        .write();
    // systemd's WatchdogSec=400ms: a ping every 200 ms
    let mut d = Daemon::spawn_ready(&node, &[("WATCHDOG_USEC", "400000")]).await;
    let pid = d.livekit_pid().await.unwrap();
    redis.stop(); // Redis goes away: LiveKit answers 406 Not Ready
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut state = String::new();
    while Instant::now() < deadline {
        state = d.livekit_state().await;
        if state == "degraded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "degraded", "{}", d.log_text());
    // stays degraded, no restart, and the watchdog keeps being fed
    let t0 = Instant::now();
    d.collect_notes(Duration::from_secs(3)).await;
    assert_eq!(
        d.livekit_pid().await,
        Some(pid),
        "LiveKit was restarted during a Redis outage"
    );
    assert!(
        d.notes
            .iter()
            .filter(|n| n.at >= t0 && n.text.contains("WATCHDOG=1"))
            .count()
            >= 5
    );
    let (code, v) = d.get_json("/readyz").await;
    assert_eq!(code, 503, "{v}");
    // Redis back -> ready again, same process
    redis.resume();
    let back = d.wait_ready_pid(None, Duration::from_secs(15)).await;
    assert_eq!(back, Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_exhausts_the_restart_budget_and_exits_1() {
    // every LiveKit crashes 300 ms after ready (exit 2, like a Go panic); budget 2 restarts
    let node = NodeSpec::standalone("main").restart_budget(2).write();
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
    let mut d = Daemon::spawn_ready(&node, &[("STANDIN_PARTICIPANTS", "algebra=2")]).await;
    let lk = d.livekit_pid().await.unwrap();
    let took = d.sigterm_and_exit_0(Duration::from_secs(20));
    assert!(!alive(lk));
    let log = d.log_text();
    assert!(
        log.contains("waiting for participants to exit") || log.contains("exit requested"),
        "{log}"
    );
    assert!(log.contains("second SIGTERM (force)"), "{log}");
    assert!(
        !log.contains("SIGKILL"),
        "LiveKit honours the second SIGTERM: no SIGKILL needed\n{log}"
    );
    // drain budget 3 s: LiveKit alone would wait for the participants forever
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(8),
        "{took:?}"
    );
    figure("stop_with_draining_participants_ms", took.as_millis());
}
