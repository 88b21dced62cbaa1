//! Benchmarks of the cluster that print figures (no assertions): join endpoint throughput and
//! latency on a three-node cluster, heartbeat ingestion from 1000 simulated subs at 1 Hz (main's
//! CPU and RSS), and the time main takes to notice a SIGKILLed sub.
//!
//! Run: `cargo bench --bench cluster`. Real daemon processes (`airclass-node`) with the LiveKit
//! stand-in (a test double) as their child, a `redis-server` started on a free loopback port;
//! the load comes from this process (a second process relative to the daemons). Every config
//! sets `cluster.mdns = false`: nothing leaves 127.0.0.1. Every spawned process is killed by a
//! drop guard, also when the bench panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airclass_node::cluster::auth::{self, ClusterSecret};
use airclass_node::cluster::main_role::unix_now;
use airclass_node::cluster::protocol::{
    HeartbeatRequest, LivekitHealth, NodeInfo, NodeMode, NodeStats, PortRange, RegisterRequest,
    PROTOCOL_VERSION,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const DAEMON: &str = env!("CARGO_BIN_EXE_airclass-node");
const STANDIN: &str = env!("CARGO_BIN_EXE_livekit-standin");

const CLUSTER_SECRET: &str = "benchcluster-0123456789abcdefghijklmnop";
const APP_TOKEN: &str = "bench-app-token-0123456789";
const CLUSTER_ID: &str = "bench";

// ---------------------------------------------------------------- processes and their guards

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` consecutive ports free for TCP and UDP on 127.0.0.1 (best effort).
fn free_block(n: u16) -> u16 {
    for _ in 0..200 {
        let start = 20000 + (rand::random::<u16>() % 30000);
        let ok = (start..start + n).all(|p| {
            std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
        });
        if ok {
            return start;
        }
    }
    panic!("no free port block");
}

/// A spawned process plus pids it is known to own; all SIGKILLed on drop.
struct Guard {
    child: Child,
    extra: Vec<u32>,
}

impl Guard {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn sigkill_all(&mut self) {
        for p in &self.extra {
            let _ = kill(Pid::from_raw(*p as i32), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.sigkill_all();
    }
}

/// A redis-server on a free loopback port, killed on drop.
struct Redis {
    _guard: Guard,
    port: u16,
}

fn start_redis() -> Redis {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is needed (apt-get install -y redis-server)");
    let redis = Redis {
        _guard: Guard {
            child,
            extra: Vec::new(),
        },
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    redis
}

impl Redis {
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// A node's directory: secrets, `airclass.toml`, an empty nodes dir, the daemon log.
struct NodeDir {
    dir: tempfile::TempDir,
    instance: String,
    api_port: u16,
}

impl NodeDir {
    fn new(instance: &str, mode: &str, redis: &Redis, cluster: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let base = free_block(3);
        let udp = free_block(21);
        let (lk, tcp, api) = (base, base + 1, base + 2);
        let s = p.join("secrets");
        std::fs::create_dir(&s).unwrap();
        std::fs::create_dir(p.join("nodes")).unwrap();
        let w = |n: &str, v: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(s.join(n), format!("{v}\n")).unwrap();
            std::fs::set_permissions(s.join(n), std::fs::Permissions::from_mode(0o640)).unwrap();
        };
        w("key", "APIbench");
        w("secret", "benchsecret-0123456789abcdefghijklmnop");
        w("cluster", CLUSTER_SECRET);
        w("app", &auth::token_sha256_hex(APP_TOKEN));
        let f = |n: &str| s.join(n).display().to_string();
        let toml = format!(
            r#"[node]
mode = "{mode}"
livekit_port = {lk}
rtc_tcp_port = {tcp}
rtc_udp_start = {udp}
rtc_udp_end = {udp_end}
api_port = {api}
advertise_address = "127.0.0.1"

[livekit]
# LiveKit's metrics port is derived per name; several benches share one host
prometheus_port = 0
binary = "{STANDIN}"
api_key_file = "{key}"
api_secret_file = "{secret}"
health_interval_ms = 1000
drain_timeout_secs = 2
node_ip = "127.0.0.1"

[redis]
url = "{redis}"

[cluster]
id = "{CLUSTER_ID}"
secret_file = "{csecret}"
# benchmarks never send multicast: subs are given main's URL
mdns = false
discovery_timeout_secs = 1
{cluster}

[api]
bind = "127.0.0.1"
app_token_sha256_file = "{app}"
"#,
            udp_end = udp + 20,
            key = f("key"),
            secret = f("secret"),
            csecret = f("cluster"),
            app = f("app"),
            redis = redis.url(),
        );
        std::fs::write(p.join("airclass.toml"), toml).unwrap();
        NodeDir {
            dir,
            instance: instance.into(),
            api_port: api,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `airclass-node run --instance NAME`, logging at warn to `daemon.log`.
    fn spawn(&self) -> Guard {
        let path: &Path = self.dir.path();
        let log = std::fs::File::create(self.log()).unwrap();
        let mut cmd = Command::new(DAEMON);
        cmd.arg("--config")
            .arg(path.join("airclass.toml"))
            .arg("--nodes-dir")
            .arg(path.join("nodes"))
            .args(["run", "--instance", &self.instance])
            .env("RUNTIME_DIRECTORY", path.join("run"))
            .env("RUST_LOG", "warn")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (var, _, _) in airclass_node::config::load::ENV_OVERRIDES {
            cmd.env_remove(var);
        }
        Guard {
            child: cmd.spawn().unwrap(),
            extra: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------- HTTP and /proc helpers

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get_json(c: &reqwest::Client, url: &str) -> Option<Value> {
    c.get(url).send().await.ok()?.json().await.ok()
}

/// Node name → state, from main's `GET /api/cluster/nodes`.
async fn states(c: &reqwest::Client, main: &str) -> BTreeMap<String, String> {
    get_json(c, &format!("{main}/api/cluster/nodes"))
        .await
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| Some((n["name"].as_str()?.into(), n["state"].as_str()?.into())))
        .collect()
}

/// Wait until every name in `names` is `alive` on main.
async fn wait_alive(c: &reqwest::Client, main: &NodeDir, names: &[&str], timeout: Duration) {
    let t0 = Instant::now();
    loop {
        let s = states(c, &main.url()).await;
        if names
            .iter()
            .all(|n| s.get(*n).map(String::as_str) == Some("alive"))
        {
            return;
        }
        assert!(
            t0.elapsed() < timeout,
            "cluster did not form ({s:?}); main's log:\n{}",
            main.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The LiveKit (stand-in) pid a daemon reports.
async fn livekit_pid(c: &reqwest::Client, node: &NodeDir) -> Option<u32> {
    let v = get_json(c, &format!("{}/api/node", node.url())).await?;
    v["livekit"]["pid"].as_u64().map(|p| p as u32)
}

/// utime + stime of `pid`, in clock ticks (USER_HZ, 100 on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after "(comm) ": state is field 3, utime 14, stime 15
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

const USER_HZ: f64 = 100.0;

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

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Lat {
    p50: f64,
    p99: f64,
    max: f64,
}

fn lat(mut v: Vec<Duration>) -> Lat {
    if v.is_empty() {
        return Lat::default();
    }
    v.sort();
    let q = |p: f64| {
        let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1000.0
    };
    Lat {
        p50: q(0.50),
        p99: q(0.99),
        max: q(1.0),
    }
}

// ---------------------------------------------------------------- 1. join throughput

struct JoinRun {
    label: &'static str,
    concurrency: usize,
    secs: f64,
    ok: usize,
    errors: usize,
    lat: Lat,
    per_node: BTreeMap<String, usize>,
}

/// `cold`: every join names a room never seen before (main also asks Redis's `room_node_map`);
/// otherwise rooms are drawn from 500 names, which main soon knows (placement cache).
async fn join_load(main: &str, concurrency: usize, dur: Duration, cold: bool) -> JoinRun {
    let c = client();
    let url = Arc::new(main.to_owned());
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lats, mut errors) = (Vec::new(), 0usize);
            let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
            let mut i = 0usize;
            while t0.elapsed() < dur {
                i += 1;
                let room = if cold {
                    format!("cold-{w}-{i}-{}", rand::random::<u32>())
                } else {
                    format!("class-{}", rand::random::<u32>() % 500)
                };
                let role = if i % 20 == 0 { "teacher" } else { "student" };
                let body = json!({"identity": format!("u{w}-{i}"), "name": "Bench", "role": role});
                let t = Instant::now();
                let r = c
                    .post(format!("{url}/api/rooms/{room}/join"))
                    .bearer_auth(APP_TOKEN)
                    .json(&body)
                    .send()
                    .await;
                let node = match r {
                    Ok(r) if r.status().as_u16() == 200 => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["node"].as_str().map(str::to_owned)),
                    _ => None,
                };
                lats.push(t.elapsed());
                match node {
                    Some(n) => *per_node.entry(n).or_default() += 1,
                    None => errors += 1,
                }
            }
            (lats, errors, per_node)
        }));
    }
    let (mut all, mut errors, mut per_node) = (Vec::new(), 0, BTreeMap::new());
    for t in tasks {
        let (l, e, p) = t.await.unwrap();
        all.extend(l);
        errors += e;
        for (k, v) in p {
            *per_node.entry(k).or_insert(0) += v;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    JoinRun {
        label: if cold { "new rooms" } else { "500 rooms" },
        concurrency,
        secs,
        ok: all.len() - errors,
        errors,
        lat: lat(all),
        per_node,
    }
}

/// One join, shown in full and its token checked with livekit-api's verifier: the figures below
/// measure real answers.
async fn sample_join(c: &reqwest::Client, main: &str) {
    let v: Value = c
        .post(format!("{main}/api/rooms/class-0/join"))
        .bearer_auth(APP_TOKEN)
        .json(&json!({"identity": "sample", "name": "Sample", "role": "teacher"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = v["token"].as_str().unwrap_or_default();
    let verified = livekit_api::access_token::TokenVerifier::with_api_key(
        "APIbench",
        "benchsecret-0123456789abcdefghijklmnop",
    )
    .verify(token)
    .map(|c| format!("verifies, room {:?}", c.video.room))
    .unwrap_or_else(|e| format!("does NOT verify: {e}"));
    println!(
        "sample join: node {} at {}, token of {} bytes {verified}",
        v["node"],
        v["livekit_url"],
        token.len()
    );
}

async fn bench_joins() -> Vec<JoinRun> {
    println!("\n-- 1. join endpoint: main + 2 subs (real daemons, stand-in LiveKit), Redis");
    let redis = start_redis();
    let main_dir = NodeDir::new("main", "main", &redis, "");
    let mut main = main_dir.spawn();
    let c = client();
    wait_alive(&c, &main_dir, &["main"], Duration::from_secs(20)).await;
    let cfg = format!("main_url = \"{}\"", main_dir.url());
    let sub_dirs: Vec<NodeDir> = ["node-1", "node-2"]
        .iter()
        .map(|n| NodeDir::new(n, "sub", &redis, &cfg))
        .collect();
    let mut subs: Vec<Guard> = sub_dirs.iter().map(NodeDir::spawn).collect();
    wait_alive(
        &c,
        &main_dir,
        &["main", "node-1", "node-2"],
        Duration::from_secs(20),
    )
    .await;
    for (g, d) in subs.iter_mut().zip(&sub_dirs) {
        g.extra.extend(livekit_pid(&c, d).await);
    }
    main.extra.extend(livekit_pid(&c, &main_dir).await);
    println!("cluster formed: main, node-1, node-2 alive; warming up 1 s");
    sample_join(&c, &main_dir.url()).await;
    let _ = join_load(&main_dir.url(), 4, Duration::from_secs(1), false).await;
    let mut runs = Vec::new();
    for (conc, cold) in [(1usize, false), (8, false), (32, false), (8, true)] {
        let cpu0 = cpu_ticks(main.pid());
        let r = join_load(&main_dir.url(), conc, Duration::from_secs(4), cold).await;
        let cpu = (cpu_ticks(main.pid()) - cpu0) as f64 / USER_HZ / r.secs * 100.0;
        println!(
            "{}, concurrency {:>2}: {:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  errors {}  (main CPU {:.0}% of a core; joins per node {:?})",
            r.label,
            r.concurrency,
            r.ok as f64 / r.secs,
            r.lat.p50,
            r.lat.p99,
            r.lat.max,
            r.errors,
            cpu,
            r.per_node
        );
        runs.push(r);
    }
    drop(subs);
    drop(main);
    drop(redis);
    runs
}

// ---------------------------------------------------------------- 2. heartbeat ingestion

struct Ingest {
    nodes: usize,
    window_secs: f64,
    sent: usize,
    rejected: BTreeMap<String, usize>,
    lat: Lat,
    idle_cpu: f64,
    cpu: f64,
    rss_before: u64,
    rss_after: u64,
    alive_at_end: u64,
    listed_at_end: usize,
    refused_on_main: Value,
}

fn fake_stats(i: usize) -> NodeStats {
    NodeStats {
        cpu_percent: (i % 50) as f64,
        memory_used_bytes: 2 << 30,
        memory_total_bytes: 8 << 30,
        load1: 0.5,
        sysload: 0.125,
        num_cpus: 4,
        rooms: 2,
        participants: 30,
        livekit_health: LivekitHealth::Healthy,
        room_names: vec![format!("room-{i}-a"), format!("room-{i}-b")],
    }
}

/// One signed POST; `Ok(())` on 200, else the refusal code (or "transport").
async fn post_signed(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    node: &str,
    secret: &ClusterSecret,
    body: Vec<u8>,
) -> Result<(), String> {
    let h = auth::sign_request(
        secret,
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
    match rb.body(body).send().await {
        Ok(r) if r.status().as_u16() == 200 => Ok(()),
        Ok(r) => {
            let code = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or_default();
            Err(format!("{code} {}", v["error"].as_str().unwrap_or("?")))
        }
        Err(e) => Err(format!(
            "transport ({})",
            if e.is_timeout() { "timeout" } else { "error" }
        )),
    }
}

async fn bench_heartbeats(n: usize, window: Duration) -> Ingest {
    println!(
        "\n-- 2. heartbeat ingestion: {n} simulated subs at 1 Hz against a main daemon (heartbeat_secs = 1)"
    );
    let redis = start_redis();
    let main_dir = NodeDir::new("main", "main", &redis, "heartbeat_secs = 1");
    let mut main = main_dir.spawn();
    let c = client();
    wait_alive(&c, &main_dir, &["main"], Duration::from_secs(20)).await;
    main.extra.extend(livekit_pid(&c, &main_dir).await);
    let pid = main.pid();

    // main idle (itself only), for reference
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = Duration::from_secs(4);
    let t = cpu_ticks(pid);
    tokio::time::sleep(idle).await;
    let idle_cpu = (cpu_ticks(pid) - t) as f64 / USER_HZ / idle.as_secs_f64() * 100.0;
    let rss_before = rss_kib(pid);

    let secret = Arc::new(ClusterSecret::from_text(CLUSTER_SECRET).unwrap());
    let base = Arc::new(main_dir.url());
    let identities: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|_| airclass_node::cluster::protocol::new_identity(&mut rand::thread_rng()))
            .collect(),
    );
    // Second 0 registers node i at i/n s; every later second heartbeats it at the same phase.
    let warm = 2u32; // seconds of heartbeats before the measured window
    let total_secs = 1 + warm + window.as_secs() as u32;
    let (tx, mut rx) =
        tokio::sync::mpsc::unbounded_channel::<(u32, Duration, Result<(), String>)>();
    let t0 = tokio::time::Instant::now();
    let step = Duration::from_secs(1) / n as u32;
    let mut window_start: Option<(Instant, u64)> = None;
    for sec in 0..total_secs {
        if sec == 1 + warm {
            window_start = Some((Instant::now(), cpu_ticks(pid)));
        }
        for i in 0..n {
            tokio::time::sleep_until(t0 + Duration::from_secs(sec as u64) + step * i as u32).await;
            let (c, base, secret, ids, tx) = (
                c.clone(),
                base.clone(),
                secret.clone(),
                identities.clone(),
                tx.clone(),
            );
            tokio::spawn(async move {
                let name = format!("node-{}", i + 1);
                let (path, body) = if sec == 0 {
                    let info = NodeInfo {
                        name: name.clone(),
                        mode: NodeMode::Sub,
                        protocol_version: PROTOCOL_VERSION,
                        software_version: "bench".into(),
                        api_url: format!("http://127.0.0.1:1/{name}"),
                        livekit_url: format!("ws://127.0.0.{}:7880", 2 + i % 250),
                        rtc_range: PortRange {
                            start: 50000,
                            end: 50100,
                        },
                    };
                    let r = RegisterRequest {
                        cluster_id: CLUSTER_ID.into(),
                        identity: ids[i].clone(),
                        node: info,
                        stats: fake_stats(i),
                    };
                    ("/api/cluster/register", serde_json::to_vec(&r).unwrap())
                } else {
                    let h = HeartbeatRequest {
                        name: name.clone(),
                        identity: ids[i].clone(),
                        stats: fake_stats(i),
                    };
                    ("/api/cluster/heartbeat", serde_json::to_vec(&h).unwrap())
                };
                let t = Instant::now();
                let r = post_signed(&c, &base, path, &name, &secret, body).await;
                let _ = tx.send((sec, t.elapsed(), r));
            });
        }
    }
    // the last second's requests are in flight: let them finish, then close the window
    tokio::time::sleep_until(t0 + Duration::from_secs(total_secs as u64)).await;
    let (w0, cpu0) = window_start.unwrap();
    let window_secs = w0.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - cpu0) as f64 / USER_HZ / window_secs * 100.0;
    let rss_after = rss_kib(pid);
    let status = get_json(&c, &format!("{}/api/cluster/status", main_dir.url()))
        .await
        .unwrap_or_default();
    drop(tx);
    let (mut lats, mut sent, mut rejected) = (Vec::new(), 0usize, BTreeMap::new());
    let mut reg_failed = 0usize;
    while let Some((sec, d, r)) = rx.recv().await {
        if sec == 0 {
            reg_failed += usize::from(r.is_err());
            continue;
        }
        sent += 1;
        if sec > warm {
            lats.push(d);
        }
        if let Err(e) = r {
            *rejected.entry(e).or_insert(0) += 1;
        }
    }
    if reg_failed > 0 {
        println!("WARNING: {reg_failed} registrations were refused");
    }
    let r = Ingest {
        nodes: n,
        window_secs,
        sent,
        rejected,
        lat: lat(lats),
        idle_cpu,
        cpu,
        rss_before,
        rss_after,
        alive_at_end: status["nodes_alive"].as_u64().unwrap_or(0),
        listed_at_end: status["nodes"].as_array().map(Vec::len).unwrap_or(0),
        refused_on_main: status["refused"].clone(),
    };
    println!(
        "window {:.1} s: main CPU {:.1}% of one core (idle before: {:.1}%), RSS {} KiB -> {} KiB",
        r.window_secs, r.cpu, r.idle_cpu, r.rss_before, r.rss_after
    );
    println!(
        "heartbeats sent {} (incl. {warm} s warm-up), latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, rejected {:?}",
        r.sent, r.lat.p50, r.lat.p99, r.lat.max, r.rejected
    );
    println!(
        "main reports {} nodes listed, {} alive (the {} simulated + main itself); refused counters {}",
        r.listed_at_end, r.alive_at_end, r.nodes, r.refused_on_main
    );
    drop(main);
    drop(redis);
    r
}

// ---------------------------------------------------------------- 3. detection of a killed node

struct Detect {
    suspect_ms: Option<f64>,
    dead_ms: Option<f64>,
}

async fn bench_detection(reps: usize) -> Vec<Detect> {
    println!(
        "\n-- 3. detection of a SIGKILLed sub (heartbeat_secs = 1, dead_after_missed = 3, polled every 20 ms)"
    );
    let redis = start_redis();
    let cl = "heartbeat_secs = 1\ndead_after_missed = 3";
    let main_dir = NodeDir::new("main", "main", &redis, cl);
    let mut main = main_dir.spawn();
    let c = client();
    wait_alive(&c, &main_dir, &["main"], Duration::from_secs(20)).await;
    main.extra.extend(livekit_pid(&c, &main_dir).await);
    let cfg = format!("{cl}\nmain_url = \"{}\"", main_dir.url());
    let mut out = Vec::new();
    for rep in 0..reps {
        let dir = NodeDir::new("node-1", "sub", &redis, &cfg);
        let mut sub = dir.spawn();
        // a fresh process has a fresh identity: wait until main lists it alive with it
        wait_alive(&c, &main_dir, &["main", "node-1"], Duration::from_secs(20)).await;
        sub.extra.extend(livekit_pid(&c, &dir).await);
        // let it settle into its heartbeat rhythm, at a phase that differs per repetition
        tokio::time::sleep(Duration::from_millis(1500 + 333 * rep as u64)).await;
        let killed = Instant::now();
        sub.sigkill_all();
        let (mut suspect, mut dead) = (None, None);
        while killed.elapsed() < Duration::from_secs(15) && dead.is_none() {
            let s = states(&c, &main_dir.url()).await;
            let ms = killed.elapsed().as_secs_f64() * 1000.0;
            match s.get("node-1").map(String::as_str) {
                Some("suspect") if suspect.is_none() => suspect = Some(ms),
                Some("dead") => {
                    suspect.get_or_insert(ms);
                    dead = Some(ms);
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let f = |v: Option<f64>| v.map_or("never".into(), |v| format!("{v:.0} ms"));
        println!(
            "run {}: suspect after {}, dead after {}",
            rep + 1,
            f(suspect),
            f(dead)
        );
        out.push(Detect {
            suspect_ms: suspect,
            dead_ms: dead,
        });
        drop(sub);
    }
    drop(main);
    drop(redis);
    out
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    (!v.is_empty()).then(|| v[v.len() / 2])
}

fn main() {
    airclass_node::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("== airclass-node cluster benchmarks (figures, not assertions) ==");
    println!(
        "machine: {} CPUs; load and daemons share them",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let t0 = Instant::now();
    let joins = rt.block_on(bench_joins());
    let ingest = rt.block_on(bench_heartbeats(1000, Duration::from_secs(20)));
    let detect = rt.block_on(bench_detection(3));

    println!("\n== summary ({:.0} s) ==", t0.elapsed().as_secs_f64());
    println!("join endpoint (3 nodes, load from this process over loopback):");
    println!("  rooms      conc   req/s   p50 ms   p99 ms   max ms  errors");
    for r in &joins {
        println!(
            "  {:<9} {:>5} {:>7.0} {:>8.2} {:>8.2} {:>8.2} {:>7}",
            r.label,
            r.concurrency,
            r.ok as f64 / r.secs,
            r.lat.p50,
            r.lat.p99,
            r.lat.max,
            r.errors
        );
    }
    println!(
        "heartbeat ingestion ({} nodes at 1 Hz, {:.0} s): main CPU {:.1}% of a core (idle {:.1}%), RSS {} -> {} KiB, latency p50 {:.2} / p99 {:.2} ms, rejected {}, membership {} listed / {} alive",
        ingest.nodes,
        ingest.window_secs,
        ingest.cpu,
        ingest.idle_cpu,
        ingest.rss_before,
        ingest.rss_after,
        ingest.lat.p50,
        ingest.lat.p99,
        ingest.rejected.values().sum::<usize>(),
        ingest.listed_at_end,
        ingest.alive_at_end
    );
    let sus: Vec<f64> = detect.iter().filter_map(|d| d.suspect_ms).collect();
    let dead: Vec<f64> = detect.iter().filter_map(|d| d.dead_ms).collect();
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "killed-node detection (heartbeat 1 s, dead after 3 missed): suspect [{}] ms, median {}; dead [{}] ms, median {}",
        list(&sus),
        median(sus.clone()).map_or("-".into(), |m| format!("{m:.0} ms")),
        list(&dead),
        median(dead.clone()).map_or("-".into(), |m| format!("{m:.0} ms")),
    );
    println!("(placement latency: see `cargo bench --bench daemon`)");
}
