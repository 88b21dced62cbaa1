//! Integration tests: the real `airclass-node` binary with the LiveKit stand-in (a test double).
//!
//! One test binary (modules below); each test gets its own temp dir, free ports and its own
//! fake `NOTIFY_SOCKET`, so tests run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

mod cli;
mod harness;
mod lifecycle;
mod supervision;
