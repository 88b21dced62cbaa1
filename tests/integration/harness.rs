//! Test harness: temp config + secrets, free ports, a fake systemd notify socket, and a
//! daemon process that is killed (with its LiveKit) when the test ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::UnixDatagram;

pub const DAEMON: &str = env!("CARGO_BIN_EXE_airclass-node");
pub const STANDIN: &str = env!("CARGO_BIN_EXE_livekit-standin");

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A block of `n` consecutive ports free for TCP and UDP (best effort).
pub fn free_block(n: u16) -> u16 {
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

/// One notify message with its arrival time.
#[derive(Debug, Clone)]
pub struct Notify {
    pub at: Instant,
    pub text: String,
}

/// A node directory: config, secrets, runtime dir.
pub struct NodeDir {
    pub dir: tempfile::TempDir,
    pub instance: String,
    pub livekit_port: u16,
    pub api_port: u16,
}

impl NodeDir {
    /// Standalone node `main` with explicit free ports.
    pub fn standalone(extra_toml: &str) -> Self {
        Self::with_mode("main", "standalone", extra_toml)
    }

    pub fn with_mode(instance: &str, mode: &str, extra_toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = free_block(4);
        let udp = free_block(21);
        let (livekit_port, tcp, api_port) = (base, base + 1, base + 2);
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&secrets).unwrap();
        let w = |n: &str, v: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(secrets.join(n), v).unwrap();
            std::fs::set_permissions(secrets.join(n), std::fs::Permissions::from_mode(0o640))
                .unwrap();
        };
        w("livekit-api-key", "APItestkey1234\n");
        w(
            "livekit-api-secret",
            "testsecret-0123456789abcdefghijklmnop\n",
        );
        w("cluster-secret", "clustersecret-0123456789abcdefghijklm\n");
        w(
            "app-token.sha256",
            &format!(
                "{}\n",
                airclass_node::cluster::auth::token_sha256_hex(APP_TOKEN)
            ),
        );
        let s = |n: &str| secrets.join(n).display().to_string();
        let toml = format!(
            r#"[node]
mode = "{mode}"
livekit_port = {livekit_port}
rtc_tcp_port = {tcp}
rtc_udp_start = {udp}
rtc_udp_end = {udp_end}
api_port = {api_port}
advertise_address = "127.0.0.1"

[livekit]
binary = "{STANDIN}"
api_key_file = "{key}"
api_secret_file = "{secret}"
health_interval_ms = 200
drain_timeout_secs = 3
ready_timeout_secs = 10
node_ip = "127.0.0.1"
prometheus_port = {prometheus_port}

[cluster]
secret_file = "{cluster}"
# tests never send multicast outside the machine's loopback
mdns = false

[api]
bind = "127.0.0.1"
app_token_sha256_file = "{app}"
"#,
            udp_end = udp + 20,
            prometheus_port = base + 3,
            key = s("livekit-api-key"),
            secret = s("livekit-api-secret"),
            cluster = s("cluster-secret"),
            app = s("app-token.sha256"),
        );
        std::fs::create_dir(dir.path().join("nodes")).unwrap();
        std::fs::write(dir.path().join("airclass.toml"), toml).unwrap();
        if !extra_toml.is_empty() {
            std::fs::write(
                dir.path().join("nodes").join(format!("{instance}.toml")),
                extra_toml,
            )
            .unwrap();
        }
        Self {
            dir,
            instance: instance.into(),
            livekit_port,
            api_port,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `airclass-node --config … --nodes-dir … ARGS`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DAEMON);
        c.arg("--config")
            .arg(self.path().join("airclass.toml"))
            .arg("--nodes-dir")
            .arg(self.path().join("nodes"))
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env("RUNTIME_DIRECTORY", self.path().join("run"));
        c
    }
}

pub const APP_TOKEN: &str = "test-app-token-0123456789";

/// A running daemon. Dropping it SIGKILLs the daemon and any LiveKit it started.
pub struct Daemon {
    pub child: Child,
    /// Every notify message so far (a task drains the socket, as systemd does).
    inbox: std::sync::Arc<std::sync::Mutex<Vec<Notify>>>,
    pub log: PathBuf,
    pub spawned: Instant,
    pub notes: Vec<Notify>,
    pub api: String,
    pub livekit_port: u16,
    pids_seen: Vec<u32>,
}

impl Daemon {
    /// Spawn `run` with a fake NOTIFY_SOCKET and WATCHDOG_USEC, extra env.
    pub fn spawn(node: &NodeDir, env: &[(&str, &str)]) -> Self {
        airclass_node::tls::install_crypto_provider();
        let sock_path = node
            .path()
            .join(format!("notify-{}", rand::random::<u32>()));
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        let log = node.path().join("daemon.log");
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = node.cmd(&["run", "--instance", &node.instance]);
        cmd.env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "400000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let inbox = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = inbox.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                sink.lock().unwrap().push(Notify {
                    at: Instant::now(),
                    text,
                });
            }
        });
        Self {
            child,
            inbox,
            log,
            spawned: Instant::now(),
            notes: Vec::new(),
            api: format!("http://127.0.0.1:{}", node.api_port),
            livekit_port: node.livekit_port,
            pids_seen: Vec::new(),
        }
    }

    /// Spawn and wait for `READY=1` (fails the test with the daemon's log otherwise).
    pub async fn spawn_ready(node: &NodeDir, env: &[(&str, &str)]) -> Self {
        let mut d = Self::spawn(node, env);
        let ready = d.wait_note("READY=1", Duration::from_secs(20)).await;
        assert!(ready.is_some(), "no READY=1; log:\n{}", d.log_text());
        d
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Wait until a notify message contains `needle` (or timeout). Returns its arrival time.
    pub async fn wait_note(&mut self, needle: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            self.notes = self.inbox.lock().unwrap().clone();
            if let Some(n) = self.notes.iter().find(|n| n.text.contains(needle)) {
                return Some(n.at);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Collect notify messages for `d`.
    pub async fn collect_notes(&mut self, d: Duration) {
        tokio::time::sleep(d).await;
        self.notes = self.inbox.lock().unwrap().clone();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .get(format!("{}{}", self.api, path))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// LiveKit's pid as the daemon reports it.
    pub async fn livekit_pid(&mut self) -> Option<u32> {
        let (_, v) = self.get_json("/api/node").await;
        let pid = v["livekit"]["pid"].as_u64().map(|p| p as u32);
        if let Some(p) = pid {
            if !self.pids_seen.contains(&p) {
                self.pids_seen.push(p);
            }
        }
        pid
    }

    pub async fn livekit_state(&self) -> String {
        let (_, v) = self.get_json("/api/node").await;
        v["livekit"]["state"].as_str().unwrap_or("").to_string()
    }

    /// Poll until the daemon reports LiveKit ready with a pid other than `not`.
    pub async fn wait_ready_pid(&mut self, not: Option<u32>, timeout: Duration) -> Option<u32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Ok(r)) = tokio::time::timeout(
                Duration::from_secs(2),
                reqwest::Client::new()
                    .get(format!("{}/api/node", self.api))
                    .send(),
            )
            .await
            {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    let pid = v["livekit"]["pid"].as_u64().map(|p| p as u32);
                    if let Some(p) = pid {
                        if !self.pids_seen.contains(&p) {
                            self.pids_seen.push(p);
                        }
                    }
                    if v["livekit"]["state"] == "ready" && pid.is_some() && pid != not {
                        return pid;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Wait for the daemon to exit; its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in &self.pids_seen {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Is `pid` a live (non-zombie) process?
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s.rsplit(") ").next().and_then(|r| r.chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// `/proc/PID/status` field.
pub fn status_field(pid: u32, field: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .map(|l| {
            l.split_once(':')
                .map(|x| x.1.trim().to_string())
                .unwrap_or_default()
        })
}

/// A redis-server on a free port (None when redis-server is not installed).
pub struct Redis {
    pub child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Option<Self> {
        let port = free_port();
        Self::start_on(port)
    }

    pub fn start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Self { child, port });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Print a measured figure in a form the test log keeps.
/// Also appended to target/test-logs/figures.txt, which the test command prints at the end.
pub fn figure(name: &str, value: impl std::fmt::Display) {
    use std::io::Write;
    println!("FIGURE {name}: {value}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-logs");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("figures.txt"))
    {
        let _ = writeln!(f, "{name}: {value}");
    }
}
