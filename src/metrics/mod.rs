//! Prometheus metrics: `GET /metrics` in the OpenMetrics text format (Prometheus' own scrapes ask
//! for it) or the classic text format 0.0.4 (curl, older scrapers), chosen by `Accept`.
//!
//! Built with [`prometheus-client`](https://github.com/prometheus/client_rust), the Prometheus
//! organisation's Rust client: it implements OpenMetrics (and the 0.0.4 text format) exactly,
//! appends `_total` and unit suffixes itself, keeps label sets as typed structs (so a label can
//! only take the values the code names), and has no global recorder: a scrape builds a registry
//! from clones of the families below plus a [`collect::NodeCollector`] that reads the daemon's
//! state at scrape time. The alternative (`metrics` + `metrics-exporter-prometheus`) installs one
//! process-wide recorder with string labels, which gives no such guarantee.
//!
//! Two kinds of metrics:
//! - event counters and histograms ([`families`]), bumped by one-line calls from the supervisor,
//!   the sub loop and main's handlers ([`livekit_restart`], [`exchange_sent`], [`refused`], …);
//!   they live in one process-wide [`Families`] (a daemon is one node per process);
//! - state read at scrape time ([`collect`]): LiveKit's state, node statistics, main's
//!   membership (per-node gauges), the sub's link to main, Redis reachability, and the daemon's
//!   own RSS, CPU and file handles against `RLIMIT_NOFILE` ([`process`]). A scrape never calls
//!   LiveKit or Redis: it reads values other tasks keep fresh.
//!
//! Naming follows Prometheus' conventions: `airclass_` prefix, base units in names
//! (`_seconds`, `_bytes`), `_total` on counters, bounded label sets (never a room name or an
//! identity). The full list is in docs/metrics.md.

pub mod collect;
pub mod families;
pub mod http;
pub mod process;
pub mod redis;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;

pub use collect::Sources;
pub use families::Families;

use crate::cluster::placement::Reason;
use crate::cluster::protocol::ErrorCode;

static FAMILIES: LazyLock<Families> = LazyLock::new(Families::default);
/// LiveKit's rooms and participants as last counted for a heartbeat: (rooms, participants).
static LOCAL_ROOMS: Mutex<Option<(u32, u32)>> = Mutex::new(None);
/// 1 up, 0 down, -1 not measured yet.
static REDIS_UP: AtomicI64 = AtomicI64::new(-1);

/// The process-wide event families.
pub fn families() -> &'static Families {
    &FAMILIES
}

/// Why the supervisor restarted LiveKit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// The child exited (or was killed) after it was ready.
    Crash,
    /// Health probes got no answer in time (a stopped or wedged process).
    Hang,
    /// Health probes got a wrong answer (406 with Redis up, other status, connection refused).
    Health,
    /// A restart attempt that did not become ready, retried.
    FailedStart,
}

impl RestartReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Hang => "hang",
            RestartReason::Health => "health",
            RestartReason::FailedStart => "failed_start",
        }
    }
}

/// How a stop of LiveKit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    Exited,
    Forced,
    Killed,
}

impl DrainOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainOutcome::Exited => "exited",
            DrainOutcome::Forced => "forced",
            DrainOutcome::Killed => "killed",
        }
    }
}

pub fn livekit_restart(reason: RestartReason) {
    let labels = families::ReasonLabel {
        reason: reason.as_str(),
    };
    FAMILIES.livekit_restarts.get_or_create(&labels).inc();
}

pub fn livekit_ready(took: Duration, first: bool) {
    let start = if first { "first" } else { "restart" };
    FAMILIES
        .livekit_time_to_ready
        .get_or_create(&families::StartLabel { start })
        .observe(took.as_secs_f64());
}

pub fn livekit_drained(took: Duration, outcome: DrainOutcome) {
    FAMILIES
        .livekit_drain_duration
        .get_or_create(&families::OutcomeLabel {
            outcome: outcome.as_str(),
        })
        .observe(took.as_secs_f64());
}

/// One health probe: `result` is [`crate::livekit::health::Probe::label`].
pub fn health_probe(took: Duration, result: &'static str) {
    FAMILIES
        .livekit_health_probe_duration
        .get_or_create(&families::ResultLabel { result })
        .observe(took.as_secs_f64());
}

/// A sub's register (`heartbeat == false`) or heartbeat and its result label.
pub fn exchange_sent(heartbeat: bool, result: &'static str) {
    let f = if heartbeat {
        &FAMILIES.heartbeats_sent
    } else {
        &FAMILIES.registrations_sent
    };
    f.get_or_create(&families::ResultLabel { result }).inc();
}

pub fn heartbeat_received() {
    FAMILIES.heartbeats_received.inc();
}

pub fn registration_received() {
    FAMILIES.registrations_received.inc();
}

/// A request main refused, by its protocol error code.
pub fn refused(code: ErrorCode) {
    let labels = families::CodeLabel {
        code: code.as_str(),
    };
    FAMILIES.refusals.get_or_create(&labels).inc();
}

/// The `outcome` label of a placed join.
pub fn placement_outcome(reason: Reason) -> &'static str {
    match reason {
        Reason::Sticky => "sticky",
        Reason::UnderLimit => "under_limit",
        Reason::AllOverloaded => "all_overloaded",
        Reason::SuspectOnly => "suspect_only",
    }
}

/// A join answered: `Ok((node, reason))` or the refusal's code.
pub fn join(result: Result<(&str, Reason), ErrorCode>) {
    let labels = match result {
        Ok((node, reason)) => families::JoinLabels {
            node: node.to_owned(),
            outcome: placement_outcome(reason),
        },
        Err(code) => families::JoinLabels {
            node: String::new(),
            outcome: code.as_str(),
        },
    };
    FAMILIES.joins.get_or_create(&labels).inc();
}

pub fn placement(took: Duration) {
    FAMILIES.placement_duration.observe(took.as_secs_f64());
}

/// A node entered `to` in main's table (`None`: forgotten).
pub fn node_state_changed(to: Option<crate::cluster::protocol::NodeState>) {
    use crate::cluster::protocol::NodeState;
    let to = match to {
        Some(NodeState::Alive) => "alive",
        Some(NodeState::Suspect) => "suspect",
        Some(NodeState::Dead) => "dead",
        Some(NodeState::Left) => "left",
        None => "forgotten",
    };
    FAMILIES
        .node_state_changes
        .get_or_create(&families::ToStateLabel { to })
        .inc();
}

/// LiveKit's rooms and participants as counted for the last heartbeat (never asked at scrape).
pub fn local_rooms(rooms: u32, participants: u32) {
    if let Ok(mut g) = LOCAL_ROOMS.lock() {
        *g = Some((rooms, participants));
    }
}

pub(crate) fn last_local_rooms() -> Option<(u32, u32)> {
    LOCAL_ROOMS.lock().ok().and_then(|g| *g)
}

/// A Redis PING by the daemon's own pinger.
pub fn redis_ping(took: Duration, ok: bool) {
    REDIS_UP.store(i64::from(ok), Ordering::Relaxed);
    let result = if ok { "ok" } else { "error" };
    FAMILIES
        .redis_ping_duration
        .get_or_create(&families::ResultLabel { result })
        .observe(took.as_secs_f64());
}

pub(crate) fn redis_up() -> Option<i64> {
    let v = REDIS_UP.load(Ordering::Relaxed);
    (v >= 0).then_some(v)
}

/// The exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
    /// `text/plain; version=0.0.4`
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_text::CONTENT_TYPE,
        }
    }

    /// OpenMetrics when the `Accept` header asks for it (Prometheus does), else text 0.0.4.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }
}

/// Encode every metric for one scrape.
pub fn render(sources: &Sources, format: Format) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::default();
    FAMILIES.register(&mut reg);
    reg.register_collector(Box::new(collect::NodeCollector::new(sources.clone())));
    let mut out = String::with_capacity(16 * 1024);
    match format {
        Format::OpenMetrics => text::encode(&mut out, &reg)?,
        Format::Text => prometheus_text::encode(&mut out, &reg)?,
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
    }
}

#[cfg(test)]
mod render_tests {
    use super::*;
    use crate::livekit::LivekitStatus;
    use tokio::sync::watch;

    fn sources() -> Sources {
        let (_, lk) = watch::channel(LivekitStatus::for_tests(
            crate::livekit::LivekitState::Ready,
        ));
        let mut sampler = crate::stats::Sampler::new(Some(0.25));
        let (_, stats) = watch::channel(sampler.sample());
        Sources {
            node: "node-1".into(),
            mode: "sub",
            sysload_limit: Some(0.7),
            livekit: lk,
            stats,
            main: None,
            sub: None,
            redis: true,
            api: Some(crate::api::conns::Connections::new(64)),
        }
    }

    #[test]
    fn both_formats_render() {
        livekit_restart(RestartReason::Hang);
        join(Err(ErrorCode::NoNode));
        let om = render(&sources(), Format::OpenMetrics).unwrap();
        println!("{om}");
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("airclass_livekit_restarts_total{reason=\"hang\"}"));
        assert!(om.contains("airclass_livekit_state{state=\"ready\"} 1"));
        assert!(om.contains("airclass_node_sysload 0.25"));
        let txt = render(&sources(), Format::Text).unwrap();
        println!("{txt}");
        assert!(!txt.contains("# EOF"));
        assert!(txt.contains("# TYPE airclass_livekit_restarts_total counter"));
    }
}
