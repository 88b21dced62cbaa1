//! The command line: `check`, `render`, `ports` exit codes and output.

use crate::support::node::NodeSpec;
use crate::support::DAEMON;

#[test]
fn check_ok_and_exit_0() {
    let node = NodeSpec::standalone("main").write();
    let out = node.cmd(&["check", "--instance", "main"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("ok: instance main (standalone mode"),
        "{stdout}"
    );
}

#[test]
fn check_reports_every_problem_and_exits_78() {
    let node = NodeSpec::standalone("main")
        .instance_toml("[livekit]\nprot = 1\nlog_level = \"loud\"\n[node]\nmode = \"primary\"\n")
        .write();
    let out = node.cmd(&["check", "--instance", "main"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("livekit.prot: unknown key"), "{stderr}");
    assert!(stderr.contains("node.mode: invalid value"), "{stderr}");
    assert!(stderr.contains("nodes/main.toml"), "{stderr}");
    assert!(stderr.contains("fix:"), "{stderr}");
}

#[test]
fn missing_livekit_binary_is_a_config_error_naming_the_path() {
    let node = NodeSpec::standalone("main").write();
    let out = node
        .cmd(&["check", "--instance", "main"])
        .env("LIVEKIT_BINARY", "/nonexistent/livekit-server")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr.contains("LiveKit server failed to start: /nonexistent/livekit-server is missing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("environment variable LIVEKIT_BINARY"),
        "{stderr}"
    );
}

#[test]
fn short_secret_refused_without_showing_it() {
    let node = NodeSpec::standalone("main").write();
    std::fs::write(node.path().join("secrets/livekit-api-secret"), "tooshort\n").unwrap();
    let out = node.cmd(&["check", "--instance", "main"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr.contains("8 characters; at least 32 are required"),
        "{stderr}"
    );
    assert!(!stderr.contains("tooshort"));
}

#[test]
fn run_with_bad_config_exits_78_without_starting() {
    let node = NodeSpec::standalone("main")
        .instance_toml("[node]\nbogus = true\n")
        .write();
    let out = node.cmd(&["run", "--instance", "main"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(!node.path().join("run/livekit.yaml").exists());
}

#[test]
fn render_redacts_secrets() {
    let node = NodeSpec::sub("node-1").write();
    let out = node
        .cmd(&["render", "--instance", "node-1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("kind: sysload"), "{stdout}");
    assert!(stdout.contains("APItestkey1234: [redacted]"), "{stdout}");
    assert!(!stdout.contains("testsecret-0123456789"), "{stdout}");
}

#[test]
fn ports_json_matches_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    for (name, port, start) in [
        ("main", 7880, 50000),
        ("node-1", 7890, 51000),
        ("node-3", 7910, 53000),
    ] {
        let out = std::process::Command::new(DAEMON)
            .args([
                "--config",
                "/nonexistent/x.toml",
                "ports",
                "--json",
                "--instance",
                name,
            ])
            .env("AIRCLASS_NODES_DIR", dir.path())
            .output()
            .unwrap();
        // an explicit --config that is missing is an error
        assert_eq!(out.status.code(), Some(78));
        let out = std::process::Command::new(DAEMON)
            .args(["--nodes-dir"])
            .arg(dir.path())
            .args(["ports", "--json", "--instance", name])
            .env_remove("AIRCLASS_CONFIG")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["livekit_port"], port);
        assert_eq!(v["rtc_udp_start"], start);
        assert_eq!(v["rtc_udp_end"], start + 20);
    }
}

#[test]
fn usage_error_is_2_and_version_is_0() {
    let out = std::process::Command::new(DAEMON)
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(DAEMON)
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("airclass-node "));
}
