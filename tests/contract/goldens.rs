//! Every config our renderer produces, run by the **real** livekit-server: the golden nodes
//! (main, node-1, node-3, standalone; tests/golden/) in both `mux` and `range` port modes,
//! with Redis (clustered) and without (standalone), TLS-less, with and without
//! `prometheus.port`. Each runs in a network namespace of its own whose `lan0` carries the
//! goldens' addresses (10.77.0.10 = Redis and main, 10.77.0.13 = node-3), so the configs run
//! with their own ports and addresses, unchanged but for the key file's directory.
//!
//! Checked: the strict loader accepts it (ready line, process alive), the ready line says
//! what the config says, and `ss` shows what is bound: HTTP, ICE/TCP and prometheus on every
//! address; in `mux` the first min(CPUs, 21) ports of the range on every non-loopback
//! address (never loopback); in `range` no UDP at startup (LiveKit binds the range lazily,
//! per participant, #3637: see `range_ports_are_bound_per_participant`); with Redis, the node
//! in Redis `nodes`. A golden case renders exactly its tests/golden/ file.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::participants::add_participant;
use super::rendered;
use crate::common::figures::figure;
use crate::common::livekit_proc::{free_block, LkProc, Opts, Server, Sock};
use crate::common::netns::Netns;
use crate::common::redis_proc::RedisProc;

const LAN: [&str; 2] = ["10.77.0.10", "10.77.0.13"];
const REDIS: &str = "[redis]\nurl = \"redis://10.77.0.10:6379\"\n";

/// One rendered configuration.
struct Case {
    label: &'static str,
    /// The tests/golden/ file this case must render exactly, if any.
    golden: Option<&'static str>,
    instance: &'static str,
    /// `[node] mode`, "" = standalone.
    mode: &'static str,
    /// Extra `[livekit]` lines.
    livekit: &'static str,
    port_mode: &'static str,
}

impl Case {
    fn toml(&self) -> String {
        let mut t = String::new();
        if !self.mode.is_empty() {
            t += &format!("[node]\nmode = \"{}\"\n", self.mode);
        }
        t += &format!(
            "[livekit]\n{}port_mode = \"{}\"\n",
            self.livekit, self.port_mode
        );
        if !self.mode.is_empty() {
            t += REDIS;
        }
        t
    }

    fn clustered(&self) -> bool {
        !self.mode.is_empty()
    }
}

macro_rules! cases {
    ($($name:ident: $golden:expr, $instance:expr, $mode:expr, $livekit:expr, $port_mode:expr;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run(Case {
                    label: stringify!($name),
                    golden: $golden,
                    instance: $instance,
                    mode: $mode,
                    livekit: $livekit,
                    port_mode: $port_mode,
                })
                .await
            }
        )*
    };
}

const MAIN: &str = "region = \"seoul\"\nprometheus_port = 6789\n";
const NODE3: &str = "node_ip = \"10.77.0.13\"\n";
const PROM: &str = "prometheus_port = 9100\n";

cases! {
    main_mux: Some("livekit-main.yaml"), "main", "main", MAIN, "mux";
    main_range: None, "main", "main", MAIN, "range";
    node_1_mux: Some("livekit-node-1.yaml"), "node-1", "sub", "", "mux";
    node_1_range: None, "node-1", "sub", "", "range";
    node_3_range: Some("livekit-node-3.yaml"), "node-3", "sub", NODE3, "range";
    node_3_mux: None, "node-3", "sub", NODE3, "mux";
    standalone_mux: Some("livekit-standalone.yaml"), "main", "", "", "mux";
    standalone_range: None, "main", "", "", "range";
    standalone_mux_prometheus: None, "main", "", PROM, "mux";
    standalone_range_prometheus: None, "main", "", PROM, "range";
}

fn golden_text(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tcp_on_all(socks: &[Sock], port: u16) -> bool {
    socks.iter().any(|s| {
        s.proto == "tcp" && s.port == port && matches!(s.addr.as_str(), "*" | "0.0.0.0" | "::")
    })
}

async fn run(case: Case) {
    let name = format!(
        "{} {} ({})",
        case.instance,
        case.port_mode,
        case.toml().replace('\n', "; ")
    );
    if let Some(g) = case.golden {
        let node = rendered::node(case.instance, &case.toml(), None);
        assert_eq!(
            rendered::redacted_yaml(&node),
            golden_text(g),
            "{name}: not the golden {g}"
        );
    }
    let ns = Netns::create("golden", &["10.77.0.10/24", "10.77.0.13/24"]);
    let redis = case.clustered().then(|| {
        RedisProc::start_with(
            "10.77.0.10",
            6379,
            Some(&ns),
            Some(rendered::REDIS_PASSWORD),
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let node = rendered::node(case.instance, &case.toml(), Some(dir.path()));
    let mut p = LkProc::spawn(
        Server::Real,
        &Opts::new(rendered::write_runnable(&node)).netns(&ns),
    );
    let ready = p.wait_ready().fields;
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        p.wait_exit(Duration::from_millis(10)).is_none(),
        "{name}: exited: {:?}",
        p.lines()
    );
    let plan = &node.ports;
    check_ready_line(&name, &case, &node, &ready);
    let socks = p.sockets(Some(&ns));
    check_sockets(&name, &case, &node, &socks);
    let health = ns
        .command("curl")
        .args(["-s", &format!("http://10.77.0.10:{}/", plan.livekit_port)])
        .output()
        .expect("curl in the namespace");
    assert_eq!(
        String::from_utf8_lossy(&health.stdout),
        "OK",
        "{name}: GET /"
    );
    if let Some(r) = &redis {
        let id = ready["nodeID"].as_str().expect("nodeID");
        assert_eq!(
            r.cli(&["HEXISTS", "nodes", id]),
            "1",
            "{name}: node in Redis `nodes`"
        );
    }
    p.signal(Signal::SIGTERM);
    let st = p.wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{name}: SIGTERM exit");
    if let Some(r) = &redis {
        let id = ready["nodeID"].as_str().expect("nodeID");
        assert_eq!(
            r.cli(&["HEXISTS", "nodes", id]),
            "0",
            "{name}: HDEL on exit"
        );
    }
    figure(&format!("goldens: {} binds", case.label), show(&socks));
}

/// `tcp [*:7880 *:7881], udp [10.77.0.10:50000 …]`
fn show(socks: &[Sock]) -> String {
    let mut out = Vec::new();
    for proto in ["tcp", "udp"] {
        let these: Vec<String> = socks
            .iter()
            .filter(|s| s.proto == proto)
            .map(|s| format!("{}:{}", s.addr, s.port))
            .collect();
        out.push(format!("{proto} [{}]", these.join(" ")));
    }
    out.join(", ")
}

fn check_ready_line(
    name: &str,
    case: &Case,
    node: &airclass_node::config::NodeConfig,
    f: &serde_json::Value,
) {
    let plan = &node.ports;
    assert_eq!(f["portHttp"], plan.livekit_port, "{name}: {f}");
    assert_eq!(f["rtc.portTCP"], plan.rtc_tcp_port, "{name}: {f}");
    let (a, b) = (plan.rtc_udp_start, plan.rtc_udp_end);
    match case.port_mode {
        "mux" => assert_eq!(
            f["rtc.portUDP"],
            serde_json::json!({"Start": a, "End": b}),
            "{name}: {f}"
        ),
        _ => assert_eq!(
            f["rtc.portICERange"],
            serde_json::json!([a, b]),
            "{name}: {f}"
        ),
    }
    // the port plan's LiveKit metrics port (livekit.prometheus_port overrides, 0 = off)
    let prom = node.ports.livekit_metrics_port;
    assert_eq!(
        f.get("portPrometheus").and_then(|v| v.as_u64()),
        prom.map(u64::from),
        "{name}: {f}"
    );
    let region = node.config.livekit.region.as_deref();
    assert_eq!(
        f.get("region").and_then(|v| v.as_str()),
        region,
        "{name}: {f}"
    );
    let ip = f["nodeIP"].as_str().expect("nodeIP");
    match node.config.livekit.node_ip.as_deref() {
        Some(want) => assert_eq!(ip, want, "{name}"),
        None => assert!(
            LAN.contains(&ip),
            "{name}: auto node IP {ip} is not a lan0 address"
        ),
    }
}

fn check_sockets(
    name: &str,
    case: &Case,
    node: &airclass_node::config::NodeConfig,
    socks: &[Sock],
) {
    let plan = &node.ports;
    assert!(
        tcp_on_all(socks, plan.livekit_port),
        "{name}: HTTP {}: {socks:?}",
        plan.livekit_port
    );
    assert!(
        tcp_on_all(socks, plan.rtc_tcp_port),
        "{name}: ICE/TCP {}: {socks:?}",
        plan.rtc_tcp_port
    );
    // LiveKit binds its metrics wherever it binds its signalling port (so the firewall opens it)
    let prom = node.ports.livekit_metrics_port;
    if let Some(prom) = prom {
        assert!(
            tcp_on_all(socks, prom),
            "{name}: prometheus {prom}: {socks:?}"
        );
    }
    let tcp_ports: Vec<u16> = socks
        .iter()
        .filter(|s| s.proto == "tcp")
        .map(|s| s.port)
        .collect();
    let expected_tcp = 2 + usize::from(prom.is_some());
    assert_eq!(
        tcp_ports.len(),
        expected_tcp,
        "{name}: no other TCP socket: {socks:?}"
    );
    let mut udp: Vec<(String, u16)> = socks
        .iter()
        .filter(|s| s.proto == "udp")
        .map(|s| (s.addr.clone(), s.port))
        .collect();
    udp.sort();
    let mut want = Vec::new();
    if case.port_mode == "mux" {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u16;
        let n = cpus.min(plan.rtc_udp_end - plan.rtc_udp_start + 1);
        for ip in LAN {
            for port in plan.rtc_udp_start..plan.rtc_udp_start + n {
                want.push((ip.to_string(), port));
            }
        }
    }
    want.sort();
    assert_eq!(udp, want, "{name}: UDP sockets (mux: first min(CPUs, ports) on each lan0 address; range: none until a participant)");
}

/// `range` mode: nothing is bound at startup; a participant's PeerConnections take ports of
/// the range (on every non-loopback address), as ICE gathers. On the host namespace, on
/// loopback signalling only: the participant never sends ICE, so no packet leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_ports_are_bound_per_participant() {
    let (http, udp) = (free_block(2), free_block(20));
    let cfg = format!(
        "port: {http}\nrtc:\n  tcp_port: {}\n  port_range_start: {udp}\n  port_range_end: {}\n  node_ip: 127.0.0.1\nkeys:\n  {}: {}\n",
        http + 1,
        udp + 19,
        crate::common::livekit_proc::KEY,
        crate::common::livekit_proc::SECRET
    );
    let p = LkProc::spawn(Server::Real, &Opts::new(cfg));
    p.wait_ready();
    let udp_socks = |p: &LkProc| -> Vec<Sock> {
        p.sockets(None)
            .into_iter()
            .filter(|s| s.proto == "udp")
            .collect()
    };
    assert_eq!(udp_socks(&p), [], "range mode binds no UDP at startup");
    let who = add_participant(&p, http, "class", "student-1").await;
    let t0 = std::time::Instant::now();
    let mut bound = Vec::new();
    while t0.elapsed() < Duration::from_secs(5) && bound.is_empty() {
        bound = udp_socks(&p);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    figure(
        "goldens: range mode, sockets taken by one signal-only participant",
        show(&bound),
    );
    assert!(
        !bound.is_empty(),
        "a participant takes ports of the range (none seen in 5 s)"
    );
    for s in &bound {
        assert!(
            (udp..=udp + 19).contains(&s.port),
            "{s:?} outside the range {udp}-{}",
            udp + 19
        );
        assert_ne!(s.addr, "127.0.0.1", "no loopback candidates: {s:?}");
    }
    drop(who);
}
