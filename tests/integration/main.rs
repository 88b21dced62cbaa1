//! Integration tests: the real `airclass-node` binary with the real livekit-server (the stand-in,
//! a test double, only where a test injects a fault the real server cannot show: `standin(why)`),
//! and the daemon in-process (`daemon::run` with a cancellation token).
//!
//! One test binary (modules below); each test gets its own temp dir, reserved ports and its own
//! fake `NOTIFY_SOCKET` (`tests/support/`), so tests run in parallel. `inprocess::` tests spawn
//! no daemon process (the fast tier, `scripts/check.sh`); the others do.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod exhaustion;
mod hostile;
mod inprocess;
mod lifecycle;
mod supervision;
