//! Cluster tests: main and subs over loopback HTTP (in-process and as real daemon processes with
//! the LiveKit stand-in), a real `redis-server` on a free port, discovery in memory and, when a
//! private network namespace is available, over real mDNS.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "../integration/harness.rs"]
mod harness;

mod daemons;
mod discovery;
mod joins;
mod live;
mod redis_store;
mod refusals;
mod support;
