//! Cluster tests, in tiers (module names are what the test filters select on):
//! - in-process roles over loopback HTTP, discovery in memory: `live`, `joins`, `refusals`,
//!   `discovery`; with a real `redis-server`: `redis_store`;
//! - in-process daemons (`daemon::run`, real livekit-server children) with links that are cut and
//!   healed: `partition`;
//! - daemon processes, each with the real livekit-server: `process`;
//! - real mDNS inside a private network namespace (root): `netns`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "../support/mod.rs"]
mod support;

mod discovery;
mod joins;
mod live;
mod netns;
mod partition;
mod process;
mod redis_store;
mod refusals;
mod roles;
