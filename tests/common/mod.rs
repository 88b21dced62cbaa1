//! Test support shared by test binaries: include it with
//! `#[path = "../common/mod.rs"] mod common;` (from a `tests/<suite>/main.rs`).
//!
//! - [`real_livekit`]: where the pinned real livekit-server is (or a failure saying how to get it)
//! - [`livekit_proc`]: run a LiveKit server (real or stand-in) with a config, ready line, signals,
//!   exit, free ports, listening sockets (`ss`)
//! - [`ports`]: port blocks below the ephemeral range, reserved across test processes (file
//!   locks); [`livekit_proc::free_port`] and [`livekit_proc::free_block`] hand ports out of them
//! - [`redis_proc`]: a `redis-server` of the test's own on a free port (stop / restart)
//! - [`netns`]: a private network namespace with addresses of the test's own
//! - [`signal`]: a LiveKit participant over the signal WebSocket (join response, stays joined)
//! - [`figures`]: measured figures for the test log and `target/test-logs/figures.txt`

pub mod figures;
pub mod livekit_proc;
pub mod netns;
pub mod ports;
pub mod real_livekit;
pub mod redis_proc;
pub mod signal;
