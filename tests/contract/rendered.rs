//! LiveKit configs as airclass-node renders them: a node TOML through the daemon's own config
//! resolver and renderer (`airclass_node::config::resolve`, `livekit::render`), written to a
//! runtime directory of the test's own with the key file (0600), ready to run.

use std::collections::BTreeMap;
use std::path::Path;

use airclass_node::config::{resolve, NodeConfig, Secret, Secrets, Sources};
use airclass_node::livekit::render;

use crate::common::livekit_proc::{KEY, SECRET};

/// The Redis password the golden configs carry (`[redacted]` in the golden files).
pub const REDIS_PASSWORD: &str = "redispw";

pub fn secrets() -> Secrets {
    Secrets {
        api_key: KEY.into(),
        api_secret: Secret::new(SECRET),
        cluster_secret: None,
        redis_password: Some(Secret::new(REDIS_PASSWORD)),
        app_token_sha256: None,
    }
}

/// Resolves `toml` for `instance`; `runtime_dir` None = the default `/run/airclass/INSTANCE`.
pub fn node(instance: &str, toml: &str, runtime_dir: Option<&Path>) -> NodeConfig {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.toml"), toml).expect("write toml");
    let sources = Sources {
        config_path: dir.path().join("a.toml"),
        config_explicit: true,
        nodes_dir: dir.path().join("nodes"),
        env: BTreeMap::new(),
    };
    let rd = runtime_dir.map(|p| p.to_string_lossy().into_owned());
    resolve(&sources, instance, rd.as_deref())
        .unwrap_or_else(|p| panic!("{instance}: config refused: {p:#?}"))
        .0
}

/// The redacted YAML `airclass-node render` shows (what the golden files hold).
pub fn redacted_yaml(node: &NodeConfig) -> String {
    render::render(node, Some(&secrets()), true)
        .expect("render")
        .config_yaml
}

/// Renders with the real secrets into `node.runtime_dir` (config + 0600 key file); returns
/// the config text for `--config`.
pub fn write_runnable(node: &NodeConfig) -> String {
    let r = render::render(node, Some(&secrets()), false).expect("render");
    render::write(&r).expect("write rendered files");
    r.config_yaml
}
