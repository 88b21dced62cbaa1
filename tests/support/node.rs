//! A node under test: [`NodeSpec`] (the knobs, each one visible where the test builds it) →
//! [`NodeDir`] (a temp dir with `airclass.toml`, `nodes/`, `secrets/`, `run/`).
//!
//! What every node gets, whatever the knobs: its ports from one reserved [`PortBlock`]
//! (LiveKit, ICE/TCP and API at +0..+2, RTC UDP +3..+23, LiveKit's own Prometheus metrics at
//! +24: a name like `main` would otherwise derive the plan's 6789 on every test node); the API bound to, and the node and
//! LiveKit advertised on, 127.0.0.1; `cluster.mdns = false` (tests never multicast outside a
//! network namespace of their own); the secrets below, in files. Everything else is the
//! daemon's default unless a knob sets it.
//!
//! LiveKit is the real livekit-server (`real_livekit()`, pinned by `scripts/livekit.sh`; a
//! missing one fails the test with how to get it). [`NodeSpec::standin`] swaps in the stand-in,
//! a TEST DOUBLE, for a fault the real server cannot be made to show; its argument says which.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::ports::PortBlock;
use super::real_livekit::real_livekit;
use super::{DAEMON, STANDIN};

/// The daemon binary nodes run: `AIRCLASS_DAEMON_UNDER_TEST` when set (a bench comparing
/// builds), else this build's.
pub fn daemon_binary() -> PathBuf {
    std::env::var_os("AIRCLASS_DAEMON_UNDER_TEST")
        .map_or_else(|| PathBuf::from(DAEMON), PathBuf::from)
}

pub const API_KEY: &str = "APItestkey1234";
pub const API_SECRET: &str = "testsecret-0123456789abcdefghijklmnop";
pub const CLUSTER_SECRET: &str = "clustersecret-0123456789abcdefghijklm";
pub const APP_TOKEN: &str = "test-app-token-0123456789";

/// The knobs of one node. Build with [`NodeSpec::standalone`], [`NodeSpec::main`] or
/// [`NodeSpec::sub`], set what the test relies on, then [`NodeSpec::write`].
#[derive(Debug, Clone)]
pub struct NodeSpec {
    instance: String,
    mode: &'static str,
    /// `None`: the real livekit-server (looked up when the node is written).
    livekit: Option<PathBuf>,
    livekit_keys: Vec<(&'static str, String)>,
    redis: Option<String>,
    cluster_keys: Vec<(&'static str, String)>,
    instance_toml: String,
}

impl NodeSpec {
    fn new(instance: &str, mode: &'static str) -> Self {
        NodeSpec {
            instance: instance.into(),
            mode,
            livekit: None,
            livekit_keys: Vec::new(),
            redis: None,
            cluster_keys: Vec::new(),
            instance_toml: String::new(),
        }
    }

    /// `node.mode = "standalone"`.
    pub fn standalone(instance: &str) -> Self {
        Self::new(instance, "standalone")
    }

    /// `node.mode = "main"` (needs [`NodeSpec::redis`] to run).
    pub fn main(instance: &str) -> Self {
        Self::new(instance, "main")
    }

    /// `node.mode = "sub"` (needs [`NodeSpec::redis`] to run).
    pub fn sub(instance: &str) -> Self {
        Self::new(instance, "sub")
    }

    /// `livekit.binary` (default: the real livekit-server).
    pub fn livekit(mut self, binary: impl Into<PathBuf>) -> Self {
        self.livekit = Some(binary.into());
        self
    }

    /// TEST DOUBLE: run the LiveKit stand-in (`tests/livekit-standin/`) instead of the real
    /// server, only to inject a fault the real server cannot be made to show; `why` names it
    /// (printed in the test's output, so a log says why this test did not use the real server).
    pub fn standin(mut self, why: &str) -> Self {
        println!("LiveKit stand-in for {}: {why}", self.instance);
        self.livekit = Some(PathBuf::from(STANDIN));
        self
    }

    /// `livekit.health_interval_ms`.
    pub fn health_interval_ms(mut self, ms: u64) -> Self {
        self.livekit_keys
            .push(("health_interval_ms", ms.to_string()));
        self
    }

    /// `livekit.drain_timeout_secs`.
    pub fn drain_timeout_secs(mut self, secs: u64) -> Self {
        self.livekit_keys
            .push(("drain_timeout_secs", secs.to_string()));
        self
    }

    /// `livekit.restart_budget`.
    pub fn restart_budget(mut self, n: u32) -> Self {
        self.livekit_keys.push(("restart_budget", n.to_string()));
        self
    }

    /// `redis.url`.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis = Some(url.into());
        self
    }

    /// `cluster.id`.
    pub fn cluster_id(self, id: &str) -> Self {
        self.cluster_key("id", format!("{id:?}"))
    }

    /// `cluster.heartbeat_secs`.
    pub fn heartbeat_secs(self, secs: u64) -> Self {
        self.cluster_key("heartbeat_secs", secs.to_string())
    }

    /// `cluster.dead_after_missed`.
    pub fn dead_after_missed(self, n: u32) -> Self {
        self.cluster_key("dead_after_missed", n.to_string())
    }

    /// `cluster.discovery_timeout_secs`.
    pub fn discovery_timeout_secs(self, secs: u64) -> Self {
        self.cluster_key("discovery_timeout_secs", secs.to_string())
    }

    /// `cluster.main_url` (a sub then skips discovery).
    pub fn main_url(self, url: &str) -> Self {
        self.cluster_key("main_url", format!("{url:?}"))
    }

    fn cluster_key(mut self, key: &'static str, value: String) -> Self {
        self.cluster_keys.push((key, value));
        self
    }

    /// TOML for the per-instance file `nodes/INSTANCE.toml` (layered over `airclass.toml`).
    pub fn instance_toml(mut self, toml: &str) -> Self {
        self.instance_toml.push_str(toml);
        self
    }

    /// Reserve the ports and write the files.
    pub fn write(self) -> NodeDir {
        let livekit = self.livekit.clone().unwrap_or_else(real_livekit);
        let dir = tempfile::tempdir().unwrap();
        let ports = PortBlock::reserve();
        let secrets = write_secrets(dir.path());
        std::fs::create_dir(dir.path().join("nodes")).unwrap();
        std::fs::write(
            dir.path().join("airclass.toml"),
            self.toml(&livekit, &ports, &secrets),
        )
        .unwrap();
        if !self.instance_toml.is_empty() {
            let file = dir
                .path()
                .join("nodes")
                .join(format!("{}.toml", self.instance));
            std::fs::write(file, &self.instance_toml).unwrap();
        }
        NodeDir {
            livekit_port: ports.port(0),
            api_port: ports.port(2),
            livekit_metrics_port: ports.port(24),
            instance: self.instance,
            dir,
            _ports: ports,
        }
    }

    fn toml(&self, livekit: &Path, ports: &PortBlock, secrets: &Path) -> String {
        let s = |n: &str| secrets.join(n).display().to_string();
        let mut t = format!(
            "[node]\nmode = \"{}\"\nlivekit_port = {}\nrtc_tcp_port = {}\napi_port = {}\n\
             rtc_udp_start = {}\nrtc_udp_end = {}\nadvertise_address = \"127.0.0.1\"\n\n\
             [livekit]\nbinary = {:?}\napi_key_file = {:?}\napi_secret_file = {:?}\n\
             node_ip = \"127.0.0.1\"\nprometheus_port = {}\n",
            self.mode,
            ports.port(0),
            ports.port(1),
            ports.port(2),
            ports.port(3),
            ports.port(23),
            livekit.display().to_string(),
            s("livekit-api-key"),
            s("livekit-api-secret"),
            ports.port(24),
        );
        for (k, v) in &self.livekit_keys {
            writeln!(t, "{k} = {v}").unwrap();
        }
        if let Some(url) = &self.redis {
            write!(t, "\n[redis]\nurl = {url:?}\n").unwrap();
        }
        write!(
            t,
            "\n[cluster]\nsecret_file = {:?}\nmdns = false\n",
            s("cluster-secret")
        )
        .unwrap();
        for (k, v) in &self.cluster_keys {
            writeln!(t, "{k} = {v}").unwrap();
        }
        write!(
            t,
            "\n[api]\nbind = \"127.0.0.1\"\napp_token_sha256_file = {:?}\n",
            s("app-token.sha256")
        )
        .unwrap();
        t
    }
}

/// The secrets every test node shares, 0640, in `DIR/secrets`.
fn write_secrets(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let secrets = dir.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let hash = airclass_node::app_token::token_sha256_hex(APP_TOKEN);
    for (name, value) in [
        ("livekit-api-key", API_KEY),
        ("livekit-api-secret", API_SECRET),
        ("cluster-secret", CLUSTER_SECRET),
        ("app-token.sha256", hash.as_str()),
    ] {
        let path = secrets.join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    secrets
}

/// A written node: its files and the ports it was given.
pub struct NodeDir {
    pub dir: tempfile::TempDir,
    pub instance: String,
    pub livekit_port: u16,
    pub api_port: u16,
    /// LiveKit's own Prometheus port (`livekit.prometheus_port`).
    pub livekit_metrics_port: u16,
    _ports: PortBlock,
}

impl NodeDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A self-signed certificate for `localhost` and `127.0.0.1` (openssl) in `DIR/api.crt` and
    /// `DIR/api.key`, configured as the control API's TLS files in `nodes/INSTANCE.toml`
    /// (appended to what is there).
    pub fn use_self_signed_tls(&self) -> (PathBuf, PathBuf) {
        let (cert, key) = (self.path().join("api.crt"), self.path().join("api.key"));
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "openssl cannot make a test certificate: install it with `apt-get install -y openssl`"
        );
        let file = self
            .path()
            .join("nodes")
            .join(format!("{}.toml", self.instance));
        let mut text = std::fs::read_to_string(&file).unwrap_or_default();
        text.push_str(&format!(
            "\n[api]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ));
        std::fs::write(file, text).unwrap();
        (cert, key)
    }

    /// `http://127.0.0.1:API_PORT`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// `airclass-node --config … --nodes-dir … ARGS`, with none of systemd's or the daemon's
    /// own variables inherited from the test's environment and `RUNTIME_DIRECTORY=DIR/run`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(daemon_binary());
        c.arg("--config")
            .arg(self.path().join("airclass.toml"))
            .arg("--nodes-dir")
            .arg(self.path().join("nodes"))
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("RUNTIME_DIRECTORY", self.path().join("run"));
        for (var, _, _) in airclass_node::config::load::ENV_OVERRIDES {
            c.env_remove(var);
        }
        c
    }

    /// The configuration sources as `airclass-node --config … --nodes-dir …` reads them, with
    /// an empty environment.
    pub fn sources(&self) -> airclass_node::config::Sources {
        airclass_node::config::Sources {
            config_path: self.path().join("airclass.toml"),
            config_explicit: true,
            nodes_dir: self.path().join("nodes"),
            env: Default::default(),
        }
    }
}
