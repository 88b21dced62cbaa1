//! Paused-time tests of the sub loop's search for main: "Main Node not found" only once the
//! discovery timeout has passed, and at once when there is nowhere to look.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tokio::time::sleep;
use tokio_util::task::TaskTracker;

use super::*;
use crate::cluster::discovery::{Advert, MemoryDiscovery};
use crate::cluster::protocol::{LivekitHealth, NodeMode, NodeStats, PortRange, PROTOCOL_VERSION};

fn settings(discovery_timeout: Duration) -> SubSettings {
    SubSettings {
        cluster_id: "airclass".into(),
        identity: "id-node-1".into(),
        info: NodeInfo {
            name: "node-1".into(),
            mode: NodeMode::Sub,
            protocol_version: PROTOCOL_VERSION,
            software_version: "test".into(),
            api_url: "http://127.0.0.1:1".into(),
            livekit_url: "ws://127.0.0.1:7890".into(),
            rtc_range: PortRange {
                start: 51000,
                end: 51020,
            },
        },
        main_url: None,
        heartbeat: Duration::from_secs(5),
        discovery_timeout,
        secret: ClusterSecret::from_text("clustersecret-0123456789abcdefghijklm").unwrap(),
    }
}

fn stats() -> StatsSource {
    Arc::new(|| {
        Box::pin(async {
            NodeStats {
                cpu_percent: 0.0,
                memory_used_bytes: 0,
                memory_total_bytes: 0,
                load1: 0.0,
                sysload: 0.0,
                num_cpus: 1,
                rooms: 0,
                participants: 0,
                livekit_health: LivekitHealth::Healthy,
                room_names: Vec::new(),
                livekit_node_id: None,
            }
        })
    })
}

fn start(
    timeout: Duration,
    browse: Option<mpsc::UnboundedReceiver<DiscoveryEvent>>,
) -> (Arc<SubHandle>, watch::Receiver<String>) {
    let (tx, rx) = watch::channel(String::new());
    let http = crate::tls::test_client();
    let sub = SubHandle::start(
        settings(timeout),
        stats(),
        browse,
        tx,
        http,
        &TaskTracker::new(),
        CancellationToken::new(),
    );
    (sub, rx)
}

#[tokio::test(start_paused = true)]
async fn main_node_not_found_only_after_the_discovery_timeout() {
    let d = MemoryDiscovery::new();
    let (sub, status) = start(Duration::from_secs(10), Some(d.browse("airclass").unwrap()));
    sleep(Duration::from_millis(9_900)).await;
    assert_eq!(*status.borrow(), "sub: looking for main over mDNS");
    // a main of another cluster is no main of ours
    d.advertise(&Advert {
        cluster_id: "other".into(),
        role: "main".into(),
        node: "main".into(),
        api_port: 8000,
        address: "127.0.0.1".into(),
        scheme: "http".into(),
    })
    .unwrap();
    sleep(Duration::from_millis(50)).await;
    assert_eq!(*status.borrow(), "sub: looking for main over mDNS");
    sleep(Duration::from_millis(100)).await;
    assert_eq!(*status.borrow(), MAIN_NOT_FOUND);
    assert!(!sub.registered());
    sub.leave(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn no_main_url_and_no_discovery_is_not_found_at_once() {
    let (sub, status) = start(Duration::from_secs(10), None);
    sleep(Duration::from_millis(1)).await;
    assert_eq!(*status.borrow(), MAIN_NOT_FOUND);
    sub.leave(Duration::from_secs(1)).await;
}

/// The heartbeat wait is never longer than the period and at most a tenth shorter, whatever
/// the random draw (so main's suspect/dead timers never see a late heartbeat from jitter).
#[test]
fn heartbeat_jitter_only_shortens_by_up_to_a_tenth() {
    let p = Duration::from_secs(5);
    assert_eq!(run::jittered(p, 0.0), p);
    assert_eq!(run::jittered(p, 0.5), Duration::from_millis(4750));
    assert!(run::jittered(p, 0.999_999) > Duration::from_millis(4500));
    assert_eq!(run::jittered(p, 7.0), Duration::from_millis(4500));
    assert_eq!(run::jittered(p, -1.0), p);
}
