//! State read at scrape time: build info, LiveKit's state and process, node statistics, main's
//! membership (per-node gauges), the sub's link, Redis reachability, the daemon's own process.
//!
//! Every family is described on every node (a family that does not apply has no samples), so
//! dashboards and the test that checks their queries see one stable set of names.

use std::fmt::{self, Debug};
use std::sync::Arc;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use tokio::sync::watch;

use super::process;
use crate::cluster::main::Main;
use crate::cluster::protocol::NodeState;
use crate::cluster::sub::link::LinkState;
use crate::cluster::sub::SubHandle;
use crate::livekit::{LivekitState, LivekitStatus};
use crate::stats::Sample;

/// What a scrape reads.
#[derive(Clone)]
pub struct Sources {
    pub node: String,
    pub mode: &'static str,
    pub sysload_limit: Option<f64>,
    pub livekit: watch::Receiver<LivekitStatus>,
    pub stats: watch::Receiver<Sample>,
    pub main: Option<Arc<Main>>,
    pub sub: Option<Arc<SubHandle>>,
    /// Clustered node: Redis reachability is measured.
    pub redis: bool,
    /// The control API's connections (cap, open, closed by its limits).
    pub api: Option<Arc<crate::api::conns::Connections>>,
}

/// The scrape-time collector.
pub struct NodeCollector(Sources);

impl NodeCollector {
    pub fn new(s: Sources) -> Self {
        Self(s)
    }
}

impl Debug for NodeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCollector")
            .field("node", &self.0.node)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeStateLabels {
    node: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    node: String,
    mode: &'static str,
}

/// One gauge without labels (`value: None` describes the family with no sample).
fn gauge<N: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: Option<N>,
) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    match value {
        Some(v) => ConstGauge::new(v).encode(m),
        None => Ok(()),
    }
}

/// A gauge family: one sample per label set.
fn gauges<L: EncodeLabelSet, N: EncodeGaugeValue + Copy>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    items: Vec<(L, N)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in &items {
        let fm = m.encode_family(labels)?;
        ConstGauge::new(*v).encode(fm)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: Option<f64>,
) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    match value {
        Some(v) => ConstCounter::new(v).encode(m),
        None => Ok(()),
    }
}

/// A counter family: one sample per label set.
fn counters<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    items: Vec<(L, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in &items {
        let fm = m.encode_family(labels)?;
        ConstCounter::new(*v).encode(fm)?;
    }
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

const LIVEKIT_STATES: [LivekitState; 7] = [
    LivekitState::Starting,
    LivekitState::Ready,
    LivekitState::Degraded,
    LivekitState::Backoff,
    LivekitState::Stopping,
    LivekitState::Stopped,
    LivekitState::Failed,
];

const NODE_STATES: [(NodeState, &str); 4] = [
    (NodeState::Alive, "alive"),
    (NodeState::Suspect, "suspect"),
    (NodeState::Dead, "dead"),
    (NodeState::Left, "left"),
];

impl prometheus_client::collector::Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.build_info(&mut enc)?;
        self.livekit(&mut enc)?;
        self.node_stats(&mut enc)?;
        self.membership(&mut enc)?;
        self.link(&mut enc)?;
        self.api_connections(&mut enc)?;
        gauge(
            &mut enc,
            "airclass_redis_up",
            "1 when the daemon's last PING of the cluster's Redis answered, 0 when not (clustered nodes)",
            None,
            self.0.redis.then(super::redis_up).flatten(),
        )?;
        own_process(&mut enc)
    }
}

impl NodeCollector {
    /// The control API's connections: open, the cap, accepted, and closed by each limit.
    fn api_connections(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let snap = self.0.api.as_ref().map(|c| c.snapshot());
        gauge(
            enc,
            "airclass_api_connections_open",
            "Open connections to the control API",
            None,
            snap.as_ref().map(|s| s.open as i64),
        )?;
        gauge(
            enc,
            "airclass_api_connections_max",
            "The control API's connection cap (api.max_connections, lowered to what RLIMIT_NOFILE leaves)",
            None,
            snap.as_ref().map(|s| s.max_connections as i64),
        )?;
        counter(
            enc,
            "airclass_api_connections_accepted",
            "Connections the control API accepted",
            None,
            snap.as_ref().map(|s| s.accepted as f64),
        )?;
        let closed = snap.map_or_else(Vec::new, |s| {
            [
                ("evicted", s.evicted),
                ("refused_busy", s.refused_busy),
                ("header_timeout", s.header_timeouts),
                ("tls_failed", s.tls_failed),
                ("request_timeout", s.request_timeouts),
                ("stalled", s.stalled),
                ("bad_http", s.bad_http),
                ("fd_exhausted", s.fd_exhausted),
            ]
            .into_iter()
            .map(|(reason, v)| (ReasonLabel { reason }, v))
            .collect()
        });
        counters(
            enc,
            "airclass_api_connections_closed",
            "Connections the control API closed or refused by its limits, by reason (fd_exhausted: accept failed for want of file handles, a local fault of the daemon)",
            closed,
        )
    }

    fn build_info(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let info = Info::new(BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            node: self.0.node.clone(),
            mode: self.0.mode,
        });
        let m = enc.encode_descriptor(
            "airclass_build",
            "The daemon's version, node name and mode",
            None,
            MetricType::Info,
        )?;
        info.encode(m)
    }

    fn livekit(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let lk = self.0.livekit.borrow().clone();
        let states = LIVEKIT_STATES
            .iter()
            .map(|s| (StateLabel { state: s.as_str() }, i64::from(*s == lk.state)))
            .collect();
        gauges(
            enc,
            "airclass_livekit_state",
            "1 for the supervisor's current LiveKit state (ready, degraded, starting, backoff, stopping, stopped, failed), 0 for the others",
            None,
            states,
        )?;
        gauge(
            enc,
            "airclass_livekit_failed_probes",
            "Consecutive failed health probes of LiveKit (restart at livekit.health_failures)",
            None,
            Some(i64::from(lk.failed_probes)),
        )?;
        let child = lk.pid.and_then(|p| process::read(&p.to_string()));
        gauge(
            enc,
            "airclass_livekit_resident_memory",
            "Resident memory of the livekit-server child",
            Some(&Unit::Bytes),
            child.map(|c| c.resident_bytes as i64),
        )?;
        counter(
            enc,
            "airclass_livekit_cpu",
            "CPU time of the current livekit-server child (resets when it is restarted)",
            Some(&Unit::Seconds),
            child.map(|c| c.cpu_seconds),
        )
    }

    fn node_stats(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let s = *self.0.stats.borrow();
        let f = |v: f64| Some(v);
        gauge(
            enc,
            "airclass_node_sysload",
            "1-minute load average / CPUs (LiveKit's sysload), or the drill override",
            None,
            f(s.sysload),
        )?;
        gauge(
            enc,
            "airclass_node_sysload_overridden",
            "1 when airclass_node_sysload comes from the drill override",
            None,
            Some(i64::from(s.sysload_overridden)),
        )?;
        gauge(
            enc,
            "airclass_node_load1",
            "1-minute load average of the host",
            None,
            f(s.load1),
        )?;
        gauge(
            enc,
            "airclass_node_cpu_usage_ratio",
            "Whole-host CPU use, 0..1",
            None,
            f(f64::from(s.cpu_percent) / 100.0),
        )?;
        gauge(
            enc,
            "airclass_node_cpus",
            "CPUs available to the daemon",
            None,
            Some(s.num_cpus as i64),
        )?;
        gauge(
            enc,
            "airclass_node_memory_used",
            "Host memory in use",
            Some(&Unit::Bytes),
            Some(s.memory_used_bytes as i64),
        )?;
        gauge(
            enc,
            "airclass_node_memory_total",
            "Host memory",
            Some(&Unit::Bytes),
            Some(s.memory_total_bytes as i64),
        )?;
        let local = super::last_local_rooms();
        gauge(
            enc,
            "airclass_node_rooms",
            "LiveKit rooms on this node, as counted for the last heartbeat",
            None,
            local.map(|l| i64::from(l.0)),
        )?;
        gauge(
            enc,
            "airclass_node_participants",
            "LiveKit participants on this node, as counted for the last heartbeat",
            None,
            local.map(|l| i64::from(l.1)),
        )?;
        gauge(
            enc,
            "airclass_cluster_sysload_limit",
            "cluster.sysload_limit: nodes at or above get no new rooms",
            None,
            self.0.sysload_limit,
        )
    }

    fn membership(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let nodes = match &self.0.main {
            Some(m) if self.0.mode == "main" => m.nodes(),
            _ => Vec::new(),
        };
        let is_main = self.0.mode == "main";
        let counts = NODE_STATES
            .iter()
            .filter(|_| is_main)
            .map(|(st, name)| {
                let n = nodes.iter().filter(|v| v.state == *st).count() as i64;
                (StateLabel { state: name }, n)
            })
            .collect();
        gauges(
            enc,
            "airclass_cluster_nodes",
            "Nodes in main's membership table, by state",
            None,
            counts,
        )?;
        let per_state = nodes
            .iter()
            .flat_map(|v| {
                NODE_STATES.iter().map(move |(st, name)| {
                    (
                        NodeStateLabels {
                            node: v.name.clone(),
                            state: name,
                        },
                        i64::from(v.state == *st),
                    )
                })
            })
            .collect();
        gauges(
            enc,
            "airclass_cluster_node_state",
            "1 for each node's current state in main's table, 0 for the others",
            None,
            per_state,
        )?;
        self.per_node(enc, &nodes)
    }

    /// Main's per-node gauges from each node's last heartbeat.
    fn per_node(
        &self,
        enc: &mut DescriptorEncoder,
        nodes: &[crate::cluster::protocol::NodeView],
    ) -> fmt::Result {
        let by_node = |f: &dyn Fn(&crate::cluster::protocol::NodeView) -> f64| {
            nodes
                .iter()
                .map(|v| {
                    (
                        NodeLabel {
                            node: v.name.clone(),
                        },
                        f(v),
                    )
                })
                .collect::<Vec<_>>()
        };
        gauges(
            enc,
            "airclass_cluster_node_sysload",
            "Each node's sysload from its last heartbeat",
            None,
            by_node(&|v| v.stats.sysload),
        )?;
        gauges(
            enc,
            "airclass_cluster_node_rooms",
            "Each node's LiveKit rooms from its last heartbeat",
            None,
            by_node(&|v| f64::from(v.stats.rooms)),
        )?;
        gauges(
            enc,
            "airclass_cluster_node_participants",
            "Each node's LiveKit participants from its last heartbeat",
            None,
            by_node(&|v| f64::from(v.stats.participants)),
        )?;
        gauges(
            enc,
            "airclass_cluster_node_heartbeat_age",
            "Time since main last heard from each node",
            Some(&Unit::Seconds),
            by_node(&|v| v.last_seen_ms as f64 / 1000.0),
        )?;
        let healthy = |v: &crate::cluster::protocol::NodeView| {
            f64::from(v.stats.livekit_health == crate::cluster::protocol::LivekitHealth::Healthy)
        };
        gauges(
            enc,
            "airclass_cluster_node_livekit_healthy",
            "1 when a node's last heartbeat said its LiveKit is healthy",
            None,
            by_node(&healthy),
        )
    }

    fn link(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let view = self.0.sub.as_ref().map(|s| s.link());
        let states = match &view {
            Some(v) => LinkState::ALL
                .iter()
                .map(|s| (StateLabel { state: s.as_str() }, i64::from(*s == v.state)))
                .collect(),
            None => Vec::new(),
        };
        gauges(enc, "airclass_cluster_link_state", "A sub's link to main: 1 for the current state (searching, registered, rejected, unreachable)", None, states)?;
        gauge(
            enc,
            "airclass_cluster_heartbeat_age",
            "Time since this sub's last accepted heartbeat or registration",
            Some(&Unit::Seconds),
            view.and_then(|v| v.last_heartbeat_age_ms)
                .map(|ms| ms as f64 / 1000.0),
        )
    }
}

/// `process_*`: the names every Prometheus client library exports for its own process.
fn own_process(enc: &mut DescriptorEncoder) -> fmt::Result {
    let me = process::read("self");
    counter(
        enc,
        "process_cpu",
        "Total user and system CPU time spent by the daemon",
        Some(&Unit::Seconds),
        me.map(|m| m.cpu_seconds),
    )?;
    gauge(
        enc,
        "process_resident_memory",
        "Resident memory of the daemon",
        Some(&Unit::Bytes),
        me.map(|m| m.resident_bytes as i64),
    )?;
    gauge(
        enc,
        "process_virtual_memory",
        "Virtual memory of the daemon",
        Some(&Unit::Bytes),
        me.map(|m| m.virtual_bytes as i64),
    )?;
    gauge(
        enc,
        "process_start_time",
        "Start time of the daemon since the Unix epoch",
        Some(&Unit::Seconds),
        me.map(|m| m.start_time_seconds),
    )?;
    gauge(
        enc,
        "process_threads",
        "Threads of the daemon",
        None,
        me.map(|m| m.threads as i64),
    )?;
    gauge(
        enc,
        "process_open_fds",
        "Open file descriptors of the daemon",
        None,
        process::open_fds().map(|n| n as i64),
    )?;
    gauge(
        enc,
        "process_max_fds",
        "The daemon's soft RLIMIT_NOFILE",
        None,
        process::max_fds().map(|n| n as i64),
    )
}
