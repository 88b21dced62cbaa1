//! Exhaustion (issue 10, point 1): thousands of idle and slow connections (request heads or
//! TLS ClientHellos sent a byte every half second, or nothing at all) from 250 loopback source
//! addresses must not stop `/healthz` and the join endpoint answering a normal client, must not
//! restart or kill LiveKit, and must leave the restart budget untouched.
//!
//! The daemon runs as a process, with the real livekit-server, with systemd's default file handle limit (soft 1024), or with
//! a hard limit of 1024 too (it cannot raise it: the connection cap then follows the limit and
//! a waiting connection makes room for each newcomer). Figures: connections held,
//! `/healthz` p99 during the attack, LiveKit restarts during it.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use airclass_node::clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

use crate::support::daemon::{alive, Daemon};
use crate::support::figure;
use crate::support::node::{NodeDir, NodeSpec, APP_TOKEN};
use crate::support::real_livekit::real_livekit;

/// Loopback source addresses the attack comes from: 127.0.0.2 ..= 127.0.0.251.
const SOURCES: usize = 250;
/// How long the attack lasts (longer than the 10 s header timeout: attackers come back).
const ATTACK_FOR: Duration = Duration::from_secs(15);

/// The test process needs a file handle per attacker and some: raise its soft limit (and, as
/// root, its hard limit when that is lower).
fn raise_own_limit(need: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard < need && setrlimit(Resource::RLIMIT_NOFILE, need, need).is_ok() {
        return;
    }
    assert!(
        hard >= need,
        "this test opens {need} sockets but the hard open-file limit is {hard}: raise it \
         (`ulimit -Hn {need}` as root, or LimitNOFILE= for the CI service)"
    );
    if soft < need {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
}

/// What the attack saw.
#[derive(Default)]
struct Tally {
    running: AtomicBool,
    held: AtomicUsize,
    max_held: AtomicUsize,
    connected: AtomicUsize,
    closed_by_server: AtomicUsize,
}

/// Either a request head that never ends or a TLS record that never completes.
fn payload(tls: bool, pos: usize) -> u8 {
    const HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: node\r\nX-Slow: ";
    // a handshake record announcing 508 bytes of ClientHello, then filler
    const HELLO: &[u8] = &[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let prefix = if tls { HELLO } else { HEAD };
    prefix.get(pos).copied().unwrap_or(b'a')
}

/// One attacker: connect from its source address, then idle (odd) or trickle a byte every
/// 500 ms (even) until the server closes; come back a second later; until the attack ends.
async fn attacker(i: usize, port: u16, tls: bool, t: Arc<Tally>) {
    let src = Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCES) as u8);
    while t.running.load(Ordering::Relaxed) {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind((src, 0).into()).unwrap();
        let conn = tokio::time::timeout(
            Duration::from_secs(3),
            sock.connect((Ipv4Addr::LOCALHOST, port).into()),
        )
        .await;
        let Ok(Ok(mut s)) = conn else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        t.connected.fetch_add(1, Ordering::Relaxed);
        let now = t.held.fetch_add(1, Ordering::Relaxed) + 1;
        t.max_held.fetch_max(now, Ordering::Relaxed);
        let mut buf = [0u8; 512];
        let mut pos = 0;
        while t.running.load(Ordering::Relaxed) {
            tokio::select! {
                r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) {
                    t.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    break;
                },
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if matches!(i % 2, 0) {
                        if s.write_all(&[payload(tls, pos)]).await.is_err() {
                            t.closed_by_server.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        pos += 1;
                    }
                }
            }
        }
        t.held.fetch_sub(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn start_attack(n: usize, port: u16, tls: bool) -> (Arc<Tally>, Vec<JoinHandle<()>>) {
    let t = Arc::new(Tally::default());
    t.running.store(true, Ordering::Relaxed);
    let tasks = (0..n)
        .map(|i| tokio::spawn(attacker(i, port, tls, t.clone())))
        .collect();
    (t, tasks)
}

/// A normal client during the attack: a fresh connection for each request, `/healthz` every
/// 100 ms and a join every 500 ms, for `for_how_long`.
struct Normal {
    healthz: Vec<Duration>,
    joins: Vec<Duration>,
    failures: Vec<String>,
}

async fn normal_client(base: String, client: reqwest::Client, for_how_long: Duration) -> Normal {
    let mut n = Normal {
        healthz: Vec::new(),
        joins: Vec::new(),
        failures: Vec::new(),
    };
    let end = clock::now() + for_how_long;
    let mut i = 0u32;
    while clock::now() < end {
        let t0 = clock::now();
        match client.get(format!("{base}/healthz")).send().await {
            Ok(r) if r.status() == 200 => n.healthz.push(t0.elapsed()),
            Ok(r) => n.failures.push(format!("/healthz answered {}", r.status())),
            Err(e) => n.failures.push(format!("/healthz: {e:?}")),
        }
        if matches!(i % 5, 0) {
            let t0 = clock::now();
            let r = client
                .post(format!("{base}/api/rooms/maths/join"))
                .bearer_auth(APP_TOKEN)
                .json(&serde_json::json!({"identity": format!("student-{i}"), "role": "student"}))
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => n.joins.push(t0.elapsed()),
                Ok(r) => n.failures.push(format!("join answered {}", r.status())),
                Err(e) => n.failures.push(format!("join: {e:?}")),
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

/// The whole scenario; `label` names the figures.
async fn hold_under_attack(
    node: &NodeDir,
    mut d: Daemon,
    base: String,
    client: reqwest::Client,
    attackers: usize,
    tls: bool,
    label: &str,
) {
    let lk_before = d
        .livekit_pid()
        .await
        .expect("LiveKit pid before the attack");
    let (tally, tasks) = start_attack(attackers, node.api_port, tls);
    let mut n = normal_client(base, client, ATTACK_FOR).await;
    let held_at_end = tally.held.load(Ordering::Relaxed);
    let (_, api_node) = get_node(&d).await;
    tally.running.store(false, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    assert!(
        n.failures.is_empty(),
        "{} of {} requests of the normal client failed, e.g. {:?}\nlog tail:\n{}",
        n.failures.len(),
        n.healthz.len() + n.joins.len() + n.failures.len(),
        &n.failures[..n.failures.len().min(5)],
        d.log_tail(30)
    );
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the daemon exited:\n{}",
        d.log_tail(40)
    );
    let lk = &api_node["livekit"];
    assert_eq!(lk["restarts"], 0, "LiveKit was restarted: {api_node}");
    assert_eq!(lk["pid"].as_u64(), Some(u64::from(lk_before)), "{api_node}");
    assert_eq!(lk["state"], "ready", "{api_node}");
    assert!(alive(lk_before), "LiveKit was killed");
    let max_held = tally.max_held.load(Ordering::Relaxed);
    assert!(
        max_held >= attackers.min(700),
        "the attack never held many connections ({max_held}): it proves nothing"
    );
    // out of file handles is the daemon's own fault, said so, and rate-limited (the first at
    // once, then one line per 10 s window per place: accept, probe, spawn)
    let log = d.log_text();
    let fault_lines = log
        .lines()
        .filter(|l| l.contains("out of file handles"))
        .count();
    let fd_exhausted = api_node["api"]["fd_exhausted"].as_u64().unwrap_or(0);
    if fd_exhausted > 0 {
        assert!(
            fault_lines > 0,
            "{fd_exhausted} EMFILE in accept, not logged:\n{log}"
        );
    }
    assert!(
        fault_lines <= 3 * (ATTACK_FOR.as_secs() as usize / 10 + 2),
        "{fault_lines} lines about file handles: not rate-limited"
    );
    assert!(
        log.lines()
            .filter(|l| l.contains("out of file handles"))
            .all(|l| l.contains("local fault of this daemon")),
        "EMFILE not reported as the daemon's own fault:\n{log}"
    );
    let p99 = percentile(&mut n.healthz, 0.99);
    let join_p99 = percentile(&mut n.joins, 0.99);
    figure(&format!("{label}_attackers"), attackers);
    figure(&format!("{label}_connections_held_max"), max_held);
    figure(&format!("{label}_connections_held_at_end"), held_at_end);
    figure(
        &format!("{label}_attacker_connects"),
        tally.connected.load(Ordering::Relaxed),
    );
    figure(&format!("{label}_healthz_requests"), n.healthz.len());
    figure(
        &format!("{label}_healthz_p50_ms"),
        percentile(&mut n.healthz, 0.5).as_secs_f64() * 1e3,
    );
    figure(&format!("{label}_healthz_p99_ms"), p99.as_secs_f64() * 1e3);
    figure(
        &format!("{label}_join_p99_ms"),
        join_p99.as_secs_f64() * 1e3,
    );
    figure(&format!("{label}_livekit_restarts"), lk["restarts"].clone());
    figure(
        &format!("{label}_log_lines_about_file_handles"),
        fault_lines,
    );
    figure(&format!("{label}_api_counters"), api_node["api"].clone());
    d.sigterm_and_exit_0(Duration::from_secs(20));
}

async fn get_node(d: &Daemon) -> (u16, serde_json::Value) {
    d.get_json("/api/node").await
}

/// Plain HTTP, systemd's default soft limit (1024; the daemon raises it to the hard one):
/// 3000 connections, half of them trickling request heads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_slow_and_idle_connections_do_not_take_the_node_down() {
    const ATTACKERS: usize = 3000;
    raise_own_limit(ATTACKERS as u64 + 1024);
    let node = NodeSpec::standalone("main").livekit(real_livekit()).write();
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap()
        .1
        .min(65536);
    let mut d = Daemon::spawn_with_nofile(&node, &[], 1024, hard);
    assert!(
        d.wait_note("READY=1", Duration::from_secs(20))
            .await
            .is_some(),
        "{}",
        d.log_text()
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = node.api_url();
    hold_under_attack(&node, d, base, client, ATTACKERS, false, "exhaustion_plain").await;
}

/// TLS, with a hard limit of 1024 too (nothing to raise; the cap follows the limit): 2000
/// connections that never finish their handshake, half of them trickling a ClientHello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_slow_and_idle_connections_do_not_take_the_node_down_at_a_low_hard_limit() {
    const ATTACKERS: usize = 2000;
    raise_own_limit(ATTACKERS as u64 + 1024);
    let node = NodeSpec::standalone("main").livekit(real_livekit()).write();
    let (cert, _) = node.use_self_signed_tls();
    let mut d = Daemon::spawn_with_nofile(&node, &[], 1024, 1024);
    assert!(
        d.wait_note("READY=1", Duration::from_secs(20))
            .await
            .is_some(),
        "{}",
        d.log_text()
    );
    let pem = std::fs::read(cert).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{}", node.api_port);
    d.api = base.clone();
    d.https = Some(client.clone());
    hold_under_attack(&node, d, base, client, ATTACKERS, true, "exhaustion_tls").await;
}

/// Set the running daemon's `RLIMIT_NOFILE` (util-linux `prlimit`, as a kernel that can do it to
/// another process of the same user).
fn set_nofile_of(pid: i32, soft: u64, hard: u64) {
    let ok = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={soft}:{hard}"),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "prlimit failed: install util-linux (`apt-get install -y util-linux`)"
    );
}

fn open_fds(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

/// The daemon itself out of file handles (its limit lowered to what it has open, under the real
/// LiveKit) for 3 s — 15 probe periods, five times `health_failures`: `accept` fails, and so
/// would the health probe if it needed a new socket (it keeps its keep-alive connection to
/// LiveKit; the probe's own EMFILE path is `livekit::health`'s unit test). That is the daemon's
/// own fault: logged as such and rate-limited, no failed probe, LiveKit neither killed nor
/// restarted, nothing charged to the budget, and the API answers as soon as handles are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_out_of_file_handles_never_restarts_livekit() {
    let node = NodeSpec::standalone("main")
        .livekit(real_livekit())
        .health_interval_ms(200)
        .write();
    let mut d = Daemon::spawn_ready(&node, &[]).await;
    let lk = d.livekit_pid().await.expect("LiveKit pid");
    let pid = d.pid();
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let open = open_fds(pid);
    // below what it has open (a handle closed meanwhile must not make room)
    set_nofile_of(pid, open.saturating_sub(8), hard);
    // a client knocks meanwhile: accept has no handle for it either
    let knock = tokio::net::TcpStream::connect(("127.0.0.1", node.api_port)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = d.log_text();
    set_nofile_of(pid, soft.max(open + 256), hard);
    drop(knock);
    let (s, api_node) = get_node(&d).await;
    assert_eq!(s, 200, "the API did not come back:\n{}", d.log_tail(30));
    let lk_now = &api_node["livekit"];
    assert_eq!(lk_now["restarts"], 0, "{api_node}\n{during}");
    assert_eq!(lk_now["pid"].as_u64(), Some(u64::from(lk)), "{api_node}");
    assert!(alive(lk), "LiveKit was killed");
    let faults: Vec<&str> = during
        .lines()
        .filter(|l| l.contains("out of file handles"))
        .collect();
    assert!(
        faults.iter().any(|l| l.contains("accept")),
        "accept's EMFILE was not logged as a local fault:\n{during}"
    );
    assert!(
        faults
            .iter()
            .all(|l| l.contains("local fault of this daemon")),
        "{faults:?}"
    );
    assert!(
        faults.len() <= 6,
        "{} lines about file handles in 3 s: not rate-limited",
        faults.len()
    );
    assert!(
        !during.contains("LiveKit health probe failed"),
        "the probe's EMFILE counted against LiveKit:\n{during}"
    );
    figure("emfile_fault_log_lines_in_3s", faults.len());
    figure(
        "emfile_accept_failures",
        api_node["api"]["fd_exhausted"].clone(),
    );
    d.sigterm_and_exit_0(Duration::from_secs(20));
}
