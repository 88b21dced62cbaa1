//! Benchmarks that print figures (no assertions): daemon idle RSS with one supervised child,
//! spawn→READY overhead over the child's own time to ready, and placement latency.
//!
//! Run: `cargo bench --bench daemon`. The child is the real livekit-server (`scripts/livekit.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use airclass_node::clock;
use airclass_node::cluster::placement;

#[path = "../tests/support/mod.rs"]
mod support;

use support::daemon::{rss_kib, Daemon};
use support::node::{NodeDir, NodeSpec, API_KEY, API_SECRET};
use support::ports::PortBlock;
use support::real_livekit::real_livekit;

fn http_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if n > 12 && buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A standalone node with the daemon's default probe period (1 s).
fn node() -> NodeDir {
    NodeSpec::standalone("main").write()
}

/// The daemon logging at warn, as a service would, with a fake NOTIFY_SOCKET.
fn spawn_daemon(n: &NodeDir) -> Daemon {
    Daemon::spawn(n, &[("RUST_LOG", "warn")])
}

fn stop(mut d: Daemon) {
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = d.wait_exit(Duration::from_secs(15));
}

/// The real livekit-server alone, with the config the bench node renders (ports, keys,
/// `node_ip`): spawn → GET / answers 200.
fn child_alone_ms() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let ports = PortBlock::reserve();
    let lk = ports.port(0);
    // node_ip set and no STUN server that answers: nothing leaves the machine
    let yaml = format!(
        "port: {lk}\nrtc:\n  tcp_port: {}\n  udp_port: {}-{}\n  node_ip: 127.0.0.1\n  use_external_ip: false\n  stun_servers: [\"127.0.0.1:9\"]\nkeys:\n  {API_KEY}: {API_SECRET}\nlogging:\n  level: info\n",
        ports.port(1),
        ports.port(3),
        ports.port(23),
    );
    std::fs::write(dir.path().join("lk.yaml"), yaml).unwrap();
    let bin = real_livekit();
    let t0 = clock::now();
    let mut c = Command::new(bin)
        .arg("--config")
        .arg(dir.path().join("lk.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !http_ok(lk) {
        std::thread::sleep(Duration::from_millis(1));
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = c.wait();
    ms
}

fn daemon_to_ready_ms() -> f64 {
    let n = node();
    let t0 = clock::now();
    let mut d = spawn_daemon(&n);
    let ready = d
        .wait_note_blocking("READY=1", Duration::from_secs(20))
        .expect("no READY");
    let ms = (ready - t0).as_secs_f64() * 1000.0;
    stop(d);
    ms
}

fn idle_rss() {
    let n = node();
    let mut d = spawn_daemon(&n);
    d.wait_note_blocking("READY=1", Duration::from_secs(20))
        .expect("no READY");
    // idle 5 s while the notify socket is drained, as systemd would
    std::thread::sleep(Duration::from_secs(5));
    let body = {
        let mut s = TcpStream::connect(("127.0.0.1", n.api_port)).unwrap();
        s.write_all(b"GET /api/node HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let lk_pid: u32 = body
        .split("\"pid\":")
        .nth(1)
        .and_then(|r| r.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    println!(
        "daemon idle RSS with one supervised child: {} KiB (child, the real livekit-server: {} KiB)",
        rss_kib(d.child.id()),
        rss_kib(lk_pid)
    );
    stop(d);
}

fn placement_latency() {
    for n in [3usize, 100, 1000] {
        let cands = placement::synthetic_candidates(n);
        let iters = (2_000_000 / n).max(200);
        let t0 = clock::now();
        let mut hits = 0usize;
        for i in 0..iters {
            let room = format!("room-{i}");
            if placement::choose(&room, &cands, 0.7).is_some() {
                hits += 1;
            }
        }
        let per = t0.elapsed().as_secs_f64() * 1e6 / iters as f64;
        println!("placement latency, {n:>4} nodes: {per:>9.2} µs per room ({iters} rooms, {hits} placed)");
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing useful: run anyway.
    println!("== airclass-node daemon benchmarks (figures, not assertions) ==");
    idle_rss();
    let runs = 7;
    let child: Vec<f64> = (0..runs).map(|_| child_alone_ms()).collect();
    let daemon: Vec<f64> = (0..runs).map(|_| daemon_to_ready_ms()).collect();
    let (c, d) = (median(child), median(daemon));
    println!("livekit-server alone, spawn -> GET / 200: median {c:.1} ms over {runs} runs");
    println!("daemon, spawn -> READY=1:           median {d:.1} ms over {runs} runs");
    println!(
        "daemon overhead (READY minus the child's own time to ready): {:.1} ms",
        d - c
    );
    placement_latency();
}
