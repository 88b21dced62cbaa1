//! `airclass-node status`, the asking half: the local daemon's `GET /api/node`, then main's
//! `GET /api/cluster/status` (main itself, or the main a sub is linked to) and every live node's
//! `GET /api/node` (for its LiveKit restarts), in parallel, each within a timeout. It reads only
//! what the daemons serve: no root, no secrets, no LiveKit call.

use std::net::IpAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::report::Answers;
use crate::cluster::protocol::ClusterStatus;
use crate::config::NodeConfig;

/// The URL of an instance's control API as seen from this host.
pub fn local_api_url(node: &NodeConfig) -> String {
    let api = &node.config.api;
    let tls = api.tls_cert_file.as_deref().is_some_and(|s| !s.is_empty());
    let host = match api.bind.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_owned(),
        Ok(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        Ok(ip) => ip.to_string(),
        Err(_) => "127.0.0.1".to_owned(),
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}:{}", node.ports.api_port)
}

async fn get<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: String,
    timeout: Duration,
) -> Result<T, String> {
    let r = http.get(&url).timeout(timeout).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {timeout:?}")
        } else if e.is_connect() {
            "connection refused".to_owned()
        } else {
            e.to_string()
        }
    })?;
    let status = r.status();
    if !status.is_success() {
        return Err(format!("HTTP {status} from {url}"));
    }
    r.json::<T>()
        .await
        .map_err(|e| format!("unreadable answer from {url}: {e}"))
}

/// Ask everything the report needs, starting from the local daemon at `local_url`.
pub async fn gather(http: &reqwest::Client, local_url: &str, timeout: Duration) -> Answers {
    let base = local_url.trim_end_matches('/').to_owned();
    let local = get::<Value>(http, format!("{base}/api/node"), timeout).await;
    let main_url = match &local {
        Ok(v) if v["mode"] == "main" => Some(base.clone()),
        Ok(v) => v
            .pointer("/cluster/main_url")
            .and_then(Value::as_str)
            .map(|u| u.trim_end_matches('/').to_owned()),
        Err(_) => None,
    };
    let mut answers = Answers {
        local_url: base.clone(),
        local: Some(local),
        main_url: main_url.clone(),
        ..Default::default()
    };
    let Some(main_url) = main_url else {
        return answers;
    };
    let cluster =
        get::<ClusterStatus>(http, format!("{main_url}/api/cluster/status"), timeout).await;
    if let Ok(c) = &cluster {
        answers.nodes = ask_nodes(http, c, timeout).await;
    }
    answers.cluster = Some(cluster);
    answers
}

/// Every live node's own `/api/node`, in parallel.
async fn ask_nodes(
    http: &reqwest::Client,
    c: &ClusterStatus,
    timeout: Duration,
) -> Vec<(String, Result<Value, String>)> {
    let mut set = tokio::task::JoinSet::new();
    for n in c.nodes.iter().filter(|n| n.state.is_live()) {
        let (http, name) = (http.clone(), n.name.clone());
        let url = format!("{}/api/node", n.info.api_url.trim_end_matches('/'));
        set.spawn(async move { (name, get::<Value>(&http, url, timeout).await) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            out.push(x);
        }
    }
    out
}

/// The instance to ask when none is given: the only one running (a directory under
/// `run_dir`, systemd's `RuntimeDirectory=airclass/%i`) or, failing that, the only
/// `NAME.toml` in `nodes_dir`.
pub fn pick_instance(
    run_dir: &std::path::Path,
    nodes_dir: &std::path::Path,
) -> Result<String, String> {
    let names = |dir: &std::path::Path, toml: bool| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let p = e.path();
                        let ok = if toml {
                            p.extension().is_some_and(|x| x == "toml")
                        } else {
                            p.is_dir()
                        };
                        ok.then(|| p.file_stem()?.to_str().map(str::to_owned))
                            .flatten()
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let running = names(run_dir, false);
    if running.len() == 1 {
        return Ok(running[0].clone());
    }
    let configured = names(nodes_dir, true);
    if running.is_empty() && configured.len() == 1 {
        return Ok(configured[0].clone());
    }
    let found = if running.is_empty() {
        &configured
    } else {
        &running
    };
    Err(if found.is_empty() {
        format!(
            "no running instance under {} and no NAME.toml in {}: give --instance NAME (e.g. main or node-1) or --url http://HOST:PORT",
            run_dir.display(),
            nodes_dir.display()
        )
    } else {
        format!(
            "several instances ({}): give --instance NAME",
            found.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_only_instance() {
        let run = tempfile::tempdir().unwrap();
        let nodes = tempfile::tempdir().unwrap();
        let e = pick_instance(run.path(), nodes.path()).unwrap_err();
        assert!(e.contains("--instance NAME"), "{e}");
        std::fs::write(nodes.path().join("node-2.toml"), "").unwrap();
        assert_eq!(pick_instance(run.path(), nodes.path()).unwrap(), "node-2");
        std::fs::write(nodes.path().join("node-3.toml"), "").unwrap();
        let e = pick_instance(run.path(), nodes.path()).unwrap_err();
        assert!(e.contains("node-2, node-3"), "{e}");
        std::fs::create_dir(run.path().join("node-3")).unwrap();
        assert_eq!(pick_instance(run.path(), nodes.path()).unwrap(), "node-3");
        std::fs::create_dir(run.path().join("main")).unwrap();
        let e = pick_instance(run.path(), nodes.path()).unwrap_err();
        assert!(e.contains("main, node-3"), "{e}");
    }
}
