//! Test support shared by every test binary and bench that spawns or embeds the daemon
//! (`#[path = "../support/mod.rs"] mod support;`): one node builder whose knobs show at the
//! call site, reserved ports, the daemon as a process playing systemd's notify socket, the
//! daemon in-process, a redis-server, cuttable loopback links, figures.
//!
//! - [`ports`]: port blocks reserved across test processes (file locks), never probed at random;
//! - [`node`]: [`node::NodeSpec`] → [`node::NodeDir`] (config, secrets, runtime dir);
//! - [`daemon`]: [`daemon::Daemon`], the real binary with a fake `NOTIFY_SOCKET`;
//! - [`inproc`]: `airclass_node::daemon::run` in this process, stopped by a token;
//! - [`redis`]: a `redis-server` on a reserved port (missing: the test fails saying how to get it);
//! - [`link`]: a loopback TCP forwarder that can be cut and healed;
//! - [`real_livekit`]: where the real livekit-server is (`tests/common/real_livekit.rs`);
//! - [`signal`]: a participant over LiveKit's signal WebSocket (`tests/common/signal.rs`), which
//!   the real server counts in its room (rooms, drains).
#![allow(dead_code)]

pub mod daemon;
pub mod inproc;
pub mod link;
pub mod node;
#[path = "../common/ports.rs"]
pub mod ports;
#[path = "../common/real_livekit.rs"]
pub mod real_livekit;
pub mod redis;
#[path = "../common/signal.rs"]
pub mod signal;

#[path = "../common/figures.rs"]
mod figures;
/// Print a measured figure (`tests/common/figures.rs`: one writer for every suite).
#[allow(unused_imports)] // not every suite records figures
pub use figures::figure;

/// The daemon under test.
pub const DAEMON: &str = env!("CARGO_BIN_EXE_airclass-node");
/// TEST DOUBLE: the LiveKit stand-in (`tests/livekit-standin/`), for faults only it can show
/// ([`node::NodeSpec::standin`]); nodes run the real livekit-server by default.
pub const STANDIN: &str = env!("CARGO_BIN_EXE_livekit-standin");

/// An HTTP client for talking to daemons (no proxy, the crate's checked constructor).
pub fn http() -> reqwest::Client {
    airclass_node::tls::http_client().unwrap()
}
