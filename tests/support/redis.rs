//! A `redis-server` for the test alone, on a reserved loopback port, no persistence. A missing
//! `redis-server` fails the test with how to install it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use airclass_node::clock;

use super::ports::PortBlock;

/// A running (or, after [`Redis::stop`], stopped) redis-server; killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    _ports: PortBlock,
}

impl Redis {
    /// Start one; panics with the install command when `redis-server` is missing.
    pub fn start() -> Self {
        let ports = PortBlock::reserve();
        let mut r = Redis {
            child: None,
            port: ports.port(0),
            _ports: ports,
        };
        r.resume();
        r
    }

    /// Start it again on the same port (after [`Redis::stop`]).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): install it with `apt-get install -y redis-server` \
                     (scripts/test.sh installs it)"
                )
            });
        self.child = Some(child);
        let deadline = clock::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                clock::now() < deadline,
                "redis-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill it (an outage); the port stays reserved for [`Redis::resume`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
