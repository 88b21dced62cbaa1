//! The stand-in's own fault switches and hooks (a TEST DOUBLE's job: faults the real server
//! cannot be made to show on demand): crash after ready, hang before ready, stale health,
//! slow start, SIGTERM ignored, exit 0 at start, pre-seeded participants.

use std::net::TcpStream;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::participants::{base, http};
use crate::common::livekit_proc::{base_config, free_port, run_to_exit, LkProc, Opts, Server};

const S: Server = Server::Standin;

fn start(env: &[(&str, &str)]) -> (LkProc, u16) {
    let port = free_port();
    let mut opts = Opts::new(base_config(port, free_port()));
    for (k, v) in env {
        opts = opts.env(k, *v);
    }
    (LkProc::spawn(S, &opts), port)
}

#[test]
fn crash_after_ready() {
    let (mut p, _) = start(&[
        ("STANDIN_CRASH_AFTER_MS", "200"),
        ("STANDIN_CRASH_CODE", "2"),
    ]);
    p.wait_ready();
    let st = p.wait_exit(Duration::from_secs(5)).expect("crashes");
    assert_eq!(st.code(), Some(2));
    assert!(p.lines().iter().any(|l| l.starts_with("panic: ")));
}

#[test]
fn hang_before_ready_still_ends_on_sigterm() {
    let (mut p, port) = start(&[("STANDIN_HANG", "1")]);
    let ready = p.wait_line("starting LiveKit server", Duration::from_millis(700));
    assert!(ready.is_none());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    p.signal(Signal::SIGTERM);
    assert_eq!(
        p.wait_exit(Duration::from_secs(5)).expect("exit").code(),
        Some(0)
    );
}

#[tokio::test]
async fn stale_health_switch_and_hook() {
    let (p, port) = start(&[("STANDIN_STALE_HEALTH", "1")]);
    p.wait_ready();
    let c = http();
    let r = c.get(base(port)).send().await.expect("health");
    assert_eq!(r.status(), 406);
    let body = r.text().await.expect("body");
    assert!(body.starts_with("Not Ready\nNode Updated At "), "{body}");
    c.post(format!("{}/standin/health?stale=0", base(port)))
        .send()
        .await
        .expect("hook");
    assert_eq!(
        c.get(base(port)).send().await.expect("health").status(),
        200
    );
    c.post(format!("{}/standin/health?stale=1", base(port)))
        .send()
        .await
        .expect("hook");
    assert_eq!(
        c.get(base(port)).send().await.expect("health").status(),
        406
    );
}

#[test]
fn slow_start_binds_nothing_meanwhile() {
    let (p, port) = start(&[("STANDIN_START_DELAY_MS", "600")]);
    std::thread::sleep(Duration::from_millis(250));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    p.wait_ready();
    TcpStream::connect(("127.0.0.1", port)).expect("bound after the delay");
}

#[test]
fn ignore_sigterm_needs_sigkill() {
    let (mut p, _) = start(&[("STANDIN_IGNORE_SIGTERM", "1")]);
    p.wait_ready();
    p.signal(Signal::SIGTERM);
    p.signal(Signal::SIGTERM);
    p.signal(Signal::SIGINT);
    assert!(p.wait_exit(Duration::from_millis(600)).is_none());
    assert_eq!(p.count("exit requested"), 0);
    p.signal(Signal::SIGKILL);
    let st = p.wait_exit(Duration::from_secs(3)).expect("killed");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
}

#[test]
fn exit0_at_start() {
    let opts = Opts::new(base_config(free_port(), 0)).env("STANDIN_EXIT0_AT_START", "1");
    let f = run_to_exit(S, &opts, Duration::from_secs(5));
    assert_eq!(f.status.code(), Some(0));
    assert!(f.stdout.contains("simulated startup failure"), "{f:?}");
    assert!(!f.stderr.contains("starting LiveKit server"));
}

#[test]
fn preseeded_participants_hold_the_drain() {
    let (mut p, _) = start(&[("STANDIN_PARTICIPANTS", "class=2")]);
    p.wait_ready();
    p.signal(Signal::SIGTERM);
    assert!(p.wait_exit(Duration::from_secs(1)).is_none(), "must drain");
    p.signal(Signal::SIGTERM);
    assert_eq!(
        p.wait_exit(Duration::from_secs(5)).expect("exit").code(),
        Some(0)
    );
}
