//! The event-driven metric families (counters and histograms) and their bounded label sets.
//!
//! Every label value is one of a fixed set of words (the `&'static str` constants the typed
//! constructors in `mod.rs` produce) except `node` on joins, which is a node name from main's
//! membership table (bounded by the cluster size). No room name, identity or URL is ever a label.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// A histogram family with fixed buckets.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StartLabel {
    pub start: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JoinLabels {
    /// The chosen node; empty when the join was refused.
    pub node: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToStateLabel {
    pub to: &'static str,
}

fn readiness_buckets() -> Histogram {
    Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
}

fn drain_buckets() -> Histogram {
    Histogram::new([0.05, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0])
}

fn probe_buckets() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
    ])
}

fn placement_buckets() -> Histogram {
    Histogram::new([
        0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.0025, 0.005, 0.01,
        0.05, 0.25,
    ])
}

/// Every event-driven family; cloning shares the underlying values.
#[derive(Clone, Debug)]
pub struct Families {
    pub livekit_restarts: Family<ReasonLabel, Counter>,
    pub livekit_time_to_ready: HistogramFamily<StartLabel>,
    pub livekit_drain_duration: HistogramFamily<OutcomeLabel>,
    pub livekit_health_probe_duration: HistogramFamily<ResultLabel>,
    pub heartbeats_sent: Family<ResultLabel, Counter>,
    pub registrations_sent: Family<ResultLabel, Counter>,
    pub heartbeats_received: Counter,
    pub registrations_received: Counter,
    pub refusals: Family<CodeLabel, Counter>,
    pub joins: Family<JoinLabels, Counter>,
    pub placement_duration: Histogram,
    pub node_state_changes: Family<ToStateLabel, Counter>,
    pub redis_ping_duration: HistogramFamily<ResultLabel>,
}

/// Label values known in advance: created at 0 so that every series exists from the start
/// (rates and alerts see a 0 rather than nothing, dashboards find every name).
const RESTART_REASONS: [&str; 4] = ["crash", "hang", "health", "failed_start"];
const SEND_RESULTS: [&str; 3] = ["accepted", "refused", "unreachable"];
const DRAIN_OUTCOMES: [&str; 3] = ["exited", "forced", "killed"];
const NODE_STATES: [&str; 5] = ["alive", "suspect", "dead", "left", "forgotten"];
/// Refusals a join can end with (its `node` label is then empty).
pub const JOIN_FAILURES: [&str; 4] = ["unauthorized", "malformed", "no_node", "busy"];

impl Families {
    fn with_known_labels(self) -> Self {
        for reason in RESTART_REASONS {
            self.livekit_restarts
                .get_or_create_owned(&ReasonLabel { reason });
        }
        for result in SEND_RESULTS {
            self.heartbeats_sent
                .get_or_create_owned(&ResultLabel { result });
            self.registrations_sent
                .get_or_create_owned(&ResultLabel { result });
        }
        for start in ["first", "restart"] {
            self.livekit_time_to_ready
                .get_or_create_owned(&StartLabel { start });
        }
        for outcome in DRAIN_OUTCOMES {
            self.livekit_drain_duration
                .get_or_create_owned(&OutcomeLabel { outcome });
        }
        self.livekit_health_probe_duration
            .get_or_create_owned(&ResultLabel { result: "ok" });
        for result in ["ok", "error"] {
            self.redis_ping_duration
                .get_or_create_owned(&ResultLabel { result });
        }
        for code in crate::cluster::protocol::ErrorCode::ALL {
            self.refusals.get_or_create_owned(&CodeLabel {
                code: code.as_str(),
            });
        }
        for outcome in JOIN_FAILURES {
            self.joins.get_or_create_owned(&JoinLabels {
                node: String::new(),
                outcome,
            });
        }
        for to in NODE_STATES {
            self.node_state_changes
                .get_or_create_owned(&ToStateLabel { to });
        }
        self
    }
}

impl Default for Families {
    fn default() -> Self {
        Self {
            livekit_restarts: Family::default(),
            livekit_time_to_ready: Family::new_with_constructor(readiness_buckets),
            livekit_drain_duration: Family::new_with_constructor(drain_buckets),
            livekit_health_probe_duration: Family::new_with_constructor(probe_buckets),
            heartbeats_sent: Family::default(),
            registrations_sent: Family::default(),
            heartbeats_received: Counter::default(),
            registrations_received: Counter::default(),
            refusals: Family::default(),
            joins: Family::default(),
            placement_duration: placement_buckets(),
            node_state_changes: Family::default(),
            redis_ping_duration: Family::new_with_constructor(probe_buckets),
        }
        .with_known_labels()
    }
}

impl Families {
    /// Register clones of every family under `airclass_` in `reg`.
    pub fn register(&self, reg: &mut Registry) {
        let r = reg.sub_registry_with_prefix("airclass");
        let s = Unit::Seconds;
        r.register(
            "livekit_restarts",
            "LiveKit restarts by the supervisor, by reason: crash (exited), hang (probe timed out), health (probe failed), failed_start (a restart that did not become ready)",
            self.livekit_restarts.clone(),
        );
        r.register_with_unit(
            "livekit_time_to_ready",
            "Spawn of livekit-server until GET / answered 200 (start: first or restart)",
            s.clone(),
            self.livekit_time_to_ready.clone(),
        );
        r.register_with_unit(
            "livekit_drain_duration",
            "SIGTERM to LiveKit until it exited (outcome: exited, forced = second SIGTERM, killed = SIGKILL)",
            s.clone(),
            self.livekit_drain_duration.clone(),
        );
        r.register_with_unit(
            "livekit_health_probe_duration",
            "Latency of the supervisor's GET / health probe, by result",
            s.clone(),
            self.livekit_health_probe_duration.clone(),
        );
        self.register_cluster(r);
        r.register_with_unit(
            "redis_ping_duration",
            "Latency of the daemon's Redis PING (clustered nodes), by result",
            s,
            self.redis_ping_duration.clone(),
        );
    }

    fn register_cluster(&self, r: &mut Registry) {
        r.register(
            "cluster_heartbeats_sent",
            "Heartbeats this sub sent to main, by result: accepted, refused, unreachable",
            self.heartbeats_sent.clone(),
        );
        r.register(
            "cluster_registrations_sent",
            "Registrations this sub sent to main, by result: accepted, refused, unreachable",
            self.registrations_sent.clone(),
        );
        r.register(
            "cluster_heartbeats_received",
            "Heartbeats main accepted from its nodes",
            self.heartbeats_received.clone(),
        );
        r.register(
            "cluster_registrations_received",
            "Registrations main accepted",
            self.registrations_received.clone(),
        );
        r.register(
            "cluster_refusals",
            "Requests main refused (cluster requests and joins), by protocol error code",
            self.refusals.clone(),
        );
        r.register(
            "cluster_joins",
            "Joins answered by main, by chosen node and outcome (placement reason, or the error code with node empty)",
            self.joins.clone(),
        );
        r.register_with_unit(
            "cluster_placement_duration",
            "Time main took to choose a node for a join (membership, recent placements, LiveKit's Redis room map, rendezvous hashing)",
            Unit::Seconds,
            self.placement_duration.clone(),
        );
        r.register(
            "cluster_node_state_changes",
            "State changes in main's membership table, by new state (forgotten = removed)",
            self.node_state_changes.clone(),
        );
    }
}
