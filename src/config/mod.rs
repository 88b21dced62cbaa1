//! Configuration: schema, layering, secrets, port plan and validation, all before anything starts.
//!
//! [`resolve`] turns the files and environment into a [`NodeConfig`] or the complete list of
//! problems; [`load_secrets`] reads the secrets; [`check_binary`] finds livekit-server. The
//! `check` command runs all three and prints every problem with its source, key and fix.

pub mod keygen;
pub mod load;
pub mod ports;
pub mod schema;
pub mod secrets;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use load::{Layered, Sources};
pub use ports::PortPlan;
pub use schema::{Config, Mode, PortMode};
pub use secrets::Secret;
pub use validate::{resolve, NodeConfig, RedisTarget};

/// One configuration problem: where, which key, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A file path, `environment variable X`, `secrets`, `command line` or `default`.
    pub source: String,
    /// Dotted config key, or `-` for the file as a whole.
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl Problem {
    pub fn new(
        source: impl Into<String>,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            source: source.into(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl std::error::Error for Problem {}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {} (fix: {})",
            self.source, self.key, self.problem, self.fix
        )
    }
}

/// The secrets a node needs, by mode.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub api_key: String,
    pub api_secret: Secret,
    /// main and sub only.
    pub cluster_secret: Option<Secret>,
    pub redis_password: Option<Secret>,
    /// SHA-256 hex of the application token: main and standalone (join endpoint).
    pub app_token_sha256: Option<String>,
}

/// Read every secret `node` needs; all problems at once.
pub fn load_secrets(
    node: &NodeConfig,
    credentials_dir: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<Secrets, Vec<Problem>> {
    use secrets::*;
    let c = &node.config;
    let mut problems = Vec::new();
    let mut get = |spec: SecretSpec, file: Option<&str>| -> Option<Secret> {
        match read_secret(spec, file, credentials_dir, warnings) {
            Ok((s, _)) => Some(s),
            Err(p) => {
                problems.push(p);
                None
            }
        }
    };
    let api_key = get(API_KEY, Some(&c.livekit.api_key_file));
    let api_secret = get(API_SECRET, Some(&c.livekit.api_secret_file));
    let cluster_secret = if node.mode.is_clustered() {
        get(CLUSTER_SECRET, Some(&c.cluster.secret_file))
    } else {
        None
    };
    let redis_password = match (&c.redis.password_file, node.mode.is_clustered()) {
        (Some(f), true) if !f.is_empty() => get(REDIS_PASSWORD, Some(f)),
        (_, true)
            if credentials_dir.is_some_and(|d| d.join(REDIS_PASSWORD.credential).exists()) =>
        {
            get(REDIS_PASSWORD, None)
        }
        _ => None,
    };
    let app_token = if node.mode != Mode::Sub {
        get(APP_TOKEN_SHA256, Some(&c.api.app_token_sha256_file))
    } else {
        None
    };
    if let Some(key) = &api_key {
        if key.expose().contains(':') {
            problems.push(Problem::new(
                "secrets",
                API_KEY.key,
                "the LiveKit API key contains ':' (LiveKit's key file is `key: secret`)",
                "use an API key of letters and digits",
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    match (api_key, api_secret) {
        (Some(k), Some(s)) => Ok(Secrets {
            api_key: k.expose().to_string(),
            api_secret: s,
            cluster_secret,
            redis_password,
            app_token_sha256: app_token.map(|h| h.expose().to_ascii_lowercase()),
        }),
        _ => Err(problems),
    }
}

/// livekit-server must exist and be executable; otherwise the unit must not restart-loop.
pub fn check_binary(node: &NodeConfig) -> Result<PathBuf, Problem> {
    use std::os::unix::fs::PermissionsExt;
    let path = PathBuf::from(&node.config.livekit.binary);
    let source = node.layered.source_of("livekit.binary");
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(path),
        Ok(_) => Err(Problem::new(
            source,
            "livekit.binary",
            format!("{} is not an executable file", path.display()),
            format!("chmod +x {} or point livekit.binary (LIVEKIT_BINARY) at livekit-server", path.display()),
        )),
        Err(_) => Err(Problem::new(
            source,
            "livekit.binary",
            format!("LiveKit server failed to start: {} is missing", path.display()),
            "install livekit-server there (a release from github.com/livekit/livekit, `livekit-server --version` must work) or set livekit.binary / LIVEKIT_BINARY",
        )),
    }
}
