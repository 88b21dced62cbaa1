//! A `redis-server` of the test's own on a free port (loopback, or an address inside a test
//! network namespace), with stop/restart on the same port to simulate an outage.
//! A missing `redis-server` is a failure that says how to install it.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;

pub struct RedisProc {
    child: Option<Child>,
    pub host: String,
    pub port: u16,
    netns: Option<String>,
    password: Option<String>,
    dir: tempfile::TempDir,
}

fn redis_bin() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("redis-server is not installed: apt-get install redis-server (scripts/test.sh does)")
    })
}

impl RedisProc {
    /// On 127.0.0.1, a free port.
    pub fn start() -> RedisProc {
        Self::start_at("127.0.0.1", super::livekit_proc::free_port(), None)
    }

    /// On `host:port`, inside `netns` if given.
    pub fn start_at(host: &str, port: u16, netns: Option<&Netns>) -> RedisProc {
        Self::start_with(host, port, netns, None)
    }

    /// As [`RedisProc::start_at`], with `requirepass` when `password` is given.
    pub fn start_with(
        host: &str,
        port: u16,
        netns: Option<&Netns>,
        password: Option<&str>,
    ) -> RedisProc {
        let mut r = RedisProc {
            child: None,
            host: host.to_string(),
            port,
            netns: netns.map(|n| n.name.clone()),
            password: password.map(str::to_string),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        r.restart();
        r
    }

    /// `host:port`, as LiveKit's `redis.address` wants it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.address())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL it (an outage); the port is freed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it (again) on the same port and wait until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(redis_bin());
                c
            }
            None => Command::new(redis_bin()),
        };
        let child = cmd
            .args(["--port", &self.port.to_string(), "--bind", &self.host])
            .args(["--save", "", "--appendonly", "no"])
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass", p.as_str()]),
            )
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        self.wait_accepting();
    }

    fn wait_accepting(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on {} did not start", self.address());
    }

    /// PING over a fresh connection (inside the namespace when there is one).
    fn ping(&self) -> bool {
        match &self.netns {
            Some(_) => self.cli(&["ping"]) == "PONG",
            None => TcpStream::connect((self.host.as_str(), self.port)).is_ok(),
        }
    }

    /// `redis-cli ARGS…` against this server (inside its namespace), trimmed stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "redis-cli"]);
                c
            }
            None => Command::new("redis-cli"),
        };
        cmd.args(["-h", &self.host, "-p", &self.port.to_string()]);
        if let Some(p) = &self.password {
            cmd.args(["-a", p, "--no-auth-warning"]);
        }
        cmd.args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// A synchronous connection (loopback only).
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("redis client")
            .get_connection()
            .expect("connect to redis")
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.stop();
    }
}
