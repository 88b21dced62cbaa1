//! Paused-time tests of the watchdog gate with the supervisor's real waits, timed as shipped:
//! `WatchdogSec=30s` (so a ping every 15 s) and a 1 s probe period (so the supervisor counts as
//! stuck after 3 × 1 s + 5 s = 8 s without a sign of life). systemd kills the unit when 30 s
//! pass without a ping: pings must go on through a 30 s backoff and a 25 s readiness wait, and
//! stop when the supervisor's loop hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use tokio::time::sleep;

use super::*;
use crate::clock::{self, Instant};
use crate::livekit::backoff::BackoffPolicy;
use crate::livekit::supervisor::Readiness;
use crate::livekit::{Supervisor, SupervisorConfig};
use crate::sync::lock;
use crate::systemd::{Notification, NotifyLog};

const WATCHDOG_SEC: Duration = Duration::from_secs(30);
const PERIOD: Duration = Duration::from_secs(15);
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
const STALE_AFTER: Duration = Duration::from_secs(8);

fn supervisor() -> (Supervisor, watch::Receiver<LivekitStatus>) {
    let cfg = SupervisorConfig {
        binary: PathBuf::from("/nonexistent/livekit-server"),
        config_path: PathBuf::from("/nonexistent/livekit.yaml"),
        livekit_port: 1,
        drain_timeout: Duration::from_secs(10),
        ready_timeout: Duration::from_secs(30),
        health_interval: HEALTH_INTERVAL,
        health_failures: 3,
        restart_budget: 5,
        budget_window: Duration::from_secs(600),
        backoff: BackoffPolicy::default(),
        require_ready_line: false,
        redis: None,
    };
    let http = crate::tls::test_client();
    Supervisor::new(
        cfg,
        Notifier::default(),
        TaskTracker::new(),
        Box::new(|| 1.0),
        http,
    )
}

/// The watchdog task on `status`, pinging into a recording notifier.
fn start_watchdog(status: &watch::Receiver<LivekitStatus>) -> (NotifyLog, CancellationToken) {
    let (notifier, log) = Notifier::recording();
    let cancel = CancellationToken::new();
    // what `stale_after` gives for `livekit.health_interval_ms = 1000`
    let stale = HEALTH_INTERVAL * 3 + Duration::from_secs(5);
    assert_eq!(stale, STALE_AFTER);
    watchdog(
        PERIOD,
        stale,
        status,
        &notifier,
        &TaskTracker::new(),
        cancel.clone(),
    );
    (log, cancel)
}

fn pings(log: &NotifyLog) -> Vec<Instant> {
    lock(log)
        .iter()
        .filter(|(_, n)| *n == Notification::Watchdog)
        .map(|(t, _)| *t)
        .collect()
}

/// The longest stretch of `[from, to]` without a ping.
fn longest_silence(pings: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut edges = vec![from];
    edges.extend(pings.iter().copied().filter(|t| *t >= from && *t <= to));
    edges.push(to);
    edges
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn pings_go_on_through_a_30_s_backoff() {
    let (sup, status) = supervisor();
    let (log, cancel) = start_watchdog(&status);
    let t0 = clock::now();
    // the longest backoff the default policy sleeps (cap 30 s, jitter 1.0)
    let delay = BackoffPolicy::default().delay(20, 1.0);
    assert_eq!(delay, Duration::from_secs(30));
    assert!(sup.backoff_sleep(delay, &cancel).await);
    sleep(Duration::from_millis(10)).await;
    let end = clock::now();
    let p = pings(&log);
    assert_eq!(p.len(), 3, "a ping at 0, 15 and 30 s: {p:?}");
    let silence = longest_silence(&p, t0, end);
    assert!(
        silence <= PERIOD,
        "{silence:?} without a ping during backoff"
    );
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn pings_go_on_while_livekit_takes_25_s_to_become_ready() {
    let (sup, status) = supervisor();
    let (log, cancel) = start_watchdog(&status);
    let t0 = clock::now();
    let ready_at = t0 + Duration::from_secs(25);
    let ready = || async move { clock::now() >= ready_at };
    let r = sup
        .wait_ready(std::future::pending(), ready, &cancel, false)
        .await;
    assert!(
        matches!(r, Readiness::Ready(took) if took >= Duration::from_secs(25)),
        "{r:?}"
    );
    sleep(Duration::from_secs(10)).await;
    let end = clock::now();
    let p = pings(&log);
    assert!(p.len() >= 3, "pings at 0, 15 and 30 s: {p:?}");
    let silence = longest_silence(&p, t0, end);
    assert!(
        silence <= PERIOD,
        "{silence:?} without a ping during a slow start"
    );
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn pings_stop_when_the_supervisor_loop_hangs() {
    let (sup, status) = supervisor();
    let (log, cancel) = start_watchdog(&status);
    let t0 = clock::now();
    // a probe that never returns: the loop is stuck inside it
    let stuck = cancel.clone();
    tokio::spawn(async move {
        let hang = || std::future::pending::<bool>();
        let _ = sup
            .wait_ready(std::future::pending(), hang, &stuck, false)
            .await;
    });
    sleep(Duration::from_secs(61)).await;
    let p = pings(&log);
    assert_eq!(p, vec![t0], "only the ping before the loop hung");
    assert!(
        longest_silence(&p, t0, clock::now()) > WATCHDOG_SEC,
        "systemd must see the watchdog expire"
    );
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn no_ping_once_livekit_failed_for_good() {
    let (tx, rx) = watch::channel(LivekitStatus {
        state: LivekitState::Failed,
        pid: None,
        restarts: 5,
        failed_probes: 0,
        detail: "budget exhausted".into(),
        node_id: None,
        checked_at: clock::now(),
    });
    let (log, cancel) = start_watchdog(&rx);
    for _ in 0..4 {
        sleep(Duration::from_secs(5)).await;
        tx.send_modify(|s| s.checked_at = clock::now());
    }
    assert!(pings(&log).is_empty());
    cancel.cancel();
}

/// LiveKit crashed while Redis is down (the real server cannot start without it): the
/// supervisor waits, degraded, PINGing Redis every 500 ms; the watchdog keeps pinging through
/// a 47 s outage, and the wait ends within one poll of Redis answering.
#[tokio::test(start_paused = true)]
async fn pings_go_on_while_livekit_waits_47_s_for_redis() {
    use crate::livekit::supervisor::redis_wait::{RedisWait, REDIS_POLL};
    let (sup, status) = supervisor();
    let (log, cancel) = start_watchdog(&status);
    let t0 = clock::now();
    let back_at = t0 + Duration::from_secs(47);
    let pings_sent = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let n = pings_sent.clone();
    let redis = move || {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move { clock::now() >= back_at }
    };
    let mut seen = status.clone();
    let waiting = tokio::spawn(async move {
        seen.wait_for(|s| s.state == LivekitState::Degraded)
            .await
            .map(|s| s.detail.clone())
    });
    let r = sup
        .wait_until_redis_answers(redis, "127.0.0.1:6379", &cancel)
        .await;
    assert_eq!(r, RedisWait::Returned);
    let took = clock::now() - t0;
    assert!(
        took >= Duration::from_secs(47) && took <= Duration::from_secs(47) + REDIS_POLL,
        "Redis answered at 47 s, the wait ended at {took:?}"
    );
    let detail = waiting.await.unwrap().unwrap();
    assert!(
        detail.contains("waiting for Redis at 127.0.0.1:6379"),
        "{detail}"
    );
    let polls = pings_sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!((94..=96).contains(&polls), "{polls} PINGs in 47 s");
    let p = pings(&log);
    assert!(
        longest_silence(&p, t0, clock::now()) <= PERIOD,
        "the watchdog went quiet while waiting for Redis: {p:?}"
    );
    // a Redis that answers at once is not waited for
    let r = sup
        .wait_until_redis_answers(|| async { true }, "x", &cancel)
        .await;
    assert_eq!(r, RedisWait::Up);
    // a stop while waiting ends the wait at once
    let stop = cancel.clone();
    tokio::spawn(async move {
        sleep(Duration::from_secs(3)).await;
        stop.cancel();
    });
    let t1 = clock::now();
    let r = sup
        .wait_until_redis_answers(|| async { false }, "x", &cancel)
        .await;
    assert_eq!(r, RedisWait::Cancelled);
    assert!(clock::now() - t1 <= Duration::from_secs(3) + REDIS_POLL);
}
