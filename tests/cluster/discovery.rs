//! Finding main: the sub loop against the in-memory discovery (main late, main gone, main back
//! elsewhere). Real mdns-sd over multicast is in `netns`.

use std::time::Duration;

use airclass_node::cluster::discovery::{Advert, Discovery, MemoryDiscovery};
use airclass_node::cluster::sub::MAIN_NOT_FOUND;

use crate::roles::*;

const HB: Duration = Duration::from_secs(1);

pub fn advert(node: &str, role: &str, port: u16) -> Advert {
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
    figure(
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
