//! Strict config loading for the livekit-server stand-in (TEST DOUBLE): YAML/JSON decode over
//! defaults with unknown keys rejected, then flag > env > file overrides, then validation,
//! with the real server's error texts (CONTRACT.md §1, §2, §6).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use serde::Deserialize;
use serde_yaml::Value as Yaml;

/// A startup error: its Display is the exact text the real server prints on stdout (exit 0).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not parse config: yaml: unmarshal errors:\n  line {line}: {msg}")]
    Parse { line: usize, msg: String },
    #[error("could not parse config: {0}")]
    ParseOther(String),
    #[error("open {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("Could not parse keys, it needs to be exactly, \"key: secret\", including the space")]
    KeysFormat,
    #[error("key file others permissions must be set to 0")]
    KeyFilePerms,
    #[error("stat {path}: {reason}")]
    KeyFileStat { path: String, reason: String },
    #[error("one of key-file or keys must be provided")]
    NoKeys,
    #[error("invalid value {value:?} for {what}: parse error")]
    BadValue { what: String, value: String },
    #[error("could not validate RTC config: {0}")]
    Rtc(String),
    #[error("unsupported node selector")]
    NodeSelector,
    #[error("current region cannot be blank")]
    BlankRegion,
    #[error("prometheus username or password is set but not both, both must be set to enable basic auth")]
    PrometheusAuth,
}

// ---------------------------------------------------------------------------------------------
// File schema. Every struct denies unknown fields, like yaml.v3 KnownFields(true).
// ---------------------------------------------------------------------------------------------

/// `rtc.udp_port`: `7882` or `"7882-7892"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UdpPortSpec {
    Num(u32),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub port: Option<u32>,
    pub bind_addresses: Vec<String>,
    pub rtc: RtcFile,
    pub redis: RedisConfig,
    pub keys: BTreeMap<String, String>,
    pub key_file: String,
    pub node_selector: NodeSelectorConfig,
    pub region: String,
    pub logging: LoggingConfig,
    pub log_level: String,
    pub prometheus: PrometheusConfig,
    pub prometheus_port: u32,
    pub room: RoomFile,
    pub limit: LimitConfig,
    pub turn: Yaml,
    pub webhook: WebhookConfig,
    pub debug_handler: DebugHandlerConfig,
    pub development: bool,
    // Real keys the stand-in accepts without interpreting them.
    pub audio: Yaml,
    pub video: Yaml,
    pub signal_relay: Yaml,
    pub psrpc: Yaml,
    pub node_stats: Yaml,
    pub ingress: Yaml,
    pub egress: Yaml,
    pub sip: Yaml,
    pub agents: Yaml,
    pub keepalive: Yaml,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtcFile {
    pub tcp_port: Option<u32>,
    pub port_range_start: u32,
    pub port_range_end: u32,
    pub udp_port: Option<UdpPortSpec>,
    pub use_external_ip: bool,
    pub node_ip: String,
    pub use_ice_lite: bool,
    pub stun_servers: Vec<String>,
    pub turn_servers: Yaml,
    pub interfaces: IncludeExclude,
    pub ips: IncludeExclude,
    pub enable_loopback_candidate: bool,
    pub use_mdns: bool,
    pub batch_io: Yaml,
    pub congestion_control: Yaml,
    pub allow_tcp_fallback: Option<bool>,
    pub packet_buffer_size: u32,
    pub packet_buffer_size_video: u32,
    pub packet_buffer_size_audio: u32,
    pub strict_acks: bool,
    pub pli_throttle: Yaml,
    pub reconnect_on_publication_error: Option<bool>,
    pub reconnect_on_subscription_error: Option<bool>,
    pub reconnect_on_data_channel_error: Option<bool>,
    pub data_channel_max_buffered_amount: u64,
    pub forward_stats: Yaml,
    pub min_ice_candidate_port: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncludeExclude {
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub address: String,
    pub username: String,
    pub password: String,
    pub db: i64,
    pub use_tls: bool,
    pub tls: RedisTls,
    pub sentinel_master_name: String,
    pub sentinel_username: String,
    pub sentinel_password: String,
    pub sentinel_addresses: Vec<String>,
    pub cluster_addresses: Vec<String>,
    pub dial_timeout: u64,
    pub read_timeout: u64,
    pub write_timeout: u64,
    pub max_redirects: Option<i64>,
    pub pool_timeout: u64,
    pub idle_timeout: u64,
    pub pool_size: i64,
    pub max_retries: i64,
    pub min_idle_conns: i64,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTls {
    pub enabled: bool,
    pub insecure: bool,
    pub server_name: String,
    pub ca_cert_file: String,
    pub client_cert_file: String,
    pub client_key_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSelectorConfig {
    pub kind: String,
    pub sort_by: String,
    pub algorithm: String,
    pub sysload_limit: f32,
    pub cpu_load_limit: f32,
    pub regions: Vec<RegionConfig>,
}

impl Default for NodeSelectorConfig {
    fn default() -> Self {
        Self {
            kind: "any".into(),
            sort_by: "random".into(),
            algorithm: "lowest".into(),
            sysload_limit: 0.9,
            cpu_load_limit: 0.9,
            regions: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegionConfig {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub json: bool,
    pub level: String,
    pub sample: bool,
    pub component_levels: BTreeMap<String, String>,
    pub sample_initial: i64,
    pub sample_interval: i64,
    pub item_sample_seconds: i64,
    pub item_sample_initial: i64,
    pub item_sample_interval: i64,
    pub pion_level: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    pub port: u32,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomFile {
    pub auto_create: Option<bool>,
    pub empty_timeout: Option<u32>,
    pub departure_timeout: Option<u32>,
    pub max_participants: u32,
    pub enabled_codecs: Yaml,
    pub playout_delay: Yaml,
    pub sync_streams: bool,
    pub enable_remote_unmute: bool,
    pub max_metadata_size: u32,
    pub max_room_name_length: u32,
    pub max_participant_identity_length: u32,
    pub max_attributes_size: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    pub num_tracks: i32,
    pub bytes_per_sec: f32,
    pub subscription_limit_video: i32,
    pub subscription_limit_audio: i32,
    pub max_metadata_size: u32,
    pub max_attributes_size: u32,
    pub max_room_name_length: u32,
    pub max_participant_identity_length: u32,
    pub max_participant_name_length: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub api_key: String,
    pub urls: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugHandlerConfig {
    pub port: u32,
}

// ---------------------------------------------------------------------------------------------
// Effective config after overrides and validation.
// ---------------------------------------------------------------------------------------------

/// The UDP side of RTC: a lazily used ICE range, or a bound UDP mux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Udp {
    IceRange(u32, u32),
    Mux(u32, u32),
}

/// What the stand-in runs with.
#[derive(Debug, Clone)]
pub struct Effective {
    pub port: u32,
    pub bind_addresses: Vec<String>,
    pub tcp_port: u32,
    pub udp: Udp,
    pub node_ip: String,
    pub use_external_ip: bool,
    pub redis: RedisConfig,
    pub keys: BTreeMap<String, String>,
    pub region: String,
    pub log_json: bool,
    pub log_level: String,
    pub prometheus_port: u32,
    pub prometheus_auth: Option<(String, String)>,
    pub room_auto_create: bool,
    pub room_empty_timeout: u32,
    pub room_departure_timeout: u32,
    pub room_max_participants: u32,
    pub development: bool,
    /// Startup log lines produced during validation, emitted by main in order.
    pub warnings: Vec<(crate::log::Level, String)>,
}

impl Effective {
    /// Redis is configured when any address list is non-empty (CONTRACT §2.2).
    pub fn redis_configured(&self) -> bool {
        !self.redis.address.is_empty()
            || !self.redis.sentinel_addresses.is_empty()
            || !self.redis.cluster_addresses.is_empty()
    }
}

/// Command-line values (None = flag not given).
#[derive(Debug, Default, Clone)]
pub struct CliValues {
    pub config: Option<String>,
    pub config_body: Option<String>,
    pub key_file: Option<String>,
    pub keys: Option<String>,
    pub region: Option<String>,
    pub node_ip: Option<String>,
    pub udp_port: Option<String>,
    pub redis_host: Option<String>,
    pub redis_password: Option<String>,
    pub bind: Vec<String>,
    pub dev: bool,
    pub disable_strict_config: bool,
    pub port: Option<String>,
    pub rtc_tcp_port: Option<String>,
}

/// Environment lookup, injectable for tests. Returns `Some("")` for a set-but-empty variable.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment (`os.LookupEnv` semantics).
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }
}

/// Reads a flag, or else the env var (an empty variable counts as set).
fn pick(flag: &Option<String>, env: &dyn Env, var: &str) -> Option<String> {
    flag.clone().or_else(|| env.get(var))
}

fn parse_u32(what: &str, value: &str) -> Result<u32, ConfigError> {
    if value.is_empty() {
        return Ok(0);
    }
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| ConfigError::BadValue {
            what: what.to_string(),
            value: value.to_string(),
        })
}

fn parse_bool(what: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "" | "0" | "false" | "FALSE" | "False" | "f" | "F" => Ok(false),
        "1" | "true" | "TRUE" | "True" | "t" | "T" => Ok(true),
        _ => Err(ConfigError::BadValue {
            what: what.to_string(),
            value: value.to_string(),
        }),
    }
}

/// Go type name of the struct at a serde path such as `rtc` or `node_selector.regions[0]`.
fn go_type_for(path: &str) -> &'static str {
    let cleaned: String = path
        .split('.')
        .map(|seg| seg.split('[').next().unwrap_or(seg))
        .collect::<Vec<_>>()
        .join(".");
    match cleaned.as_str() {
        "" => "config.Config",
        "rtc" => "config.RTCConfig",
        "rtc.interfaces" => "rtcconfig.InterfacesConfig",
        "rtc.ips" => "rtcconfig.IPsConfig",
        "redis" => "redis.RedisConfig",
        "redis.tls" => "xtls.TLSConfig",
        "node_selector" => "config.NodeSelectorConfig",
        "node_selector.regions" => "config.RegionConfig",
        "logging" => "config.LoggingConfig",
        "prometheus" => "config.PrometheusConfig",
        "room" => "config.RoomConfig",
        "limit" => "config.LimitConfig",
        "webhook" => "webhook.WebHookConfig",
        "debug_handler" => "config.DebugHandlerConfig",
        _ => "config.Config",
    }
}

/// Turns a serde_yaml error into the yaml.v3 "unmarshal errors" text.
fn convert_yaml_error(err: &serde_yaml::Error) -> ConfigError {
    let line = err.location().map(|l| l.line()).unwrap_or(1);
    let mut text = err.to_string();
    if let Some(idx) = text.rfind(" at line ") {
        text.truncate(idx);
    }
    // serde_yaml prefixes the path: "rtc: unknown field `x`, expected ...".
    let (path, rest) = match text.find(": ") {
        Some(idx) if !text.starts_with("unknown field") && !text[..idx].contains(' ') => {
            (text[..idx].to_string(), text[idx + 2..].to_string())
        }
        _ => (String::new(), text.clone()),
    };
    if let Some(after) = rest.strip_prefix("unknown field `") {
        let field = after.split('`').next().unwrap_or(after);
        return ConfigError::Parse {
            line,
            msg: format!("field {field} not found in type {}", go_type_for(&path)),
        };
    }
    ConfigError::Parse {
        line,
        msg: if path.is_empty() {
            rest
        } else {
            format!("{path}: {rest}")
        },
    }
}

/// Decodes config text strictly (or leniently with `--disable-strict-config`).
pub fn parse_text(text: &str, strict: bool) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    match serde_yaml::from_str::<FileConfig>(text) {
        Ok(c) => Ok(c),
        Err(e) => {
            let converted = convert_yaml_error(&e);
            if strict {
                return Err(converted);
            }
            // Lenient mode (--disable-strict-config): unknown top-level keys are dropped; the
            // stand-in does not prune nested unknown keys.
            let mut value: Yaml =
                serde_yaml::from_str(text).map_err(|e2| ConfigError::ParseOther(e2.to_string()))?;
            if let Yaml::Mapping(map) = &mut value {
                let known = [
                    "port",
                    "bind_addresses",
                    "rtc",
                    "redis",
                    "keys",
                    "key_file",
                    "node_selector",
                    "region",
                    "logging",
                    "log_level",
                    "prometheus",
                    "prometheus_port",
                    "room",
                    "limit",
                    "turn",
                    "webhook",
                    "debug_handler",
                    "development",
                ];
                map.retain(|k, _| k.as_str().is_some_and(|k| known.contains(&k)));
            }
            serde_yaml::from_value::<FileConfig>(value).map_err(|_| converted)
        }
    }
}

/// Parses `--keys` / `LIVEKIT_KEYS`: one `key: secret` per line.
pub fn parse_keys_text(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut keys = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once(": ").ok_or(ConfigError::KeysFormat)?;
        keys.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(keys)
}

/// Reads a key file: "other" permission bits are fatal, content is a YAML `key: secret` map.
pub fn read_key_file(path: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| ConfigError::KeyFileStat {
        path: path.to_string(),
        reason: io_reason(&e),
    })?;
    if meta.permissions().mode() & 0o007 != 0 {
        return Err(ConfigError::KeyFilePerms);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Open {
        path: path.to_string(),
        reason: io_reason(&e),
    })?;
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_yaml::from_str::<BTreeMap<String, String>>(&text)
        .map_err(|e| ConfigError::ParseOther(format!("key file: {e}")))
}

/// Go-style lower-case errno text: "no such file or directory".
pub fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let desc = nix::errno::Errno::from_raw(code).desc();
            let mut chars = desc.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().collect::<String>() + chars.as_str(),
                None => desc.to_string(),
            }
        }
        None => e.to_string(),
    }
}

fn parse_udp_spec(text: &str) -> Result<(u32, u32), ConfigError> {
    let bad = || ConfigError::Rtc(format!("invalid udp_port {text:?}"));
    match text.split_once('-') {
        Some((a, b)) => {
            let a = a.trim().parse::<u32>().map_err(|_| bad())?;
            let b = b.trim().parse::<u32>().map_err(|_| bad())?;
            if b < a {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let a = text.trim().parse::<u32>().map_err(|_| bad())?;
            Ok((a, 0))
        }
    }
}

/// First non-loopback local IPv4 from /proc/net/fib_trie, else loopback (no network traffic).
fn detect_node_ip() -> String {
    let text = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let mut last_ip: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("|-- ") {
            last_ip = Some(rest.trim().to_string());
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(ip) = &last_ip {
                if !ip.starts_with("127.") {
                    return ip.clone();
                }
            }
        }
    }
    "127.0.0.1".to_string()
}

/// Builds the effective config from CLI values and the environment (CONTRACT §1.1 order).
pub fn load(cli: &CliValues, env: &dyn Env) -> Result<Effective, ConfigError> {
    // Text source: --config-body / LIVEKIT_CONFIG when non-empty, else the --config file.
    let body = pick(&cli.config_body, env, "LIVEKIT_CONFIG").filter(|b| !b.is_empty());
    let text = match body {
        Some(b) => b,
        None => match &cli.config {
            Some(path) => std::fs::read_to_string(path).map_err(|e| ConfigError::Open {
                path: path.clone(),
                reason: io_reason(&e),
            })?,
            None => String::new(),
        },
    };
    let file = parse_text(&text, !cli.disable_strict_config)?;
    let mut warnings = Vec::new();

    let mut development = file.development || cli.dev;
    if let Some(v) = env.get("LIVEKIT_DEVELOPMENT") {
        if !cli.dev {
            development = parse_bool("env LIVEKIT_DEVELOPMENT", &v)?;
        }
    }

    let mut port = file.port.unwrap_or(7880);
    if let Some(v) = pick(&cli.port, env, "LIVEKIT_PORT") {
        port = parse_u32("flag -port", &v)?;
    }
    let mut tcp_port = file.rtc.tcp_port.unwrap_or(7881);
    if let Some(v) = pick(&cli.rtc_tcp_port, env, "LIVEKIT_RTC_TCP_PORT") {
        tcp_port = parse_u32("flag -rtc.tcp_port", &v)?;
    }
    let mut range_start = file.rtc.port_range_start;
    if let Some(v) = env.get("LIVEKIT_RTC_PORT_RANGE_START") {
        range_start = parse_u32("flag -rtc.port_range_start", &v)?;
    }
    let mut range_end = file.rtc.port_range_end;
    if let Some(v) = env.get("LIVEKIT_RTC_PORT_RANGE_END") {
        range_end = parse_u32("flag -rtc.port_range_end", &v)?;
    }
    let mut udp_spec: Option<(u32, u32)> = match &file.rtc.udp_port {
        None => None,
        Some(UdpPortSpec::Num(n)) => Some((*n, 0)),
        Some(UdpPortSpec::Text(t)) => Some(parse_udp_spec(t)?),
    };
    if let Some(v) = pick(&cli.udp_port, env, "UDP_PORT") {
        udp_spec = if v.is_empty() {
            None
        } else {
            Some(parse_udp_spec(&v)?)
        };
    }
    let mut use_external_ip = file.rtc.use_external_ip;
    if let Some(v) = env.get("LIVEKIT_RTC_USE_EXTERNAL_IP") {
        use_external_ip = parse_bool("flag -rtc.use_external_ip", &v)?;
    }
    let mut node_ip = file.rtc.node_ip.clone();
    if let Some(v) = pick(&cli.node_ip, env, "NODE_IP") {
        node_ip = v;
    }

    let mut redis = file.redis.clone();
    if let Some(v) = env.get("LIVEKIT_REDIS_ADDRESS") {
        redis.address = v;
    }
    if let Some(v) = pick(&cli.redis_host, env, "REDIS_HOST") {
        redis.address = v;
    }
    if let Some(v) = env.get("LIVEKIT_REDIS_USERNAME") {
        redis.username = v;
    }
    if let Some(v) = env.get("LIVEKIT_REDIS_PASSWORD") {
        redis.password = v;
    }
    if let Some(v) = pick(&cli.redis_password, env, "REDIS_PASSWORD") {
        redis.password = v;
    }

    let mut region = file.region.clone();
    if let Some(v) = pick(&cli.region, env, "LIVEKIT_REGION") {
        region = v;
    }
    let mut prometheus_port = file.prometheus.port;
    if file.prometheus_port != 0 && prometheus_port == 0 {
        warnings.push((
            crate::log::Level::Warn,
            "prometheus_port is deprecated, please switch prometheus_port to prometheus.port"
                .to_string(),
        ));
        prometheus_port = file.prometheus_port;
    }
    if let Some(v) = env.get("LIVEKIT_PROMETHEUS_PORT") {
        prometheus_port = parse_u32("flag -prometheus.port", &v)?;
    }
    let mut log_level = if file.logging.level.is_empty() {
        file.log_level.clone()
    } else {
        file.logging.level.clone()
    };
    if let Some(v) = env.get("LIVEKIT_LOGGING_LEVEL") {
        log_level = v;
    }
    let mut log_json = file.logging.json;
    if let Some(v) = env.get("LIVEKIT_LOGGING_JSON") {
        log_json = parse_bool("flag -logging.json", &v)?;
    }
    let mut key_file = file.key_file.clone();
    if let Some(v) = pick(&cli.key_file, env, "LIVEKIT_KEY_FILE") {
        key_file = v;
    }
    let mut keys = file.keys.clone();
    if let Some(v) = pick(&cli.keys, env, "LIVEKIT_KEYS") {
        keys = parse_keys_text(&v)?;
    }
    let mut bind_addresses = file.bind_addresses.clone();
    if !cli.bind.is_empty() {
        bind_addresses = cli.bind.clone();
    }
    let mut selector = file.node_selector.clone();
    if let Some(v) = env.get("LIVEKIT_NODE_SELECTOR_KIND") {
        selector.kind = v;
    }
    let mut auto_create = file.room.auto_create.unwrap_or(true);
    if let Some(v) = env.get("LIVEKIT_ROOM_AUTO_CREATE") {
        auto_create = parse_bool("flag -room.auto_create", &v)?;
    }
    let mut empty_timeout = file.room.empty_timeout.unwrap_or(300);
    if let Some(v) = env.get("LIVEKIT_ROOM_EMPTY_TIMEOUT") {
        empty_timeout = parse_u32("flag -room.empty_timeout", &v)?;
    }

    // RTC validation: port defaults. A range wins over udp_port when both are set.
    let udp = if range_start != 0 {
        Udp::IceRange(
            range_start,
            if range_end == 0 {
                range_start
            } else {
                range_end
            },
        )
    } else if let Some((a, b)) = udp_spec {
        Udp::Mux(a, b)
    } else if development {
        Udp::Mux(7882, 0)
    } else {
        Udp::IceRange(50000, 60000)
    };
    if let Udp::IceRange(a, b) = udp {
        if b < a {
            return Err(ConfigError::Rtc(
                "port_range_end must be greater than port_range_start".into(),
            ));
        }
    }
    if use_external_ip {
        warnings.push((
            crate::log::Level::Warn,
            "livekit-standin does not do STUN: use_external_ip keeps the local node IP".into(),
        ));
    }
    if node_ip.is_empty() {
        node_ip = detect_node_ip();
    } else if node_ip
        .split(',')
        .any(|ip| ip.trim().parse::<std::net::IpAddr>().is_err())
    {
        return Err(ConfigError::Rtc(format!("invalid node_ip {node_ip:?}")));
    }
    if let Some(first) = node_ip.split(',').next() {
        node_ip = first.trim().to_string();
    }

    // Node selector (CONTRACT §2.3).
    match selector.kind.as_str() {
        "" | "any" | "random" | "cpuload" | "sysload" => {}
        "regionaware" => {
            if region.is_empty() {
                return Err(ConfigError::BlankRegion);
            }
        }
        _ => return Err(ConfigError::NodeSelector),
    }
    let sort_ok = [
        "",
        "random",
        "sysload",
        "cpuload",
        "rooms",
        "clients",
        "tracks",
        "bytespersec",
    ];
    if !sort_ok.contains(&selector.sort_by.as_str()) {
        return Err(ConfigError::NodeSelector);
    }
    if !["", "lowest", "twochoice"].contains(&selector.algorithm.as_str()) {
        return Err(ConfigError::NodeSelector);
    }

    let prometheus_auth = match (
        file.prometheus.username.is_empty(),
        file.prometheus.password.is_empty(),
    ) {
        (true, true) => None,
        (false, false) => Some((
            file.prometheus.username.clone(),
            file.prometheus.password.clone(),
        )),
        _ => return Err(ConfigError::PrometheusAuth),
    };

    // Keys: key_file replaces keys, then ValidateKeys.
    if !key_file.is_empty() {
        let expanded = expand_path(&key_file, env);
        keys = read_key_file(&expanded)?;
    }
    if keys.is_empty() {
        if development {
            warnings.push((
                crate::log::Level::Info,
                "no keys provided, using placeholder keys".into(),
            ));
            keys.insert("devkey".into(), "secret".into());
            if bind_addresses.is_empty() {
                bind_addresses = vec!["127.0.0.1".into(), "::1".into()];
            }
        } else {
            return Err(ConfigError::NoKeys);
        }
    } else if !development {
        for secret in keys.values() {
            if secret.len() < 32 {
                warnings.push((
                    crate::log::Level::Error,
                    "secret is too short, should be at least 32 characters for security".into(),
                ));
            }
        }
    }

    let log_level = if log_level.is_empty() {
        if development {
            "debug".into()
        } else {
            "info".into()
        }
    } else {
        log_level
    };

    Ok(Effective {
        port,
        bind_addresses,
        tcp_port,
        udp,
        node_ip,
        use_external_ip,
        redis,
        keys,
        region,
        log_json,
        log_level,
        prometheus_port,
        prometheus_auth,
        room_auto_create: auto_create,
        room_empty_timeout: empty_timeout,
        room_departure_timeout: file.room.departure_timeout.unwrap_or(20),
        room_max_participants: file.room.max_participants,
        development,
        warnings,
    })
}

/// `~` and `$VAR` expansion for `key_file`.
fn expand_path(path: &str, env: &dyn Env) -> String {
    let mut out = path.to_string();
    if let Some(rest) = out.strip_prefix("~/") {
        if let Some(home) = env.get("HOME") {
            out = format!("{home}/{rest}");
        }
    }
    if out.contains('$') {
        let mut result = String::new();
        let mut chars = out.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                result.push(c);
                continue;
            }
            let braced = chars.peek() == Some(&'{');
            if braced {
                chars.next();
            }
            let mut name = String::new();
            while let Some(&n) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    name.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            if braced && chars.peek() == Some(&'}') {
                chars.next();
            }
            result.push_str(&env.get(&name).unwrap_or_default());
        }
        out = result;
    }
    out
}
