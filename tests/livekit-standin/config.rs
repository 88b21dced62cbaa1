//! Strict config loading for the livekit-server stand-in (TEST DOUBLE): YAML/JSON decode over
//! defaults with unknown keys rejected, then flag > env > file overrides, then validation,
//! with the real server's error texts (CONTRACT.md §1, §2, §6).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use serde::Deserialize;
use serde_yaml::Value as Yaml;

pub use crate::effective::{load, CliValues, Effective, ProcessEnv};

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
}

// ---------------------------------------------------------------------------------------------
// File schema. Every struct denies unknown fields, like yaml.v3 KnownFields(true).
// ---------------------------------------------------------------------------------------------

/// `rtc.udp_port`: `7882` or `"7882-7892"`; anything else (a mapping) is silently ignored,
/// as the real `PortRange.UnmarshalYAML` reads only a scalar's text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UdpPortSpec {
    Num(u32),
    Text(String),
    Ignored(#[allow(dead_code)] Yaml),
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
