//! Running a LiveKit server in a test: the real livekit-server or the stand-in (a TEST DOUBLE),
//! spawned with a config of the test's own, stdout/stderr captured, the ready line parsed,
//! signals, exit; free ports; the sockets a process listens on (`ss`).
//!
//! The environment is cleared (only `PATH` is passed) so nothing of the test runner's leaks
//! into the server, as the daemon does for its child.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::netns::Netns;

/// API key and secret the test configs use.
pub const KEY: &str = "APItestkey";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123";

/// Which LiveKit server a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The pinned real livekit-server (`scripts/livekit.sh`).
    Real,
    /// `livekit-standin`, the TEST DOUBLE (tests/livekit-standin/).
    Standin,
}

impl Server {
    pub fn bin(self) -> PathBuf {
        match self {
            Server::Real => super::real_livekit::real_livekit(),
            Server::Standin => PathBuf::from(env!("CARGO_BIN_EXE_livekit-standin")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Server::Real => "real livekit-server",
            Server::Standin => "livekit-standin",
        }
    }

    /// Short tag for figure names: `real` or `standin`.
    pub fn tag(self) -> &'static str {
        match self {
            Server::Real => "real",
            Server::Standin => "standin",
        }
    }
}

/// A port of this process's own (TCP and UDP, every address), below the ephemeral range so no
/// outgoing connection of another test takes it meanwhile (`ports.rs`).
pub fn free_port() -> u16 {
    super::ports::take(1)
}

/// `n` consecutive ports of this process's own (`ports.rs`).
pub fn free_block(n: u16) -> u16 {
    super::ports::take(n)
}

/// A minimal valid config: HTTP `port`, ICE/TCP `tcp_port`, a (lazily bound) ICE range,
/// `node_ip` 127.0.0.1, the test key.
pub fn base_config(port: u16, tcp_port: u16) -> String {
    format!(
        "port: {port}\nrtc:\n  tcp_port: {tcp_port}\n  port_range_start: 50000\n  port_range_end: 50019\n  node_ip: 127.0.0.1\nkeys:\n  {KEY}: {SECRET}\n"
    )
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// The YAML written to `livekit.yaml` and passed as `--config`.
    pub config: String,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
}

impl Opts {
    pub fn new(config: impl Into<String>) -> Opts {
        Opts {
            config: config.into(),
            ..Opts::default()
        }
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Opts {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Opts {
        self.args.push(a.into());
        self
    }

    pub fn netns(mut self, ns: &Netns) -> Opts {
        self.netns = Some(ns.name.clone());
        self
    }

    fn command(&self, server: Server, dir: &std::path::Path) -> Command {
        let path = dir.join("livekit.yaml");
        std::fs::write(&path, &self.config).expect("write livekit.yaml");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(server.bin());
                c
            }
            None => Command::new(server.bin()),
        };
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(dir)
            .arg("--config")
            .arg(&path)
            .args(&self.args)
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }
}

/// A finished run (startup errors): exit status and both streams.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run to completion (a startup error is expected), at most `timeout`.
pub fn run_to_exit(server: Server, opts: &Opts, timeout: Duration) -> Finished {
    let mut p = LkProc::spawn(server, opts);
    let status = p.wait_exit(timeout).unwrap_or_else(|| {
        panic!(
            "{} did not exit within {timeout:?}; stderr: {:?}",
            server.name(),
            p.lines()
        )
    });
    Finished {
        status,
        stdout: p.stdout(),
        stderr: p.lines().join("\n"),
    }
}

/// One zap console line: `ts \t LEVEL \t logger \t caller \t msg [\t {fields}]`.
#[derive(Debug, Clone)]
pub struct ConsoleLine {
    pub ts: String,
    pub level: String,
    pub logger: String,
    pub caller: String,
    pub msg: String,
    pub fields: Value,
}

pub fn parse_console(line: &str) -> ConsoleLine {
    let parts: Vec<&str> = line.splitn(6, '\t').collect();
    assert!(parts.len() >= 5, "not a console log line: {line:?}");
    let fields = parts
        .get(5)
        .map(|f| serde_json::from_str(f).expect("fields are JSON"))
        .unwrap_or(Value::Null);
    ConsoleLine {
        ts: parts[0].into(),
        level: parts[1].into(),
        logger: parts[2].into(),
        caller: parts[3].into(),
        msg: parts[4].into(),
        fields,
    }
}

/// A running server; SIGKILLed on drop.
pub struct LkProc {
    pub server: Server,
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
}

impl LkProc {
    pub fn spawn(server: Server, opts: &Opts) -> LkProc {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = opts
            .command(server, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", server.name()));
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
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                out.lock().expect("lock").push_str(&text);
            }
        });
        LkProc {
            server,
            child,
            stderr,
            stdout,
            dir,
        }
    }

    /// The directory of this run (its `livekit.yaml`); files written here live as long as it.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("kill");
    }

    /// stderr lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.stderr.lock().expect("lock").clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("lock").clone()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits for a stderr line containing `needle` (after `skip` such lines); returns it.
    pub fn wait_nth_line(&self, needle: &str, skip: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .lines()
                .into_iter()
                .filter(|l| l.contains(needle))
                .nth(skip);
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn wait_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_nth_line(needle, 0, timeout)
    }

    /// Waits for `starting LiveKit server` (or panics with both streams); returns it parsed.
    pub fn wait_ready(&self) -> ConsoleLine {
        let line = self
            .wait_line("starting LiveKit server", Duration::from_secs(15))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no ready line; stderr: {:?}; stdout: {}",
                    self.server.name(),
                    self.lines(),
                    self.stdout()
                )
            });
        parse_console(&line)
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
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

    /// The sockets this process listens on (TCP LISTEN and bound UDP).
    pub fn sockets(&self, netns: Option<&Netns>) -> Vec<Sock> {
        listening_sockets(self.child.id(), netns)
    }
}

impl Drop for LkProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One listening socket, from `ss`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sock {
    /// `tcp` or `udp`.
    pub proto: String,
    /// Local address without brackets or zone: `*`, `0.0.0.0`, `10.77.0.13`, `fe80::1`.
    pub addr: String,
    pub port: u16,
}

/// Sockets owned by `pid` that listen (TCP) or are bound (UDP), per `ss -Hlntup`.
pub fn listening_sockets(pid: u32, netns: Option<&Netns>) -> Vec<Sock> {
    let mut cmd = match netns {
        Some(ns) => ns.command("ss"),
        None => Command::new("ss"),
    };
    let out = cmd
        .arg("-Hlntup")
        .output()
        .expect("run ss (apt-get install iproute2)");
    assert!(out.status.success(), "ss failed: {out:?}");
    let needle = format!("pid={pid},");
    let mut socks: Vec<Sock> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(parse_ss_line)
        .collect();
    socks.sort();
    socks.dedup();
    socks
}

fn parse_ss_line(line: &str) -> Option<Sock> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let (proto, local) = (cols.first()?, cols.get(4)?);
    let (addr, port) = local.rsplit_once(':')?;
    let addr = addr.split('%').next().unwrap_or(addr);
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    Some(Sock {
        proto: proto.to_string(),
        addr: addr.to_string(),
        port: port.parse().ok()?,
    })
}
