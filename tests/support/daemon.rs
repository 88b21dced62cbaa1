//! The real `airclass-node run` as a child process, playing systemd the way
//! `systemd-and-packaging.md` §2 describes: a datagram socket passed as `NOTIFY_SOCKET` that a
//! thread drains (as systemd does) and timestamps; `WATCHDOG_USEC` only when the test passes it
//! in the environment. Dropping a [`Daemon`] SIGKILLs it and every LiveKit pid it reported.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airclass_node::clock::{self, Instant};

use super::http;
use super::node::NodeDir;

/// One notify message with its arrival time.
#[derive(Debug, Clone)]
pub struct Notify {
    pub at: Instant,
    pub text: String,
}

/// A running daemon process.
pub struct Daemon {
    pub child: Child,
    /// Every notify message so far (the reader thread appends).
    inbox: Arc<Mutex<Vec<Notify>>>,
    stop_reader: Arc<AtomicBool>,
    pub log: PathBuf,
    pub spawned: Instant,
    /// A snapshot of the inbox, refreshed by the `wait_*`/`collect_*` calls.
    pub notes: Vec<Notify>,
    pub api: String,
    /// The client for [`Daemon::get_json`] (default: plain HTTP); an HTTPS one for a TLS API.
    pub https: Option<reqwest::Client>,
    pub livekit_port: u16,
    pids_seen: Vec<u32>,
}

static SOCKETS: AtomicU32 = AtomicU32::new(0);

impl Daemon {
    /// Spawn `run --instance INSTANCE` with `RUST_LOG=info`, a fake `NOTIFY_SOCKET` and `env`
    /// (which may set `WATCHDOG_USEC`, `RUST_LOG`, `STANDIN_*` switches, …). Its output goes to
    /// `DIR/daemon.log`.
    pub fn spawn(node: &NodeDir, env: &[(&str, &str)]) -> Self {
        Self::spawn_limited(node, env, None)
    }

    /// [`Daemon::spawn`] with the daemon's `RLIMIT_NOFILE` set to `(soft, hard)` (systemd's
    /// default without `LimitNOFILE=` is a soft limit of 1024).
    pub fn spawn_with_nofile(node: &NodeDir, env: &[(&str, &str)], soft: u64, hard: u64) -> Self {
        Self::spawn_limited(node, env, Some((soft, hard)))
    }

    #[allow(unsafe_code)]
    fn spawn_limited(node: &NodeDir, env: &[(&str, &str)], nofile: Option<(u64, u64)>) -> Self {
        airclass_node::tls::install_crypto_provider();
        let n = SOCKETS.fetch_add(1, Ordering::Relaxed);
        let sock_path = node.path().join(format!("notify-{n}"));
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        let log = node.path().join("daemon.log");
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = node.cmd(&["run", "--instance", &node.instance]);
        cmd.env("NOTIFY_SOCKET", &sock_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some((soft, hard)) = nofile {
            use nix::sys::resource::{setrlimit, Resource};
            use std::os::unix::process::CommandExt;
            // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe
            // and nothing is allocated.
            unsafe {
                cmd.pre_exec(move || {
                    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let stop_reader = Arc::new(AtomicBool::new(false));
        read_notifications(sock, inbox.clone(), stop_reader.clone());
        Self {
            child,
            inbox,
            stop_reader,
            log,
            spawned: clock::now(),
            notes: Vec::new(),
            api: node.api_url(),
            https: None,
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

    fn snapshot(&mut self) {
        self.notes = self.inbox.lock().unwrap().clone();
    }

    /// The arrival time of the first notify message containing `needle`, if any yet.
    fn find_note(&mut self, needle: &str) -> Option<Instant> {
        self.snapshot();
        self.notes
            .iter()
            .find(|n| n.text.contains(needle))
            .map(|n| n.at)
    }

    /// Wait until a notify message contains `needle` (or timeout). Returns its arrival time.
    pub async fn wait_note(&mut self, needle: &str, timeout: Duration) -> Option<Instant> {
        let deadline = clock::now() + timeout;
        while clock::now() < deadline {
            if let Some(at) = self.find_note(needle) {
                return Some(at);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.find_note(needle)
    }

    /// [`Daemon::wait_note`] for code without a runtime (benches).
    pub fn wait_note_blocking(&mut self, needle: &str, timeout: Duration) -> Option<Instant> {
        let deadline = clock::now() + timeout;
        while clock::now() < deadline {
            if let Some(at) = self.find_note(needle) {
                return Some(at);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.find_note(needle)
    }

    /// Collect notify messages for `d`.
    pub async fn collect_notes(&mut self, d: Duration) {
        tokio::time::sleep(d).await;
        self.snapshot();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let t = self.log_text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .https
            .clone()
            .unwrap_or_else(http)
            .get(format!("{}{}", self.api, path))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    fn remember(&mut self, pid: Option<u32>) {
        if let Some(p) = pid.filter(|p| !self.pids_seen.contains(p)) {
            self.pids_seen.push(p);
        }
    }

    /// LiveKit's pid as the daemon reports it (remembered, to be killed on drop).
    pub async fn livekit_pid(&mut self) -> Option<u32> {
        let (_, v) = self.get_json("/api/node").await;
        let pid = v["livekit"]["pid"].as_u64().map(|p| p as u32);
        self.remember(pid);
        pid
    }

    pub async fn livekit_state(&self) -> String {
        let (_, v) = self.get_json("/api/node").await;
        v["livekit"]["state"].as_str().unwrap_or("").to_string()
    }

    /// Poll until the daemon reports LiveKit ready with a pid other than `not`.
    pub async fn wait_ready_pid(&mut self, not: Option<u32>, timeout: Duration) -> Option<u32> {
        let deadline = clock::now() + timeout;
        while clock::now() < deadline {
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                http().get(format!("{}/api/node", self.api)).send(),
            )
            .await;
            if let Ok(Ok(r)) = r {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    let pid = v["livekit"]["pid"].as_u64().map(|p| p as u32);
                    self.remember(pid);
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
        let deadline = clock::now() + timeout;
        while clock::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then exit status 0 within `timeout` (else the test fails with the log); how
    /// long the stop took.
    pub fn sigterm_and_exit_0(&mut self, timeout: Duration) -> Duration {
        let t0 = clock::now();
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let code = self.wait_exit(timeout);
        assert_eq!(code, Some(0), "{}", self.log_text());
        t0.elapsed()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// SIGKILL the daemon and every LiveKit it reported.
    pub fn kill_all(&mut self) {
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

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill_all();
        self.stop_reader.store(true, Ordering::Relaxed);
    }
}

/// Drain the notify socket as systemd does, until `stop`.
fn read_notifications(sock: UnixDatagram, inbox: Arc<Mutex<Vec<Notify>>>, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                inbox.lock().unwrap().push(Notify {
                    at: clock::now(),
                    text,
                });
            }
        }
    });
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

/// Resident memory of `pid` in KiB (0 when unknown).
pub fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}
