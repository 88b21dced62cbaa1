//! Journald fields: main runs with its journal socket replaced by ours (a private mount
//! namespace binds a test socket over /run/systemd/journal, so the real tracing-journald layer
//! writes to it), and the entries carry the fields docs/metrics.md lists — `INSTANCE=`,
//! `NODE=` on every line about a peer, `ROOM=` on joins, `FROM=`/`TO=` on state changes,
//! `LIVEKIT=1` on LiveKit's lines — so `journalctl -u airclass-node@main NODE=node-1` works.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UnixDatagram;

use crate::nodes::{clustered, node_state_at, wait_for};
use crate::support::daemon::Daemon;
use crate::support::node::APP_TOKEN;
use crate::support::redis::Redis;
use crate::support::{http, DAEMON};

type Entry = BTreeMap<String, String>;

/// Journald's native protocol: `KEY=value\n`, or `KEY\n` + u64 LE length + value + `\n`.
fn parse_entry(mut b: &[u8]) -> Entry {
    let mut e = Entry::new();
    while !b.is_empty() {
        let nl = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            e.insert(
                String::from_utf8_lossy(&line[..eq]).into(),
                String::from_utf8_lossy(&line[eq + 1..]).into(),
            );
            b = &b[(nl + 1).min(b.len())..];
        } else {
            let key = String::from_utf8_lossy(line).to_string();
            let rest = &b[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            e.insert(key, String::from_utf8_lossy(&rest[8..8 + len]).into());
            b = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_entries_carry_node_room_and_livekit_fields() {
    airclass_node::tls::install_crypto_provider();
    let redis = Redis::start();
    let main_dir = clustered(&redis, "main", None, "");
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = UnixDatagram::bind(sock_dir.path().join("socket")).unwrap();
    let entries: Arc<Mutex<Vec<Entry>>> = Arc::default();
    let sink = entries.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = sock.recv(&mut buf).await {
            // an empty datagram carries a large entry in a memfd (SCM_RIGHTS): not read here
            if n > 0 {
                sink.lock().unwrap().push(parse_entry(&buf[..n]));
            }
        }
    });
    let p = main_dir.path();
    let mut child = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && mount --bind \"$1\" /run/systemd/journal && shift && exec \"$@\"")
        .arg("sh")
        .arg(sock_dir.path())
        .arg(DAEMON)
        .arg("--config")
        .arg(p.join("airclass.toml"))
        .arg("--nodes-dir")
        .arg(p.join("nodes"))
        .args(["run", "--instance", "main"])
        .env("JOURNAL_STREAM", "8:12345")
        .env("RUST_LOG", "info,airclass_node::cluster::main::join=debug") // joins are logged at debug (issue 10)
        .env("RUNTIME_DIRECTORY", p.join("run"))
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("unshare (util-linux) is needed");
    let api = format!("http://127.0.0.1:{}", main_dir.api_port);
    wait_for("main ready", Duration::from_secs(20), || async {
        http()
            .get(format!("{api}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let sub_dir = clustered(&redis, "node-1", Some(&api), "");
    let sub = Daemon::spawn_ready(&sub_dir, &[]).await;
    wait_for("node-1 alive", Duration::from_secs(15), || async {
        node_state_at(&api, "node-1").await.as_deref() == Some("alive")
    })
    .await;
    let r = http()
        .post(format!("{api}/api/rooms/journal-room/join"))
        .bearer_auth(APP_TOKEN)
        .json(&serde_json::json!({"identity": "kim", "role": "student"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sub.signal(nix::sys::signal::Signal::SIGKILL);
    wait_for("node-1 dead", Duration::from_secs(10), || async {
        node_state_at(&api, "node-1").await.as_deref() == Some("dead")
    })
    .await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let all = entries.lock().unwrap().clone();
    assert!(all.len() > 10, "{} entries", all.len());
    for e in &all {
        assert_eq!(e.get("INSTANCE").map(String::as_str), Some("main"), "{e:?}");
        assert_eq!(
            e.get("SYSLOG_IDENTIFIER").map(String::as_str),
            Some("airclass-node"),
            "{e:?}"
        );
        assert!(
            e.contains_key("MESSAGE") && e.contains_key("PRIORITY"),
            "{e:?}"
        );
    }
    let find = |f: &dyn Fn(&Entry) -> bool| all.iter().any(f);
    let is = |e: &Entry, k: &str, v: &str| e.get(k).map(String::as_str) == Some(v);
    assert!(
        find(&|e| is(e, "LIVEKIT", "1") && e["MESSAGE"].starts_with("[LiveKit]")),
        "no LIVEKIT=1 line"
    );
    assert!(
        find(&|e| is(e, "NODE", "node-1") && e["MESSAGE"] == "node registered"),
        "no NODE= on registration"
    );
    assert!(
        find(&|e| is(e, "NODE", "node-1") && is(e, "FROM", "suspect") && is(e, "TO", "dead")),
        "no FROM=/TO= on the state change"
    );
    assert!(
        find(&|e| is(e, "ROOM", "journal-room")
            && e.contains_key("NODE")
            && is(e, "OUTCOME", "under_limit")),
        "no ROOM= on the join"
    );
    let node1: Vec<&Entry> = all.iter().filter(|e| is(e, "NODE", "node-1")).collect();
    assert!(
        node1.len() >= 3,
        "journalctl NODE=node-1 would show {} lines",
        node1.len()
    );
}
