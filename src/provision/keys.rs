//! The provisioning keys: one table naming every setting a node can be given at first boot,
//! where it lives in `provision.toml`, whether it is a secret, and whether the kernel command
//! line may carry it. Sources are reduced to [`Values`] (key → value + origin) before merging.
//! Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

/// One provisioning setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Node,
    Mode,
    ClusterId,
    MainUrl,
    RedisUrl,
    Mdns,
    LivekitApiKey,
    LivekitApiSecret,
    ClusterSecret,
    RedisPassword,
    AppToken,
    AppTokenSha256,
    SshAuthorizedKeys,
    ConsolePasswordHash,
    Interface,
    Address,
    Gateway,
    Dns,
}

/// What is known about a key.
#[derive(Debug, Clone, Copy)]
pub struct KeyInfo {
    pub key: Key,
    /// Flat name: credential `airclass.NAME`, kernel command line `airclass.NAME=`.
    pub name: &'static str,
    /// Section of `provision.toml` (`""` = top level).
    pub section: &'static str,
    /// Never logged, never accepted on the kernel command line, scrubbed from FAT.
    pub secret: bool,
}

const fn k(key: Key, name: &'static str, section: &'static str, secret: bool) -> KeyInfo {
    KeyInfo {
        key,
        name,
        section,
        secret,
    }
}

/// Every key, in declaration order (the order `provision.toml` documents them).
pub const KEYS: &[KeyInfo] = &[
    k(Key::Node, "node", "", false),
    k(Key::Mode, "mode", "", false),
    k(Key::ClusterId, "cluster_id", "", false),
    k(Key::MainUrl, "main_url", "", false),
    k(Key::RedisUrl, "redis_url", "", false),
    k(Key::Mdns, "mdns", "", false),
    k(Key::LivekitApiKey, "livekit_api_key", "secrets", true),
    k(Key::LivekitApiSecret, "livekit_api_secret", "secrets", true),
    k(Key::ClusterSecret, "cluster_secret", "secrets", true),
    k(Key::RedisPassword, "redis_password", "secrets", true),
    k(Key::AppToken, "app_token", "secrets", true),
    k(Key::AppTokenSha256, "app_token_sha256", "secrets", true),
    k(
        Key::SshAuthorizedKeys,
        "ssh_authorized_keys",
        "access",
        false,
    ),
    k(
        Key::ConsolePasswordHash,
        "console_password_hash",
        "access",
        true,
    ),
    k(Key::Interface, "interface", "network", false),
    k(Key::Address, "address", "network", false),
    k(Key::Gateway, "gateway", "network", false),
    k(Key::Dns, "dns", "network", false),
];

/// Short names accepted on the kernel command line and as credentials.
const ALIASES: &[(&str, Key)] = &[
    ("main", Key::MainUrl),
    ("redis", Key::RedisUrl),
    ("cluster", Key::ClusterId),
];

impl Key {
    pub fn info(self) -> KeyInfo {
        // KEYS lists the variants in declaration order (tested).
        KEYS[self as usize]
    }

    /// `node`, `secrets.cluster_secret`, … as written in `provision.toml`.
    pub fn toml_path(self) -> String {
        let i = self.info();
        if i.section.is_empty() {
            i.name.to_string()
        } else {
            format!("{}.{}", i.section, i.name)
        }
    }

    pub fn is_secret(self) -> bool {
        self.info().secret
    }

    /// A flat name or alias (`node`, `main`, `cluster_secret`, …).
    pub fn from_name(name: &str) -> Option<Key> {
        KEYS.iter()
            .find(|i| i.name == name)
            .map(|i| i.key)
            .or_else(|| ALIASES.iter().find(|(a, _)| *a == name).map(|(_, k)| *k))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().name)
    }
}

/// Where a value came from, highest precedence first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// A systemd credential `airclass.NAME`.
    Credential(String),
    /// The credential `airclass.provision` (a whole provision.toml).
    CredentialFile,
    /// `airclass/provision.toml` on a USB stick labelled AIRCLASS.
    UsbFile,
    /// `airclass/provision.toml` on the EFI system partition.
    EspFile,
    /// `airclass.NAME=` on the kernel command line.
    KernelCmdline,
    /// An earlier provisioning of this machine (`/etc/airclass/appliance.toml`).
    Earlier,
    /// A file named on the command line (`provision --check FILE`).
    File(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Credential(n) => write!(f, "credential {n}"),
            Origin::CredentialFile => f.write_str("credential airclass.provision"),
            Origin::UsbFile => f.write_str("USB stick airclass/provision.toml"),
            Origin::EspFile => f.write_str("EFI partition airclass/provision.toml"),
            Origin::KernelCmdline => f.write_str("kernel command line"),
            Origin::Earlier => f.write_str("earlier provisioning (/etc/airclass/appliance.toml)"),
            Origin::File(p) => f.write_str(p),
        }
    }
}

/// A value with its origin. Lists (SSH keys, DNS servers) are one item per line.
#[derive(Clone, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    pub origin: Origin,
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({} chars from {})", self.text.len(), self.origin)
    }
}

/// The values one source gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values(pub BTreeMap<Key, Value>);

impl Values {
    pub fn set(&mut self, key: Key, text: impl Into<String>, origin: Origin) {
        self.0.insert(
            key,
            Value {
                text: text.into(),
                origin,
            },
        );
    }

    pub fn get(&self, key: Key) -> Option<&str> {
        self.0.get(&key).map(|v| v.text.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Merge sources given highest precedence first: the first source naming a key wins.
    pub fn merge(sources: &[Values]) -> Values {
        let mut out = Values::default();
        for s in sources {
            for (k, v) in &s.0 {
                out.0.entry(*k).or_insert_with(|| v.clone());
            }
        }
        out
    }

    /// Whether any value of a secret key came from one of `origins`.
    pub fn has_secret_from(&self, origin: &Origin) -> bool {
        self.0
            .iter()
            .any(|(k, v)| k.is_secret() && &v.origin == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_in_the_table_once() {
        let all = [
            Key::Node,
            Key::Mode,
            Key::ClusterId,
            Key::MainUrl,
            Key::RedisUrl,
            Key::Mdns,
            Key::LivekitApiKey,
            Key::LivekitApiSecret,
            Key::ClusterSecret,
            Key::RedisPassword,
            Key::AppToken,
            Key::AppTokenSha256,
            Key::SshAuthorizedKeys,
            Key::ConsolePasswordHash,
            Key::Interface,
            Key::Address,
            Key::Gateway,
            Key::Dns,
        ];
        assert_eq!(all.len(), KEYS.len());
        for (i, info) in KEYS.iter().enumerate() {
            assert_eq!(info.key as usize, i, "{:?} out of order", info.key);
        }
        for key in all {
            assert_eq!(KEYS.iter().filter(|i| i.key == key).count(), 1, "{key:?}");
            assert_eq!(key.info().key, key);
            assert_eq!(Key::from_name(key.info().name), Some(key));
        }
        assert_eq!(Key::from_name("main"), Some(Key::MainUrl));
        assert_eq!(Key::from_name("nope"), None);
        assert_eq!(Key::ClusterSecret.toml_path(), "secrets.cluster_secret");
    }

    #[test]
    fn first_source_wins_per_key() {
        let mut hi = Values::default();
        hi.set(
            Key::Node,
            "node-1",
            Origin::Credential("airclass.node".into()),
        );
        let mut lo = Values::default();
        lo.set(Key::Node, "node-2", Origin::KernelCmdline);
        lo.set(Key::Mode, "sub", Origin::KernelCmdline);
        let m = Values::merge(&[hi, lo]);
        assert_eq!(m.get(Key::Node), Some("node-1"));
        assert_eq!(m.get(Key::Mode), Some("sub"));
        assert_eq!(m.0[&Key::Mode].origin, Origin::KernelCmdline);
    }

    #[test]
    fn value_debug_hides_text() {
        let v = Value {
            text: "hunter2hunter2".into(),
            origin: Origin::EspFile,
        };
        assert!(!format!("{v:?}").contains("hunter2"));
    }
}
