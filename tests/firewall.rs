//! Real nftables test of `airclass_node::firewall`: open twice, list, close, inside a private
//! network namespace (`unshare --net` re-runs this test binary) so the host ruleset is never
//! touched. Needs root, `nft` and `unshare`; without them it fails saying how to get them.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(clippy::disallowed_types, clippy::disallowed_methods)]

use std::process::Command;

use airclass_node::firewall::{self, FirewallBackend, FirewallSpec};
use serde_json::Value;

const CHILD_ENV: &str = "AIRCLASS_FW_NETNS_CHILD";

fn have(prog: &str) -> bool {
    Command::new(prog)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// This process's network namespace, e.g. `net:[4026531840]`.
fn netns_id() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string()
}

fn host_ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    assert!(out.status.success(), "nft list ruleset failed on the host");
    String::from_utf8(out.stdout).unwrap()
}

/// Outer test: decides whether the real test can run, then runs it in a new network namespace.
#[test]
fn nft_open_twice_list_close_in_private_netns() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // we are the child: only `in_netns_body` runs here
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a network namespace and nftables): run it as root, as scripts/test.sh does"
    );
    assert!(have("nft"), "nft is missing: apt-get install -y nftables");
    assert!(
        have("unshare"),
        "unshare is missing: apt-get install -y util-linux"
    );
    let before = host_ruleset();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(&exe)
        .args([
            "--exact",
            "in_netns_body",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, netns_id())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("child stdout:\n{stdout}\nchild stderr:\n{stderr}");
    assert!(out.status.success(), "netns child failed: {}", out.status);
    assert!(
        stdout.contains("1 passed"),
        "the child did not run in_netns_body"
    );
    assert!(
        stdout.contains("IN_NETNS_BODY_DONE"),
        "the child skipped its body"
    );
    assert_eq!(before, host_ruleset(), "the host ruleset changed");
}

fn list_table_json(table: &str) -> Option<Value> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", table])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn objects<'a>(v: &'a Value, kind: &str) -> Vec<&'a Value> {
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get(kind))
        .collect()
}

/// Body: runs only in the `unshare --net` child started above.
#[test]
fn in_netns_body() {
    // The parent passes its own namespace id: refuse to run there (or without a parent).
    let Some(parent_ns) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    assert_ne!(
        parent_ns.to_string_lossy(),
        netns_id(),
        "in_netns_body must run in a private network namespace"
    );

    let spec = FirewallSpec::for_node("node-1", 7890, 7891, 8001, (51000, 51020), true);
    let other = FirewallSpec::for_node("main", 7880, 7881, 8000, (50000, 50020), true);
    let table = firewall::table_name("node-1");
    assert_eq!(table, "airclass_node_1");

    assert_eq!(firewall::show("node-1").unwrap(), None);
    firewall::close_with(FirewallBackend::Nftables, "node-1").unwrap(); // absent: fine

    firewall::open_with(FirewallBackend::Nftables, &other).unwrap();
    firewall::open_with(FirewallBackend::Nftables, &spec).unwrap();
    let first = list_table_json(&table).expect("table exists after open");
    firewall::open_with(FirewallBackend::Nftables, &spec).unwrap(); // idempotent
    let second = list_table_json(&table).expect("table exists after second open");

    for v in [&first, &second] {
        let chains = objects(v, "chain");
        assert_eq!(chains.len(), 1, "one chain: {v}");
        assert_eq!(chains[0]["name"], "input");
        assert_eq!(chains[0]["hook"], "input");
        assert_eq!(chains[0]["prio"], -1);
        assert_eq!(chains[0]["policy"], "accept");
        let rules = objects(v, "rule");
        assert_eq!(rules.len(), 2, "exactly two rules after each open: {v}");
        let tcp = &rules[0]["expr"][0]["match"];
        assert_eq!(tcp["left"]["payload"]["protocol"], "tcp");
        assert_eq!(tcp["right"]["set"], serde_json::json!([7890, 7891, 8001]));
        let udp = &rules[1]["expr"][0]["match"];
        assert_eq!(udp["left"]["payload"]["protocol"], "udp");
        assert_eq!(
            udp["right"]["set"],
            serde_json::json!([5353, {"range": [51000, 51020]}])
        );
        assert!(rules[0]["expr"][1].get("accept").is_some());
    }

    let shown = firewall::show("node-1")
        .unwrap()
        .expect("show finds the table");
    assert!(shown.contains("table inet airclass_node_1"), "{shown}");
    assert!(shown.contains("51000-51020"), "{shown}");
    println!("{shown}");

    firewall::close_with(FirewallBackend::Nftables, "node-1").unwrap();
    assert!(list_table_json(&table).is_none(), "table gone after close");
    assert_eq!(firewall::show("node-1").unwrap(), None);
    assert!(
        list_table_json("airclass_main").is_some(),
        "close removed another instance's table"
    );
    firewall::close_with(FirewallBackend::Nftables, "node-1").unwrap(); // again: fine
    firewall::close_with(FirewallBackend::Nftables, "main").unwrap();
    assert!(list_table_json("airclass_main").is_none());
    println!("IN_NETNS_BODY_DONE");
}
