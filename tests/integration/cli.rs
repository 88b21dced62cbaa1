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

fn check_output(node: &crate::support::node::NodeDir, env: &[(&str, &str)]) -> (i32, String) {
    let mut c = node.cmd(&["check", "--instance", &node.instance]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Issue 10: `check` and the protocol share one node-name rule, so a name main would refuse
/// for every registration fails `check` instead.
#[test]
fn a_node_name_the_protocol_refuses_fails_check() {
    for bad in ["node-", "-node", "Node1", "node_1"] {
        let node = NodeSpec::standalone("main")
            .instance_toml(&format!("[node]\nname = {bad:?}\n"))
            .write();
        let (code, text) = check_output(&node, &[]);
        assert_eq!(code, 78, "node.name = {bad:?} passed check: {text}");
        assert!(text.contains("node.name"), "{bad:?}: {text}");
        assert!(text.contains("a-z, 0-9 and '-'"), "{bad:?}: {text}");
    }
}

/// Issue 10: a TOML syntax error names line, column and key, never the line itself (a missing
/// quote after a password in a URL must not print the password).
#[test]
fn a_toml_syntax_error_does_not_echo_the_secret_on_its_line() {
    let node = NodeSpec::standalone("main")
        .instance_toml("[redis]\nurl = \"redis://:hunter2-secret-pw@10.1.2.3:6379\n")
        .write();
    let (code, text) = check_output(&node, &[]);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("not valid TOML at line"), "{text}");
    assert!(text.contains("url"), "{text}");
    assert!(
        !text.contains("hunter2-secret-pw"),
        "the password leaked: {text}"
    );
    assert!(!text.contains("10.1.2.3"), "the line was echoed: {text}");
}

/// Issue 10: a raw token in `app-token.sha256` gets advice that makes the right file.
#[test]
fn a_raw_token_in_the_hash_file_is_told_to_use_hash_token() {
    let node = NodeSpec::standalone("main").write();
    let hash_file = node.path().join("secrets/app-token.sha256");
    assert!(hash_file.exists(), "the test node has no {hash_file:?}");
    std::fs::write(&hash_file, "my-raw-application-token-123456\n").unwrap();
    let (code, text) = check_output(&node, &[]);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("airclass-node hash-token"), "{text}");
    assert!(!text.contains("my-raw-application-token"), "{text}");
    // following the advice gives a file check accepts
    let mut hash = std::process::Command::new(DAEMON)
        .arg("hash-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    hash.stdin
        .take()
        .unwrap()
        .write_all(b"my-raw-application-token-123456\n")
        .unwrap();
    let out = hash.wait_with_output().unwrap();
    assert!(out.status.success());
    std::fs::write(&hash_file, &out.stdout).unwrap();
    let (code, text) = check_output(&node, &[]);
    assert_eq!(code, 0, "{text}");
}

/// Issue 10: `check` prints the problems of every stage at once (schema, values, secrets, the
/// LiveKit binary), not only the first failing stage's.
#[test]
fn check_reports_the_problems_of_every_stage_at_once() {
    let node = NodeSpec::standalone("main")
        .instance_toml("[livekit]\nprot = 1\n[api]\nbind = \"not-an-address\"\n")
        .write();
    std::fs::write(node.path().join("secrets/livekit-api-secret"), "tooshort\n").unwrap();
    let (code, text) = check_output(&node, &[("LIVEKIT_BINARY", "/nonexistent/livekit-server")]);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("livekit.prot: unknown key"), "schema: {text}");
    assert!(text.contains("api.bind"), "values: {text}");
    assert!(text.contains("at least 32 are required"), "secrets: {text}");
    assert!(
        text.contains("/nonexistent/livekit-server is missing"),
        "binary: {text}"
    );
}

/// Issue 10: the unit raises the file handle limit above what the control API may hold (its
/// default cap plus the handles kept for everything else) and sets journald's rate limit
/// deliberately; the NixOS module sets the limit too.
#[test]
fn the_unit_and_the_nixos_module_set_file_handle_and_log_rate_limits() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/airclass-node@.service")).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("the unit sets no {key}="))
    };
    let nofile: usize = value("LimitNOFILE").parse().unwrap();
    let need = airclass_node::config::schema::ApiSection::default().max_connections
        + airclass_node::api::serve::RESERVED_FDS as usize;
    assert!(nofile >= need, "LimitNOFILE={nofile} < {need}");
    assert_eq!(value("LogRateLimitIntervalSec"), "30s");
    let burst: u64 = value("LogRateLimitBurst").parse().unwrap();
    assert!(
        burst > 10_000,
        "journald's default burst (10000) drops state changes"
    );
    let module = std::fs::read_to_string(root.join("nix/module.nix")).unwrap();
    assert!(
        module.contains(&format!("LimitNOFILE = lib.mkDefault {nofile};")),
        "nix/module.nix does not set LimitNOFILE = {nofile}"
    );
}
