//! The configuration schema: every key, its type and its documented default (no I/O here).
//!
//! The same schema is used for the cluster-wide file and the per-instance file; both are
//! deep-merged before they are deserialized into [`Config`]. Unknown keys are errors
//! (`deny_unknown_fields` on every section).

use serde::{Deserialize, Serialize};

/// The role of a node in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A single node: no Redis, no cluster protocol.
    #[default]
    Standalone,
    /// The cluster's main node: membership table, placement, join tokens.
    Main,
    /// A sub node: registers with main and sends heartbeats.
    Sub,
}

impl Mode {
    /// Clustered nodes share Redis with LiveKit and render a node selector.
    pub fn is_clustered(self) -> bool {
        !matches!(self, Mode::Standalone)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Main => "main",
            Mode::Sub => "sub",
        }
    }
}

/// How the node's RTC UDP range is given to LiveKit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PortMode {
    /// `rtc.udp_port: "START-END"`: every participant multiplexed over those ports.
    #[default]
    Mux,
    /// `rtc.port_range_start/end`: about two ports per participant.
    Range,
}

/// The whole configuration, after layering.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeSection,
    pub livekit: LivekitSection,
    pub redis: RedisSection,
    pub cluster: ClusterSection,
    pub api: ApiSection,
    pub grants: GrantsSection,
    pub metrics: MetricsSection,
}

/// `[node]`: identity, role and the port plan overrides.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Role: standalone, main or sub (env `MODE`).
    pub mode: Mode,
    /// Node name; defaults to the instance name (env `NODE_NAME`).
    pub name: Option<String>,
    /// LiveKit HTTP/WebSocket port; default derived from the name (env `LIVEKIT_PORT`).
    pub livekit_port: Option<u32>,
    /// LiveKit ICE/TCP port; default derived from the name.
    pub rtc_tcp_port: Option<u32>,
    /// First RTC UDP port; default derived (env `LIVEKIT_RTC_PORT_START`).
    pub rtc_udp_start: Option<u32>,
    /// Last RTC UDP port; default derived (env `LIVEKIT_RTC_PORT_END`).
    pub rtc_udp_end: Option<u32>,
    /// Control API port; default derived (main 8000, node-N 8000+N).
    pub api_port: Option<u32>,
    /// Host or IP that clients and peers use to reach this node; default: first non-loopback IPv4.
    pub advertise_address: Option<String>,
    /// TEST/DRILL knob: report this sysload instead of the measured one.
    pub sysload_override: Option<f64>,
}

/// `[livekit]`: the child process and its rendered config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LivekitSection {
    /// Path of the livekit-server binary (env `LIVEKIT_BINARY`).
    pub binary: String,
    /// URL clients use to reach this node's LiveKit; default `ws://ADVERTISE:PORT` (env `LIVEKIT_URL`).
    pub url: Option<String>,
    /// File holding the LiveKit API key (credential `livekit-api-key` wins).
    pub api_key_file: String,
    /// File holding the LiveKit API secret (credential `livekit-api-secret` wins).
    pub api_secret_file: String,
    /// `mux` (default) or `range`.
    pub port_mode: PortMode,
    /// Participants this node should hold; `check` warns when capacity is lower (0 = no check).
    pub expected_participants: u32,
    /// `rtc.node_ip`: the IP advertised to clients.
    pub node_ip: Option<String>,
    /// `rtc.use_external_ip` (STUN); overrides node_ip in LiveKit.
    pub use_external_ip: bool,
    /// STUN servers (`host:port`) LiveKit hands to clients (`rtc.stun_servers`). Empty (the
    /// default): none that leaves the classroom LAN; LiveKit is given a loopback placeholder,
    /// because it hands out Google's and Twilio's public STUN servers when the list is empty.
    pub stun_servers: Vec<String>,
    /// LiveKit `region`.
    pub region: Option<String>,
    /// LiveKit `prometheus.port`: unset = the port plan's (main 6789, node-N 6789+N); 0 = off.
    pub prometheus_port: Option<u32>,
    /// LiveKit `logging.level`: debug, info, warn, error.
    pub log_level: String,
    /// Seconds LiveKit may drain after SIGTERM before it is killed.
    pub drain_timeout_secs: u64,
    /// Seconds LiveKit may take to become ready.
    pub ready_timeout_secs: u64,
    /// Health probe period in milliseconds.
    pub health_interval_ms: u64,
    /// Consecutive failed probes (no answer) before LiveKit is restarted.
    pub health_failures: u32,
    /// Restarts allowed within 10 minutes before the daemon gives up and exits 1.
    pub restart_budget: u32,
}

impl Default for LivekitSection {
    fn default() -> Self {
        Self {
            binary: "/usr/local/bin/livekit-server".into(),
            url: None,
            api_key_file: "/etc/airclass/secrets/livekit-api-key".into(),
            api_secret_file: "/etc/airclass/secrets/livekit-api-secret".into(),
            port_mode: PortMode::Mux,
            expected_participants: 0,
            node_ip: None,
            use_external_ip: false,
            stun_servers: Vec::new(),
            region: None,
            prometheus_port: None,
            log_level: "info".into(),
            drain_timeout_secs: 10,
            ready_timeout_secs: 30,
            health_interval_ms: 1000,
            health_failures: 3,
            restart_budget: 5,
        }
    }
}

/// `[redis]`: the Redis shared by the cluster's LiveKit servers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    /// `redis://HOST:PORT[/DB]` (env `REDIS_URL`); a password in the URL is refused.
    pub url: String,
    /// File holding the Redis password (credential `redis-password` wins); empty = none.
    pub password_file: Option<String>,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            password_file: None,
        }
    }
}

/// `[cluster]`: the main/sub protocol.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Cluster id: mDNS TXT record and Redis ownership marker.
    pub id: String,
    /// File holding the shared HMAC secret (credential `cluster-secret` wins).
    pub secret_file: String,
    /// Where main's control API is (env `MAIN_NODE_URL`); empty = find main over mDNS.
    pub main_url: Option<String>,
    /// Heartbeat period in seconds (1..=60).
    pub heartbeat_secs: u64,
    /// Missed heartbeats before a node is dead.
    pub dead_after_missed: u32,
    /// Seconds a dead node stays listed before it is forgotten.
    pub forget_after_secs: u64,
    /// Seconds a sub waits for main over mDNS before it reports "Main Node not found".
    pub discovery_timeout_secs: u64,
    /// Largest accepted clock skew of a signed request, seconds.
    pub max_skew_secs: u64,
    /// Nodes with sysload (load1 / CPUs) at or above this get no new rooms.
    pub sysload_limit: f64,
    /// Advertise and browse `_airclass._tcp` over mDNS.
    pub mdns: bool,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            id: "airclass".into(),
            secret_file: "/etc/airclass/secrets/cluster-secret".into(),
            main_url: None,
            heartbeat_secs: 5,
            dead_after_missed: 3,
            forget_after_secs: 300,
            discovery_timeout_secs: 10,
            max_skew_secs: 30,
            sysload_limit: 0.7,
            mdns: true,
        }
    }
}

/// `[api]`: the control API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Address the control API binds to.
    pub bind: String,
    /// File holding the SHA-256 (hex) of the application token (credential `app-token-sha256` wins).
    pub app_token_sha256_file: String,
    /// PEM certificate chain for TLS; empty = plain HTTP.
    pub tls_cert_file: Option<String>,
    /// PEM private key for TLS.
    pub tls_key_file: Option<String>,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Most connections open at once; beyond it the oldest connection still waiting for its
    /// client is closed to make room, or (all busy) the newcomer gets a 503 `busy`.
    pub max_connections: usize,
    /// A TLS handshake, a request head, and an idle keep-alive connection each get this long.
    pub header_timeout_secs: u64,
    /// Reading a request body and answering it; also the longest time no byte moves.
    pub request_timeout_secs: u64,
    /// Threads of the daemon's async runtime (control API, cluster, supervision, LiveKit's
    /// health probe; mDNS and systemd notify have threads of their own). One keeps the
    /// control API's tail latency lowest beside LiveKit and serves tens of thousands of joins
    /// per second; more only help a main with very many subs on a many-core machine.
    pub worker_threads: usize,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0".into(),
            app_token_sha256_file: "/etc/airclass/secrets/app-token.sha256".into(),
            tls_cert_file: None,
            tls_key_file: None,
            max_body_bytes: 64 * 1024,
            max_connections: 4096,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            worker_threads: 1,
        }
    }
}

/// LiveKit grants given to one role in join tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
}

/// `[grants.teacher]`, `[grants.student]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsSection {
    pub teacher: Grant,
    pub student: Grant,
}

impl Default for GrantsSection {
    fn default() -> Self {
        Self {
            teacher: Grant {
                can_publish: true,
                can_subscribe: true,
                can_publish_data: true,
            },
            student: Grant {
                can_publish: false,
                can_subscribe: true,
                can_publish_data: true,
            },
        }
    }
}

/// `[metrics]`: who may read `GET /metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Empty (default): `/metrics` on the control API. `HOST:PORT`: on its own listener only
    /// (e.g. `127.0.0.1:9469` for a Prometheus agent on the node).
    pub listen: String,
    /// File holding the SHA-256 (hex) of a bearer token scrapes must send (credential
    /// `metrics-token-sha256` wins); empty = no token.
    pub token_sha256_file: String,
}

impl MetricsSection {
    /// The separate listener, if any (`Err`: not `HOST:PORT`).
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let l = self.listen.trim();
        if l.is_empty() {
            return Ok(None);
        }
        l.parse().map(Some).map_err(|_| {
            format!("{l:?} is not an IP address and port (e.g. 127.0.0.1:9469 or [::]:9469)")
        })
    }
}
