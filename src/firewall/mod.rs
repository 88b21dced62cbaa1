//! Per-instance host firewall: one nftables table `inet airclass_<instance>` holding accept rules
//! for exactly the node's ports, opened and closed atomically through `nft -j -f -` (the
//! `nftables` crate's JSON schema; never hand-built rule strings). Runs only from the
//! privileged `ExecStartPost=+` / `ExecStopPost=+` commands, never inside the daemon.
//!
//! An accept here cannot override a drop in another table (see docs/firewall.md): on hosts
//! managed by firewalld, ufw or NixOS, set `AIRCLASS_FIREWALL=external` and use their profiles.

mod nft;
pub mod rules;

use nftables::schema::Nftables;
use thiserror::Error;

/// UDP port of multicast DNS, opened for cluster discovery.
pub const MDNS_PORT: u16 = 5353;
/// Environment variable selecting the backend (`nftables`, the default, or `external`).
pub const BACKEND_ENV: &str = "AIRCLASS_FIREWALL";

/// The ports one instance needs open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSpec {
    /// Instance name (`main`, `node-1`, ...); names the table.
    pub instance: String,
    /// TCP ports: LiveKit HTTP/WebSocket port, `rtc.tcp_port`, control API port.
    pub tcp_ports: Vec<u16>,
    /// Single UDP ports (mDNS 5353; a mux port if it is a single one).
    pub udp_ports: Vec<u16>,
    /// Inclusive UDP ranges (the RTC range).
    pub udp_ranges: Vec<(u16, u16)>,
}

impl FirewallSpec {
    /// The spec for a node from its port plan: TCP livekit/rtc-tcp/api, the RTC UDP range and,
    /// when `mdns` is on, UDP 5353.
    pub fn for_node(
        instance: &str,
        livekit_port: u16,
        rtc_tcp_port: u16,
        api_port: u16,
        rtc_udp: (u16, u16),
        mdns: bool,
    ) -> Self {
        Self {
            instance: instance.to_owned(),
            tcp_ports: vec![livekit_port, rtc_tcp_port, api_port],
            udp_ports: if mdns { vec![MDNS_PORT] } else { Vec::new() },
            udp_ranges: vec![rtc_udp],
        }
    }

    /// The spec for a node's whole port plan: [`FirewallSpec::for_node`] plus LiveKit's own
    /// metrics port when it is on (LiveKit binds it wherever it binds its signalling port, so
    /// it cannot be loopback-only; docs/metrics.md).
    pub fn for_plan(instance: &str, p: &crate::config::PortPlan, mdns: bool) -> Self {
        let mut spec = Self::for_node(
            instance,
            p.livekit_port,
            p.rtc_tcp_port,
            p.api_port,
            (p.rtc_udp_start, p.rtc_udp_end),
            mdns,
        );
        spec.tcp_ports.extend(p.livekit_metrics_port);
        spec
    }

    /// Rejects what nft would reject or what would open nothing meaningful.
    pub fn validate(&self) -> Result<(), FirewallError> {
        if self.instance.is_empty() {
            return Err(FirewallError::InvalidSpec("instance name is empty".into()));
        }
        let zero_port = self.tcp_ports.contains(&0) || self.udp_ports.contains(&0);
        let zero_range = self.udp_ranges.iter().any(|&(a, b)| a == 0 || b == 0);
        if zero_port || zero_range {
            return Err(FirewallError::InvalidSpec(format!(
                "port 0 in the firewall spec of instance {:?}: every port must be 1..=65535",
                self.instance
            )));
        }
        Ok(())
    }
}

/// Who manages the host firewall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallBackend {
    /// This module manages `inet airclass_<instance>` with `nft`.
    Nftables,
    /// Someone else does (NixOS `networking.firewall`, firewalld, ufw): open/close are no-ops.
    External,
}

/// Errors of the firewall module.
#[derive(Debug, Error)]
pub enum FirewallError {
    /// The spec cannot be turned into rules.
    #[error("invalid firewall spec: {0}")]
    InvalidSpec(String),
    /// `nft` is not installed or not in PATH.
    #[error("{program:?} not found: install the nftables package, or set {BACKEND_ENV}=external if another tool manages the firewall")]
    NftMissing {
        /// The program that was looked up.
        program: String,
    },
    /// `nft` could not be run.
    #[error("cannot run {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `nft` ran and failed.
    #[error("nft failed while {action} ({status}): {stderr}")]
    NftFailed {
        /// What was being done.
        action: &'static str,
        /// Exit status text.
        status: String,
        /// nft's stderr.
        stderr: String,
    },
    /// The JSON to or from nft could not be (de)serialised.
    #[error("nft JSON: {0}")]
    Json(#[source] serde_json::Error),
}

/// `airclass_` + the instance name with every character outside `[A-Za-z0-9_]` replaced by `_`
/// (`node-1` → `airclass_node_1`), a valid nft identifier.
pub fn table_name(instance: &str) -> String {
    let safe: String = instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("airclass_{safe}")
}

/// The idempotent open batch (pure; see [`rules::open_batch`]).
pub fn ruleset(spec: &FirewallSpec) -> Nftables<'static> {
    rules::open_batch(spec)
}

/// Parses the `AIRCLASS_FIREWALL` value: unset, empty or `nftables` → nftables; `external` →
/// external; anything else is refused so that a typo never silently changes who owns the rules.
pub fn parse_backend(value: Option<&str>) -> Result<FirewallBackend, FirewallError> {
    match value.map(str::trim) {
        None | Some("") | Some("nftables") => Ok(FirewallBackend::Nftables),
        Some("external") => Ok(FirewallBackend::External),
        Some(other) => Err(FirewallError::InvalidSpec(format!(
            "{BACKEND_ENV}={other:?} is not a firewall backend: use \"nftables\" or \"external\""
        ))),
    }
}

/// The backend chosen by `AIRCLASS_FIREWALL`; an unknown value logs an error and falls back to
/// nftables (the documented default).
pub fn backend_from_env() -> FirewallBackend {
    let value = std::env::var(BACKEND_ENV).ok();
    parse_backend(value.as_deref()).unwrap_or_else(|e| {
        tracing::error!(subsystem = "firewall", error = %e, "falling back to the nftables backend");
        FirewallBackend::Nftables
    })
}

/// Opens the instance's ports with the backend from the environment.
pub fn open(spec: &FirewallSpec) -> Result<(), FirewallError> {
    open_with(backend_from_env(), spec)
}

/// Opens the instance's ports: replaces `inet airclass_<instance>` in one nft transaction.
/// Running it twice leaves the same table.
pub fn open_with(backend: FirewallBackend, spec: &FirewallSpec) -> Result<(), FirewallError> {
    spec.validate()?;
    let table = table_name(&spec.instance);
    match backend {
        FirewallBackend::External => {
            tracing::info!(
                subsystem = "firewall", instance = %spec.instance, table = %table,
                tcp = ?spec.tcp_ports, udp = ?spec.udp_ports, udp_ranges = ?spec.udp_ranges,
                "{BACKEND_ENV}=external: not touching nftables; the host firewall must allow these ports"
            );
            Ok(())
        }
        FirewallBackend::Nftables => {
            nft::apply(&rules::open_batch(spec), "opening ports")?;
            tracing::info!(
                subsystem = "firewall", instance = %spec.instance, table = %table,
                tcp = ?spec.tcp_ports, udp = ?spec.udp_ports, udp_ranges = ?spec.udp_ranges,
                "firewall table opened"
            );
            Ok(())
        }
    }
}

/// Closes the instance's ports with the backend from the environment.
pub fn close(instance: &str) -> Result<(), FirewallError> {
    close_with(backend_from_env(), instance)
}

/// Deletes `inet airclass_<instance>` and nothing else; an absent table is fine.
pub fn close_with(backend: FirewallBackend, instance: &str) -> Result<(), FirewallError> {
    if instance.is_empty() {
        return Err(FirewallError::InvalidSpec("instance name is empty".into()));
    }
    let table = table_name(instance);
    match backend {
        FirewallBackend::External => {
            tracing::info!(subsystem = "firewall", instance, table = %table,
                "{BACKEND_ENV}=external: nothing to close");
            Ok(())
        }
        FirewallBackend::Nftables => {
            nft::apply(&rules::close_batch(instance), "closing ports")?;
            tracing::info!(subsystem = "firewall", instance, table = %table, "firewall table removed");
            Ok(())
        }
    }
}

/// The instance's table as `nft list table` prints it, or `None` when it does not exist.
pub fn show(instance: &str) -> Result<Option<String>, FirewallError> {
    let table = table_name(instance);
    if !nft::inet_table_exists(&table)? {
        return Ok(None);
    }
    nft::run(&["list", "table", "inet", &table], "listing the table").map(Some)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_sanitised() {
        assert_eq!(table_name("main"), "airclass_main");
        assert_eq!(table_name("node-1"), "airclass_node_1");
        assert_eq!(table_name("a.b c/é"), "airclass_a_b_c__");
    }

    #[test]
    fn backend_values() {
        assert_eq!(parse_backend(None).unwrap(), FirewallBackend::Nftables);
        assert_eq!(parse_backend(Some("")).unwrap(), FirewallBackend::Nftables);
        assert_eq!(
            parse_backend(Some("nftables")).unwrap(),
            FirewallBackend::Nftables
        );
        assert_eq!(
            parse_backend(Some("external")).unwrap(),
            FirewallBackend::External
        );
        assert!(parse_backend(Some("extrenal")).is_err());
    }

    #[test]
    fn for_node_matches_port_plan() {
        let s = FirewallSpec::for_node("main", 7880, 7881, 8000, (50000, 50020), true);
        assert_eq!(s.tcp_ports, vec![7880, 7881, 8000]);
        assert_eq!(s.udp_ports, vec![5353]);
        assert_eq!(s.udp_ranges, vec![(50000, 50020)]);
        let s = FirewallSpec::for_node("main", 7880, 7881, 8000, (50000, 50020), false);
        assert!(s.udp_ports.is_empty());
    }

    #[test]
    fn for_plan_opens_livekit_metrics_when_on() {
        let plan = crate::config::ports::plan("node-1", Default::default()).unwrap();
        let s = FirewallSpec::for_plan("node-1", &plan, true);
        assert_eq!(s.tcp_ports, vec![7890, 7891, 8001, 6790]);
        let off = plan.with_livekit_metrics(Some(0));
        let s = FirewallSpec::for_plan("node-1", &off, false);
        assert_eq!(s.tcp_ports, vec![7890, 7891, 8001]);
    }

    #[test]
    fn validate_rejects_zero_and_empty() {
        let ok = FirewallSpec::for_node("main", 7880, 7881, 8000, (50000, 50020), true);
        assert!(ok.validate().is_ok());
        let bad = FirewallSpec {
            tcp_ports: vec![0],
            ..ok.clone()
        };
        assert!(bad.validate().is_err());
        let bad = FirewallSpec {
            udp_ranges: vec![(0, 10)],
            ..ok.clone()
        };
        assert!(bad.validate().is_err());
        let bad = FirewallSpec {
            instance: String::new(),
            ..ok
        };
        assert!(bad.validate().is_err());
        assert!(close_with(FirewallBackend::External, "").is_err());
    }

    #[test]
    fn external_backend_touches_nothing() {
        // External must return Ok without running nft (an nft call here would fail as non-root
        // or change the host: both would be visible).
        let spec = FirewallSpec::for_node("main", 7880, 7881, 8000, (50000, 50020), true);
        assert!(open_with(FirewallBackend::External, &spec).is_ok());
        assert!(close_with(FirewallBackend::External, "main").is_ok());
    }
}
