//! Finding main: the sub loop against the in-memory discovery (main late, main gone, main back
//! elsewhere), and real mdns-sd over multicast inside a private network namespace.

use std::time::Duration;

use airclass_node::cluster::discovery::{
    Advert, Discovery, DiscoveryEvent, MdnsDiscovery, MemoryDiscovery,
};
use airclass_node::cluster::sub::MAIN_NOT_FOUND;

use crate::support::*;

const HB: Duration = Duration::from_secs(1);

fn advert(node: &str, role: &str, port: u16) -> Advert {
    Advert {
        cluster_id: CLUSTER.into(),
        role: role.into(),
        node: node.into(),
        api_port: port,
        address: "127.0.0.1".into(),
        scheme: "http".into(),
    }
}

#[tokio::test]
async fn sub_reports_main_not_found_then_registers_when_main_appears() {
    let d = MemoryDiscovery::new();
    d.advertise(&advert("node-1", "sub", 1)).unwrap();
    let sub = Sub::start(
        sub_settings("node-1", None, HB),
        stats(0.1, &[]),
        Some(d.browse(CLUSTER).unwrap()),
    );
    // discovery_timeout is 500 ms in these settings
    wait_until(Duration::from_secs(3), || async {
        sub.status_text() == MAIN_NOT_FOUND
    })
    .await
    .unwrap_or_else(|| panic!("status: {}", sub.status_text()));
    let m = MainServer::start(HB, None).await;
    // a main of another cluster is ignored
    let mut other = advert("main-x", "main", 1);
    other.cluster_id = "other".into();
    d.advertise(&other).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sub.status_text(), MAIN_NOT_FOUND);
    d.advertise(&advert("main", "main", m.port)).unwrap();
    let took = wait_until(Duration::from_secs(3), || async {
        m.state_of("node-1").as_deref() == Some("alive")
    })
    .await
    .expect("never registered after main appeared");
    crate::harness::figure(
        "registration after main appeared in discovery (ms)",
        took.as_millis(),
    );
    assert!(
        sub.status_text().contains("registered with main"),
        "{}",
        sub.status_text()
    );

    // main vanishes: the sub says so (not yet "not found"), then main comes back on another
    // port and the sub follows
    d.remove("main");
    wait_until(Duration::from_secs(3), || async {
        sub.status_text() == airclass_node::cluster::sub::main_lost_status("main")
    })
    .await
    .unwrap_or_else(|| panic!("status after main vanished: {}", sub.status_text()));
    let m2 = MainServer::start(HB, None).await;
    d.advertise(&advert("main", "main", m2.port)).unwrap();
    wait_until(Duration::from_secs(4), || async {
        m2.state_of("node-1").as_deref() == Some("alive")
    })
    .await
    .expect("never followed main to its new address");
    sub.kill();
}

const NETNS_ENV: &str = "AIRCLASS_TEST_IN_NETNS";

/// Real mdns-sd, main advertising and a sub browsing, inside `unshare -rn` (a private network
/// namespace with only loopback, multicast enabled): no packet leaves the namespace.
#[test]
fn mdns_over_real_multicast() {
    if std::env::var_os(NETNS_ENV).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("unshare")
            .args(["-rn", "--"])
            .arg(exe)
            .args([
                "discovery::mdns_over_real_multicast",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(NETNS_ENV, "1")
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                for l in text.lines() {
                    if let Some(i) = l.find("FIGURE").or_else(|| l.find("SKIPPED")) {
                        println!("{}", &l[i..]);
                    }
                }
                assert!(
                    text.contains("MDNS-OK") || text.contains("SKIPPED"),
                    "{text}"
                );
            }
            Ok(o) => panic!(
                "mDNS test in the namespace failed:\n{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => println!(
                "SKIPPED: real mDNS test needs `unshare -rn` (user + network namespace): {e}"
            ),
        }
        return;
    }
    let sh = |c: &str| {
        std::process::Command::new("sh")
            .args(["-c", c])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !sh("ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo") {
        println!("SKIPPED: cannot enable multicast on loopback inside the namespace");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let main_side = MdnsDiscovery::new().unwrap();
        let sub_side = MdnsDiscovery::new().unwrap();
        let t0 = airclass_node::clock::now();
        main_side.advertise(&advert("main", "main", 8000)).unwrap();
        sub_side.advertise(&advert("node-1", "sub", 8001)).unwrap();
        let mut rx = sub_side.browse(CLUSTER).unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        match ev {
            Ok(Some(DiscoveryEvent::Found(m))) => {
                crate::harness::figure(
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
            }
            other => println!("SKIPPED: multicast on loopback gave no answer here ({other:?})"),
        }
        main_side.shutdown();
        sub_side.shutdown();
    });
}
