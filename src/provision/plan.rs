//! From merged [`Values`] to what this node becomes: a validated [`Plan`], or the list of what is
//! still missing ([`Missing`]), or every invalid value ([`Invalid`]). Pure: what exists on disk
//! comes in as [`OnDisk`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::keys::{Key, Origin, Values};
use super::Invalid;

/// The role, as the daemon's `node.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Main,
    Sub,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Main => "main",
            Mode::Sub => "sub",
        }
    }
}

/// Which Redis the node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redis {
    /// Standalone: none.
    None,
    /// Main: its own airclass-redis.service, on the LAN, with a password.
    Local,
    /// A sub (or a main given `redis_url`): this URL, with the cluster's Redis password.
    Remote(String),
}

/// The secret files under /etc/airclass/secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretFile {
    LivekitApiKey,
    LivekitApiSecret,
    ClusterSecret,
    RedisPassword,
    AppToken,
    AppTokenSha256,
}

impl SecretFile {
    pub const ALL: [SecretFile; 6] = [
        SecretFile::LivekitApiKey,
        SecretFile::LivekitApiSecret,
        SecretFile::ClusterSecret,
        SecretFile::RedisPassword,
        SecretFile::AppToken,
        SecretFile::AppTokenSha256,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            SecretFile::LivekitApiKey => "livekit-api-key",
            SecretFile::LivekitApiSecret => "livekit-api-secret",
            SecretFile::ClusterSecret => "cluster-secret",
            SecretFile::RedisPassword => "redis-password",
            SecretFile::AppToken => "app-token",
            SecretFile::AppTokenSha256 => "app-token.sha256",
        }
    }

    fn of(key: Key) -> Option<SecretFile> {
        Some(match key {
            Key::LivekitApiKey => SecretFile::LivekitApiKey,
            Key::LivekitApiSecret => SecretFile::LivekitApiSecret,
            Key::ClusterSecret => SecretFile::ClusterSecret,
            Key::RedisPassword => SecretFile::RedisPassword,
            Key::AppToken => SecretFile::AppToken,
            Key::AppTokenSha256 => SecretFile::AppTokenSha256,
            _ => return None,
        })
    }
}

/// Secret files already present on this machine (from an earlier provisioning).
#[derive(Debug, Clone, Default)]
pub struct OnDisk {
    pub secrets: Vec<SecretFile>,
}

/// A static address instead of DHCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Interface name; None = every wired interface.
    pub interface: Option<String>,
    pub address: String,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
}

/// What provisioning makes of this machine.
#[derive(Debug, Clone)]
pub struct Plan {
    pub node: String,
    pub mode: Mode,
    pub cluster_id: String,
    pub main_url: Option<String>,
    pub redis: Redis,
    pub mdns: bool,
    /// Secrets to write (given now); others are kept or, on main, generated.
    pub secrets: BTreeMap<SecretFile, String>,
    pub ssh_keys: Vec<String>,
    pub console_password_hash: Option<String>,
    pub network: Option<Network>,
    /// The key's source, for the report (never the value).
    pub origins: BTreeMap<Key, Origin>,
    pub warnings: Vec<String>,
}

impl Plan {
    /// `airclass-<node>`.
    pub fn hostname(&self) -> String {
        format!("airclass-{}", self.node)
    }
    /// The systemd unit of this node.
    pub fn unit(&self) -> String {
        format!("airclass-node@{}.service", self.node)
    }
}

/// Something the node needs and nobody gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub key: Key,
    pub what: String,
}

/// Result of planning.
#[derive(Debug, Clone)]
pub enum Outcome {
    Ready(Box<Plan>),
    /// Not enough to start; operator access (SSH keys, console password) is still applied.
    Needs {
        missing: Vec<Missing>,
        access: Box<Plan>,
    },
}

fn invalid(v: &Values, key: Key, problem: impl Into<String>, fix: impl Into<String>) -> Invalid {
    Invalid {
        key: Some(key),
        origin: v
            .0
            .get(&key)
            .map(|x| x.origin.clone())
            .unwrap_or(Origin::Earlier),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Validate and resolve. `Err` lists every invalid value.
pub fn plan(v: &Values, disk: &OnDisk) -> Result<Outcome, Vec<Invalid>> {
    let mut errors = Vec::new();
    let node = v.get(Key::Node).map(str::to_string);
    if let Some(n) = &node {
        if crate::config::ports::node_index(n).is_none_or(|i| i > 15) {
            errors.push(invalid(
                v,
                Key::Node,
                format!("{n:?} is not a node name"),
                "use main or node-1 … node-15 (the name fixes the node's ports)",
            ));
        }
    }
    let mode = match v.get(Key::Mode) {
        None => None,
        Some("main") => Some(Mode::Main),
        Some("sub") => Some(Mode::Sub),
        Some("standalone") => Some(Mode::Standalone),
        Some(other) => {
            errors.push(invalid(
                v,
                Key::Mode,
                format!("{other:?} is not a mode"),
                "use main, sub or standalone",
            ));
            None
        }
    };
    let mode = mode.unwrap_or(if node.as_deref() == Some("main") {
        Mode::Main
    } else {
        Mode::Sub
    });
    let mut p = Plan {
        node: node.clone().unwrap_or_default(),
        mode,
        cluster_id: cluster_id(v, &mut errors),
        main_url: main_url(v, &mut errors),
        redis: Redis::None,
        mdns: mdns(v, &mut errors),
        secrets: secrets(v, &mut errors),
        ssh_keys: ssh_keys(v, &mut errors),
        console_password_hash: console_hash(v, &mut errors),
        network: network(v, &mut errors),
        origins: v.0.iter().map(|(k, x)| (*k, x.origin.clone())).collect(),
        warnings: Vec::new(),
    };
    p.redis = redis(v, &p, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let missing = missing(&p, disk, node.is_none());
    if p.ssh_keys.is_empty() && p.console_password_hash.is_none() {
        p.warnings.push(
            "no operator access was provisioned (access.ssh_authorized_keys or access.console_password_hash)".into(),
        );
    }
    if missing.is_empty() {
        Ok(Outcome::Ready(Box::new(p)))
    } else {
        Ok(Outcome::Needs {
            missing,
            access: Box::new(p),
        })
    }
}

fn cluster_id(v: &Values, errors: &mut Vec<Invalid>) -> String {
    let id = v.get(Key::ClusterId).unwrap_or("airclass");
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        errors.push(invalid(
            v,
            Key::ClusterId,
            format!("{id:?} is not a cluster id"),
            "use 1-63 letters, digits, '-', '_' or '.'",
        ));
    }
    id.to_string()
}

fn main_url(v: &Values, errors: &mut Vec<Invalid>) -> Option<String> {
    let s = v.get(Key::MainUrl)?;
    let ok = url::Url::parse(s).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && matches!(u.path(), "" | "/")
    });
    if ok.is_none() {
        errors.push(invalid(
            v,
            Key::MainUrl,
            format!("{s:?} is not the URL of main's control API"),
            "use http://MAIN-ADDRESS:8000 (https:// when main's API has TLS)",
        ));
    }
    Some(s.trim_end_matches('/').to_string())
}

fn mdns(v: &Values, errors: &mut Vec<Invalid>) -> bool {
    match v.get(Key::Mdns) {
        None | Some("true" | "yes" | "1") => true,
        Some("false" | "no" | "0") => false,
        Some(other) => {
            errors.push(invalid(
                v,
                Key::Mdns,
                format!("{other:?} is not true or false"),
                "use true or false",
            ));
            true
        }
    }
}

fn redis(v: &Values, p: &Plan, errors: &mut Vec<Invalid>) -> Redis {
    let given = v.get(Key::RedisUrl);
    if let Some(s) = given {
        let parsed = url::Url::parse(s)
            .ok()
            .filter(|u| matches!(u.scheme(), "redis" | "rediss") && u.host().is_some());
        match parsed {
            None => errors.push(invalid(
                v,
                Key::RedisUrl,
                format!("{s:?} is not a Redis URL"),
                "use redis://MAIN-ADDRESS:6379",
            )),
            Some(u) if u.password().is_some() => errors.push(invalid(
                v,
                Key::RedisUrl,
                "the URL contains a password; secrets are never inline",
                "remove it from the URL and give it as secrets.redis_password",
            )),
            Some(_) => {}
        }
    }
    match (p.mode, given) {
        (Mode::Standalone, _) => Redis::None,
        (_, Some(s)) => Redis::Remote(s.to_string()),
        (Mode::Main, None) => Redis::Local,
        (Mode::Sub, None) => match p.main_url.as_deref().and_then(|m| url::Url::parse(m).ok()) {
            Some(u) => match u.host() {
                Some(url::Host::Ipv6(a)) => Redis::Remote(format!("redis://[{a}]:6379")),
                Some(h) => Redis::Remote(format!("redis://{h}:6379")),
                None => Redis::None,
            },
            None => Redis::None,
        },
    }
}

fn check_secret(v: &Values, key: Key, min: usize, errors: &mut Vec<Invalid>) {
    let Some(s) = v.get(key) else { return };
    let n = s.chars().count();
    if s.contains(char::is_whitespace) {
        errors.push(invalid(
            v,
            key,
            "contains whitespace",
            "use a secret without spaces or line breaks",
        ));
    } else if n < min {
        errors.push(invalid(
            v,
            key,
            format!("has {n} characters; at least {min} are required"),
            "use a longer random secret, e.g. `head -c 32 /dev/urandom | base64`",
        ));
    }
}

fn secrets(v: &Values, errors: &mut Vec<Invalid>) -> BTreeMap<SecretFile, String> {
    check_secret(v, Key::LivekitApiKey, 1, errors);
    if v.get(Key::LivekitApiKey).is_some_and(|k| k.contains(':')) {
        errors.push(invalid(
            v,
            Key::LivekitApiKey,
            "contains ':' (LiveKit's key file is `key: secret`)",
            "use letters and digits",
        ));
    }
    check_secret(v, Key::LivekitApiSecret, 32, errors);
    check_secret(v, Key::ClusterSecret, 32, errors);
    check_secret(v, Key::RedisPassword, 16, errors);
    check_secret(v, Key::AppToken, 32, errors);
    let token_hash = v.get(Key::AppToken).map(crate::app_token::token_sha256_hex);
    if let Some(h) = v.get(Key::AppTokenSha256) {
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            errors.push(invalid(
                v,
                Key::AppTokenSha256,
                "is not 64 hex characters (SHA-256)",
                "use `echo -n TOKEN | airclass-node hash-token`",
            ));
        } else if token_hash
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case(h))
        {
            errors.push(invalid(
                v,
                Key::AppTokenSha256,
                "is not the SHA-256 of secrets.app_token",
                "give only one of app_token and app_token_sha256",
            ));
        }
    }
    let mut out: BTreeMap<SecretFile, String> =
        v.0.iter()
            .filter_map(|(k, x)| SecretFile::of(*k).map(|f| (f, x.text.clone())))
            .collect();
    if let Some(h) = token_hash {
        out.insert(SecretFile::AppTokenSha256, h);
    }
    out
}

fn ssh_keys(v: &Values, errors: &mut Vec<Invalid>) -> Vec<String> {
    let Some(text) = v.get(Key::SshAuthorizedKeys) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let typed = tokens.windows(2).any(|w| {
            let t = w[0];
            (t.starts_with("ssh-") || t.starts_with("ecdsa-sha2-") || t.starts_with("sk-"))
                && w[1].len() >= 4
                && w[1]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        });
        if typed {
            keys.push(line.to_string());
        } else {
            errors.push(invalid(
                v,
                Key::SshAuthorizedKeys,
                format!("entry {} is not an OpenSSH public key", i + 1),
                "give lines as in ~/.ssh/id_ed25519.pub: `ssh-ed25519 AAAA… comment`",
            ));
        }
    }
    keys
}

fn console_hash(v: &Values, errors: &mut Vec<Invalid>) -> Option<String> {
    let h = v.get(Key::ConsolePasswordHash)?;
    let parts = h.split('$').count();
    if !h.starts_with('$') || parts < 4 || h.contains(char::is_whitespace) || h.contains(':') {
        errors.push(invalid(
            v,
            Key::ConsolePasswordHash,
            "is not a crypt(3) password hash (a plain password is never accepted)",
            "give a hash: `openssl passwd -6` or `mkpasswd -m yescrypt`",
        ));
    }
    Some(h.to_string())
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return false;
    };
    match (ip.parse::<IpAddr>(), prefix.parse::<u8>()) {
        (Ok(IpAddr::V4(_)), Ok(p)) => (1..=32).contains(&p),
        (Ok(IpAddr::V6(_)), Ok(p)) => (1..=128).contains(&p),
        _ => false,
    }
}

fn network(v: &Values, errors: &mut Vec<Invalid>) -> Option<Network> {
    let address = v.get(Key::Address);
    if address.is_none() {
        for key in [Key::Gateway, Key::Dns, Key::Interface] {
            if v.get(key).is_some() {
                errors.push(invalid(
                    v,
                    key,
                    "given without network.address",
                    "give network.address too, or leave the network to DHCP",
                ));
            }
        }
        return None;
    }
    let address = address.unwrap_or_default().to_string();
    if !is_cidr(&address) {
        errors.push(invalid(
            v,
            Key::Address,
            format!("{address:?} is not ADDRESS/PREFIX"),
            "e.g. 10.0.0.11/24",
        ));
    }
    let gateway = v.get(Key::Gateway).map(str::to_string);
    if gateway
        .as_deref()
        .is_some_and(|g| g.parse::<IpAddr>().is_err())
    {
        errors.push(invalid(
            v,
            Key::Gateway,
            "is not an IP address",
            "e.g. 10.0.0.1",
        ));
    }
    let dns: Vec<String> = v
        .get(Key::Dns)
        .map(|d| d.lines().map(str::to_string).collect())
        .unwrap_or_default();
    if dns.iter().any(|d| d.parse::<IpAddr>().is_err()) {
        errors.push(invalid(
            v,
            Key::Dns,
            "an entry is not an IP address",
            "list IP addresses, e.g. [\"10.0.0.1\"]",
        ));
    }
    let interface = v.get(Key::Interface).map(str::to_string);
    let iface_ok = |i: &str| {
        !i.is_empty()
            && i.len() <= 15
            && i.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if interface.as_deref().is_some_and(|i| !iface_ok(i)) {
        errors.push(invalid(
            v,
            Key::Interface,
            "is not an interface name",
            "e.g. enp1s0 (see `ip link`)",
        ));
    }
    Some(Network {
        interface,
        address,
        gateway,
        dns,
    })
}

fn missing(p: &Plan, disk: &OnDisk, no_node: bool) -> Vec<Missing> {
    let mut out = Vec::new();
    if no_node {
        out.push(Missing {
            key: Key::Node,
            what: "which node this is: main, or node-1 … node-15 for a sub".into(),
        });
    }
    if p.mode == Mode::Sub && !no_node {
        let have = |f: SecretFile| p.secrets.contains_key(&f) || disk.secrets.contains(&f);
        for (key, file) in [
            (Key::LivekitApiKey, SecretFile::LivekitApiKey),
            (Key::LivekitApiSecret, SecretFile::LivekitApiSecret),
            (Key::ClusterSecret, SecretFile::ClusterSecret),
            (Key::RedisPassword, SecretFile::RedisPassword),
        ] {
            if !have(file) {
                out.push(Missing {
                    key,
                    what: format!(
                        "the cluster's {} (main's /etc/airclass/secrets/{})",
                        key,
                        file.file_name()
                    ),
                });
            }
        }
        if p.redis == Redis::None {
            out.push(Missing {
                key: Key::RedisUrl,
                what: "main's Redis, e.g. redis://MAIN-ADDRESS:6379 (derived from main_url when that is given)".into(),
            });
        }
    }
    let remote = matches!(p.redis, Redis::Remote(_));
    let have_pw = p.secrets.contains_key(&SecretFile::RedisPassword)
        || disk.secrets.contains(&SecretFile::RedisPassword);
    if p.mode == Mode::Main && remote && !have_pw {
        out.push(Missing {
            key: Key::RedisPassword,
            what: "the password of the Redis at redis_url".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests;
