//! Startup, as the supervisor sees it: strict config and key errors on stdout with exit 0,
//! the port-in-use trap (exit 0), the ready line and its fields, env overrides.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::common::livekit_proc::{
    base_config, free_block, free_port, run_to_exit, Finished, LkProc, Opts, Server, KEY, SECRET,
};

both!(
    strict_config_errors,
    key_errors,
    other_startup_errors,
    short_secret_logs_error_and_runs,
    port_in_use_exits_zero,
    ready_line_fields,
    ready_line_mux_and_prometheus,
    env_overrides_beat_the_file,
    node_ip_flag_does_not_replace_the_file,
);

const T: Duration = Duration::from_secs(10);

fn finish(s: Server, opts: Opts) -> Finished {
    let f = run_to_exit(s, &opts, T);
    assert_eq!(f.status.code(), Some(0), "{}: exit code; {f:?}", s.name());
    assert!(
        !f.stderr.contains("starting LiveKit server"),
        "{}: must not get ready; {f:?}",
        s.name()
    );
    f
}

fn stdout_is(s: Server, f: &Finished, expected: &str) {
    assert_eq!(f.stdout.trim_end(), expected, "{}: stdout", s.name());
}

async fn strict_config_errors(s: Server) {
    let cfg = format!(
        "port: {}\nrtc:\n  tcp_port: 0\n  node_selector:\n    kind: sysload\nkeys:\n  {KEY}: {SECRET}\n",
        free_port()
    );
    let f = finish(s, Opts::new(cfg));
    stdout_is(s, &f, "could not parse config: yaml: unmarshal errors:\n  line 4: field node_selector not found in type config.RTCConfig");

    // The same key at top level is valid; an unknown kind is refused at startup.
    let cfg = format!(
        "port: {}\nrtc:\n  tcp_port: 0\n  node_ip: 127.0.0.1\nnode_selector:\n  kind: nearest\nkeys:\n  {KEY}: {SECRET}\n",
        free_port()
    );
    stdout_is(s, &finish(s, Opts::new(cfg)), "unsupported node selector");

    // JSON is accepted and equally strict.
    let cfg = format!(
        "{{\"port\": 1, \"keys\": {{\"{KEY}\": \"{SECRET}\"}}, \"redis\": {{\"use_cluster\": true}}}}"
    );
    stdout_is(s, &finish(s, Opts::new(cfg)), "could not parse config: yaml: unmarshal errors:\n  line 1: field use_cluster not found in type redis.RedisConfig");
}

async fn key_errors(s: Server) {
    let good = base_config(free_port(), 0);
    let f = finish(s, Opts::new(&good).env("LIVEKIT_KEYS", ""));
    stdout_is(s, &f, "one of key-file or keys must be provided");

    // LIVEKIT_CONFIG replaces the --config file when non-empty.
    let f = finish(s, Opts::new(&good).env("LIVEKIT_CONFIG", "bogus_key: 1\n"));
    stdout_is(s, &f, "could not parse config: yaml: unmarshal errors:\n  line 1: field bogus_key not found in type config.Config");

    // A key file with an "other" permission bit is refused; 0640 is fine.
    let dir = tempfile::tempdir().expect("tempdir");
    let kf = dir.path().join("keys");
    std::fs::write(&kf, format!("{KEY}: {SECRET}\n")).expect("write");
    let chmod = |mode| {
        std::fs::set_permissions(&kf, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .expect("chmod")
    };
    let kf_s = kf.to_string_lossy().into_owned();
    chmod(0o644);
    let f = finish(s, Opts::new(&good).arg("--key-file").arg(&kf_s));
    stdout_is(s, &f, "key file others permissions must be set to 0");
    chmod(0o640);
    let (port, tcp) = (free_port(), free_port());
    let p = LkProc::spawn(
        s,
        &Opts::new(base_config(port, tcp))
            .arg("--key-file")
            .arg(&kf_s),
    );
    p.wait_ready();
    let missing = dir.path().join("nope").to_string_lossy().into_owned();
    let f = finish(s, Opts::new(&good).arg("--key-file").arg(&missing));
    stdout_is(s, &f, &format!("stat {missing}: no such file or directory"));
}

async fn other_startup_errors(s: Server) {
    let good = base_config(free_port(), 0);
    // Unknown flag: usage and the reason on stdout, "Incorrect Usage" on stderr, exit 0.
    let f = finish(s, Opts::new(&good).arg("--no-such-flag"));
    assert_eq!(
        f.stdout.trim_end().lines().last(),
        Some("flag provided but not defined: -no-such-flag"),
        "{}: {f:?}",
        s.name()
    );
    assert!(f.stdout.contains("USAGE:"), "{}: {f:?}", s.name());
    assert!(
        f.stderr
            .contains("Incorrect Usage: flag provided but not defined: -no-such-flag"),
        "{}: {f:?}",
        s.name()
    );

    // Unreachable Redis (port 1 on loopback refuses).
    let f = finish(s, Opts::new(&good).env("REDIS_HOST", "127.0.0.1:1"));
    stdout_is(
        s,
        &f,
        "unable to connect to redis: dial tcp 127.0.0.1:1: connect: connection refused",
    );
    assert!(f.stderr.contains("connecting to redis"), "{}", s.name());

    let f = finish(s, Opts::new(&good).arg("--version"));
    assert!(
        f.stdout.starts_with("livekit-server version 1.13.5"),
        "{}: {f:?}",
        s.name()
    );
}

async fn short_secret_logs_error_and_runs(s: Server) {
    let (port, tcp) = (free_port(), free_port());
    let cfg = format!("port: {port}\nrtc:\n  tcp_port: {tcp}\n  node_ip: 127.0.0.1\n  port_range_start: 50000\n  port_range_end: 50019\nkeys:\n  k: short\n");
    let p = LkProc::spawn(s, &Opts::new(cfg));
    p.wait_ready();
    let line = p
        .lines()
        .into_iter()
        .find(|l| l.contains("secret is too short"))
        .unwrap_or_else(|| panic!("{}: no short-secret line: {:?}", s.name(), p.lines()));
    let l = crate::common::livekit_proc::parse_console(&line);
    assert_eq!(l.level, "ERROR", "{}: {line}", s.name());
}

async fn port_in_use_exits_zero(s: Server) {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let expected = format!("listen tcp :{port}: bind: address already in use");
    // HTTP port taken.
    let f = finish(s, Opts::new(base_config(port, free_port())));
    stdout_is(s, &f, &expected);
    // The ICE/TCP port is bound before HTTP and fails the same way.
    let f = finish(s, Opts::new(base_config(free_port(), port)));
    stdout_is(s, &f, &expected);
    // The prometheus port too.
    let cfg = format!(
        "{}prometheus:\n  port: {port}\n",
        base_config(free_port(), 0)
    );
    stdout_is(s, &finish(s, Opts::new(cfg)), &expected);
    drop(taken);
}

fn is_node_id(id: &str) -> bool {
    id.len() == 15 && id.starts_with("ND_") && id[3..].chars().all(|c| c.is_ascii_alphanumeric())
}

async fn ready_line_fields(s: Server) {
    let (port, tcp) = (free_port(), free_port());
    let p = LkProc::spawn(s, &Opts::new(base_config(port, tcp)));
    let l = p.wait_ready();
    // Bound before the line is logged.
    TcpStream::connect(("127.0.0.1", port)).expect("HTTP bound at the ready line");
    TcpStream::connect(("127.0.0.1", tcp)).expect("ICE/TCP bound at the ready line");
    let n = s.name();
    assert_eq!(
        l.ts.len(),
        "2026-08-16T02:11:13.517Z".len(),
        "{n}: ts {}",
        l.ts
    );
    assert!(l.ts.ends_with('Z') && l.ts.as_bytes()[10] == b'T', "{n}");
    assert_eq!(
        (l.level.as_str(), l.logger.as_str()),
        ("INFO", "livekit"),
        "{n}"
    );
    assert_eq!(l.caller, "service/server.go:292", "{n}");
    let f = &l.fields;
    let keys: Vec<&String> = f.as_object().expect("fields").keys().collect();
    assert_eq!(
        keys,
        [
            "nodeID",
            "nodeIP",
            "portHttp",
            "rtc.portICERange",
            "rtc.portTCP",
            "version"
        ],
        "{n}: {f}"
    );
    assert_eq!(f["portHttp"], port, "{n}");
    assert_eq!(f["rtc.portTCP"], tcp, "{n}");
    assert_eq!(
        f["rtc.portICERange"],
        serde_json::json!([50000, 50019]),
        "{n}"
    );
    assert_eq!(f["nodeIP"], "127.0.0.1", "{n}");
    assert!(
        f["version"]
            .as_str()
            .expect("version")
            .starts_with("1.13.5"),
        "{n}"
    );
    let id = f["nodeID"].as_str().expect("nodeID").to_string();
    assert!(is_node_id(&id), "{n}: {id}");
    assert_eq!(p.count("using single-node routing"), 1, "{n}");
    // A second start gets a new node ID.
    let p2 = LkProc::spawn(s, &Opts::new(base_config(free_port(), 0)));
    let id2 = p2.wait_ready().fields["nodeID"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(is_node_id(&id2) && id2 != id, "{n}: {id} then {id2}");
}

async fn ready_line_mux_and_prometheus(s: Server) {
    let (port, prom, udp) = (free_port(), free_port(), free_block(4));
    let cfg = format!(
        "port: {port}\nbind_addresses: [127.0.0.1]\nregion: seoul\nprometheus:\n  port: {prom}\nrtc:\n  tcp_port: 0\n  udp_port: {udp}-{}\n  node_ip: 127.0.0.1\nkeys:\n  {KEY}: {SECRET}\n",
        udp + 3
    );
    let p = LkProc::spawn(s, &Opts::new(cfg));
    let f = p.wait_ready().fields;
    let n = s.name();
    assert_eq!(
        f["rtc.portUDP"],
        serde_json::json!({"Start": udp, "End": udp + 3}),
        "{n}: {f}"
    );
    assert!(
        f.get("rtc.portTCP").is_none(),
        "{n}: tcp_port 0 = no ICE/TCP: {f}"
    );
    assert_eq!(f["portPrometheus"], prom, "{n}");
    assert_eq!(f["region"], "seoul", "{n}");
    assert_eq!(f["bindAddresses"], serde_json::json!(["127.0.0.1"]), "{n}");
    TcpStream::connect(("127.0.0.1", prom)).expect("prometheus bound");

    // A single udp_port is a struct too; with a range also set, the range wins but the
    // ready line still names udp_port (CONTRACT §16 correction 4).
    let cfg = format!(
        "port: {}\nrtc:\n  tcp_port: 0\n  udp_port: {udp}\n  port_range_start: 50000\n  port_range_end: 50019\n  node_ip: 127.0.0.1\nkeys:\n  {KEY}: {SECRET}\n",
        free_port()
    );
    let p = LkProc::spawn(s, &Opts::new(cfg));
    let f = p.wait_ready().fields;
    assert_eq!(
        f["rtc.portUDP"],
        serde_json::json!({"Start": udp, "End": 0}),
        "{n}: {f}"
    );
    assert!(f.get("rtc.portICERange").is_none(), "{n}: {f}");
}

async fn env_overrides_beat_the_file(s: Server) {
    let (file_port, file_tcp) = (free_port(), free_port());
    let (env_port, env_tcp, udp) = (free_port(), free_port(), free_port());
    let cfg =
        format!("port: {file_port}\nrtc:\n  tcp_port: {file_tcp}\nkeys:\n  {KEY}: {SECRET}\n");
    let opts = Opts::new(cfg)
        .env("LIVEKIT_PORT", env_port.to_string())
        .env("LIVEKIT_RTC_TCP_PORT", env_tcp.to_string())
        .env("NODE_IP", "127.0.0.9")
        .env("UDP_PORT", udp.to_string());
    let p = LkProc::spawn(s, &opts);
    let f = p.wait_ready().fields;
    let n = s.name();
    assert_eq!(f["portHttp"], env_port, "{n}");
    assert_eq!(f["rtc.portTCP"], env_tcp, "{n}");
    assert_eq!(f["nodeIP"], "127.0.0.9", "{n}");
    assert_eq!(
        f["rtc.portUDP"],
        serde_json::json!({"Start": udp, "End": 0}),
        "{n}"
    );
    TcpStream::connect(("127.0.0.1", env_port)).expect("HTTP on the env port");
    assert!(TcpStream::connect(("127.0.0.1", file_port)).is_err(), "{n}");
}

/// `NODE_IP` / `--node-ip` do NOT beat a file `rtc.node_ip` of the same family: the real
/// server's `NodeIP.UnmarshalString` refuses a second IPv4 ("multiple ipv4 addresses") and
/// the error is dropped. An IPv6 one is added beside the file's IPv4.
async fn node_ip_flag_does_not_replace_the_file(s: Server) {
    let n = s.name();
    let cfg = base_config(free_port(), 0);
    let p = LkProc::spawn(s, &Opts::new(cfg).env("NODE_IP", "127.0.0.9"));
    assert_eq!(p.wait_ready().fields["nodeIP"], "127.0.0.1", "{n}: NODE_IP");
    let cfg = base_config(free_port(), 0);
    let p = LkProc::spawn(s, &Opts::new(cfg).arg("--node-ip").arg("127.0.0.9"));
    assert_eq!(
        p.wait_ready().fields["nodeIP"],
        "127.0.0.1",
        "{n}: --node-ip"
    );
}
