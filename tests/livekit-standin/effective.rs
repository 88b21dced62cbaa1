//! The effective config of the livekit-server stand-in (TEST DOUBLE): the decoded file, then
//! env and flag overrides (flag > env > file > defaults, with the real server's quirks), then
//! RTC defaults, node IP, node selector and key checks (CONTRACT.md §1, §2, §16).

use std::collections::BTreeMap;

use crate::config::{
    io_reason, parse_keys_text, parse_text, read_key_file, ConfigError, FileConfig, RedisConfig,
    UdpPortSpec,
};
use crate::log::Level;

/// `rtc.node_ip`: at most one IPv4 and one IPv6 (mediatransportutil `NodeIP`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeIp {
    pub v4: String,
    pub v6: String,
}

impl NodeIp {
    /// `UnmarshalString`: each part fills its family; a second address of a family already
    /// set is an error and leaves the rest unparsed (the real server drops that error, so a
    /// `--node-ip`/`NODE_IP` IPv4 never replaces a file IPv4).
    fn unmarshal(&mut self, text: &str) -> Result<(), String> {
        if text.is_empty() {
            return Ok(());
        }
        for part in text.split(',') {
            let ip: std::net::IpAddr = part
                .trim()
                .parse()
                .map_err(|_| format!("invalid ip {part}"))?;
            let slot = if ip.is_ipv4() {
                &mut self.v4
            } else {
                &mut self.v6
            };
            if !slot.is_empty() {
                return Err(format!("multiple addresses of one family: {slot} and {ip}"));
            }
            *slot = ip.to_string();
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// What the ready line and the node record show: IPv4 if set, else IPv6.
    pub fn primary(&self) -> String {
        if self.v4.is_empty() {
            self.v6.clone()
        } else {
            self.v4.clone()
        }
    }
}

/// What the stand-in runs with.
#[derive(Debug, Clone, Default)]
pub struct Effective {
    pub port: u32,
    pub bind_addresses: Vec<String>,
    pub tcp_port: u32,
    /// `rtc.udp_port` as `(start, end)`; `end` 0 = one port. Valid when `start` > 0.
    pub udp_port: (u32, u32),
    /// `rtc.port_range_start/end` (0 = unset).
    pub ice_range: (u32, u32),
    pub node_ip: NodeIp,
    pub use_external_ip: bool,
    pub redis: RedisConfig,
    pub keys: BTreeMap<String, String>,
    pub key_file: String,
    pub region: String,
    pub selector_kind: String,
    pub log_json: bool,
    pub log_level: String,
    pub prometheus_port: u32,
    /// Basic auth, only when both username and password are set (1.13.5: one alone is ignored).
    pub prometheus_auth: Option<(String, String)>,
    pub room_auto_create: bool,
    pub room_empty_timeout: u32,
    pub room_departure_timeout: u32,
    pub room_max_participants: u32,
    pub development: bool,
    /// Startup log lines produced during validation, emitted by main in order.
    pub warnings: Vec<(Level, String)>,
}

impl Effective {
    /// Redis is configured when any address list is non-empty (CONTRACT §2.2).
    pub fn redis_configured(&self) -> bool {
        !self.redis.address.is_empty()
            || !self.redis.sentinel_addresses.is_empty()
            || !self.redis.cluster_addresses.is_empty()
    }

    /// The UDP mux ports, if the mux is used: a complete ICE range wins over `udp_port`.
    pub fn udp_mux(&self) -> Option<(u32, u32)> {
        let range_set = self.ice_range.0 != 0 && self.ice_range.1 != 0;
        (!range_set && self.udp_port.0 != 0).then_some(self.udp_port)
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

fn bad(what: &str, value: &str) -> ConfigError {
    ConfigError::BadValue {
        what: what.to_string(),
        value: value.to_string(),
    }
}

fn parse_u32(what: &str, value: &str) -> Result<u32, ConfigError> {
    if value.is_empty() {
        return Ok(0);
    }
    value.trim().parse::<u32>().map_err(|_| bad(what, value))
}

fn parse_bool(what: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "" | "0" | "false" | "FALSE" | "False" | "f" | "F" => Ok(false),
        "1" | "true" | "TRUE" | "True" | "t" | "T" => Ok(true),
        _ => Err(bad(what, value)),
    }
}

/// `"7882"` or `"7882-7892"` → `(start, end)`, end 0 for one port.
fn parse_udp_spec(text: &str) -> Result<(u32, u32), ConfigError> {
    let bad = || ConfigError::Rtc(format!("invalid udp_port {text:?}"));
    let num = |s: &str| s.trim().parse::<u32>().map_err(|_| bad());
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if b < a {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => Ok((num(text)?, 0)),
    }
}

/// First non-loopback local IP, IPv4 preferred, else loopback (no network traffic).
fn detect_node_ip() -> NodeIp {
    let addrs = if_addrs::get_if_addrs().unwrap_or_default();
    let pick = |v4: bool| {
        addrs
            .iter()
            .map(|i| i.ip())
            .find(|ip| !ip.is_loopback() && ip.is_ipv4() == v4 && !crate::listen::link_local(ip))
    };
    match pick(true).or_else(|| pick(false)) {
        Some(std::net::IpAddr::V6(ip)) => NodeIp {
            v6: ip.to_string(),
            ..NodeIp::default()
        },
        Some(ip) => NodeIp {
            v4: ip.to_string(),
            ..NodeIp::default()
        },
        None => NodeIp {
            v4: "127.0.0.1".into(),
            ..NodeIp::default()
        },
    }
}

/// The config text: `--config-body` / `LIVEKIT_CONFIG` when non-empty, else the `--config` file.
fn config_text(cli: &CliValues, env: &dyn Env) -> Result<String, ConfigError> {
    if let Some(body) = pick(&cli.config_body, env, "LIVEKIT_CONFIG").filter(|b| !b.is_empty()) {
        return Ok(body);
    }
    match &cli.config {
        Some(path) => std::fs::read_to_string(path).map_err(|e| ConfigError::Open {
            path: path.clone(),
            reason: io_reason(&e),
        }),
        None => Ok(String::new()),
    }
}

/// Builds the effective config from CLI values and the environment (CONTRACT §1.1 order).
pub fn load(cli: &CliValues, env: &dyn Env) -> Result<Effective, ConfigError> {
    let file = parse_text(&config_text(cli, env)?, !cli.disable_strict_config)?;
    let mut eff = from_file(&file)?;
    apply_ports(&mut eff, cli, env)?;
    apply_redis(&mut eff, cli, env);
    apply_misc(&mut eff, cli, env)?;
    finish_rtc(&mut eff)?;
    check_selector(&eff)?;
    load_keys(&mut eff, env)?;
    if eff.log_level.is_empty() {
        eff.log_level = if eff.development { "debug" } else { "info" }.into();
    }
    Ok(eff)
}

/// The file's values over the defaults.
fn from_file(file: &FileConfig) -> Result<Effective, ConfigError> {
    let udp_port = match &file.rtc.udp_port {
        Some(UdpPortSpec::Num(n)) => (*n, 0),
        Some(UdpPortSpec::Text(t)) => parse_udp_spec(t)?,
        Some(UdpPortSpec::Ignored(_)) | None => (0, 0),
    };
    let mut node_ip = NodeIp::default();
    node_ip
        .unmarshal(&file.rtc.node_ip)
        .map_err(|e| ConfigError::Rtc(format!("invalid node_ip: {e}")))?;
    let (user, pass) = (&file.prometheus.username, &file.prometheus.password);
    let mut warnings = Vec::new();
    let mut prometheus_port = file.prometheus.port;
    if file.prometheus_port != 0 && prometheus_port == 0 {
        warnings.push((
            Level::Warn,
            "prometheus_port is deprecated, please switch prometheus_port to prometheus.port"
                .to_string(),
        ));
        prometheus_port = file.prometheus_port;
    }
    let log_level = if file.logging.level.is_empty() {
        &file.log_level
    } else {
        &file.logging.level
    };
    Ok(Effective {
        port: file.port.unwrap_or(7880),
        bind_addresses: file.bind_addresses.clone(),
        tcp_port: file.rtc.tcp_port.unwrap_or(7881),
        udp_port,
        ice_range: (file.rtc.port_range_start, file.rtc.port_range_end),
        node_ip,
        use_external_ip: file.rtc.use_external_ip,
        redis: file.redis.clone(),
        keys: file.keys.clone(),
        key_file: file.key_file.clone(),
        region: file.region.clone(),
        selector_kind: file.node_selector.kind.clone(),
        log_json: file.logging.json,
        log_level: log_level.clone(),
        prometheus_port,
        prometheus_auth: (!user.is_empty() && !pass.is_empty())
            .then(|| (user.clone(), pass.clone())),
        room_auto_create: file.room.auto_create.unwrap_or(true),
        room_empty_timeout: file.room.empty_timeout.unwrap_or(300),
        room_departure_timeout: file.room.departure_timeout.unwrap_or(20),
        room_max_participants: file.room.max_participants,
        development: file.development,
        warnings,
    })
}

/// Ports and RTC addressing from flags and env.
fn apply_ports(eff: &mut Effective, cli: &CliValues, env: &dyn Env) -> Result<(), ConfigError> {
    if let Some(v) = pick(&cli.port, env, "LIVEKIT_PORT") {
        eff.port = parse_u32("flag -port", &v)?;
    }
    if let Some(v) = pick(&cli.rtc_tcp_port, env, "LIVEKIT_RTC_TCP_PORT") {
        eff.tcp_port = parse_u32("flag -rtc.tcp_port", &v)?;
    }
    if let Some(v) = env.get("LIVEKIT_RTC_PORT_RANGE_START") {
        eff.ice_range.0 = parse_u32("flag -rtc.port_range_start", &v)?;
    }
    if let Some(v) = env.get("LIVEKIT_RTC_PORT_RANGE_END") {
        eff.ice_range.1 = parse_u32("flag -rtc.port_range_end", &v)?;
    }
    if let Some(v) = pick(&cli.udp_port, env, "UDP_PORT") {
        if !v.is_empty() {
            eff.udp_port = parse_udp_spec(&v)?;
        }
    }
    if let Some(v) = env.get("LIVEKIT_RTC_USE_EXTERNAL_IP") {
        eff.use_external_ip = parse_bool("flag -rtc.use_external_ip", &v)?;
    }
    if let Some(v) = pick(&cli.node_ip, env, "NODE_IP") {
        // The real server ignores the error (a second address of a family): keep the file's.
        let mut merged = eff.node_ip.clone();
        if merged.unmarshal(&v).is_ok() {
            eff.node_ip = merged;
        }
    }
    Ok(())
}

fn apply_redis(eff: &mut Effective, cli: &CliValues, env: &dyn Env) {
    let r = &mut eff.redis;
    if let Some(v) = env.get("LIVEKIT_REDIS_ADDRESS") {
        r.address = v;
    }
    if let Some(v) = pick(&cli.redis_host, env, "REDIS_HOST") {
        r.address = v;
    }
    if let Some(v) = env.get("LIVEKIT_REDIS_USERNAME") {
        r.username = v;
    }
    if let Some(v) = env.get("LIVEKIT_REDIS_PASSWORD") {
        r.password = v;
    }
    if let Some(v) = pick(&cli.redis_password, env, "REDIS_PASSWORD") {
        r.password = v;
    }
}

/// Everything else that flags and env can set.
fn apply_misc(eff: &mut Effective, cli: &CliValues, env: &dyn Env) -> Result<(), ConfigError> {
    eff.development |= cli.dev;
    if let (Some(v), false) = (env.get("LIVEKIT_DEVELOPMENT"), cli.dev) {
        eff.development = parse_bool("env LIVEKIT_DEVELOPMENT", &v)?;
    }
    if let Some(v) = pick(&cli.region, env, "LIVEKIT_REGION") {
        eff.region = v;
    }
    if let Some(v) = env.get("LIVEKIT_PROMETHEUS_PORT") {
        eff.prometheus_port = parse_u32("flag -prometheus.port", &v)?;
    }
    if let Some(v) = env.get("LIVEKIT_LOGGING_LEVEL") {
        eff.log_level = v;
    }
    if let Some(v) = env.get("LIVEKIT_LOGGING_JSON") {
        eff.log_json = parse_bool("flag -logging.json", &v)?;
    }
    if let Some(v) = pick(&cli.key_file, env, "LIVEKIT_KEY_FILE") {
        eff.key_file = v;
    }
    if let Some(v) = pick(&cli.keys, env, "LIVEKIT_KEYS") {
        eff.keys = parse_keys_text(&v)?;
    }
    if !cli.bind.is_empty() {
        eff.bind_addresses = cli.bind.clone();
    }
    if let Some(v) = env.get("LIVEKIT_NODE_SELECTOR_KIND") {
        eff.selector_kind = v;
    }
    if let Some(v) = env.get("LIVEKIT_ROOM_AUTO_CREATE") {
        eff.room_auto_create = parse_bool("flag -room.auto_create", &v)?;
    }
    if let Some(v) = env.get("LIVEKIT_ROOM_EMPTY_TIMEOUT") {
        eff.room_empty_timeout = parse_u32("flag -room.empty_timeout", &v)?;
    }
    Ok(())
}

/// `RTCConfig.Validate`: port defaults when neither `udp_port` nor a range start is set
/// (a start without an end stays as it is: no range, `[start, 0]` in the ready line), and the
/// node IP when none is given.
fn finish_rtc(eff: &mut Effective) -> Result<(), ConfigError> {
    if eff.udp_port.0 == 0 && eff.ice_range.0 == 0 {
        if eff.development {
            eff.udp_port = (7882, 0);
        } else {
            eff.ice_range = (50000, 60000);
        }
    }
    let (a, b) = eff.ice_range;
    if a != 0 && b != 0 && b < a {
        return Err(ConfigError::Rtc(
            "port_range_end must be greater than port_range_start".into(),
        ));
    }
    if eff.use_external_ip {
        eff.warnings.push((
            Level::Warn,
            "livekit-standin does not do STUN: use_external_ip keeps the local node IP".into(),
        ));
    }
    if eff.node_ip.is_empty() {
        eff.node_ip = detect_node_ip();
    }
    Ok(())
}

/// Only `kind` is checked at startup (`sort_by`/`algorithm` only when a room is placed,
/// CONTRACT §16 correction 8, which the stand-in never does).
fn check_selector(eff: &Effective) -> Result<(), ConfigError> {
    match eff.selector_kind.as_str() {
        "" | "any" | "random" | "cpuload" | "sysload" => Ok(()),
        "regionaware" if eff.region.is_empty() => Err(ConfigError::BlankRegion),
        "regionaware" => Ok(()),
        _ => Err(ConfigError::NodeSelector),
    }
}

/// `key_file` replaces `keys`, then `ValidateKeys` (dev mode gets placeholder keys).
fn load_keys(eff: &mut Effective, env: &dyn Env) -> Result<(), ConfigError> {
    if !eff.key_file.is_empty() {
        eff.keys = read_key_file(&expand_path(&eff.key_file, env))?;
    }
    if eff.keys.is_empty() {
        if !eff.development {
            return Err(ConfigError::NoKeys);
        }
        eff.warnings.push((
            Level::Info,
            "no keys provided, using placeholder keys".into(),
        ));
        eff.keys.insert("devkey".into(), "secret".into());
        if eff.bind_addresses.is_empty() {
            eff.bind_addresses = vec!["127.0.0.1".into(), "::1".into()];
        }
    } else if !eff.development {
        let short = eff.keys.values().filter(|s| s.len() < 32).count();
        for _ in 0..short {
            eff.warnings.push((
                Level::Error,
                "secret is too short, should be at least 32 characters for security".into(),
            ));
        }
    }
    Ok(())
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
