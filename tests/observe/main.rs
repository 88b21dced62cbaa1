//! Seeing the cluster: `/metrics` scraped from real daemons and parsed with the Prometheus
//! project's own parser (Python `prometheus_client`), naming conventions, the Grafana
//! dashboard's queries against the names exposed (ours and the real LiveKit's), metrics access
//! control, supervisor counters, `airclass-node status`, journald fields and the sub's link in
//! `GET /api/node`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "../support/mod.rs"]
mod support;

mod dashboard;
mod journald;
mod metrics;
mod nodes;
mod prom;
mod status_cmd;
mod supervision;
