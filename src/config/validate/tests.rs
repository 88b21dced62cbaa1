//! Config error tests: each bad input must produce a problem naming its source, key and fix.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::config::load::Sources;

struct Fixture {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl Fixture {
    fn new(cluster: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("airclass.toml"), cluster).unwrap();
        std::fs::create_dir(dir.path().join("nodes")).unwrap();
        Self {
            dir,
            env: BTreeMap::new(),
        }
    }
    fn node_file(self, instance: &str, text: &str) -> Self {
        std::fs::write(
            self.dir
                .path()
                .join("nodes")
                .join(format!("{instance}.toml")),
            text,
        )
        .unwrap();
        self
    }
    fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }
    fn sources(&self) -> Sources {
        Sources {
            config_path: self.dir.path().join("airclass.toml"),
            config_explicit: true,
            nodes_dir: self.dir.path().join("nodes"),
            env: self.env.clone(),
        }
    }
    fn resolve(&self, instance: &str) -> Result<(NodeConfig, Vec<String>), Vec<Problem>> {
        resolve(&self.sources(), instance, None)
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Resolve and expect exactly one problem whose key and text match.
fn one_problem(f: &Fixture, instance: &str, key: &str, needle: &str) -> Problem {
    let problems = f.resolve(instance).expect_err("config must be refused");
    let p = problems
        .iter()
        .find(|p| p.key == key && p.problem.contains(needle))
        .unwrap_or_else(|| panic!("no problem for {key} containing {needle:?} in {problems:#?}"));
    assert!(!p.fix.is_empty(), "problem without fix: {p}");
    assert!(!p.source.is_empty());
    p.clone()
}

#[test]
fn defaults_resolve_for_main_and_subs() {
    let f = Fixture::new("");
    let (n, w) = f.resolve("main").unwrap();
    assert_eq!(n.mode, Mode::Standalone);
    assert_eq!(n.ports.livekit_port, 7880);
    assert_eq!(
        n.runtime_dir,
        std::path::PathBuf::from("/run/airclass/main")
    );
    assert!(w.is_empty());
    let (n, _) = f.resolve("node-2").unwrap();
    assert_eq!(n.ports.api_port, 8002);
}

#[test]
fn runtime_directory_from_systemd() {
    let f = Fixture::new("");
    let (n, _) = resolve(&f.sources(), "main", Some("/run/airclass/main")).unwrap();
    assert_eq!(
        n.runtime_dir,
        std::path::PathBuf::from("/run/airclass/main")
    );
}

#[test]
fn layering_instance_file_and_env() {
    let f = Fixture::new("[node]\nmode = \"sub\"\n[cluster]\nheartbeat_secs = 2\n")
        .node_file(
            "node-1",
            "[cluster]\nheartbeat_secs = 3\n[node]\nrtc_udp_end = 51100\n",
        )
        .env("LIVEKIT_PORT", "9999")
        .env("MAIN_NODE_URL", "http://10.0.0.1:8000");
    let (n, _) = f.resolve("node-1").unwrap();
    assert_eq!(n.mode, Mode::Sub);
    assert_eq!(n.config.cluster.heartbeat_secs, 3);
    assert_eq!(n.ports.livekit_port, 9999);
    assert_eq!(n.ports.rtc_udp_end, 51100);
    assert_eq!(
        n.config.cluster.main_url.as_deref(),
        Some("http://10.0.0.1:8000")
    );
    assert_eq!(
        n.layered.source_of("node.livekit_port"),
        "environment variable LIVEKIT_PORT"
    );
    assert!(n
        .layered
        .source_of("cluster.heartbeat_secs")
        .ends_with("nodes/node-1.toml"));
    assert!(n.layered.source_of("node.mode").ends_with("airclass.toml"));
}

// ---- at least 15 distinct bad inputs, each with its message ----

#[test]
fn bad_01_unknown_key_names_file_and_key() {
    let f = Fixture::new("[livekit]\nprot = 1\n");
    let p = one_problem(&f, "main", "livekit.prot", "unknown key");
    assert!(p.source.ends_with("airclass.toml"), "{p}");
}

#[test]
fn bad_02_unknown_section() {
    let f = Fixture::new("[rtc]\nnode_selector = 1\n");
    one_problem(&f, "main", "rtc", "unknown key");
}

#[test]
fn bad_03_every_unknown_key_is_reported() {
    let f = Fixture::new("[livekit]\nfoo = 1\nbar = 2\n[node]\nbaz = 3\n");
    let problems = f.resolve("main").unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

#[test]
fn bad_04_wrong_type() {
    let f = Fixture::new("[node]\nlivekit_port = \"abc\"\n");
    one_problem(&f, "main", "node.livekit_port", "wrong type");
}

#[test]
fn bad_05_unknown_mode() {
    let f = Fixture::new("[node]\nmode = \"primary\"\n");
    one_problem(&f, "main", "node.mode", "unknown variant");
}

#[test]
fn bad_06_mode_from_env_names_variable() {
    let f = Fixture::new("").env("MODE", "primary");
    let p = one_problem(&f, "main", "node.mode", "unknown variant");
    assert_eq!(p.source, "environment variable MODE");
}

#[test]
fn bad_07_toml_syntax() {
    let f = Fixture::new("[node\nmode = 1\n");
    one_problem(&f, "main", "-", "not valid TOML");
}

#[test]
fn bad_07b_toml_syntax_never_echoes_the_line() {
    // a missing closing quote on a URL that (wrongly) carries a password
    let f = Fixture::new(
        "[node]\nmode = \"main\"\n[redis]\nurl = \"redis://:hunter2secret@10.0.0.1:6379\n",
    );
    let p = one_problem(&f, "main", "-", "not valid TOML at line 4, column 44");
    let text = p.to_string();
    assert!(!text.contains("hunter2secret"), "{text}");
    assert!(!text.contains("10.0.0.1"), "{text}");
    assert!(text.contains("(in the value of url)"), "{text}");
    assert!(text.contains("expected `\"`"), "{text}");
}

#[test]
fn bad_07c_unparsable_redis_url_hides_its_password() {
    let f = Fixture::new(
        "[node]\nmode = \"main\"\n[redis]\nurl = \"redis://:hunter2secret@host:notaport\"\n",
    );
    let problems = f.resolve("main").unwrap_err();
    let all = format!("{problems:?}");
    assert!(all.contains("redis.url"), "{all}");
    assert!(!all.contains("hunter2secret"), "{all}");
    assert_eq!(redact_userinfo("redis://u:p@h:1/0"), "redis://***@h:1/0");
    assert_eq!(redact_userinfo("redis://h:1/a@b"), "redis://h:1/a@b");
}

#[test]
fn bad_08_missing_explicit_config() {
    let f = Fixture::new("");
    std::fs::remove_file(f.path().join("airclass.toml")).unwrap();
    one_problem(&f, "main", "-", "does not exist");
}

#[test]
fn bad_09_name_without_ports() {
    let f = Fixture::new("");
    let p = one_problem(&f, "edge", "node.livekit_port", "cannot derive");
    assert!(p.fix.contains("node-N"));
}

#[test]
fn bad_10_port_above_65535() {
    let f = Fixture::new("");
    one_problem(&f, "node-16", "node.rtc_udp_start", "above 65535");
}

#[test]
fn bad_11_reversed_range() {
    let f = Fixture::new("[node]\nrtc_udp_start = 51020\nrtc_udp_end = 51000\n");
    one_problem(&f, "node-1", "node.rtc_udp_start", "above its end");
}

#[test]
fn bad_12_overlapping_ports() {
    let f = Fixture::new("").node_file("node-1", "[node]\napi_port = 7891\n");
    let p = one_problem(&f, "node-1", "node.api_port", "also node.rtc_tcp_port");
    assert!(p.source.ends_with("node-1.toml"));
}

#[test]
fn bad_13_env_port_not_a_number() {
    let f = Fixture::new("").env("LIVEKIT_RTC_PORT_START", "fifty");
    let p = one_problem(&f, "main", "node.rtc_udp_start", "not a port number");
    assert_eq!(p.source, "environment variable LIVEKIT_RTC_PORT_START");
}

#[test]
fn bad_14_redis_password_inline() {
    let f =
        Fixture::new("[node]\nmode = \"main\"\n[redis]\nurl = \"redis://:pw@127.0.0.1:6379\"\n");
    one_problem(&f, "main", "redis.url", "contains a password");
}

#[test]
fn bad_15_redis_scheme() {
    let f = Fixture::new("[node]\nmode = \"sub\"\n").env("REDIS_URL", "http://redis:6379");
    let p = one_problem(&f, "node-1", "redis.url", "scheme");
    assert_eq!(p.source, "environment variable REDIS_URL");
}

#[test]
fn bad_16_heartbeat_out_of_range() {
    let f = Fixture::new("[cluster]\nheartbeat_secs = 0\n");
    one_problem(&f, "main", "cluster.heartbeat_secs", "outside 1..=60");
}

#[test]
fn bad_17_main_url_not_http() {
    let f = Fixture::new("").env("MAIN_NODE_URL", "main:8000");
    one_problem(&f, "node-1", "cluster.main_url", "not an http");
}

#[test]
fn bad_18_log_level() {
    let f = Fixture::new("[livekit]\nlog_level = \"verbose\"\n");
    one_problem(&f, "main", "livekit.log_level", "not a LiveKit log level");
}

#[test]
fn bad_19_bind_not_ip() {
    let f = Fixture::new("[api]\nbind = \"everywhere\"\n");
    one_problem(&f, "main", "api.bind", "not an IP");
}

#[test]
fn bad_20_tls_half_configured() {
    let f = Fixture::new("[api]\ntls_cert_file = \"/etc/ssl/x.pem\"\n");
    one_problem(&f, "main", "api.tls_key_file", "both");
}

#[test]
fn bad_21_invalid_instance_name() {
    let f = Fixture::new("");
    one_problem(&f, "Node_1", "--instance", "not valid");
}

#[test]
fn bad_22_sysload_limit() {
    let f = Fixture::new("[cluster]\nsysload_limit = 0.0\n");
    one_problem(&f, "main", "cluster.sysload_limit", "not a usable");
}

#[test]
fn bad_23_node_ip() {
    let f = Fixture::new("[livekit]\nnode_ip = \"10.0.0\"\n");
    one_problem(&f, "main", "livekit.node_ip", "not an IP");
}

#[test]
fn bad_24_prometheus_port_collides() {
    let f = Fixture::new("[livekit]\nprometheus_port = 8000\n");
    one_problem(&f, "main", "livekit.prometheus_port", "already one of");
}

#[test]
fn bad_25_drain_timeout() {
    let f = Fixture::new("[livekit]\ndrain_timeout_secs = 0\n");
    one_problem(&f, "main", "livekit.drain_timeout_secs", "outside");
}

#[test]
fn bad_26_port_mode_variant() {
    let f = Fixture::new("[livekit]\nport_mode = \"both\"\n");
    one_problem(&f, "main", "livekit.port_mode", "unknown variant");
}

#[test]
fn bad_27_relative_binary() {
    let f = Fixture::new("").env("LIVEKIT_BINARY", "livekit-server");
    one_problem(&f, "main", "livekit.binary", "not an absolute path");
}

#[test]
fn bad_30_quiet_log_level_on_a_clustered_node() {
    let f = Fixture::new("[node]\nmode = \"sub\"\n[livekit]\nlog_level = \"warn\"\n");
    one_problem(
        &f,
        "node-1",
        "livekit.log_level",
        "hides LiveKit's ready line",
    );
    let standalone = Fixture::new("[livekit]\nlog_level = \"warn\"\n");
    assert!(standalone.resolve("main").is_ok());
}

#[test]
fn bad_28_livekit_url() {
    let f = Fixture::new("").env("LIVEKIT_URL", "http://x:7880");
    one_problem(&f, "main", "livekit.url", "ws://");
}

#[test]
fn capacity_warning_only_for_range() {
    let f = Fixture::new("[livekit]\nport_mode = \"range\"\nexpected_participants = 30\n");
    let (n, w) = f.resolve("node-1").unwrap();
    assert_eq!(n.port_capacity(), Some(10));
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("about 10 participants"), "{w:?}");
    let f = Fixture::new("[livekit]\nexpected_participants = 30\n");
    let (n, w) = f.resolve("node-1").unwrap();
    assert_eq!(n.port_capacity(), None);
    assert!(w.is_empty());
}

#[test]
fn bad_29_stun_servers() {
    for entry in [
        "stun:10.0.0.1:3478",
        "10.0.0.1",
        "10.0.0.1:0",
        "fd00::1:3478",
        "a b:1",
        "turn:3478",
    ] {
        let f = Fixture::new(&format!(
            "[livekit]\nstun_servers = [\"10.0.0.1:3478\", {entry:?}]\n"
        ));
        let problems = f.resolve("main").expect_err(entry);
        assert_eq!(problems.len(), 1, "{entry}: {problems:#?}");
        one_problem(&f, "main", "livekit.stun_servers", &format!("{entry:?}"));
    }
    let ok =
        "[livekit]\nstun_servers = [\"10.0.0.1:3478\", \"stun.lan:19302\", \"[fd00::1]:3478\"]\n";
    let (n, _) = Fixture::new(ok).resolve("main").unwrap();
    assert_eq!(n.config.livekit.stun_servers.len(), 3);
    assert!(Fixture::new("")
        .resolve("main")
        .unwrap()
        .0
        .config
        .livekit
        .stun_servers
        .is_empty());
}

#[test]
fn redis_url_parsing() {
    let t = parse_redis_url("redis://10.0.0.1:6380/2").unwrap();
    assert_eq!(t.address, "10.0.0.1:6380");
    assert_eq!(t.db, 2);
    assert!(!t.tls);
    let t = parse_redis_url("rediss://cache.example").unwrap();
    assert_eq!(t.address, "cache.example:6379");
    assert!(t.tls);
}

#[test]
fn missing_default_config_is_all_defaults() {
    let f = Fixture::new("");
    let mut s = f.sources();
    s.config_path = f.path().join("absent.toml");
    s.config_explicit = false;
    let (n, _) = resolve(&s, "main", None).unwrap();
    assert_eq!(n.config, crate::config::Config::default());
}

#[test]
fn bad_31_worker_threads() {
    let f = Fixture::new("[api]\nworker_threads = 0\n");
    one_problem(&f, "main", "api.worker_threads", "outside 1..=64");
}
