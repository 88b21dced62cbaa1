//! Sockets of the livekit-server stand-in (TEST DOUBLE), bound in the real server's order and
//! on its addresses: ICE/TCP on all interfaces; the UDP mux's first `min(CPUs, ports)` ports on
//! every non-loopback, non-link-local interface address (never loopback); then HTTP and
//! prometheus on each bind address. Bind errors read like Go's (`listen tcp :7880: bind: …`).
//! Also the ready line's fields.

use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};
use tokio::net::{TcpListener, UdpSocket};

use crate::config::{io_reason, Effective};
use crate::state::VERSION;

/// A listener that could not be bound: the text the real server prints on stdout.
#[derive(Debug, thiserror::Error)]
#[error("listen {proto} {addr}: bind: {reason}")]
pub struct BindError {
    proto: &'static str,
    addr: String,
    reason: String,
}

fn bind_error(proto: &'static str, addr: String, e: &std::io::Error) -> BindError {
    BindError {
        proto,
        addr,
        reason: io_reason(e),
    }
}

pub fn link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The RTC sockets, held open for the life of the process.
pub struct Rtc {
    pub tcp: Option<TcpListener>,
    pub udp: Vec<UdpSocket>,
}

/// ICE/TCP (`rtc.tcp_port`, all interfaces) and the UDP mux sockets.
pub async fn bind_rtc(cfg: &Effective, num_cpus: u32) -> Result<Rtc, BindError> {
    let mut rtc = Rtc {
        tcp: None,
        udp: Vec::new(),
    };
    if cfg.tcp_port != 0 {
        let l = TcpListener::bind(("::", cfg.tcp_port as u16)).await;
        let l = match l {
            Ok(l) => l,
            Err(_) => TcpListener::bind(("0.0.0.0", cfg.tcp_port as u16))
                .await
                .map_err(|e| bind_error("tcp", format!(":{}", cfg.tcp_port), &e))?,
        };
        rtc.tcp = Some(l);
    }
    let Some((start, end)) = cfg.udp_mux() else {
        return Ok(rtc);
    };
    let count = if end == 0 { 1 } else { end - start + 1 };
    let ports = start..start + count.min(num_cpus.max(1));
    let ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .iter()
        .map(|i| i.ip())
        .filter(|ip| !ip.is_loopback() && !link_local(ip))
        .collect();
    for ip in ips {
        for port in ports.clone() {
            let addr = SocketAddr::new(ip, port as u16);
            let s = UdpSocket::bind(addr)
                .await
                .map_err(|e| bind_error("udp", addr.to_string(), &e))?;
            rtc.udp.push(s);
        }
    }
    Ok(rtc)
}

fn host_port(host: &str, port: u32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One listener on `port` per bind address (wildcard when none); Go names the wildcard `:port`.
pub async fn bind_tcp_each(cfg: &Effective, port: u32) -> Result<Vec<TcpListener>, BindError> {
    let mut out = Vec::new();
    if cfg.bind_addresses.is_empty() {
        let l = match TcpListener::bind(("::", port as u16)).await {
            Ok(l) => l,
            Err(_) => TcpListener::bind(("0.0.0.0", port as u16))
                .await
                .map_err(|e| bind_error("tcp", format!(":{port}"), &e))?,
        };
        out.push(l);
        return Ok(out);
    }
    for a in &cfg.bind_addresses {
        let target = host_port(a, port);
        let l = TcpListener::bind(&target)
            .await
            .map_err(|e| bind_error("tcp", target.clone(), &e))?;
        out.push(l);
    }
    Ok(out)
}

/// Fields of `starting LiveKit server` (`service/server.go`).
pub fn ready_fields(cfg: &Effective, node_id: &str) -> Vec<(&'static str, Value)> {
    let mut fields: Vec<(&str, Value)> = vec![
        ("portHttp", cfg.port.into()),
        ("nodeID", node_id.into()),
        ("nodeIP", cfg.node_ip.primary().into()),
        ("version", VERSION.into()),
    ];
    if !cfg.bind_addresses.is_empty() {
        fields.push(("bindAddresses", json!(cfg.bind_addresses)));
    }
    if cfg.tcp_port != 0 {
        fields.push(("rtc.portTCP", cfg.tcp_port.into()));
    }
    // Whenever udp_port is set it is logged (as Go's PortRange struct), even if a range wins.
    let (us, ue) = cfg.udp_port;
    if us != 0 {
        fields.push(("rtc.portUDP", json!({"Start": us, "End": ue})));
    } else {
        fields.push((
            "rtc.portICERange",
            json!([cfg.ice_range.0, cfg.ice_range.1]),
        ));
    }
    if cfg.prometheus_port != 0 {
        fields.push(("portPrometheus", cfg.prometheus_port.into()));
    }
    if !cfg.region.is_empty() {
        fields.push(("region", cfg.region.clone().into()));
    }
    fields
}
