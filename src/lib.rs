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
//! - [`config`]: schema, layering (files, environment), secrets, port plan, validation.
//! - [`clock`], [`app_token`], [`tls`], [`sync`], [`exit`], [`names`], [`fds`]: shared leaves
//!   (the one clock, application token hashing, the checked HTTP client, mutex locking, exit
//!   codes, the node-name rule, file handle limits and exhaustion).

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
pub mod names;
pub mod redis_conn;
pub mod stats;
pub mod sync;
pub mod systemd;
pub mod tls;
