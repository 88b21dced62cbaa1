//! The Grafana dashboard (packaging/grafana/airclass-cluster.json): every metric its queries use
//! is exposed — `airclass_*` and `process_*` by a real main's `/metrics`, `livekit_*` by the
//! real livekit-server's own `prometheus.port` (started by a real daemon with the port plan).

use std::collections::BTreeSet;

use crate::nodes::{clustered, quick};
use crate::prom::{parse, sample_names, scrape};
use crate::support::daemon::Daemon;
use crate::support::node::NodeSpec;
use crate::support::redis::Redis;

const FUNCTIONS: &[&str] = &[
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "rate",
    "increase",
    "histogram_quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "and",
    "or",
    "unless",
    "bool",
];

/// Metric names in a PromQL expression: identifiers outside label matchers, ranges and strings
/// that are not functions or keywords.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut clean = String::new();
    let (mut depth_brace, mut depth_bracket, mut in_str) = (0, 0, false);
    for c in expr.chars() {
        match c {
            '"' => in_str = !in_str,
            '{' if !in_str => depth_brace += 1,
            '}' if !in_str => depth_brace -= 1,
            '[' if !in_str => depth_bracket += 1,
            ']' if !in_str => depth_bracket -= 1,
            _ if in_str || depth_brace > 0 || depth_bracket > 0 => {}
            c => clean.push(c),
        }
    }
    // `by (a, b)`: the grouping labels are not metrics
    let words = clean
        .split(|c: char| {
            !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '(' || c == ')')
        })
        .filter(|w| !w.is_empty());
    let mut skip_group = false;
    for w in words {
        for part in w.split_inclusive(['(', ')']) {
            let name = part.trim_end_matches(['(', ')']);
            if skip_group {
                if part.ends_with(')') {
                    skip_group = false;
                }
                continue;
            }
            if name == "by" || name == "without" {
                skip_group = true;
                continue;
            }
            if name.is_empty() || FUNCTIONS.contains(&name) || name.parse::<f64>().is_ok() {
                continue;
            }
            out.push(name.to_owned());
        }
    }
    out
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le, instance) (rate(airclass_x_bucket{job="$job",a!="b"}[5m])))"#
        ),
        vec!["airclass_x_bucket"]
    );
    assert_eq!(
        metric_names(r#"process_open_fds{job="$job"} / process_max_fds{job="$job"}"#),
        vec!["process_open_fds", "process_max_fds"]
    );
    assert_eq!(
        metric_names("max by (node, state) (airclass_cluster_node_state) == 1"),
        vec!["airclass_cluster_node_state"]
    );
}

fn dashboard_exprs() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/grafana/airclass-cluster.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for p in v["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 30, "{} queries", exprs.len());
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_uses_exposed_metric_names() {
    crate::prom::python();
    let exprs = dashboard_exprs();
    let redis = Redis::start();
    let main_dir = clustered(&redis, "main", None, "");
    let main = Daemon::spawn_ready(&main_dir, &[]).await;
    let ours = sample_names(&parse(
        &scrape(&format!("{}/metrics", main.api), true).await.0,
        "openmetrics",
    ));

    // LiveKit's own names, from the real server started by a real daemon
    let lk_bin = crate::support::real_livekit::real_livekit();
    let lk_dir = quick(NodeSpec::standalone("main")).livekit(lk_bin).write();
    let lk_daemon = Daemon::spawn_ready(&lk_dir, &[]).await;
    let (_, node) = lk_daemon.get_json("/api/node").await;
    let prom_port = node["ports"]["livekit_metrics_port"]
        .as_u64()
        .expect("LiveKit metrics port in the plan");
    let lk_text = scrape(&format!("http://127.0.0.1:{prom_port}/metrics"), false)
        .await
        .0;
    let theirs = sample_names(&parse(&lk_text, "text"));
    assert!(
        theirs.contains("livekit_room_total"),
        "real LiveKit exposes no livekit_room_total"
    );

    let mut used = BTreeSet::new();
    for e in &exprs {
        for name in metric_names(e) {
            let known = if name.starts_with("livekit_") {
                theirs.contains(&name)
            } else if name.starts_with("airclass_") || name.starts_with("process_") {
                ours.contains(&name)
            } else {
                panic!("{name} in {e:?}: not an airclass_, process_ or livekit_ metric");
            };
            assert!(
                known,
                "dashboard query {e:?} uses {name}, which the endpoint does not expose"
            );
            used.insert(name);
        }
    }
    assert!(used.len() >= 30, "{used:?}");
    drop(lk_daemon);
}
