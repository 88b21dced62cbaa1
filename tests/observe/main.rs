//! Seeing the cluster: `/metrics` scraped from real daemons and parsed with the Prometheus
//! project's own parser (Python `prometheus_client`), naming conventions, the Grafana
//! dashboard's queries against the names exposed (ours and the real LiveKit's), metrics access
//! control, supervisor counters, `airclass-node status` and the sub's link in `GET /api/node`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../integration/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../common/real_livekit.rs"]
mod real_livekit;

mod dashboard;
mod journald;
mod metrics;
mod prom;
mod status_cmd;
mod supervision;
