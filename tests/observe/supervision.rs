//! The supervisor's counters on `/metrics`: a crash and a hang of LiveKit (the stand-in,
//! killed and stopped: faults the real server cannot be asked to show) are restarts by reason,
//! each restart is a time to ready, the hung child's stop is a drain that ended in SIGKILL.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::nodes::standalone;
use crate::prom::{parse, scrape, value};
use crate::support::daemon::Daemon;

async fn metric(d: &Daemon, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let fams = parse(
        &scrape(&format!("{}/metrics", d.api), true).await.0,
        "openmetrics",
    );
    value(&fams, name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_by_reason_time_to_ready_and_drains() {
    crate::prom::python();
    let dir = standalone("[livekit]\nhealth_failures = 2\ndrain_timeout_secs = 1\n");
    let mut d = Daemon::spawn_ready(&dir, &[]).await;
    for r in ["crash", "hang", "health", "failed_start"] {
        assert_eq!(
            metric(&d, "airclass_livekit_restarts_total", &[("reason", r)]).await,
            Some(0.0),
            "{r}"
        );
    }
    let first = d.livekit_pid().await.unwrap();
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    let second = d
        .wait_ready_pid(Some(first), Duration::from_secs(15))
        .await
        .expect("no restart after a crash");
    assert_eq!(
        metric(
            &d,
            "airclass_livekit_restarts_total",
            &[("reason", "crash")]
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &d,
            "airclass_livekit_time_to_ready_seconds_count",
            &[("start", "restart")]
        )
        .await,
        Some(1.0)
    );
    assert!(
        metric(
            &d,
            "airclass_livekit_health_probe_duration_seconds_count",
            &[("result", "ok")]
        )
        .await
        .unwrap()
            >= 1.0
    );

    kill(Pid::from_raw(second as i32), Signal::SIGSTOP).unwrap();
    let third = d
        .wait_ready_pid(Some(second), Duration::from_secs(20))
        .await;
    let _ = kill(Pid::from_raw(second as i32), Signal::SIGKILL);
    assert!(
        third.is_some(),
        "no restart after a hang:\n{}",
        d.log_text()
    );
    assert_eq!(
        metric(&d, "airclass_livekit_restarts_total", &[("reason", "hang")]).await,
        Some(1.0)
    );
    assert!(
        metric(
            &d,
            "airclass_livekit_health_probe_duration_seconds_count",
            &[("result", "timeout")]
        )
        .await
        .unwrap()
            >= 2.0
    );
    // SIGTERM cannot stop a stopped process: the stop of the hung child ended with SIGKILL
    assert_eq!(
        metric(
            &d,
            "airclass_livekit_drain_duration_seconds_count",
            &[("outcome", "killed")]
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &d,
            "airclass_livekit_time_to_ready_seconds_count",
            &[("start", "restart")]
        )
        .await,
        Some(2.0)
    );
    assert_eq!(
        metric(&d, "airclass_livekit_state", &[("state", "ready")]).await,
        Some(1.0)
    );
}
