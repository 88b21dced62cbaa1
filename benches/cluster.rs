//! Benchmarks of the cluster that print figures (no assertions): join endpoint throughput and
//! latency on a three-node cluster, heartbeat ingestion from 1000 simulated subs at 1 Hz (main's
//! CPU and RSS), and the time main takes to notice a SIGKILLed sub.
//!
//! Run: `cargo bench --bench cluster`. Real daemon processes (`airclass-node`) with the real
//! livekit-server (`scripts/livekit.sh`) as their child, a `redis-server` on a reserved loopback port (the
//! nodes, secrets and processes come from `tests/support/`, as in the tests);
//! the load comes from this process (a second process relative to the daemons). Every config
//! sets `cluster.mdns = false`: nothing leaves 127.0.0.1. Every spawned process is killed by a
//! drop guard, also when the bench panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use airclass_node::clock::Instant;

use airclass_node::clock::unix_now;
use airclass_node::cluster::auth::{self, ClusterSecret};
use airclass_node::cluster::protocol::{
    HeartbeatRequest, LivekitHealth, NodeInfo, NodeMode, NodeStats, PortRange, RegisterRequest,
    PROTOCOL_VERSION,
};
use serde_json::{json, Value};

#[path = "../tests/support/mod.rs"]
mod support;

use support::daemon::{rss_kib, Daemon};
use support::node::{NodeDir, NodeSpec, API_KEY, API_SECRET, APP_TOKEN, CLUSTER_SECRET};
use support::redis::Redis;

const CLUSTER_ID: &str = "bench";

// ---------------------------------------------------------------- nodes

/// A node of cluster `bench` on `redis`: the daemon's default probe period (1 s), a 2 s drain,
/// main given up on after 1 s of discovery. Scenarios add their cluster knobs.
fn bench_node(spec: NodeSpec, redis: &Redis) -> NodeSpec {
    spec.redis(redis.url())
        .cluster_id(CLUSTER_ID)
        .drain_timeout_secs(2)
        .discovery_timeout_secs(1)
}

/// `airclass-node run`, logging at warn to `DIR/daemon.log`; SIGKILLed (with its LiveKit) on
/// drop, also when the bench panics.
fn spawn(dir: &NodeDir) -> Daemon {
    Daemon::spawn(dir, &[("RUST_LOG", "warn")])
}

fn log_tail(dir: &NodeDir) -> String {
    let t = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
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
        let s = states(c, &main.api_url()).await;
        if names
            .iter()
            .all(|n| s.get(*n).map(String::as_str) == Some("alive"))
        {
            return;
        }
        assert!(
            t0.elapsed() < timeout,
            "cluster did not form ({s:?}); main's log:\n{}",
            log_tail(main)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
                let role = if i.is_multiple_of(20) {
                    "teacher"
                } else {
                    "student"
                };
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
    let verified = livekit_api::access_token::TokenVerifier::with_api_key(API_KEY, API_SECRET)
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
    println!("\n-- 1. join endpoint: main + 2 subs (real daemons, real LiveKit), Redis");
    let redis = Redis::start();
    let main_dir = bench_node(NodeSpec::main("main"), &redis).write();
    let mut main = spawn(&main_dir);
    let c = client();
    wait_alive(&c, &main_dir, &["main"], Duration::from_secs(20)).await;
    let sub_dirs: Vec<NodeDir> = ["node-1", "node-2"]
        .iter()
        .map(|n| {
            bench_node(NodeSpec::sub(n), &redis)
                .main_url(&main_dir.api_url())
                .write()
        })
        .collect();
    let mut subs: Vec<Daemon> = sub_dirs.iter().map(spawn).collect();
    wait_alive(
        &c,
        &main_dir,
        &["main", "node-1", "node-2"],
        Duration::from_secs(20),
    )
    .await;
    for g in subs.iter_mut() {
        g.livekit_pid().await;
    }
    main.livekit_pid().await;
    println!("cluster formed: main, node-1, node-2 alive; warming up 1 s");
    sample_join(&c, &main_dir.api_url()).await;
    let _ = join_load(&main_dir.api_url(), 4, Duration::from_secs(1), false).await;
    let mut runs = Vec::new();
    for (conc, cold) in [(1usize, false), (8, false), (32, false), (8, true)] {
        let cpu0 = cpu_ticks(main.child.id());
        let r = join_load(&main_dir.api_url(), conc, Duration::from_secs(4), cold).await;
        let cpu = (cpu_ticks(main.child.id()) - cpu0) as f64 / USER_HZ / r.secs * 100.0;
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
        livekit_node_id: None,
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
    let redis = Redis::start();
    let main_dir = bench_node(NodeSpec::main("main"), &redis)
        .heartbeat_secs(1)
        .write();
    let mut main = spawn(&main_dir);
    let c = client();
    wait_alive(&c, &main_dir, &["main"], Duration::from_secs(20)).await;
    main.livekit_pid().await;
    let pid = main.child.id();

    // main idle (itself only), for reference
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = Duration::from_secs(4);
    let t = cpu_ticks(pid);
    tokio::time::sleep(idle).await;
    let idle_cpu = (cpu_ticks(pid) - t) as f64 / USER_HZ / idle.as_secs_f64() * 100.0;
    let rss_before = rss_kib(pid);

    let secret = Arc::new(ClusterSecret::from_text(CLUSTER_SECRET).unwrap());
    let base = Arc::new(main_dir.api_url());
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
    let status = get_json(&c, &format!("{}/api/cluster/status", main_dir.api_url()))
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
    let redis = Redis::start();
    let member = |spec| {
        bench_node(spec, &redis)
            .heartbeat_secs(1)
            .dead_after_missed(3)
    };
    let main_dir = member(NodeSpec::main("main")).write();
    let mut main = spawn(&main_dir);
    let c = client();
    wait_alive(&c, &main_dir, &["main"], Duration::from_secs(20)).await;
    main.livekit_pid().await;
    let mut out = Vec::new();
    for rep in 0..reps {
        let dir = member(NodeSpec::sub("node-1"))
            .main_url(&main_dir.api_url())
            .write();
        let mut sub = spawn(&dir);
        // a fresh process has a fresh identity: wait until main lists it alive with it
        wait_alive(&c, &main_dir, &["main", "node-1"], Duration::from_secs(20)).await;
        sub.livekit_pid().await;
        // let it settle into its heartbeat rhythm, at a phase that differs per repetition
        tokio::time::sleep(Duration::from_millis(1500 + 333 * rep as u64)).await;
        let killed = Instant::now();
        sub.kill_all();
        let (mut suspect, mut dead) = (None, None);
        while killed.elapsed() < Duration::from_secs(15) && dead.is_none() {
            let s = states(&c, &main_dir.api_url()).await;
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
