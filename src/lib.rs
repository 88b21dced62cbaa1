//! airclass-node: runs one node of an AirClass live-classroom cluster.
//!
//! Map of the library (one folder or file per subsystem):
//! - [`config`]: schema, layering (files, environment), secrets, port plan, validation.
//! - [`livekit`]: rendering LiveKit's config and supervising `livekit-server`.
//! - [`systemd`]: READY / STATUS / WATCHDOG / STOPPING notifications.
//! - [`api`]: the control API (axum).
//! - [`cluster`]: main/sub protocol, discovery, placement, membership, Redis.
//! - [`firewall`]: the per-instance nftables table.
//! - [`metrics`]: Prometheus metrics (`GET /metrics`).
//! - [`status`]: `airclass-node status`, the status page on main, recent membership changes.
//! - [`daemon`]: wiring, cancellation tree, ordered shutdown.
//! - [`cli`], [`exit`]: the command line and its exit codes.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod firewall;
pub mod livekit;
pub mod logging;
pub mod metrics;
pub mod stats;
pub mod status;
pub mod systemd;
pub mod tls;
