//! Semantic validation: turns the layered config into a resolved [`NodeConfig`], reporting
//! every problem (with the key's source and a fix) and the capacity warning.

use std::net::IpAddr;
use std::path::PathBuf;

use super::load::{layer_all, Layered, Sources};
use super::ports::{self, PortOverrides, PortPlan, MDNS_PORT};
use super::schema::{Config, LivekitSection, Mode, PortMode};
use super::Problem;
use crate::names::{node_name_problem, NODE_NAME_RULE};

/// A parsed `redis.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// `host:port` as LiveKit's `redis.address` wants it.
    pub address: String,
    pub username: Option<String>,
    pub db: i64,
    pub tls: bool,
}

/// Everything the daemon needs to know about its node, validated.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// systemd instance name (`%i`).
    pub instance: String,
    /// Node name (defaults to the instance).
    pub name: String,
    pub mode: Mode,
    pub ports: PortPlan,
    pub config: Config,
    pub layered: Layered,
    /// Where livekit.yaml and the key file go.
    pub runtime_dir: PathBuf,
    /// `Some` for clustered nodes.
    pub redis: Option<RedisTarget>,
}

impl NodeConfig {
    /// Participants the node's RTC ports can carry in the chosen mode (None = not port-bound).
    pub fn port_capacity(&self) -> Option<u32> {
        capacity(self.config.livekit.port_mode, &self.ports)
    }
}

/// LiveKit uses about two ports of a `port_range` per participant; the UDP mux is not
/// bounded by ports.
pub fn capacity(mode: PortMode, plan: &PortPlan) -> Option<u32> {
    match mode {
        PortMode::Range => Some(plan.udp_span() / 2),
        PortMode::Mux => None,
    }
}

/// Collects the problems of one resolution, each with the source of its key.
struct Checks<'a> {
    layered: &'a Layered,
    problems: Vec<Problem>,
}

impl Checks<'_> {
    fn bad(&mut self, key: &str, problem: String, fix: impl Into<String>) {
        let source = self.layered.source_of(key);
        self.problems
            .push(Problem::new(source, key, problem, fix.into()));
    }

    /// `key` must lie in `range` ("V is outside A..=B").
    fn in_range(&mut self, key: &str, v: u64, range: std::ops::RangeInclusive<u64>, fix: &str) {
        if !range.contains(&v) {
            let (lo, hi) = range.into_inner();
            self.bad(key, format!("{v} is outside {lo}..={hi}"), fix);
        }
    }

    /// `key` must be 1 or more.
    fn at_least_one(&mut self, key: &str, v: u64, problem: &str, fix: &str) {
        if v == 0 {
            self.bad(key, problem.into(), fix);
        }
    }
}

/// Resolve and validate. `runtime_directory` is `$RUNTIME_DIRECTORY` if set.
pub fn resolve(
    sources: &Sources,
    instance: &str,
    runtime_directory: Option<&str>,
) -> Result<(NodeConfig, Vec<String>), Vec<Problem>> {
    let r = resolve_all(sources, instance, runtime_directory);
    match r.node {
        Some(node) if r.problems.is_empty() => Ok((node, r.warnings)),
        _ => Err(r.problems),
    }
}

/// What [`resolve_all`] found: every problem of the schema and value stages, and the node as
/// far as it could be resolved (`Some` whenever a port plan exists, problems or not, so the
/// secrets and the binary can be checked too).
#[derive(Debug)]
pub struct Resolution {
    pub node: Option<NodeConfig>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

/// Resolve as far as possible: the schema stage's problems do not stop the value stage (it
/// reads the configuration without the keys that failed).
pub fn resolve_all(
    sources: &Sources,
    instance: &str,
    runtime_directory: Option<&str>,
) -> Resolution {
    if let Some(why) = node_name_problem(instance) {
        return Resolution {
            node: None,
            problems: vec![Problem::new(
                "command line",
                "--instance",
                format!("instance name {instance:?} is not valid: {why}"),
                format!("use {NODE_NAME_RULE}, e.g. main or node-1"),
            )],
            warnings: Vec::new(),
        };
    }
    let (layered, mut problems) = layer_all(sources, instance);
    let c = layered.config.clone();
    let mut checks = Checks {
        layered: &layered,
        problems: Vec::new(),
    };
    let name = c.node.name.clone().unwrap_or_else(|| instance.to_string());
    let plan = check_name_and_ports(&mut checks, &name, &c);
    check_livekit_process(&mut checks, &c.livekit);
    check_livekit_network(&mut checks, &c.livekit, plan.as_ref());
    check_cluster(&mut checks, &c);
    let redis = check_redis(&mut checks, &c);
    check_api(&mut checks, &c, plan.as_ref());
    problems.extend(checks.problems);
    let warnings = plan.as_ref().map(|p| warnings(&c, p)).unwrap_or_default();
    let node = plan.map(|plan| NodeConfig {
        instance: instance.to_string(),
        name,
        mode: c.node.mode,
        ports: plan,
        config: c,
        runtime_dir: runtime_dir(runtime_directory, instance),
        layered,
        redis,
    });
    Resolution {
        node,
        problems,
        warnings,
    }
}

/// `$RUNTIME_DIRECTORY` (its first entry), else `/run/airclass/INSTANCE`.
fn runtime_dir(runtime_directory: Option<&str>, instance: &str) -> PathBuf {
    runtime_directory
        .and_then(|s| s.split(':').next())
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/airclass").join(instance))
}

/// The node name and its port plan (derived from the name unless set explicitly).
fn check_name_and_ports(checks: &mut Checks<'_>, name: &str, c: &Config) -> Option<PortPlan> {
    // the cluster protocol's own rule: a name check accepts is never refused by main
    if let Some(why) = node_name_problem(name) {
        checks.bad(
            "node.name",
            format!("node name {name:?} is not valid: {why}"),
            format!("use {NODE_NAME_RULE}, e.g. node-1"),
        );
    }
    let overrides = PortOverrides {
        livekit_port: c.node.livekit_port,
        rtc_tcp_port: c.node.rtc_tcp_port,
        rtc_udp_start: c.node.rtc_udp_start,
        rtc_udp_end: c.node.rtc_udp_end,
        api_port: c.node.api_port,
    };
    match ports::plan(name, overrides) {
        Ok(p) => Some(p.with_livekit_metrics(c.livekit.prometheus_port)),
        Err(errs) => {
            for e in errs {
                checks.bad(e.key, e.problem, e.fix);
            }
            None
        }
    }
}

/// `[livekit]`: the child process, its timings and its restart policy.
fn check_livekit_process(checks: &mut Checks<'_>, lk: &LivekitSection) {
    if !["debug", "info", "warn", "error"].contains(&lk.log_level.as_str()) {
        checks.bad(
            "livekit.log_level",
            format!("{:?} is not a LiveKit log level", lk.log_level),
            "use debug, info, warn or error",
        );
    }
    checks.in_range(
        "livekit.drain_timeout_secs",
        lk.drain_timeout_secs,
        1..=3600,
        "choose a drain budget between 1 and 3600 seconds (keep TimeoutStopSec above it)",
    );
    checks.in_range(
        "livekit.ready_timeout_secs",
        lk.ready_timeout_secs,
        1..=600,
        "choose between 1 and 600 seconds",
    );
    checks.in_range(
        "livekit.health_interval_ms",
        lk.health_interval_ms,
        50..=60_000,
        "choose a probe period between 50 ms and 60 s",
    );
    checks.at_least_one(
        "livekit.health_failures",
        lk.health_failures.into(),
        "0 would restart LiveKit on every probe",
        "use 1 or more (default 3)",
    );
    checks.at_least_one(
        "livekit.restart_budget",
        lk.restart_budget.into(),
        "0 allows no restart at all",
        "use 1 or more (default 5)",
    );
    if lk.binary.is_empty() || !lk.binary.starts_with('/') {
        checks.bad(
            "livekit.binary",
            format!("{:?} is not an absolute path", lk.binary),
            "give the absolute path of livekit-server, e.g. /usr/local/bin/livekit-server",
        );
    }
}

/// `[livekit]`: what LiveKit tells clients and where it serves metrics.
fn check_livekit_network(checks: &mut Checks<'_>, lk: &LivekitSection, plan: Option<&PortPlan>) {
    if let Some(ip) = lk.node_ip.as_deref().filter(|s| !s.is_empty()) {
        if ip.parse::<IpAddr>().is_err() {
            checks.bad(
                "livekit.node_ip",
                format!("{ip:?} is not an IP address"),
                "give the IPv4 address clients reach this node on, e.g. 192.0.2.10",
            );
        }
    }
    for (problem, fix) in lk
        .stun_servers
        .iter()
        .filter_map(|s| stun_server_problem(s))
    {
        checks.bad("livekit.stun_servers", problem, fix);
    }
    if let Some(url) = lk.url.as_deref().filter(|s| !s.is_empty()) {
        if !(url.starts_with("ws://") || url.starts_with("wss://")) || url::Url::parse(url).is_err()
        {
            checks.bad(
                "livekit.url",
                format!("{url:?} is not a ws:// or wss:// URL"),
                "use e.g. ws://10.0.0.5:7880 or wss://media.example.org",
            );
        }
    }
    if let Some(port) = lk.prometheus_port.filter(|p| *p > 65_535) {
        checks.bad(
            "livekit.prometheus_port",
            format!("{port} is not a valid port"),
            "use 1-65535, or 0 to turn LiveKit's metrics off",
        );
    } else if let Some(p) = plan {
        let taken = [p.livekit_port, p.rtc_tcp_port, p.api_port];
        if let Some(m) = p.livekit_metrics_port.filter(|m| taken.contains(m)) {
            checks.bad(
                "livekit.prometheus_port",
                format!("{m} is already one of the node's TCP ports"),
                "give LiveKit's metrics a port of their own (or 0 to turn them off)",
            );
        }
    }
    if lk.region.as_ref().is_some_and(|r| r.trim().is_empty()) {
        checks.bad(
            "livekit.region",
            "the region is empty".into(),
            "remove the key or give a region name",
        );
    }
}

/// A main or sub needs LiveKit's ready line: it carries the LiveKit node id that LiveKit's own
/// `room_node_map` names (placement reads it), and LiveKit logs it at level info.
fn check_ready_line_visible(checks: &mut Checks<'_>, c: &Config) {
    if c.node.mode.is_clustered() && matches!(c.livekit.log_level.as_str(), "warn" | "error") {
        checks.bad(
            "livekit.log_level",
            format!(
                "{:?} hides LiveKit's ready line, which carries the LiveKit node id a main or sub \
                 node needs to place rooms on itself",
                c.livekit.log_level
            ),
            "use log_level = \"info\" (or \"debug\") on main and sub nodes",
        );
    }
}

/// `[cluster]` and the drill knob `node.sysload_override`.
fn check_cluster(checks: &mut Checks<'_>, c: &Config) {
    let cl = &c.cluster;
    check_ready_line_visible(checks, c);
    let id_ok = !cl.id.is_empty()
        && cl.id.len() <= 63
        && cl
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !id_ok {
        checks.bad(
            "cluster.id",
            format!("{:?} is not a valid cluster id", cl.id),
            "use 1-63 characters of letters, digits, '-', '_' and '.'",
        );
    }
    checks.in_range(
        "cluster.heartbeat_secs",
        cl.heartbeat_secs,
        1..=60,
        "choose a heartbeat period between 1 and 60 seconds (default 5)",
    );
    checks.in_range(
        "cluster.dead_after_missed",
        cl.dead_after_missed.into(),
        1..=100,
        "choose how many missed heartbeats make a node dead (default 3)",
    );
    checks.in_range(
        "cluster.max_skew_secs",
        cl.max_skew_secs,
        1..=3600,
        "choose a clock skew window between 1 and 3600 seconds (default 30)",
    );
    checks.at_least_one(
        "cluster.discovery_timeout_secs",
        cl.discovery_timeout_secs,
        "0 seconds leaves no time to find main",
        "use 1 or more (default 10)",
    );
    if !(cl.sysload_limit.is_finite() && cl.sysload_limit > 0.0 && cl.sysload_limit <= 100.0) {
        checks.bad(
            "cluster.sysload_limit",
            format!("{} is not a usable sysload limit", cl.sysload_limit),
            "use a number above 0, e.g. 0.7 (load average per CPU)",
        );
    }
    if let Some(url) = cl.main_url.as_deref().filter(|s| !s.is_empty()) {
        let ok = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if ok.is_none() {
            checks.bad(
                "cluster.main_url",
                format!("{url:?} is not an http:// or https:// URL"),
                "use e.g. http://main.example:8000 or unset it to find main over mDNS",
            );
        }
    }
    if let Some(o) = c
        .node
        .sysload_override
        .filter(|o| !(o.is_finite() && *o >= 0.0))
    {
        checks.bad(
            "node.sysload_override",
            format!("{o} is not a sysload"),
            "use a number >= 0, or remove the key",
        );
    }
}

/// `redis.url` of a clustered node.
fn check_redis(checks: &mut Checks<'_>, c: &Config) -> Option<RedisTarget> {
    if !c.node.mode.is_clustered() {
        return None;
    }
    match parse_redis_url(&c.redis.url) {
        Ok(t) => Some(t),
        Err((problem, fix)) => {
            checks.bad("redis.url", problem, fix);
            None
        }
    }
}

/// `[api]`: bind address, TLS files, body limit; the API port is not mDNS's.
fn check_api(checks: &mut Checks<'_>, c: &Config, plan: Option<&PortPlan>) {
    let api = &c.api;
    if api.bind.parse::<IpAddr>().is_err() {
        checks.bad(
            "api.bind",
            format!("{:?} is not an IP address", api.bind),
            "use 0.0.0.0, :: or one of the host's addresses",
        );
    }
    let cert = api.tls_cert_file.as_deref().filter(|s| !s.is_empty());
    let key = api.tls_key_file.as_deref().filter(|s| !s.is_empty());
    match (cert, key) {
        (Some(_), None) | (None, Some(_)) => checks.bad(
            if cert.is_some() {
                "api.tls_key_file"
            } else {
                "api.tls_cert_file"
            },
            "TLS needs both a certificate and a key".into(),
            "set both api.tls_cert_file and api.tls_key_file, or neither",
        ),
        (Some(cf), Some(kf)) => {
            for (k, f) in [("api.tls_cert_file", cf), ("api.tls_key_file", kf)] {
                if !std::path::Path::new(f).is_file() {
                    checks.bad(
                        k,
                        format!("{f} does not exist"),
                        "give the path of a PEM file",
                    );
                }
            }
        }
        (None, None) => {}
    }
    checks.in_range(
        "api.max_body_bytes",
        api.max_body_bytes as u64,
        1024..=16 * 1024 * 1024,
        "use e.g. 65536",
    );
    checks.in_range(
        "api.max_connections",
        api.max_connections as u64,
        16..=1_000_000,
        "use e.g. 4096 (more than the subs plus the application's connections)",
    );
    checks.in_range(
        "api.header_timeout_secs",
        api.header_timeout_secs,
        1..=300,
        "use e.g. 10",
    );
    checks.in_range(
        "api.request_timeout_secs",
        api.request_timeout_secs,
        1..=3600,
        "use e.g. 30",
    );
    checks.in_range(
        "api.worker_threads",
        api.worker_threads as u64,
        1..=64,
        "use 1 (the default) or, for a main with very many subs on a many-core machine, 2-4",
    );
    if plan.is_some_and(|p| p.api_port == MDNS_PORT) {
        checks.bad(
            "node.api_port",
            "5353 is the mDNS port".into(),
            "choose another control API port",
        );
    }
    if let Err(e) = c.metrics.listen_addr() {
        checks.bad(
            "metrics.listen",
            e,
            "leave it empty (metrics on the control API) or give HOST:PORT",
        );
    }
}

/// What `check` warns about but accepts: capacity below `expected_participants`, a sub that
/// cannot find main.
fn warnings(c: &Config, plan: &PortPlan) -> Vec<String> {
    let mut warnings = Vec::new();
    let expected = c.livekit.expected_participants;
    if expected > 0 {
        match capacity(c.livekit.port_mode, plan) {
            Some(cap) if cap < expected => warnings.push(format!(
                "capacity: livekit.port_mode = \"range\" gives {} UDP ports ({}-{}), about {cap} participants at two ports each, below livekit.expected_participants = {expected}; use port_mode = \"mux\" (same ports, not port-bound) or widen the range",
                plan.udp_span(),
                plan.rtc_udp_start,
                plan.rtc_udp_end
            )),
            _ => {}
        }
    }
    if c.node.mode == Mode::Sub && c.cluster.main_url.is_none() && !c.cluster.mdns {
        warnings.push(
            "cluster: this sub has no cluster.main_url (MAIN_NODE_URL) and mDNS is off: it cannot find main".into(),
        );
    }
    warnings
}

/// What is wrong with one `livekit.stun_servers` entry (LiveKit prefixes `stun:` itself).
fn stun_server_problem(entry: &str) -> Option<(String, String)> {
    let (host, port) = entry.rsplit_once(':').unwrap_or((entry, ""));
    let host_ok = !host.is_empty()
        && !host.contains("//")
        && !matches!(host, "stun" | "stuns" | "turn" | "turns")
        && !host.chars().any(char::is_whitespace)
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    (!host_ok || !port_ok).then(|| {
        (
            format!("{entry:?} is not a STUN server HOST:PORT"),
            "give HOST:PORT, e.g. 10.0.0.1:3478 or [fd00::1]:3478 (no stun: prefix)".into(),
        )
    })
}

/// Parse `redis://[user@]host:port[/db]` (or `rediss://` for TLS). Passwords belong in a file.
/// `s` with whatever sits between `://` and the last `@` (user and password) shown as `***`,
/// for error messages about URLs that may hold a password.
pub fn redact_userinfo(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => s.to_string(),
    }
}

pub fn parse_redis_url(s: &str) -> Result<RedisTarget, (String, String)> {
    let fix = "use redis://HOST:PORT[/DB] and put the password in redis.password_file".to_string();
    let shown = redact_userinfo(s);
    let u =
        url::Url::parse(s).map_err(|e| (format!("{shown:?} is not a URL: {e}"), fix.clone()))?;
    let tls = match u.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err((
                format!("scheme {other:?} is not redis:// or rediss://"),
                fix,
            ))
        }
    };
    if u.password().is_some() {
        return Err((
            "the URL contains a password; secrets are never inline".into(),
            "remove it from the URL and write it to the file named by redis.password_file".into(),
        ));
    }
    let host = match u.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        Some(h) => h.to_string(),
        None => return Err((format!("{shown:?} has no host"), fix)),
    };
    let port = u.port().unwrap_or(6379);
    let db = match u.path().trim_start_matches('/') {
        "" => 0,
        d => d
            .parse::<i64>()
            .map_err(|_| (format!("database {d:?} is not a number"), fix.clone()))?,
    };
    let username = Some(u.username().to_string()).filter(|s| !s.is_empty());
    Ok(RedisTarget {
        address: format!("{host}:{port}"),
        username,
        db,
        tls,
    })
}

#[cfg(test)]
mod tests;
