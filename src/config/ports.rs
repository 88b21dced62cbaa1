//! The port plan: ports derived from the node name (pure; mirrored by `nix/ports.nix`).
//!
//! `main` → LiveKit 7880, ICE/TCP 7881, RTC UDP 50000–50020, control API 8000, LiveKit's own
//! Prometheus metrics 6789. `node-N` → 7880+10·N, 7881+10·N, 50000+1000·N … +20, 8000+N,
//! 6789+N; from node-12 on the LiveKit ports skip the block 8000–8019 that holds the control
//! API ports (node-N, N ≥ 12 → 7900+10·N, 7901+10·N: node-12 8020/8021 … node-15 8050/8051),
//! so no two ports of main, node-1 … node-15 are the same. Explicit settings win.

use serde::Serialize;

/// UDP port of multicast DNS, opened for discovery.
pub const MDNS_PORT: u16 = 5353;
/// Ports in a derived RTC range beyond its start (the seed's 21-port ranges).
pub const RTC_RANGE_SPAN: u32 = 20;
/// LiveKit's `prometheus.port` for `main` (LiveKit's documented example port); node-N adds N.
pub const LIVEKIT_METRICS_BASE: u16 = 6789;

/// The ports a node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortPlan {
    pub livekit_port: u16,
    pub rtc_tcp_port: u16,
    pub rtc_udp_start: u16,
    pub rtc_udp_end: u16,
    pub api_port: u16,
    /// LiveKit's own Prometheus endpoint (`prometheus.port`); `None` = off
    /// (`livekit.prometheus_port = 0`, or a name that derives no plan and no explicit port).
    pub livekit_metrics_port: Option<u16>,
}

/// Explicit port settings; `None` means "derive from the name".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortOverrides {
    pub livekit_port: Option<u32>,
    pub rtc_tcp_port: Option<u32>,
    pub rtc_udp_start: Option<u32>,
    pub rtc_udp_end: Option<u32>,
    pub api_port: Option<u32>,
}

/// One problem with the port plan, naming the config key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct PortError {
    /// Config key (e.g. `node.livekit_port`).
    pub key: &'static str,
    pub problem: String,
    pub fix: String,
}

/// The index a name derives ports from: `main` → 0, `node-N` → N (N ≥ 1, no leading zero).
pub fn node_index(name: &str) -> Option<u32> {
    if name == "main" {
        return Some(0);
    }
    let digits = name.strip_prefix("node-")?;
    if digits.is_empty() || digits.len() > 9 || digits.starts_with('0') {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The first index whose LiveKit ports skip the control API block (see the module docs).
const SKIP_API_BLOCK_FROM: u32 = 12;

/// The ports derived from an index, before range checks (u32 so overflow can be reported).
fn derived(index: u32) -> [u32; 5] {
    let i = u64::from(index);
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    // 7880+10·12 = 8000 would be main's control API port: skip two decades (8000–8019)
    let livekit = if index >= SKIP_API_BLOCK_FROM {
        7900 + 10 * i
    } else {
        7880 + 10 * i
    };
    [
        clamp(livekit),
        clamp(livekit + 1),
        clamp(50_000 + 1000 * i),
        clamp(50_000 + 1000 * i + u64::from(RTC_RANGE_SPAN)),
        clamp(8000 + i),
    ]
}

const KEYS: [&str; 5] = [
    "node.livekit_port",
    "node.rtc_tcp_port",
    "node.rtc_udp_start",
    "node.rtc_udp_end",
    "node.api_port",
];

/// Compute the plan for `name` with `overrides`, reporting every problem.
pub fn plan(name: &str, overrides: PortOverrides) -> Result<PortPlan, Vec<PortError>> {
    let given = [
        overrides.livekit_port,
        overrides.rtc_tcp_port,
        overrides.rtc_udp_start,
        overrides.rtc_udp_end,
        overrides.api_port,
    ];
    let values = values(name, given)?;
    let [livekit, tcp, start, end, api] = values.map(|v| u16::try_from(v).unwrap_or(0));
    let plan = PortPlan {
        livekit_port: livekit,
        rtc_tcp_port: tcp,
        rtc_udp_start: start,
        rtc_udp_end: end,
        api_port: api,
        livekit_metrics_port: node_index(name)
            .and_then(|i| u16::try_from(i).ok())
            .and_then(|i| LIVEKIT_METRICS_BASE.checked_add(i)),
    };
    let errors = conflicts(&plan);
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors)
    }
}

/// Each port: given, else derived from the name; every one a valid port number.
fn values(name: &str, given: [Option<u32>; 5]) -> Result<[u32; 5], Vec<PortError>> {
    let derived = node_index(name).map(derived);
    let mut errors = Vec::new();
    let mut values = [0u32; 5];
    for (slot, key) in KEYS.iter().enumerate() {
        match (given[slot], derived) {
            (Some(v), _) => values[slot] = v,
            (None, Some(d)) => values[slot] = d[slot],
            (None, None) => errors.push(PortError {
                key,
                problem: format!(
                    "cannot derive a port from the node name {name:?} (only `main` and `node-N` derive ports)"
                ),
                fix: format!("name the node `main` or `node-N`, or set {key} explicitly"),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for (slot, key) in KEYS.iter().enumerate() {
        let v = values[slot];
        if v == 0 || v > 65_535 {
            let explicit = given[slot].is_some();
            errors.push(PortError {
                key,
                problem: if explicit {
                    format!("{v} is not a valid port (1-65535)")
                } else {
                    format!("the name {name:?} derives port {v}, above 65535")
                },
                fix: if explicit {
                    format!("set {key} to a port between 1 and 65535")
                } else {
                    format!("use node-1 … node-15, or set {key} explicitly")
                },
            });
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// A reversed RTC range, TCP ports used twice, the mDNS port inside the RTC range.
fn conflicts(p: &PortPlan) -> Vec<PortError> {
    let mut errors = Vec::new();
    let (start, end) = (p.rtc_udp_start, p.rtc_udp_end);
    if start > end {
        errors.push(PortError {
            key: "node.rtc_udp_start",
            problem: format!("RTC UDP range start {start} is above its end {end}"),
            fix: "set node.rtc_udp_start <= node.rtc_udp_end".into(),
        });
    }
    let tcp_ports = [
        ("node.livekit_port", p.livekit_port),
        ("node.rtc_tcp_port", p.rtc_tcp_port),
        ("node.api_port", p.api_port),
    ];
    for (i, (ka, a)) in tcp_ports.iter().enumerate() {
        for (kb, b) in tcp_ports.iter().skip(i + 1) {
            if a == b {
                errors.push(PortError {
                    key: kb,
                    problem: format!("TCP port {b} is also {ka}"),
                    fix: format!("give {kb} a port of its own"),
                });
            }
        }
    }
    if start <= MDNS_PORT && MDNS_PORT <= end {
        errors.push(PortError {
            key: "node.rtc_udp_start",
            problem: format!("RTC UDP range {start}-{end} contains the mDNS port {MDNS_PORT}"),
            fix: "move the RTC range away from 5353".into(),
        });
    }
    errors
}

impl PortPlan {
    /// Apply `livekit.prometheus_port`: unset keeps the derived port, 0 turns it off, anything
    /// else is used as is (validated by the caller).
    pub fn with_livekit_metrics(mut self, setting: Option<u32>) -> Self {
        match setting {
            None => {}
            Some(0) => self.livekit_metrics_port = None,
            Some(p) => self.livekit_metrics_port = u16::try_from(p).ok(),
        }
        self
    }

    /// Number of UDP ports in the RTC range.
    pub fn udp_span(&self) -> u32 {
        u32::from(self.rtc_udp_end) - u32::from(self.rtc_udp_start) + 1
    }

    /// Machine-readable form used by `airclass-node ports --json` and the Nix cross-check.
    pub fn to_json(&self, instance: &str) -> serde_json::Value {
        serde_json::json!({
            "instance": instance,
            "livekit_port": self.livekit_port,
            "rtc_tcp_port": self.rtc_tcp_port,
            "rtc_udp_start": self.rtc_udp_start,
            "rtc_udp_end": self.rtc_udp_end,
            "api_port": self.api_port,
            "livekit_metrics_port": self.livekit_metrics_port,
            "mdns_port": MDNS_PORT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> PortPlan {
        plan(name, PortOverrides::default()).unwrap()
    }

    #[test]
    fn seed_table() {
        // The table in the AirClass seed: node, LiveKit port, RTC range.
        let table = [
            ("main", 7880, 50000, 50020),
            ("node-1", 7890, 51000, 51020),
            ("node-2", 7900, 52000, 52020),
            ("node-3", 7910, 53000, 53020),
        ];
        for (name, port, start, end) in table {
            let plan = p(name);
            assert_eq!(plan.livekit_port, port, "{name}");
            assert_eq!(plan.rtc_udp_start, start, "{name}");
            assert_eq!(plan.rtc_udp_end, end, "{name}");
        }
    }

    #[test]
    fn api_and_tcp_ports() {
        assert_eq!(p("main").api_port, 8000);
        assert_eq!(p("node-1").api_port, 8001);
        assert_eq!(p("node-15").api_port, 8015);
        assert_eq!(p("main").rtc_tcp_port, 7881);
        assert_eq!(p("node-3").rtc_tcp_port, 7911);
    }

    #[test]
    fn livekit_metrics_ports() {
        assert_eq!(p("main").livekit_metrics_port, Some(6789));
        assert_eq!(p("node-1").livekit_metrics_port, Some(6790));
        assert_eq!(p("node-15").livekit_metrics_port, Some(6804));
        assert_eq!(
            p("node-2")
                .with_livekit_metrics(Some(0))
                .livekit_metrics_port,
            None
        );
        assert_eq!(
            p("node-2")
                .with_livekit_metrics(Some(9100))
                .livekit_metrics_port,
            Some(9100)
        );
        assert_eq!(
            p("node-2").with_livekit_metrics(None).livekit_metrics_port,
            Some(6791)
        );
    }

    /// main, node-1 … node-15: every name that derives a plan.
    fn all_names() -> Vec<String> {
        std::iter::once("main".to_string())
            .chain((1..=15).map(|i| format!("node-{i}")))
            .collect()
    }

    #[test]
    fn no_two_ports_of_any_two_nodes_collide() {
        // every TCP port (LiveKit, ICE/TCP, control API, LiveKit's metrics) and every port of
        // every RTC UDP range, of all 16 names: each used once (mDNS, 5353 on every node, is
        // shared by design and lies in no range)
        let mut owner = std::collections::BTreeMap::new();
        for n in all_names() {
            let plan = p(&n);
            let tcp = [
                ("livekit_port", plan.livekit_port),
                ("rtc_tcp_port", plan.rtc_tcp_port),
                ("api_port", plan.api_port),
                ("livekit_metrics_port", plan.livekit_metrics_port.unwrap()),
            ];
            let udp = (plan.rtc_udp_start..=plan.rtc_udp_end).map(|u| ("rtc_udp", u));
            for (what, port) in tcp.into_iter().chain(udp) {
                assert_ne!(port, MDNS_PORT, "{n}.{what}");
                if let Some(first) = owner.insert(port, format!("{n}.{what}")) {
                    panic!("port {port}: {first} and {n}.{what}");
                }
            }
        }
        assert_eq!(owner.len(), 16 * (4 + 21));
    }

    #[test]
    fn livekit_ports_skip_the_api_block_from_node_12() {
        assert_eq!(p("node-11").livekit_port, 7990);
        assert_eq!(p("node-11").rtc_tcp_port, 7991);
        assert_eq!(p("node-12").livekit_port, 8020);
        assert_eq!(p("node-12").rtc_tcp_port, 8021);
        assert_eq!(p("node-15").livekit_port, 8050);
        assert_eq!(p("node-15").rtc_tcp_port, 8051);
        assert_eq!(p("node-12").api_port, 8012);
    }

    #[test]
    fn node_15_is_last_derivable() {
        assert_eq!(p("node-15").rtc_udp_end, 65020);
        let errs = plan("node-16", PortOverrides::default()).unwrap_err();
        assert!(errs
            .iter()
            .any(|e| e.key == "node.rtc_udp_start" && e.problem.contains("above 65535")));
    }

    #[test]
    fn names_that_do_not_derive() {
        for bad in [
            "node-0", "node-01", "node-", "node-x", "Main", "edge", "node-1a",
        ] {
            assert!(node_index(bad).is_none(), "{bad}");
            let errs = plan(bad, PortOverrides::default()).unwrap_err();
            assert_eq!(errs.len(), 5, "{bad}");
        }
    }

    #[test]
    fn explicit_settings_win_and_allow_any_name() {
        let o = PortOverrides {
            livekit_port: Some(9000),
            rtc_tcp_port: Some(9001),
            rtc_udp_start: Some(60000),
            rtc_udp_end: Some(60100),
            api_port: Some(9002),
        };
        let plan = plan("edge", o).unwrap();
        assert_eq!(plan.livekit_port, 9000);
        assert_eq!(plan.udp_span(), 101);
        let partial = PortOverrides {
            livekit_port: Some(9100),
            ..Default::default()
        };
        assert_eq!(super::plan("node-1", partial).unwrap().livekit_port, 9100);
        assert_eq!(super::plan("node-1", partial).unwrap().rtc_tcp_port, 7891);
    }

    #[test]
    fn reversed_range_refused() {
        let o = PortOverrides {
            rtc_udp_start: Some(51020),
            rtc_udp_end: Some(51000),
            ..Default::default()
        };
        let errs = plan("node-1", o).unwrap_err();
        assert!(errs[0].problem.contains("above its end"));
    }

    #[test]
    fn overlapping_own_ports_refused() {
        let o = PortOverrides {
            api_port: Some(7890),
            ..Default::default()
        };
        let errs = plan("node-1", o).unwrap_err();
        assert_eq!(errs[0].key, "node.api_port");
        assert!(errs[0].problem.contains("node.livekit_port"));
    }

    #[test]
    fn out_of_range_explicit_port() {
        let o = PortOverrides {
            livekit_port: Some(70000),
            ..Default::default()
        };
        let errs = plan("main", o).unwrap_err();
        assert!(errs[0].problem.contains("70000"));
    }

    #[test]
    fn json_shape() {
        let v = p("node-1").to_json("node-1");
        assert_eq!(v["rtc_udp_start"], 51000);
        assert_eq!(v["mdns_port"], 5353);
        assert_eq!(v["livekit_metrics_port"], 6790);
        assert_eq!(v["instance"], "node-1");
    }
}
