//! Integration tests of the `livekit-standin` TEST DOUBLE itself: it must behave like
//! livekit-server 1.13.5 as CONTRACT.md §15 says, or the daemon's tests prove nothing.
//! Redis cases need `redis-server` on PATH and are skipped with a notice otherwise.

// Test code: a failed expectation should panic with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use prost::Message;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_livekit-standin");
const KEY: &str = "APItestkey";
const SECRET: &str = "0123456789abcdef0123456789abcdef0123";

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn http() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

/// Signs arbitrary claims with HS256 (for tokens the SDK refuses to build, e.g. long expired).
fn hs256_jwt(claims: &Value, secret: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(format!("{head}.{body}").as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

fn token(grants: VideoGrants) -> String {
    AccessToken::with_api_key(KEY, SECRET)
        .with_identity("tester")
        .with_grants(grants)
        .to_jwt()
        .expect("jwt")
}

/// A running stand-in; killed on drop.
struct Standin {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<String>>,
    port: u16,
    tcp_port: u16,
    _dir: tempfile::TempDir,
}

struct Opts<'a> {
    config: String,
    env: Vec<(&'a str, String)>,
    args: Vec<String>,
}

fn base_config(port: u16, tcp_port: u16) -> String {
    format!(
        "port: {port}\nrtc:\n  tcp_port: {tcp_port}\n  port_range_start: 50000\n  port_range_end: 50019\n  node_ip: 127.0.0.1\nkeys:\n  {KEY}: {SECRET}\n"
    )
}

impl Standin {
    fn spawn(opts: Opts<'_>, port: u16, tcp_port: u16) -> Standin {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("livekit.yaml");
        std::fs::write(&path, &opts.config).expect("write config");
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg("--config")
            .arg(&path)
            .args(&opts.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn stand-in");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr");
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                lines.lock().expect("lock").push(line);
            }
        });
        let mut out_pipe = child.stdout.take().expect("stdout");
        let out = stdout.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock()
                    .expect("lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Standin {
            child,
            stderr,
            stdout,
            port,
            tcp_port,
            _dir: dir,
        }
    }

    fn start(env: Vec<(&str, String)>) -> Standin {
        let (port, tcp_port) = (free_port(), free_port());
        Standin::spawn(
            Opts {
                config: base_config(port, tcp_port),
                env,
                args: Vec::new(),
            },
            port,
            tcp_port,
        )
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("kill");
    }

    fn lines(&self) -> Vec<String> {
        self.stderr.lock().expect("lock").clone()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().expect("lock").clone()
    }

    fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits for a stderr line containing `needle`; returns it.
    fn wait_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn wait_ready(&self) -> String {
        self.wait_line("starting LiveKit server", Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "no ready line; stderr: {:?}; stdout: {}",
                    self.lines(),
                    self.stdout()
                )
            })
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the stand-in to completion (for startup errors) and returns (status, stdout, stderr).
fn run_to_exit(config: &str, env: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("livekit.yaml");
    std::fs::write(&path, config).expect("write");
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir.path())
        .arg("--config")
        .arg(&path)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run stand-in");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Splits a console log line into (ts, level, logger, caller, msg, fields).
fn parse_console(line: &str) -> (String, String, String, String, String, Value) {
    let parts: Vec<&str> = line.splitn(6, '\t').collect();
    assert!(parts.len() >= 5, "not a console log line: {line:?}");
    let fields = parts
        .get(5)
        .map(|f| serde_json::from_str(f).expect("fields are JSON"))
        .unwrap_or(Value::Null);
    (
        parts[0].into(),
        parts[1].into(),
        parts[2].into(),
        parts[3].into(),
        parts[4].into(),
        fields,
    )
}

// -------------------------------------------------------------------------------------------
// Config and startup errors: stdout text, exit 0.
// -------------------------------------------------------------------------------------------

#[test]
fn strict_config_rejects_rtc_node_selector() {
    let cfg = format!(
        "port: {}\nrtc:\n  tcp_port: 0\n  node_selector:\n    kind: sysload\nkeys:\n  {KEY}: {SECRET}\n",
        free_port()
    );
    let (st, out, err) = run_to_exit(&cfg, &[], &[]);
    assert_eq!(st.code(), Some(0), "stderr: {err}");
    assert_eq!(
        out.trim_end(),
        "could not parse config: yaml: unmarshal errors:\n  line 4: field node_selector not found in type config.RTCConfig"
    );
    assert!(!err.contains("starting LiveKit server"));

    // The same key at top level is valid; a bad kind is rejected.
    let cfg = format!("node_selector:\n  kind: nearest\nkeys:\n  {KEY}: {SECRET}\n");
    let (st, out, _) = run_to_exit(&cfg, &[], &[]);
    assert_eq!(st.code(), Some(0));
    assert_eq!(out.trim_end(), "unsupported node selector");

    // JSON is accepted and equally strict.
    let cfg = format!("{{\"port\": 1, \"keys\": {{\"{KEY}\": \"{SECRET}\"}}, \"redis\": {{\"use_cluster\": true}}}}");
    let (st, out, _) = run_to_exit(&cfg, &[], &[]);
    assert_eq!(st.code(), Some(0));
    assert!(
        out.contains("field use_cluster not found in type redis.RedisConfig"),
        "stdout: {out}"
    );
}

#[test]
fn key_and_env_errors_exit_zero_with_message() {
    let port = free_port();
    let good = base_config(port, 0);

    // LIVEKIT_KEYS set but empty empties the keys.
    let (st, out, _) = run_to_exit(&good, &[("LIVEKIT_KEYS", "")], &[]);
    assert_eq!(st.code(), Some(0));
    assert_eq!(out.trim_end(), "one of key-file or keys must be provided");

    // LIVEKIT_CONFIG replaces the --config file when non-empty.
    let (st, out, _) = run_to_exit(&good, &[("LIVEKIT_CONFIG", "bogus_key: 1\n")], &[]);
    assert_eq!(st.code(), Some(0));
    assert!(
        out.contains("field bogus_key not found in type config.Config"),
        "stdout: {out}"
    );

    // Key file with an "other" bit.
    let dir = tempfile::tempdir().expect("tempdir");
    let kf = dir.path().join("keys");
    std::fs::write(&kf, format!("{KEY}: {SECRET}\n")).expect("write");
    std::fs::set_permissions(&kf, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let kf_s = kf.to_string_lossy().into_owned();
    let (st, out, _) = run_to_exit(&good, &[], &["--key-file", &kf_s]);
    assert_eq!(st.code(), Some(0));
    assert_eq!(
        out.trim_end(),
        "key file others permissions must be set to 0"
    );

    // Unknown flag.
    let (st, out, _) = run_to_exit(&good, &[], &["--no-such-flag"]);
    assert_eq!(st.code(), Some(0));
    assert!(
        out.contains("flag provided but not defined: -no-such-flag"),
        "stdout: {out}"
    );

    // Unreachable Redis (port 1 on loopback refuses).
    let (st, out, err) = run_to_exit(&good, &[("REDIS_HOST", "127.0.0.1:1")], &[]);
    assert_eq!(st.code(), Some(0));
    assert!(
        out.starts_with("unable to connect to redis: "),
        "stdout: {out}"
    );
    assert!(err.contains("connecting to redis"), "stderr: {err}");

    // Simulated exit 0 before ready.
    let (st, out, err) = run_to_exit(&good, &[("STANDIN_EXIT0_AT_START", "1")], &[]);
    assert_eq!(st.code(), Some(0));
    assert!(out.contains("simulated startup failure"), "stdout: {out}");
    assert!(!err.contains("starting LiveKit server"));

    // --version
    let (st, out, _) = run_to_exit(&good, &[], &["--version"]);
    assert_eq!(st.code(), Some(0));
    assert!(
        out.starts_with("livekit-server version 1.13.5"),
        "stdout: {out}"
    );
}

#[test]
fn short_secret_logs_error_and_runs() {
    let (port, tcp) = (free_port(), free_port());
    let s = Standin::spawn(
        Opts {
            config: format!("port: {port}\nrtc:\n  tcp_port: {tcp}\nkeys:\n  k: short\n"),
            env: vec![],
            args: vec![],
        },
        port,
        tcp,
    );
    s.wait_ready();
    let err_line = s
        .lines()
        .into_iter()
        .find(|l| l.contains("secret is too short"))
        .expect("short secret error line");
    assert_eq!(parse_console(&err_line).1, "ERROR");
}

#[test]
fn port_in_use_exits_zero_with_message() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let tcp = free_port();
    let (st, out, err) = run_to_exit(&base_config(port, tcp), &[], &[]);
    assert_eq!(st.code(), Some(0));
    assert_eq!(
        out.trim_end(),
        format!("listen tcp :{port}: bind: address already in use")
    );
    assert!(!err.contains("starting LiveKit server"));

    // The ICE/TCP port is bound before HTTP and fails the same way.
    let (st, out, _) = run_to_exit(&base_config(free_port(), port), &[], &[]);
    assert_eq!(st.code(), Some(0));
    assert_eq!(
        out.trim_end(),
        format!("listen tcp :{port}: bind: address already in use")
    );
    drop(taken);
}

// -------------------------------------------------------------------------------------------
// Ready line, env overrides, health.
// -------------------------------------------------------------------------------------------

fn is_node_id(id: &str) -> bool {
    id.len() == 15 && id.starts_with("ND_") && id[3..].chars().all(|c| c.is_ascii_alphanumeric())
}

#[tokio::test]
async fn ready_line_and_health() {
    let s = Standin::start(vec![]);
    let ready = s.wait_ready();
    let (ts, level, logger, caller, msg, fields) = parse_console(&ready);
    assert_eq!(ts.len(), "2026-08-16T02:11:13.517Z".len(), "ts {ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T');
    assert_eq!(
        (level.as_str(), logger.as_str(), msg.as_str()),
        ("INFO", "livekit", "starting LiveKit server")
    );
    assert!(caller.contains(".go:"), "caller {caller}");
    assert_eq!(fields["portHttp"], s.port);
    assert_eq!(fields["rtc.portTCP"], s.tcp_port);
    assert_eq!(
        fields["rtc.portICERange"],
        serde_json::json!([50000, 50019])
    );
    assert_eq!(fields["nodeIP"], "127.0.0.1");
    let id1 = fields["nodeID"].as_str().expect("nodeID").to_string();
    assert!(is_node_id(&id1), "{id1}");
    assert!(s.count("using single-node routing") == 1);
    // The ready line comes after the listeners: both ports accept now.
    TcpStream::connect(("127.0.0.1", s.tcp_port)).expect("ICE/TCP port bound");

    let c = http();
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ] {
        let r = c.request(method, s.url("/")).send().await.expect("health");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"].to_str().expect("ct"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(r.text().await.expect("body"), "OK");
    }
    for path in ["/healthz", "/readyz", "/foo"] {
        let r = c.get(s.url(path)).send().await.expect("get");
        assert_eq!(r.status(), 404);
        assert_eq!(r.text().await.expect("body"), "404 page not found\n");
    }
    // The join-token validation route.
    let join = AccessToken::with_api_key(KEY, SECRET)
        .with_identity("alice")
        .with_grants(VideoGrants {
            room_join: true,
            room: "r1".into(),
            ..Default::default()
        })
        .to_jwt()
        .expect("jwt");
    let r = c
        .get(s.url(&format!("/rtc/validate?access_token={join}")))
        .send()
        .await
        .expect("validate");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "success");
    let r = c
        .get(s.url("/rtc/v1/validate?access_token=garbage"))
        .send()
        .await
        .expect("validate");
    assert_eq!(r.status(), 401);

    // A second start gets a new node ID.
    let s2 = Standin::start(vec![]);
    let (.., fields2) = parse_console(&s2.wait_ready());
    let id2 = fields2["nodeID"].as_str().expect("nodeID").to_string();
    assert!(is_node_id(&id2));
    assert_ne!(id1, id2);
}

#[test]
fn env_overrides_beat_the_file() {
    let (file_port, file_tcp) = (free_port(), free_port());
    let (env_port, env_tcp, udp) = (free_port(), free_port(), free_port());
    let cfg =
        format!("port: {file_port}\nrtc:\n  tcp_port: {file_tcp}\nkeys:\n  {KEY}: {SECRET}\n");
    let s = Standin::spawn(
        Opts {
            config: cfg,
            env: vec![
                ("LIVEKIT_PORT", env_port.to_string()),
                ("LIVEKIT_RTC_TCP_PORT", env_tcp.to_string()),
                ("NODE_IP", "127.0.0.9".into()),
                ("UDP_PORT", udp.to_string()),
            ],
            args: vec![],
        },
        env_port,
        env_tcp,
    );
    let (.., fields) = parse_console(&s.wait_ready());
    assert_eq!(fields["portHttp"], env_port);
    assert_eq!(fields["rtc.portTCP"], env_tcp);
    assert_eq!(fields["nodeIP"], "127.0.0.9");
    assert_eq!(fields["rtc.portUDP"], udp);
    assert!(fields.get("rtc.portICERange").is_none());
    // The UDP mux port is really bound.
    assert!(
        std::net::UdpSocket::bind(("127.0.0.1", udp)).is_err(),
        "UDP mux port should be taken"
    );
    TcpStream::connect(("127.0.0.1", env_port)).expect("HTTP on the env port");
    assert!(TcpStream::connect(("127.0.0.1", file_port)).is_err());
}

// -------------------------------------------------------------------------------------------
// Twirp RoomService.
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn twirp_json_and_protobuf() {
    let s = Standin::start(vec![]);
    s.wait_ready();
    let c = http();
    let create = token(VideoGrants {
        room_create: true,
        ..Default::default()
    });
    let list = token(VideoGrants {
        room_list: true,
        ..Default::default()
    });

    // JSON in (camelCase accepted), snake_case out with defaults and int64 as strings.
    let r = c
        .post(s.url("/twirp/livekit.RoomService/CreateRoom"))
        .bearer_auth(&create)
        .header("Content-Type", "application/json")
        .body(r#"{"name":"class-1","maxParticipants":7,"unknown_field":1}"#)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let room: Value = r.json().await.expect("json");
    assert_eq!(room["name"], "class-1");
    assert_eq!(room["max_participants"], 7);
    assert_eq!(room["empty_timeout"], 300);
    assert_eq!(room["departure_timeout"], 20);
    assert_eq!(room["num_participants"], 0);
    assert_eq!(room["metadata"], "");
    assert!(room["sid"].as_str().expect("sid").starts_with("RM_"));
    let ct = room["creation_time"]
        .as_str()
        .expect("creation_time is a string");
    assert!(ct.parse::<i64>().expect("number") > 1_600_000_000);
    assert!(room.get("maxParticipants").is_none());

    // Protobuf in and out.
    let body = livekit_protocol::ListRoomsRequest { names: vec![] }.encode_to_vec();
    let r = c
        .post(s.url("/twirp/livekit.RoomService/ListRooms"))
        .bearer_auth(&list)
        .header("Content-Type", "application/protobuf")
        .body(body)
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/protobuf");
    let resp = livekit_protocol::ListRoomsResponse::decode(r.bytes().await.expect("bytes"))
        .expect("decode");
    assert_eq!(resp.rooms.len(), 1);
    assert_eq!(resp.rooms[0].name, "class-1");
    assert_eq!(resp.rooms[0].sid, room["sid"].as_str().expect("sid"));

    // The SDK client (protobuf, fresh token per call).
    let client = RoomClient::with_api_key(&s.url(""), KEY, SECRET);
    let created = client
        .create_room(
            "class-2",
            CreateRoomOptions {
                empty_timeout: 60,
                ..Default::default()
            },
        )
        .await
        .expect("sdk create_room");
    assert_eq!(created.name, "class-2");
    assert_eq!(created.empty_timeout, 60);
    let rooms = client.list_rooms(vec![]).await.expect("sdk list_rooms");
    let mut names: Vec<String> = rooms.iter().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["class-1", "class-2"]);
    let only = client
        .list_rooms(vec!["class-2".into()])
        .await
        .expect("filtered");
    assert_eq!(only.len(), 1);

    // Fake participants through the stand-in hook, seen by ListParticipants.
    let r = c
        .post(s.url("/standin/participants?room=class-1&count=3"))
        .send()
        .await
        .expect("hook");
    assert_eq!(r.status(), 200);
    let parts = client
        .list_participants("class-1")
        .await
        .expect("participants");
    assert_eq!(parts.len(), 3);
    let listed = client
        .list_rooms(vec!["class-1".into()])
        .await
        .expect("list");
    assert_eq!(listed[0].num_participants, 3);

    client.delete_room("class-2").await.expect("delete");
    assert!(
        client.delete_room("class-2").await.is_err(),
        "second delete is not_found"
    );
    let r = c
        .post(s.url("/twirp/livekit.RoomService/DeleteRoom"))
        .bearer_auth(&create)
        .header("Content-Type", "application/json")
        .body(r#"{"room":"nope"}"#)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["code"], "not_found");
    assert_eq!(client.list_rooms(vec![]).await.expect("list").len(), 1);
}

#[tokio::test]
async fn twirp_auth_json_vs_plain_401() {
    let s = Standin::start(vec![]);
    s.wait_ready();
    let c = http();
    let url = s.url("/twirp/livekit.RoomService/ListRooms");
    let post = |auth: Option<String>| {
        let mut rb = c
            .post(&url)
            .header("Content-Type", "application/json")
            .body("{}");
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        rb.send()
    };

    // No header: Twirp JSON 401.
    let r = post(None).await.expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.text().await.expect("body"),
        r#"{"code":"unauthenticated","msg":"permissions denied"}"#
    );

    // Valid token, wrong grant: the same JSON.
    let wrong = token(VideoGrants {
        room_create: true,
        ..Default::default()
    });
    let r = post(Some(format!("Bearer {wrong}"))).await.expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.text().await.expect("body"),
        r#"{"code":"unauthenticated","msg":"permissions denied"}"#
    );

    // Middleware failures: plain text.
    let other_secret = AccessToken::with_api_key(KEY, "ffffffffffffffffffffffffffffffffffff")
        .with_grants(VideoGrants {
            room_list: true,
            ..Default::default()
        })
        .to_jwt()
        .expect("jwt");
    let unknown_key = AccessToken::with_api_key("APIother", SECRET)
        .with_grants(VideoGrants {
            room_list: true,
            ..Default::default()
        })
        .to_jwt()
        .expect("jwt");
    let cases = [
        (format!("Basic {wrong}"), "invalid authorization header"),
        (
            "Bearer not.a.jwt".to_string(),
            "invalid authorization token",
        ),
        (format!("Bearer {unknown_key}"), "invalid API key"),
        (
            format!("Bearer {other_secret}"),
            "invalid authorization token",
        ),
    ];
    for (header, expect) in cases {
        let r = post(Some(header.clone())).await.expect("send");
        assert_eq!(r.status(), 401, "{header}");
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        let body = r.text().await.expect("body");
        assert!(body.starts_with(expect), "{header}: {body}");
        assert!(
            serde_json::from_str::<Value>(&body).is_err(),
            "must not be JSON: {body}"
        );
    }
    // Expired beyond the 60 s leeway: exp far in the past.
    let claims =
        serde_json::json!({"iss": KEY, "exp": 1_000_000, "nbf": 0, "video": {"roomList": true}});
    let old = hs256_jwt(&claims, SECRET);
    let r = post(Some(format!("Bearer {old}"))).await.expect("send");
    assert_eq!(r.status(), 401);
    assert!(r
        .text()
        .await
        .expect("body")
        .starts_with("invalid authorization token"));

    // Twirp routing errors.
    let r = c.get(&url).send().await.expect("get");
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["code"], "bad_route");
    let r = c
        .post(&url)
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);

    // The SDK with a wrong secret fails (the plain 401 is not Twirp JSON).
    let bad = RoomClient::with_api_key(&s.url(""), KEY, "ffffffffffffffffffffffffffffffffffff");
    assert!(bad.list_rooms(vec![]).await.is_err());
}

// -------------------------------------------------------------------------------------------
// Signals and misbehaviour switches.
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn sigterm_drains_until_second_sigterm() {
    let mut s = Standin::start(vec![("STANDIN_PARTICIPANTS", "class=2".into())]);
    s.wait_ready();
    s.signal(Signal::SIGTERM);
    let line = s
        .wait_line("exit requested, shutting down", Duration::from_secs(3))
        .expect("exit requested line");
    let (.., fields) = parse_console(&line);
    assert_eq!(
        fields,
        serde_json::json!({"signal": "terminated", "force": false})
    );
    s.wait_line("waiting for participants to exit", Duration::from_secs(3))
        .expect("waiting line");
    // Still running and healthy while draining.
    assert!(
        s.wait_exit(Duration::from_millis(700)).is_none(),
        "must keep draining"
    );
    let r = http().get(s.url("/")).send().await.expect("health");
    assert_eq!(r.status(), 200);
    // 2nd signal forces; exit 0.
    s.signal(Signal::SIGINT);
    let st = s
        .wait_exit(Duration::from_secs(7))
        .expect("exits after 2nd signal");
    assert_eq!(st.code(), Some(0));
    assert!(s.lines().iter().any(|l| l.contains("exit requested")
        && l.contains(r#""force": true"#)
        && l.contains(r#""signal": "interrupt""#)));
}

#[tokio::test]
async fn drain_ends_when_participants_leave_and_idle_exit_is_fast() {
    let mut s = Standin::start(vec![("STANDIN_PARTICIPANTS", "class=1".into())]);
    s.wait_ready();
    s.signal(Signal::SIGTERM);
    s.wait_line("waiting for participants to exit", Duration::from_secs(3))
        .expect("waiting line");
    let r = http()
        .post(s.url("/standin/participants?room=class&count=0"))
        .send()
        .await
        .expect("hook");
    assert_eq!(r.status(), 200);
    let st = s
        .wait_exit(Duration::from_secs(5))
        .expect("exits once empty");
    assert_eq!(st.code(), Some(0));

    let mut idle = Standin::start(vec![]);
    idle.wait_ready();
    let t0 = Instant::now();
    idle.signal(Signal::SIGQUIT);
    let st = idle.wait_exit(Duration::from_secs(5)).expect("idle exit");
    assert_eq!(st.code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    assert!(idle
        .lines()
        .iter()
        .any(|l| l.contains(r#""signal": "quit""#)));
}

#[test]
fn ignore_sigterm_switch_needs_sigkill() {
    let mut s = Standin::start(vec![("STANDIN_IGNORE_SIGTERM", "1".into())]);
    s.wait_ready();
    s.signal(Signal::SIGTERM);
    s.signal(Signal::SIGTERM);
    s.signal(Signal::SIGINT);
    assert!(s.wait_exit(Duration::from_millis(600)).is_none());
    assert_eq!(s.count("exit requested"), 0);
    s.signal(Signal::SIGKILL);
    let st = s.wait_exit(Duration::from_secs(3)).expect("killed");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
}

#[tokio::test]
async fn crash_hang_and_stale_switches() {
    // Crash with code 2 after being ready.
    let mut s = Standin::start(vec![
        ("STANDIN_CRASH_AFTER_MS", "200".into()),
        ("STANDIN_CRASH_CODE", "2".into()),
    ]);
    s.wait_ready();
    let st = s.wait_exit(Duration::from_secs(5)).expect("crashes");
    assert_eq!(st.code(), Some(2));
    assert!(s.lines().iter().any(|l| l.starts_with("panic: ")));

    // Hang: no ready line, HTTP never bound, SIGTERM still ends it.
    let mut h = Standin::start(vec![("STANDIN_HANG", "1".into())]);
    assert!(h
        .wait_line("starting LiveKit server", Duration::from_millis(700))
        .is_none());
    assert!(TcpStream::connect(("127.0.0.1", h.port)).is_err());
    h.signal(Signal::SIGTERM);
    assert_eq!(
        h.wait_exit(Duration::from_secs(5)).expect("exit").code(),
        Some(0)
    );

    // Stale health: 406 with the Go time format.
    let st = Standin::start(vec![("STANDIN_STALE_HEALTH", "1".into())]);
    st.wait_ready();
    let r = http().get(st.url("/")).send().await.expect("health");
    assert_eq!(r.status(), 406);
    let body = r.text().await.expect("body");
    assert!(body.starts_with("Not Ready\nNode Updated At "), "{body}");
    assert!(body.ends_with(" +0000 UTC"), "{body}");
    // Toggled back at runtime through the stand-in hook.
    let c = http();
    c.post(st.url("/standin/health?stale=0"))
        .send()
        .await
        .expect("hook");
    assert_eq!(
        c.get(st.url("/")).send().await.expect("health").status(),
        200
    );

    // Slow start: nothing bound during the delay.
    let slow = Standin::start(vec![("STANDIN_START_DELAY_MS", "600".into())]);
    std::thread::sleep(Duration::from_millis(250));
    assert!(TcpStream::connect(("127.0.0.1", slow.port)).is_err());
    slow.wait_ready();
    TcpStream::connect(("127.0.0.1", slow.port)).expect("bound after the delay");
}

// -------------------------------------------------------------------------------------------
// Redis.
// -------------------------------------------------------------------------------------------

struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| Path::new(p).is_file())
    })
}

fn start_redis() -> Option<RedisServer> {
    let Some(bin) = which("redis-server") else {
        eprintln!(
            "NOTICE: redis-server not installed; skipping the Redis cases of the stand-in tests"
        );
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let child = Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    let server = RedisServer {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(server);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server did not start");
}

fn redis_conn(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .expect("client")
        .get_connection()
        .expect("connect")
}

fn node_from_redis(con: &mut redis::Connection, id: &str) -> Option<livekit_protocol::Node> {
    let bytes: Option<Vec<u8>> = redis::cmd("HGET")
        .arg("nodes")
        .arg(id)
        .query(con)
        .expect("HGET");
    bytes.map(|b| livekit_protocol::Node::decode(b.as_slice()).expect("decode Node"))
}

#[tokio::test]
async fn redis_nodes_rooms_and_drain() {
    let Some(redis_server) = start_redis() else {
        return;
    };
    let mut s = Standin::start(vec![(
        "REDIS_HOST",
        format!("127.0.0.1:{}", redis_server.port),
    )]);
    let (.., fields) = parse_console(&s.wait_ready());
    let id = fields["nodeID"].as_str().expect("id").to_string();
    let connecting = s
        .wait_line("connecting to redis", Duration::from_secs(1))
        .expect("line");
    assert!(connecting.contains(&format!("127.0.0.1:{}", redis_server.port)));
    assert_eq!(s.count("using single-node routing"), 0);

    let mut con = redis_conn(redis_server.port);
    let node = node_from_redis(&mut con, &id).expect("node registered");
    assert_eq!(node.id, id);
    assert_eq!(node.state, livekit_protocol::NodeState::Serving as i32);
    assert_eq!(node.ip, "127.0.0.1");
    let stats = node.stats.expect("stats");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    assert!(
        (now - stats.updated_at).abs() <= 3,
        "updated_at {}",
        stats.updated_at
    );
    assert!(stats.num_cpus >= 1);

    // Rooms are mirrored with their node.
    let client = RoomClient::with_api_key(&s.url(""), KEY, SECRET);
    install_crypto();
    client
        .create_room("class-r", CreateRoomOptions::default())
        .await
        .expect("create");
    let owner: String = redis::cmd("HGET")
        .arg("room_node_map")
        .arg("class-r")
        .query(&mut con)
        .expect("HGET");
    assert_eq!(owner, id);
    let raw: Vec<u8> = redis::cmd("HGET")
        .arg("rooms")
        .arg("class-r")
        .query(&mut con)
        .expect("HGET");
    assert_eq!(
        livekit_protocol::Room::decode(raw.as_slice())
            .expect("Room")
            .name,
        "class-r"
    );
    client.delete_room("class-r").await.expect("delete");
    let gone: Option<String> = redis::cmd("HGET")
        .arg("room_node_map")
        .arg("class-r")
        .query(&mut con)
        .expect("HGET");
    assert!(gone.is_none());

    // Drain: SHUTTING_DOWN while participants stay, HDEL on exit.
    http()
        .post(s.url("/standin/participants?room=busy&count=1"))
        .send()
        .await
        .expect("hook");
    s.signal(Signal::SIGTERM);
    s.wait_line("waiting for participants to exit", Duration::from_secs(3))
        .expect("waiting");
    let node = node_from_redis(&mut con, &id).expect("still registered");
    assert_eq!(node.state, livekit_protocol::NodeState::ShuttingDown as i32);
    s.signal(Signal::SIGTERM);
    assert_eq!(
        s.wait_exit(Duration::from_secs(7)).expect("exit").code(),
        Some(0)
    );
    assert!(node_from_redis(&mut con, &id).is_none(), "HDEL on exit");
}

#[tokio::test]
async fn redis_outage_turns_health_406() {
    let Some(mut redis_server) = start_redis() else {
        return;
    };
    let s = Standin::start(vec![(
        "REDIS_HOST",
        format!("127.0.0.1:{}", redis_server.port),
    )]);
    s.wait_ready();
    let c = http();
    assert_eq!(
        c.get(s.url("/")).send().await.expect("health").status(),
        200
    );
    let _ = redis_server.child.kill();
    let _ = redis_server.child.wait();
    let deadline = Instant::now() + Duration::from_secs(9);
    let mut status = 200;
    while Instant::now() < deadline {
        status = c
            .get(s.url("/"))
            .send()
            .await
            .expect("health")
            .status()
            .as_u16();
        if status == 406 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, 406, "health must go stale without Redis");
}
