//! `airclass-node status` against real daemons: the table, `--json`, the verdict and the exit
//! code (0 healthy, 1 degraded, 2 unreachable), asked from main, from a sub and by instance name.

use std::process::Output;
use std::time::Duration;

use crate::nodes::{clustered, node_state, unused_port, wait_for};
use crate::support::daemon::Daemon;
use crate::support::node::NodeDir;
use crate::support::redis::Redis;
use crate::support::DAEMON;

fn status(args: &[&str]) -> Output {
    std::process::Command::new(DAEMON)
        .arg("status")
        .args(args)
        .output()
        .unwrap()
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_table_verdict_and_exit_codes() {
    let redis = Redis::start();
    let main_dir = clustered(&redis, "main", None, "");
    let main = Daemon::spawn_ready(&main_dir, &[]).await;
    let subs: Vec<NodeDir> = ["node-1", "node-2"]
        .iter()
        .map(|n| clustered(&redis, n, Some(&main.api), ""))
        .collect();
    let mut daemons = Vec::new();
    for d in &subs {
        daemons.push(Daemon::spawn_ready(d, &[]).await);
    }
    wait_for("three alive nodes", Duration::from_secs(15), || async {
        node_state(&main, "node-1").await.as_deref() == Some("alive")
            && node_state(&main, "node-2").await.as_deref() == Some("alive")
    })
    .await;

    let o = status(&["--url", &main.api]);
    let table = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{table}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NODE")
            && lines[0].contains("LIVEKIT")
            && lines[0].contains("HEARTBEAT"),
        "{table}"
    );
    assert_eq!(lines.len(), 5, "header, three nodes, verdict:\n{table}");
    assert!(lines[4].starts_with("healthy: 3 nodes alive"), "{table}");
    for n in ["main", "node-1", "node-2"] {
        let row = lines.iter().find(|l| l.starts_with(n)).unwrap();
        assert!(
            row.contains(" alive ") && row.contains(" healthy ") && row.contains("0.10/0.70"),
            "{row}"
        );
    }
    println!("{table}");

    // no root needed: the same answer as user nobody
    let o = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(DAEMON)
            .args(["status", "--url", &main.api])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    assert_eq!(
        o.status.code(),
        Some(0),
        "as nobody: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // JSON, asked from a sub (node-1 → its main) and by instance name with the node's config
    let o = status(&["--url", &daemons[0].api, "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let j = json_of(&o);
    assert_eq!(j["verdict"], "healthy");
    assert_eq!(j["main"], main.api.as_str());
    assert_eq!(j["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(j["nodes"][1]["restarts"], 0);
    let o = subs[1]
        .cmd(&["status", "--instance", "node-2", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(json_of(&o)["local"], daemons[1].api.as_str());

    // kill node-2: degraded, its row says dead
    daemons[1].signal(nix::sys::signal::Signal::SIGKILL);
    wait_for("node-2 dead", Duration::from_secs(10), || async {
        node_state(&main, "node-2").await.as_deref() == Some("dead")
    })
    .await;
    let o = status(&["--url", &main.api]);
    let table = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(1), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("node-2") && l.contains(" dead ")),
        "{table}"
    );
    assert!(table.contains("degraded: node-2: dead"), "{table}");
    println!("{table}");

    // nothing listening: exit 2
    let (_block, port) = unused_port();
    let o = status(&["--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stdout).contains("down: the local daemon does not answer"));
    // a sub whose main is gone: degraded, its own row still shown
    main.signal(nix::sys::signal::Signal::SIGKILL);
    let o = status(&["--url", &daemons[0].api, "--json"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let j = json_of(&o);
    assert_eq!(j["nodes"][0]["node"], "node-1");
}
