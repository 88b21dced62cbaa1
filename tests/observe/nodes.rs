//! The nodes these tests run: cluster `observe` with a 1 s heartbeat, sysload pinned at 0.1
//! (so placement and the status verdict do not depend on the busy test machine), a 200 ms
//! health probe; and the few waits they share.

use std::time::Duration;

use airclass_node::clock;

use crate::support::daemon::Daemon;
use crate::support::http;
use crate::support::node::{NodeDir, NodeSpec};
use crate::support::ports::PortBlock;
use crate::support::redis::Redis;

/// The knobs every node here gets: a 200 ms health probe, a 3 s drain.
pub fn quick(spec: NodeSpec) -> NodeSpec {
    spec.health_interval_ms(200).drain_timeout_secs(3)
}

/// A clustered node of cluster `observe` on `redis`: main when `main_url` is `None`, else a sub
/// that calls main there; `extra` is more TOML for `nodes/INSTANCE.toml`.
pub fn clustered(redis: &Redis, instance: &str, main_url: Option<&str>, extra: &str) -> NodeDir {
    let spec = match main_url {
        None => NodeSpec::main(instance),
        Some(url) => NodeSpec::sub(instance).main_url(url),
    };
    quick(spec)
        .redis(redis.url())
        .cluster_id("observe")
        .heartbeat_secs(1)
        .discovery_timeout_secs(1)
        .instance_toml("[node]\nsysload_override = 0.1\n")
        .instance_toml(extra)
        .write()
}

/// A standalone node `main`; `extra` is more TOML for `nodes/main.toml`.
pub fn standalone(extra: &str) -> NodeDir {
    quick(NodeSpec::standalone("main"))
        .instance_toml(extra)
        .write()
}

/// A reserved loopback port nothing listens on (while the block is held).
pub fn unused_port() -> (PortBlock, u16) {
    let block = PortBlock::reserve();
    let port = block.port(0);
    (block, port)
}

/// Poll `f` every 50 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = clock::now();
    while t0.elapsed() < timeout {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// `GET url` as JSON (`None` on any failure).
pub async fn get_json(url: &str) -> Option<serde_json::Value> {
    http().get(url).send().await.ok()?.json().await.ok()
}

pub async fn node_state(main: &Daemon, name: &str) -> Option<String> {
    node_state_at(&main.api, name).await
}

/// `name`'s state in main's `GET /api/cluster/nodes`.
pub async fn node_state_at(api: &str, name: &str) -> Option<String> {
    let v = get_json(&format!("{api}/api/cluster/nodes")).await?;
    v.as_array()?
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["state"].as_str().map(str::to_owned))
}
