//! Rendering LiveKit's config (pure): a resolved node → `livekit.yaml` and the key file text.
//!
//! Only keys LiveKit's strict loader knows are written (`../shared/livekit/CONTRACT.md` §2):
//! `node_selector` is top-level (the seed's `rtc.node_selector` does not exist), and the keys
//! live in a separate `key_file` that must have no "other" permission bits. Writing the files
//! (atomically, mode 0600) is [`write_atomic`]'s job.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{NodeConfig, PortMode, Secrets};

/// File names under the runtime directory.
pub const CONFIG_FILE: &str = "livekit.yaml";
pub const KEYS_FILE: &str = "livekit-keys.yaml";
/// What stands in for a secret in `render` output.
pub const REDACTED: &str = "[redacted]";
/// `rtc.stun_servers` when `livekit.stun_servers` is empty. LiveKit 1.13.5 hands clients
/// Google's and Twilio's public STUN servers whenever it has no STUN or TURN server configured
/// (`iceServersForParticipant`), and uses them itself when `rtc.node_ip` is not set; a closed
/// classroom LAN reaches neither. Nothing answers here (the discard port of the client's own
/// loopback), so no STUN request leaves a client or the node; host candidates carry the media.
pub const NO_STUN_PLACEHOLDER: &str = "127.0.0.1:9";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot serialise the LiveKit config: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The rendered files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub config_yaml: String,
    pub keys_yaml: String,
    pub config_path: PathBuf,
    pub keys_path: PathBuf,
}

#[derive(Serialize)]
struct LkConfig {
    port: u16,
    rtc: Rtc,
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<Redis>,
    key_file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_selector: Option<NodeSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    logging: Logging,
    #[serde(skip_serializing_if = "Option::is_none")]
    prometheus: Option<Prometheus>,
}

#[derive(Serialize)]
struct Rtc {
    tcp_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    udp_port: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port_range_start: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port_range_end: Option<u16>,
    use_external_ip: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_ip: Option<String>,
    stun_servers: Vec<String>,
}

#[derive(Serialize)]
struct Redis {
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    db: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<RedisTls>,
}

#[derive(Serialize)]
struct RedisTls {
    enabled: bool,
}

#[derive(Serialize)]
struct NodeSelector {
    kind: &'static str,
    sysload_limit: f64,
}

#[derive(Serialize)]
struct Logging {
    level: String,
    json: bool,
}

#[derive(Serialize)]
struct Prometheus {
    port: u32,
}

/// Render both files. With `redact`, secrets are replaced by `[redacted]` (for `render`).
/// `secrets` may be `None` only when redacting (render without readable secrets).
pub fn render(
    node: &NodeConfig,
    secrets: Option<&Secrets>,
    redact: bool,
) -> Result<Rendered, RenderError> {
    let c = &node.config;
    let p = &node.ports;
    let config_path = node.runtime_dir.join(CONFIG_FILE);
    let keys_path = node.runtime_dir.join(KEYS_FILE);
    let (udp_port, range_start, range_end) = match c.livekit.port_mode {
        PortMode::Mux => (
            Some(format!("{}-{}", p.rtc_udp_start, p.rtc_udp_end)),
            None,
            None,
        ),
        PortMode::Range => (None, Some(p.rtc_udp_start), Some(p.rtc_udp_end)),
    };
    let secret_text = |s: Option<&crate::config::Secret>| -> Option<String> {
        match (s, redact) {
            (None, _) => None,
            (Some(_), true) => Some(REDACTED.to_string()),
            (Some(s), false) => Some(s.expose().to_string()),
        }
    };
    let redis = node.redis.as_ref().map(|t| Redis {
        address: t.address.clone(),
        username: t.username.clone(),
        password: secret_text(secrets.and_then(|s| s.redis_password.as_ref())),
        db: t.db,
        tls: t.tls.then_some(RedisTls { enabled: true }),
    });
    let lk = LkConfig {
        port: p.livekit_port,
        rtc: Rtc {
            tcp_port: p.rtc_tcp_port,
            udp_port,
            port_range_start: range_start,
            port_range_end: range_end,
            use_external_ip: c.livekit.use_external_ip,
            node_ip: c.livekit.node_ip.clone().filter(|s| !s.is_empty()),
            stun_servers: stun_servers(&c.livekit.stun_servers),
        },
        redis,
        key_file: keys_path.display().to_string(),
        node_selector: node.mode.is_clustered().then_some(NodeSelector {
            kind: "sysload",
            sysload_limit: c.cluster.sysload_limit,
        }),
        region: c.livekit.region.clone().filter(|s| !s.is_empty()),
        logging: Logging {
            level: c.livekit.log_level.clone(),
            json: false,
        },
        prometheus: p.livekit_metrics_port.map(|port| Prometheus {
            port: u32::from(port),
        }),
    };
    let header = format!(
        "# Rendered by airclass-node for instance {} ({} mode). Do not edit: it is rewritten at every start.\n",
        node.instance,
        node.mode.as_str()
    );
    let config_yaml = header + &serde_yaml::to_string(&lk)?;
    let keys_yaml = match secrets {
        Some(s) if !redact => format!("{}: {}\n", s.api_key, s.api_secret.expose()),
        Some(s) => format!("{}: {REDACTED}\n", s.api_key),
        None => format!("API_KEY: {REDACTED}\n"),
    };
    Ok(Rendered {
        config_yaml,
        keys_yaml,
        config_path,
        keys_path,
    })
}

/// `livekit.stun_servers`, or the placeholder that keeps LiveKit's public defaults away.
fn stun_servers(configured: &[String]) -> Vec<String> {
    if configured.is_empty() {
        vec![NO_STUN_PLACEHOLDER.to_string()]
    } else {
        configured.to_vec()
    }
}

/// Write both files atomically, mode 0600, creating the runtime directory (0700) if needed.
pub fn write(rendered: &Rendered) -> Result<(), RenderError> {
    write_atomic(&rendered.keys_path, rendered.keys_yaml.as_bytes())?;
    write_atomic(&rendered.config_path, rendered.config_yaml.as_bytes())?;
    Ok(())
}

/// Temp file (0600, `O_EXCL`) in the same directory, fsync, rename over the target.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), RenderError> {
    let err = |source| RenderError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(contents).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load::Sources, resolve, Secret};
    use std::collections::BTreeMap;

    fn node(instance: &str, toml: &str) -> NodeConfig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), toml).unwrap();
        let s = Sources {
            config_path: dir.path().join("a.toml"),
            config_explicit: true,
            nodes_dir: dir.path().join("nodes"),
            env: BTreeMap::new(),
        };
        resolve(&s, instance, None).unwrap().0
    }

    fn secrets() -> Secrets {
        Secrets {
            api_key: "APIgolden".into(),
            api_secret: Secret::new("s".repeat(40)),
            cluster_secret: None,
            redis_password: Some(Secret::new("redispw")),
            app_token_sha256: None,
        }
    }

    /// Compare with tests/golden/NAME; `UPDATE_GOLDEN=1` rewrites the file instead.
    fn golden(name: &str, actual: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            actual, expected,
            "golden file {name} differs (UPDATE_GOLDEN=1 to rewrite)"
        );
    }

    const CLUSTER: &str = "[node]\nmode = \"sub\"\n[redis]\nurl = \"redis://10.77.0.10:6379\"\n";

    #[test]
    fn golden_main() {
        let n = node("main", "[node]\nmode = \"main\"\n[livekit]\nregion = \"seoul\"\nprometheus_port = 6789\n[redis]\nurl = \"redis://10.77.0.10:6379\"\n");
        golden(
            "livekit-main.yaml",
            &render(&n, Some(&secrets()), true).unwrap().config_yaml,
        );
    }

    #[test]
    fn golden_node_1() {
        let n = node("node-1", CLUSTER);
        golden(
            "livekit-node-1.yaml",
            &render(&n, Some(&secrets()), true).unwrap().config_yaml,
        );
    }

    #[test]
    fn golden_node_3_range_mode() {
        let n = node(
            "node-3",
            &format!("{CLUSTER}[livekit]\nport_mode = \"range\"\nnode_ip = \"10.77.0.13\"\n"),
        );
        golden(
            "livekit-node-3.yaml",
            &render(&n, Some(&secrets()), true).unwrap().config_yaml,
        );
    }

    #[test]
    fn golden_standalone() {
        let n = node("main", "");
        golden(
            "livekit-standalone.yaml",
            &render(&n, Some(&secrets()), true).unwrap().config_yaml,
        );
    }

    #[test]
    fn redaction_and_real_secrets() {
        let n = node("node-1", CLUSTER);
        let red = render(&n, Some(&secrets()), true).unwrap();
        assert!(!red.config_yaml.contains("redispw"));
        assert!(!red.keys_yaml.contains(&"s".repeat(40)));
        let real = render(&n, Some(&secrets()), false).unwrap();
        assert!(real.config_yaml.contains("password: redispw"));
        assert_eq!(real.keys_yaml, format!("APIgolden: {}\n", "s".repeat(40)));
    }

    #[test]
    fn standalone_has_no_cluster_keys_and_no_rtc_node_selector() {
        let n = node("main", "");
        let y = render(&n, Some(&secrets()), true).unwrap().config_yaml;
        let v: serde_yaml::Value = serde_yaml::from_str(&y).unwrap();
        assert!(v.get("redis").is_none());
        assert!(v.get("node_selector").is_none());
        let n = node("node-1", CLUSTER);
        let y = render(&n, Some(&secrets()), true).unwrap().config_yaml;
        let v: serde_yaml::Value = serde_yaml::from_str(&y).unwrap();
        assert_eq!(v["node_selector"]["kind"], "sysload");
        assert!(v["rtc"].get("node_selector").is_none());
        assert_eq!(v["rtc"]["udp_port"], "51000-51020");
    }

    #[test]
    fn stun_servers_never_left_empty() {
        let v = |toml: &str| -> serde_yaml::Value {
            let y = render(&node("main", toml), Some(&secrets()), true).unwrap();
            serde_yaml::from_str(&y.config_yaml).unwrap()
        };
        let default = v("");
        assert_eq!(default["rtc"]["stun_servers"][0], NO_STUN_PLACEHOLDER);
        assert_eq!(
            default["rtc"]["stun_servers"].as_sequence().unwrap().len(),
            1
        );
        let lan = v("[livekit]\nstun_servers = [\"10.0.0.1:3478\", \"stun.lan:3478\"]\n");
        assert_eq!(lan["rtc"]["stun_servers"][0], "10.0.0.1:3478");
        assert_eq!(lan["rtc"]["stun_servers"][1], "stun.lan:3478");
    }

    #[test]
    fn atomic_write_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/livekit.yaml");
        write_atomic(&p, b"a: 1\n").unwrap();
        write_atomic(&p, b"a: 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a: 2\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temp file left behind");
    }
}
