//! airclass-node: runs one node of an AirClass live-classroom cluster.
//!
//! Map of the library, top to bottom: a module uses only modules listed below it (the binary,
//! `main.rs`, sits on top of everything).
//! - [`commands`], [`cli`], [`logging`]: what each subcommand does, the command line, log setup.
//! - [`daemon`]: `run` = start → wait → stop; the cancellation tree and the ordered shutdown.
//! - [`api`]: the control API, one route table for every role.
//! - [`cluster`]: main/sub roles (`cluster::main`, `cluster::sub`) over the pure cores
//!   (placement, membership, auth, protocol), discovery and the Redis store.
//! - [`livekit`]: rendering LiveKit's config and supervising `livekit-server`.
//! - [`firewall`]: the per-instance nftables table.
//! - [`systemd`], [`stats`], [`redis_conn`]: READY/STATUS/WATCHDOG/STOPPING, node statistics, the
//!   one Redis client.
//! - [`provision`]: first-boot provisioning of the appliance image (`airclass-node provision`):
//!   writes the node's config and secrets for `config` to read; uses only the leaves below.
//! - [`config`]: schema, layering (files, environment), secrets, port plan, validation.
//! - [`clock`], [`app_token`], [`tls`], [`sync`], [`exit`], [`names`], [`fds`]: shared leaves
//!   (the one clock, application token hashing, the checked HTTP client, mutex locking, exit
//!   codes, the node-name rule, file handle limits and exhaustion).
//!
//! Beside the stack (they read every layer and are bumped from several):
//! - [`metrics`]: Prometheus metrics (`GET /metrics`): event counters the supervisor and the
//!   cluster roles bump with one-line calls, and state read at scrape time.
//! - [`status`]: `airclass-node status`, the status page on main, recent membership changes.

#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod api;
pub mod app_token;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod fds;
pub mod firewall;
pub mod livekit;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod provision;
pub mod redis_conn;
pub mod stats;
pub mod status;
pub mod sync;
pub mod systemd;
pub mod tls;
