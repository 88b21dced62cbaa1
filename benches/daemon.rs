//! Benchmarks that print figures (no assertions): daemon idle RSS with one supervised child,
//! spawn→READY overhead over the child's own time to ready, and placement latency.
//!
//! Run: `cargo bench --bench daemon`. Uses the LiveKit stand-in (a test double) as the child.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airclass_node::cluster::placement;

const DAEMON: &str = env!("CARGO_BIN_EXE_airclass-node");
const STANDIN: &str = env!("CARGO_BIN_EXE_livekit-standin");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Node {
    dir: tempfile::TempDir,
    lk: u16,
    api: u16,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir(p.join("s")).unwrap();
    std::fs::write(p.join("s/key"), "APIbench\n").unwrap();
    std::fs::write(
        p.join("s/secret"),
        "benchsecret-0123456789abcdefghijklmnop\n",
    )
    .unwrap();
    std::fs::write(p.join("s/app"), format!("{}\n", "0".repeat(64))).unwrap();
    let (lk, tcp, api) = (free_port(), free_port(), free_port());
    let udp = 40000 + (rand::random::<u16>() % 20000);
    std::fs::write(
        p.join("a.toml"),
        format!(
            "[node]\nlivekit_port = {lk}\nrtc_tcp_port = {tcp}\nrtc_udp_start = {udp}\nrtc_udp_end = {}\napi_port = {api}\n\
             [livekit]\nprometheus_port = 0\nbinary = \"{STANDIN}\"\napi_key_file = \"{k}\"\napi_secret_file = \"{s}\"\nnode_ip = \"127.0.0.1\"\nhealth_interval_ms = 1000\n\
             [api]\nbind = \"127.0.0.1\"\napp_token_sha256_file = \"{a}\"\n",
            udp + 20,
            k = p.join("s/key").display(),
            s = p.join("s/secret").display(),
            a = p.join("s/app").display(),
        ),
    )
    .unwrap();
    Node { dir, lk, api }
}

fn spawn_daemon(n: &Node, sock: &Path) -> Child {
    Command::new(DAEMON)
        .arg("--config")
        .arg(n.dir.path().join("a.toml"))
        .arg("--nodes-dir")
        .arg(n.dir.path())
        .args(["run", "--instance", "main"])
        .env("NOTIFY_SOCKET", sock)
        .env("RUNTIME_DIRECTORY", n.dir.path().join("run"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_ready(sock: &UnixDatagram, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(deadline - Instant::now()))
            .ok()?;
        let n = sock.recv(&mut buf).ok()?;
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            return Some(Instant::now());
        }
    }
    None
}

fn stop(mut c: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = c.wait();
}

/// The stand-in alone: spawn → GET / answers 200.
fn child_alone_ms() -> f64 {
    let n = node();
    let yaml = format!(
        "port: {}\nrtc:\n  tcp_port: {}\n  udp_port: {}\nkeys:\n  APIbench: benchsecret-0123456789abcdefghijklmnop\nlogging:\n  level: info\n",
        n.lk,
        free_port(),
        40000 + (rand::random::<u16>() % 20000)
    );
    std::fs::write(n.dir.path().join("lk.yaml"), yaml).unwrap();
    let t0 = Instant::now();
    let c = Command::new(STANDIN)
        .arg("--config")
        .arg(n.dir.path().join("lk.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !http_ok(n.lk) {
        std::thread::sleep(Duration::from_millis(1));
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    stop(c);
    ms
}

fn daemon_to_ready_ms() -> f64 {
    let n = node();
    let sock_path = n.dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let t0 = Instant::now();
    let c = spawn_daemon(&n, &sock_path);
    let ready = wait_ready(&sock, Duration::from_secs(20)).expect("no READY");
    let ms = (ready - t0).as_secs_f64() * 1000.0;
    stop(c);
    ms
}

fn idle_rss() {
    let n = node();
    let sock_path = n.dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let c = spawn_daemon(&n, &sock_path);
    wait_ready(&sock, Duration::from_secs(20)).expect("no READY");
    // drain notifications while idling, as systemd would
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while t0.elapsed() < Duration::from_secs(5) {
        let _ = sock.recv(&mut buf);
    }
    let body = {
        let mut s = TcpStream::connect(("127.0.0.1", n.api)).unwrap();
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
        "daemon idle RSS with one supervised child: {} KiB (child, the stand-in: {} KiB)",
        rss_kib(c.id()),
        rss_kib(lk_pid)
    );
    stop(c);
}

fn placement_latency() {
    for n in [3usize, 100, 1000] {
        let cands = placement::synthetic_candidates(n);
        let iters = (2_000_000 / n).max(200);
        let t0 = Instant::now();
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
    println!("stand-in alone, spawn -> GET / 200: median {c:.1} ms over {runs} runs");
    println!("daemon, spawn -> READY=1:           median {d:.1} ms over {runs} runs");
    println!(
        "daemon overhead (READY minus the child's own time to ready): {:.1} ms",
        d - c
    );
    placement_latency();
}
