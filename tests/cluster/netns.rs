//! Real mdns-sd over multicast, main advertising and a sub browsing, inside `unshare -rn` (a
//! private user + network namespace with only loopback, multicast on): no packet leaves it.
//! Without `unshare` or namespaces the test fails saying what it needs.

use std::time::Duration;

use airclass_node::cluster::discovery::{Discovery, DiscoveryEvent, MdnsDiscovery};

use crate::discovery::advert;
use crate::roles::{figure, CLUSTER};

const NETNS_ENV: &str = "AIRCLASS_TEST_IN_NETNS";

#[test]
fn mdns_over_real_multicast() {
    if std::env::var_os(NETNS_ENV).is_some() {
        return in_namespace();
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("unshare")
        .args(["-rn", "--"])
        .arg(exe)
        .args([
            "netns::mdns_over_real_multicast",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(NETNS_ENV, "1")
        .output()
        .unwrap_or_else(|e| {
            panic!("the real mDNS test needs `unshare` (apt-get install -y util-linux): {e}")
        });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("MDNS-OK"),
        "mDNS test in a private namespace failed (it needs user + network namespaces: run as \
         root or allow unprivileged user namespaces):\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for l in text.lines() {
        if let Some(i) = l.find("FIGURE") {
            println!("{}", &l[i..]);
        }
    }
}

/// The test itself, in the namespace.
fn in_namespace() {
    let sh = |c: &str| {
        std::process::Command::new("sh")
            .args(["-c", c])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(
        sh("ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"),
        "cannot enable multicast on loopback inside the namespace (needs iproute2: apt-get install -y iproute2)"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let main_side = MdnsDiscovery::new().unwrap();
        let sub_side = MdnsDiscovery::new().unwrap();
        let t0 = airclass_node::clock::now();
        main_side.advertise(&advert("main", "main", 8000)).unwrap();
        sub_side.advertise(&advert("node-1", "sub", 8001)).unwrap();
        let mut rx = sub_side.browse(CLUSTER).unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        let Ok(Some(DiscoveryEvent::Found(m))) = ev else {
            panic!("multicast on loopback gave no answer within 10 s ({ev:?})");
        };
        figure(
            "mDNS: main found by a browsing sub (ms)",
            t0.elapsed().as_millis(),
        );
        assert_eq!(m.node, "main");
        assert_eq!(m.api_url, "http://127.0.0.1:8000");
        // withdrawing main is seen as Lost
        main_side.withdraw("main");
        let lost = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match rx.recv().await {
                    Some(DiscoveryEvent::Lost(n)) => break n,
                    Some(_) => continue,
                    None => break String::new(),
                }
            }
        })
        .await;
        assert_eq!(lost.ok().as_deref(), Some("main"));
        println!("MDNS-OK");
        main_side.shutdown();
        sub_side.shutdown();
    });
}
