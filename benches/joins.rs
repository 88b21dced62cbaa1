//! The join path side by side with the seed's stack (figures, no assertions): `wrk -t2 -c16`
//! against our main daemon and against the seed's FastAPI design (`benches/seed-stack/`, a
//! BENCHMARK PEER, never shipped), in the same run, with 3 and with 1000 registered nodes.
//!
//! Run: `cargo bench --bench joins` (needs `wrk`, `redis-server`, `redis-cli`, `nginx`,
//! python3; run as root, a missing tool is installed with apt-get; the seed stack's venv is built once by
//! `benches/seed-stack/venv.sh` (pip, pinned) and cached). Knobs (env):
//! `JOINS_SECS` (wrk duration per row, default 10), `JOINS_REPS` (runs of the key rows, default
//! 3), `JOINS_PEER` (0: skip the seed stack), `JOINS_WRK_ARGS` (wrk's threads and connections,
//! default `-t2 -c16`), `JOINS_DELAY_MS` (a pause per request in each wrk connection: a load
//! below saturation), `AIRCLASS_DAEMON_UNDER_TEST` (another `airclass-node` binary, e.g. an
//! older build).
//!
//! Rows: "static" — nginx answering a constant 200 (a FLOOR PEER, never shipped): what wrk
//! measures on this machine for about the fastest HTTP server there is, load generator and
//! server sharing its cores; "healthz" — our `GET /healthz`, a constant answer: the floor of
//! our own HTTP stack; both to read the join rows' latency against;
//! "placed" — 500 rooms joined once before the run, so every join finds its room placed;
//! "new" — every join names a room never seen (main reads LiveKit's `room_node_map`, hashes,
//! calls CreateRoom on its own LiveKit — the real livekit-server — and reads the map back).
//! The seed stack has no placement memory: every join hashes over every node, placed or not.
//! Nodes other than main are simulated by this process (signed register, heartbeats every 5 s,
//! spread evenly over the period as independent subs are).
//! Per row: joins/s, latency p50/p99 (wrk), non-2xx answers, the server's CPU per join (utime +
//! stime from /proc), load average; for ours also the Redis connections opened (INFO stats).
//! Everything stays on 127.0.0.1; every process is killed on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use airclass_node::clock::{unix_now, Instant};
use airclass_node::cluster::auth::{self, ClusterSecret};
use airclass_node::cluster::protocol::{
    HeartbeatRequest, LivekitHealth, NodeInfo, NodeMode, NodeStats, PortRange, RegisterRequest,
    PROTOCOL_VERSION,
};
use serde_json::json;

#[path = "../tests/support/mod.rs"]
mod support;

use support::daemon::{rss_kib, Daemon};
use support::node::{NodeSpec, API_KEY, API_SECRET, APP_TOKEN, CLUSTER_SECRET};
use support::ports::PortBlock;
use support::redis::Redis;

const CLUSTER_ID: &str = "bench";
const USER_HZ: f64 = 100.0;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// utime + stime of `pid` and its threads, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<&str> = s
        .rsplit_once(") ")
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let f = |i: usize| {
        rest.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    f(14) + f(15)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `tool` on PATH; as root a missing one is installed from Debian's `package`, else the bench
/// stops saying how to get it.
fn require(tool: &str, package: &str) {
    let how = format!("apt-get install -y {package}");
    if !have(tool) && is_root() {
        eprintln!("{tool} is missing: {how}");
        let _ = Command::new("sh")
            .args(["-c", &format!("apt-get install -y -q {package} >/dev/null")])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    assert!(have(tool), "{tool} is missing: {how}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

// ---------------------------------------------------------------- simulated nodes

fn sim_stats(i: usize) -> NodeStats {
    NodeStats {
        cpu_percent: 10.0,
        memory_used_bytes: 1 << 30,
        memory_total_bytes: 8 << 30,
        load1: 0.4,
        sysload: (i % 10) as f64 / 20.0,
        num_cpus: 4,
        rooms: 0,
        participants: 0,
        livekit_health: LivekitHealth::Healthy,
        room_names: Vec::new(),
        livekit_node_id: Some(format!("ND_sim{i}")),
    }
}

/// Sign and POST `body`; the server's status, or the transport error (an overloaded peer may
/// reset a heartbeat: counted by the caller, not a panic in the background).
async fn try_post_signed(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    node: &str,
    body: Vec<u8>,
) -> Result<reqwest::StatusCode, reqwest::Error> {
    let secret = ClusterSecret::from_text(CLUSTER_SECRET).unwrap();
    let h = auth::sign_request(
        &secret,
        node,
        "POST",
        path,
        &body,
        unix_now(),
        &mut rand::thread_rng(),
    );
    let mut rb = c
        .post(format!("{base}{path}"))
        .header("content-type", "application/json");
    for (k, v) in h.pairs() {
        rb = rb.header(k, v);
    }
    Ok(rb.body(body).send().await?.status())
}

async fn post_signed(c: &reqwest::Client, base: &str, path: &str, node: &str, body: Vec<u8>) {
    let r = try_post_signed(c, base, path, node, body).await;
    assert!(
        r.as_ref().is_ok_and(|s| s.is_success()),
        "{path} for {node}: {r:?}"
    );
}

/// Register `node-1 … node-(n-1)` at `base` and heartbeat them every 5 s until dropped.
struct SimNodes(tokio::task::JoinHandle<()>);

impl Drop for SimNodes {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn simulate(base: &str, n: usize) -> SimNodes {
    let c = support::http();
    let ids: Vec<String> = (0..n).map(|i| format!("sim-identity-{i}")).collect();
    for (i, id) in ids.iter().enumerate().skip(1) {
        let name = format!("node-{i}");
        let r = RegisterRequest {
            cluster_id: CLUSTER_ID.into(),
            identity: id.clone(),
            node: NodeInfo {
                name: name.clone(),
                mode: NodeMode::Sub,
                protocol_version: PROTOCOL_VERSION,
                software_version: "bench".into(),
                api_url: format!("http://127.0.0.1:1/{name}"),
                livekit_url: format!("ws://127.0.0.{}:7880", 2 + i % 250),
                rtc_range: PortRange {
                    start: 50000,
                    end: 50020,
                },
            },
            stats: sim_stats(i),
        };
        post_signed(
            &c,
            base,
            "/api/cluster/register",
            &name,
            serde_json::to_vec(&r).unwrap(),
        )
        .await;
    }
    let base = base.to_owned();
    // spread over the period, as independent subs are (each sub's own start and jitter):
    // not 999 heartbeats in one burst every 5 s
    let gap = Duration::from_secs(5) / n.max(1) as u32;
    SimNodes(tokio::spawn(async move {
        loop {
            for (i, id) in ids.iter().enumerate().skip(1) {
                tokio::time::sleep(gap).await;
                let name = format!("node-{i}");
                let h = HeartbeatRequest {
                    name: name.clone(),
                    identity: id.clone(),
                    stats: sim_stats(i),
                };
                let body = serde_json::to_vec(&h).unwrap();
                let path = "/api/cluster/heartbeat";
                match try_post_signed(&c, &base, path, &name, body).await {
                    Ok(s) if s.is_success() => {}
                    other => lost_heartbeat(&name, other),
                }
            }
        }
    }))
}

/// A heartbeat the server did not take (printed once per 1000, so an overloaded peer shows).
fn lost_heartbeat(node: &str, what: Result<reqwest::StatusCode, reqwest::Error>) {
    static LOST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = LOST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if n.is_multiple_of(1000) {
        println!("heartbeat lost ({} so far): {node}: {what:?}", n + 1);
    }
}

// ---------------------------------------------------------------- wrk

struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx: u64,
    socket_errors: String,
}

fn ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let x: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => x / 1000.0,
        "ms" => x,
        "s" => x * 1000.0,
        _ => f64::NAN,
    }
}

fn parse_wrk(out: &str) -> Wrk {
    let field = |prefix: &str| {
        out.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(|r| r.trim().to_owned()))
    };
    let requests = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Wrk {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_ms: field("50%").map_or(f64::NAN, |v| ms(&v)),
        p99_ms: field("99%").map_or(f64::NAN, |v| ms(&v)),
        requests,
        non_2xx: field("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        socket_errors: field("Socket errors:").unwrap_or_else(|| "none".into()),
    }
}

/// The Lua of one row: POST joins with the application token, rooms as `room_expr`.
fn script(dir: &Path, name: &str, room_expr: &str) -> PathBuf {
    let body = r#"{"identity":"bench-user","name":"Bench","role":"student"}"#;
    let lua = format!(
        r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {APP_TOKEN}"
wrk.body = '{body}'
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/api/rooms/" .. {room_expr} .. "/join")
end
"#
    );
    let lua = match env_u64("JOINS_DELAY_MS", 0) {
        0 => lua,
        d => format!("{lua}delay = function() return {d} end\n"),
    };
    let p = dir.join(format!("{name}.lua"));
    std::fs::write(&p, lua).unwrap();
    p
}

/// The Lua of a floor row: `GET path` (a constant answer: HTTP, wrk and the scheduler alone,
/// no join work), so the join rows can be read against it.
fn get_script(dir: &Path, name: &str, path: &str) -> PathBuf {
    let p = dir.join(format!("{name}.lua"));
    let lua = format!("request = function() return wrk.format(\"GET\", \"{path}\") end\n");
    std::fs::write(&p, lua).unwrap();
    p
}

fn run_wrk(url: &str, script: &Path, secs: u64) -> Wrk {
    let args = std::env::var("JOINS_WRK_ARGS").unwrap_or_else(|_| "-t2 -c16".into());
    let out = Command::new("wrk")
        .args(args.split_whitespace())
        .args([&format!("-d{secs}s"), "--latency", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let w = parse_wrk(&text);
    assert!(
        w.requests > 0,
        "wrk measured nothing:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w
}

// ---------------------------------------------------------------- servers

struct Row {
    stack: &'static str,
    nodes: usize,
    rooms: &'static str,
    wrk: Wrk,
    cpu_us_per_join: f64,
    load: String,
    redis_conns: Option<u64>,
}

fn print_row(r: &Row) {
    let conns = r.redis_conns.map_or("-".to_owned(), |c| {
        format!("{c} for {} joins", r.wrk.requests)
    });
    println!(
        "{:<6} {:>5} nodes  {:<7} {:>8.0} joins/s  p50 {:>6.2} ms  p99 {:>6.2} ms  non-2xx {:<3} socket errors {:<12} CPU {:>5.1} µs/join  Redis conns {conns}  load {}",
        r.stack, r.nodes, r.rooms, r.wrk.rps, r.wrk.p50_ms, r.wrk.p99_ms, r.wrk.non_2xx,
        r.wrk.socket_errors, r.cpu_us_per_join, r.load
    );
}

/// The server under load.
struct Target<'a> {
    stack: &'static str,
    nodes: usize,
    pid: u32,
    url: String,
    redis: Option<&'a Redis>,
}

fn measure(t: &Target<'_>, rooms: &'static str, script: &Path, secs: u64) -> Row {
    let load = loadavg();
    let conns0 = t.redis.map(connections_received);
    let cpu0 = cpu_ticks(t.pid);
    let wrk = run_wrk(&t.url, script, secs);
    let cpu = (cpu_ticks(t.pid) - cpu0) as f64 / USER_HZ;
    // minus the second INFO call's own connection
    let redis_conns = t
        .redis
        .map(|r| connections_received(r) - conns0.unwrap_or(0) - 1);
    let row = Row {
        stack: t.stack,
        nodes: t.nodes,
        rooms,
        cpu_us_per_join: cpu * 1e6 / wrk.requests.max(1) as f64,
        wrk,
        load,
        redis_conns,
    };
    print_row(&row);
    row
}

fn connections_received(r: &Redis) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &r.port.to_string(), "INFO", "stats"])
        .output()
        .expect("redis-cli runs (apt-get install -y redis-tools)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Join each of the 500 "placed" rooms once, so the placed rows find them placed.
async fn warm_rooms(base: &str) {
    let c = support::http();
    for i in 0..500 {
        let r = c
            .post(format!("{base}/api/rooms/class-{i}/join"))
            .bearer_auth(APP_TOKEN)
            .json(&json!({"identity": "warm", "role": "student"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "warm-up join");
    }
}

/// Our main daemon (release build, the real livekit-server) on `redis`, logging at warn.
async fn ours(redis: &Redis) -> (support::node::NodeDir, Daemon) {
    let dir = NodeSpec::main("main")
        .redis(redis.url())
        .cluster_id(CLUSTER_ID)
        .write();
    let mut d = Daemon::spawn_ready(&dir, &[("RUST_LOG", "warn")]).await;
    d.livekit_pid().await;
    (dir, d)
}

/// A peer server of the bench (the seed stack, nginx) on a reserved port, killed on drop.
struct Peer {
    child: Child,
    url: String,
    _ports: PortBlock,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    /// `child`, once it listens on 127.0.0.1:`port` (of `ports`), within `limit`.
    async fn listening(
        what: &str,
        child: Child,
        (ports, port): (PortBlock, u16),
        dir: tempfile::TempDir,
        limit: Duration,
    ) -> Peer {
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < limit, "{what} did not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Peer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _ports: ports,
            _dir: dir,
        }
    }
}

fn seed_python() -> String {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/seed-stack");
    let out = Command::new(here.join("venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("benches/seed-stack/venv.sh runs");
    assert!(out.status.success(), "benches/seed-stack/venv.sh failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The seed stack under uvicorn, one worker.
async fn seed(python: &str) -> Peer {
    let ports = PortBlock::reserve();
    let port = ports.port(2);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster-secret");
    std::fs::write(&secret, CLUSTER_SECRET).unwrap();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/seed-stack");
    let child = Command::new(python)
        .args(["-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args([
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ])
        .current_dir(&here)
        .env("SEED_SECRET_FILE", &secret)
        .env(
            "SEED_APP_TOKEN_SHA256",
            airclass_node::app_token::token_sha256_hex(APP_TOKEN),
        )
        .env("LIVEKIT_API_KEY", API_KEY)
        .env("LIVEKIT_API_SECRET", API_SECRET)
        .stdin(Stdio::null())
        .spawn()
        .expect("uvicorn starts");
    let limit = Duration::from_secs(30);
    Peer::listening("the seed stack", child, (ports, port), dir, limit).await
}

/// One sample answer of each stack, its token verified with livekit-api's verifier.
async fn sample(stack: &str, base: &str) {
    let v: serde_json::Value = support::http()
        .post(format!("{base}/api/rooms/sample/join"))
        .bearer_auth(APP_TOKEN)
        .json(&json!({"identity": "sample", "name": "Sample", "role": "teacher"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = v["token"].as_str().unwrap_or_default();
    let ok = livekit_api::access_token::TokenVerifier::with_api_key(API_KEY, API_SECRET)
        .verify(token)
        .map(|c| format!("verifies (room {:?})", c.video.room))
        .unwrap_or_else(|e| format!("does NOT verify: {e}"));
    println!(
        "{stack}: sample join -> node {} at {}, token {ok}",
        v["node"], v["livekit_url"]
    );
}

/// nginx answering a constant `200` (a FLOOR PEER, never shipped; one process, no master):
/// what this machine's wrk setup measures for about the fastest HTTP server there is.
async fn nginx() -> Peer {
    let ports = PortBlock::reserve();
    let port = ports.port(0);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = format!(
        "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; client_body_temp_path {d}; server {{ listen 127.0.0.1:{port}; \
         location / {{ default_type application/json; return 200 '{{\"ok\":true}}'; }} }} }}\n"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nginx")
        .args(["-e", &format!("{d}/error.log"), "-c"])
        .arg(&path)
        .stdin(Stdio::null())
        .spawn()
        .expect("nginx starts (apt-get install -y nginx-core)");
    Peer::listening("nginx", child, (ports, port), dir, Duration::from_secs(10)).await
}

/// The floor peer's row: `GET /` on nginx under the same wrk.
async fn bench_floor(plan: &Plan, rows: &mut Vec<Row>) {
    let n = nginx().await;
    let script = get_script(plan.dir.path(), "nginx", "/");
    let t = Target {
        stack: "nginx",
        nodes: 0,
        pid: n.child.id(),
        url: n.url.clone(),
        redis: None,
    };
    rows.push(measure(&t, "static", &script, plan.secs));
}

// ---------------------------------------------------------------- main

struct Plan {
    secs: u64,
    reps: usize,
    dir: tempfile::TempDir,
}

async fn bench_ours(plan: &Plan, nodes: usize, rows: &mut Vec<Row>) -> u64 {
    let redis = Redis::start();
    let (dir, d) = ours(&redis).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(d.child.id());
    let _sim = simulate(&dir.api_url(), nodes).await;
    sample("ours", &dir.api_url()).await;
    warm_rooms(&dir.api_url()).await;
    let placed = script(plan.dir.path(), "placed", r#"("class-" .. (n % 500))"#);
    let run = rand::random::<u32>();
    let new = script(
        plan.dir.path(),
        &format!("new-{nodes}"),
        &format!(r#"("new-{run}-" .. tid .. "-" .. n)"#),
    );
    let t = Target {
        stack: "ours",
        nodes,
        pid: d.child.id(),
        url: dir.api_url(),
        redis: Some(&redis),
    };
    // the floor of this setup: the same HTTP stack and wrk, an endpoint that does nothing
    rows.push(measure(
        &t,
        "healthz",
        &get_script(plan.dir.path(), "healthz", "/healthz"),
        plan.secs,
    ));
    for _ in 0..plan.reps {
        rows.push(measure(&t, "placed", &placed, plan.secs));
    }
    rows.push(measure(&t, "new", &new, plan.secs));
    idle_rss
}

async fn bench_seed(plan: &Plan, python: &str, nodes: usize, rows: &mut Vec<Row>) -> u64 {
    let s = seed(python).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(s.child.id());
    let _sim = simulate(&s.url, nodes).await;
    sample("seed", &s.url).await;
    let placed = script(plan.dir.path(), "seed-placed", r#"("class-" .. (n % 500))"#);
    let reps = if nodes >= 1000 { 1 } else { plan.reps };
    let t = Target {
        stack: "seed",
        nodes,
        pid: s.child.id(),
        url: s.url.clone(),
        redis: None,
    };
    for _ in 0..reps {
        rows.push(measure(&t, "any", &placed, plan.secs));
    }
    idle_rss
}

fn summary(rows: &[Row], rss: &[(String, u64)]) {
    println!(
        "\n== summary: wrk -t2 -c16 on this machine ({} CPUs) ==",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| stack | nodes | rooms | joins/s | p50 ms | p99 ms | non-2xx | CPU µs/join | Redis conns | load avg |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {} | {} |",
            r.stack,
            r.nodes,
            r.rooms,
            r.wrk.rps,
            r.wrk.p50_ms,
            r.wrk.p99_ms,
            r.wrk.non_2xx,
            r.cpu_us_per_join,
            r.redis_conns
                .map_or("-".into(), |c| format!("{c} / {} joins", r.wrk.requests)),
            r.load
        );
    }
    for (what, kib) in rss {
        println!(
            "idle RSS {what}: {:.1} MB ({kib} KiB)",
            *kib as f64 / 1024.0
        );
    }
}

fn main() {
    airclass_node::tls::install_crypto_provider();
    require("wrk", "wrk");
    require("redis-server", "redis-server");
    require("redis-cli", "redis-tools");
    require("nginx", "nginx-core");
    let plan = Plan {
        secs: env_u64("JOINS_SECS", 10),
        reps: env_u64("JOINS_REPS", 3) as usize,
        dir: tempfile::tempdir().unwrap(),
    };
    // JOINS_PEER=0: ours only (a quicker inner loop; the figures then have no peer)
    let python = (env_u64("JOINS_PEER", 1) != 0).then(seed_python);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!("== join path: ours vs the seed's FastAPI stack (figures, not assertions) ==");
    println!("daemon: {}", support::node::daemon_binary().display());
    println!("load average at start: {}", loadavg());
    let t0 = Instant::now();
    let mut rows = Vec::new();
    let mut rss = Vec::new();
    rt.block_on(async {
        bench_floor(&plan, &mut rows).await;
        for nodes in [3usize, 1000] {
            let kib = bench_ours(&plan, nodes, &mut rows).await;
            rss.push((format!("ours ({nodes} nodes run)"), kib));
            if let Some(python) = &python {
                let kib = bench_seed(&plan, python, nodes, &mut rows).await;
                rss.push((format!("seed ({nodes} nodes run)"), kib));
            }
        }
    });
    summary(&rows, &rss);
    println!(
        "({:.0} s; load average at the end: {})",
        t0.elapsed().as_secs_f64(),
        loadavg()
    );
}
