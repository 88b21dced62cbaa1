//! Unit and property tests of `cluster::membership`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::cluster::placement::Reason;
use crate::cluster::protocol::{LivekitHealth, NodeMode, PortRange};
use proptest::prelude::*;

fn info(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.to_owned(),
        mode: NodeMode::Sub,
        protocol_version: PROTOCOL_VERSION,
        software_version: "0.1.0".into(),
        api_url: format!("http://127.0.0.1/{name}"),
        livekit_url: format!("ws://127.0.0.1/{name}"),
        rtc_range: PortRange {
            start: 51000,
            end: 51020,
        },
    }
}

fn stats(sysload: f64, rooms: &[&str]) -> NodeStats {
    NodeStats {
        cpu_percent: 1.0,
        memory_used_bytes: 1,
        memory_total_bytes: 2,
        load1: sysload * 4.0,
        sysload,
        num_cpus: 4,
        rooms: rooms.len() as u32,
        participants: 0,
        livekit_health: LivekitHealth::Healthy,
        room_names: rooms.iter().map(|r| (*r).to_owned()).collect(),
        livekit_node_id: None,
    }
}

struct Clock(Instant);
impl Clock {
    fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn setup() -> (Membership, Clock) {
    (
        Membership::new(MembershipConfig::default()),
        Clock(Instant::now()),
    )
}

fn tr(name: &str, from: NodeState, to: Option<NodeState>) -> Transition {
    Transition {
        name: name.into(),
        from,
        to,
    }
}

use NodeState::{Alive, Dead, Left, Suspect};

#[test]
fn default_timings() {
    let c = MembershipConfig::default();
    assert_eq!(c.suspect_after(), Duration::from_millis(7500));
    assert_eq!(c.dead_after(), Duration::from_millis(17500));
    assert_eq!(c.forget_after(), Duration::from_secs(300));
    let z = MembershipConfig::new(Duration::ZERO, 0, Duration::ZERO);
    assert_eq!(z.heartbeat(), Duration::from_millis(1));
    assert_eq!(z.dead_after_missed, 1);
}

#[test]
fn alive_suspect_dead_forgotten() {
    let (mut m, t) = setup();
    assert_eq!(
        m.register(info("node-1"), "id1", stats(0.1, &[]), t.at(0)),
        Ok(RegisterOutcome::New)
    );
    assert_eq!(m.get("node-1").unwrap().state, Alive);
    assert!(m.tick(t.at(7499)).is_empty());
    assert_eq!(m.tick(t.at(7500)), vec![tr("node-1", Alive, Some(Suspect))]);
    assert!(m.tick(t.at(17_499)).is_empty());
    assert_eq!(
        m.tick(t.at(17_500)),
        vec![tr("node-1", Suspect, Some(Dead))]
    );
    assert_eq!(
        m.counts(),
        StateCounts {
            dead: 1,
            ..StateCounts::default()
        }
    );
    assert_eq!(m.live_nodes().count(), 0);
    // Still listed as dead until forget_after has passed since it died.
    assert!(m.tick(t.at(17_500 + 299_999)).is_empty());
    assert_eq!(m.snapshot(t.at(20_000))[0].state, Dead);
    assert_eq!(m.tick(t.at(317_500)), vec![tr("node-1", Dead, None)]);
    assert!(m.is_empty());
}

#[test]
fn a_late_tick_jumps_straight_to_dead() {
    let (mut m, t) = setup();
    m.register(info("node-1"), "id1", stats(0.1, &[]), t.at(0))
        .unwrap();
    assert_eq!(m.tick(t.at(60_000)), vec![tr("node-1", Alive, Some(Dead))]);
}

#[test]
fn heartbeats_keep_alive_and_revive() {
    let (mut m, t) = setup();
    m.register(info("node-1"), "id1", stats(0.1, &[]), t.at(0))
        .unwrap();
    for k in 1..=10u64 {
        assert_eq!(
            m.heartbeat("node-1", "id1", stats(0.2, &[]), t.at(k * 5000 + 2000)),
            Ok(Alive)
        );
        assert!(m.tick(t.at(k * 5000 + 4000)).is_empty());
    }
    assert_eq!(m.get("node-1").unwrap().stats.sysload, 0.2);
    m.tick(t.at(60_000));
    assert_eq!(m.get("node-1").unwrap().state, Suspect);
    assert_eq!(
        m.heartbeat("node-1", "id1", stats(0.1, &[]), t.at(61_000)),
        Ok(Suspect)
    );
    assert_eq!(m.get("node-1").unwrap().state, Alive);
    m.tick(t.at(100_000));
    assert_eq!(m.get("node-1").unwrap().state, Dead);
    // Same process comes back (e.g. after a partition): Dead → Alive.
    assert_eq!(
        m.heartbeat("node-1", "id1", stats(0.1, &[]), t.at(101_000)),
        Ok(Dead)
    );
    assert_eq!(m.get("node-1").unwrap().state, Alive);
    assert_eq!(m.get("node-1").unwrap().state_since, t.at(101_000));
}

#[test]
fn dead_after_one_missed_skips_suspect() {
    let mut m = Membership::new(MembershipConfig::new(
        Duration::from_secs(1),
        1,
        Duration::from_secs(10),
    ));
    let t = Clock(Instant::now());
    m.register(info("node-1"), "a", stats(0.0, &[]), t.at(0))
        .unwrap();
    assert_eq!(m.tick(t.at(1500)), vec![tr("node-1", Alive, Some(Dead))]);
}

#[test]
fn heartbeat_errors() {
    let (mut m, t) = setup();
    let e = m
        .heartbeat("node-9", "x", stats(0.0, &[]), t.at(0))
        .unwrap_err();
    assert_eq!(
        e,
        MembershipError::UnknownNode {
            name: "node-9".into()
        }
    );
    assert_eq!(e.code(), ErrorCode::UnknownNode);
    m.register(info("node-1"), "id1", stats(0.0, &[]), t.at(0))
        .unwrap();
    let e = m
        .heartbeat("node-1", "other", stats(0.0, &[]), t.at(1))
        .unwrap_err();
    assert_eq!(
        e,
        MembershipError::IdentityMismatch {
            name: "node-1".into()
        }
    );
    assert_eq!(e.code(), ErrorCode::NameTaken);
    m.tick(t.at(20_000));
    // Dead: a stranger is told to register (where it may take the name over).
    let e = m
        .heartbeat("node-1", "other", stats(0.0, &[]), t.at(20_001))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnknownNode);
    assert_eq!(
        m.get("node-1").unwrap().state,
        Dead,
        "a refused heartbeat changes nothing"
    );
}

#[test]
fn name_taken_only_while_live() {
    let (mut m, t) = setup();
    m.register(info("node-1"), "id1", stats(0.0, &[]), t.at(0))
        .unwrap();
    let e = m
        .register(info("node-1"), "id2", stats(0.0, &[]), t.at(1))
        .unwrap_err();
    assert_eq!(
        e,
        MembershipError::NameTaken {
            name: "node-1".into()
        }
    );
    m.tick(t.at(8000));
    assert_eq!(m.get("node-1").unwrap().state, Suspect);
    assert!(m
        .register(info("node-1"), "id2", stats(0.0, &[]), t.at(8001))
        .is_err());
    assert_eq!(m.get("node-1").unwrap().identity, "id1");
    m.tick(t.at(18_000));
    let got = m.register(info("node-1"), "id2", stats(0.0, &[]), t.at(18_001));
    assert_eq!(got, Ok(RegisterOutcome::Replaced { previous: Dead }));
    let e = m.get("node-1").unwrap();
    assert_eq!(
        (e.identity.as_str(), e.state, e.registered_at),
        ("id2", Alive, t.at(18_001))
    );
    // The old process is now the stranger.
    assert!(m
        .heartbeat("node-1", "id1", stats(0.0, &[]), t.at(18_002))
        .is_err());
}

#[test]
fn same_identity_reregisters() {
    let (mut m, t) = setup();
    m.register(info("node-1"), "id1", stats(0.0, &[]), t.at(0))
        .unwrap();
    let mut newer = info("node-1");
    newer.livekit_url = "ws://10.0.0.5:7890".into();
    let got = m.register(newer, "id1", stats(0.3, &["r"]), t.at(4000));
    assert_eq!(got, Ok(RegisterOutcome::Refreshed { previous: Alive }));
    let e = m.get("node-1").unwrap();
    assert_eq!(e.info.livekit_url, "ws://10.0.0.5:7890");
    assert_eq!(
        (e.registered_at, e.last_seen, e.stats.sysload),
        (t.at(0), t.at(4000), 0.3)
    );
}

#[test]
fn leave_then_takeover_and_forget() {
    let (mut m, t) = setup();
    m.register(info("node-1"), "id1", stats(0.0, &["r"]), t.at(0))
        .unwrap();
    m.register(info("node-2"), "id2", stats(0.0, &[]), t.at(0))
        .unwrap();
    assert_eq!(
        m.leave("node-1", "bad", t.at(1)).unwrap_err().code(),
        ErrorCode::NameTaken
    );
    assert!(m.leave("node-3", "id3", t.at(1)).is_err());
    assert_eq!(
        m.leave("node-1", "id1", t.at(1000)),
        Ok(Some(tr("node-1", Alive, Some(Left))))
    );
    assert_eq!(m.leave("node-1", "id1", t.at(1001)), Ok(None));
    // Gets no rooms at once, even the one it reported.
    assert_eq!(m.room_node("r"), None);
    assert!(m
        .candidates()
        .iter()
        .any(|c| c.name == "node-1" && c.liveness == Liveness::Down));
    assert_eq!(m.place("r", 0.7).unwrap().node, "node-2");
    assert_eq!(
        m.heartbeat("node-1", "id1", stats(0.0, &[]), t.at(2000))
            .unwrap_err()
            .code(),
        ErrorCode::UnknownNode
    );
    assert_eq!(m.counts().left, 1);
    assert_eq!(
        m.tick(t.at(301_000)),
        vec![tr("node-2", Alive, Some(Dead)), tr("node-1", Left, None)]
    );
    // A restarted process may take the name of a Left node at once.
    let mut m2 = Membership::new(MembershipConfig::default());
    m2.register(info("node-1"), "id1", stats(0.0, &[]), t.at(0))
        .unwrap();
    m2.leave("node-1", "id1", t.at(1)).unwrap();
    assert_eq!(
        m2.register(info("node-1"), "new", stats(0.0, &[]), t.at(2)),
        Ok(RegisterOutcome::Replaced { previous: Left })
    );
}

#[test]
fn version_and_capacity() {
    let (m0, t) = setup();
    let mut m = Membership::new(m0.config().with_max_nodes(2));
    let mut old = info("node-1");
    old.protocol_version = 2;
    let e = m.register(old, "a", stats(0.0, &[]), t.at(0)).unwrap_err();
    assert_eq!(
        e,
        MembershipError::UnsupportedVersion {
            got: 2,
            want: PROTOCOL_VERSION
        }
    );
    m.register(info("node-1"), "a", stats(0.0, &[]), t.at(0))
        .unwrap();
    m.register(info("node-2"), "b", stats(0.0, &[]), t.at(0))
        .unwrap();
    let e = m
        .register(info("node-3"), "c", stats(0.0, &[]), t.at(0))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TableFull);
    assert!(m
        .register(info("node-2"), "b", stats(0.0, &[]), t.at(1))
        .is_ok());
}

#[test]
fn placement_is_sticky_to_reported_rooms() {
    let (mut m, t) = setup();
    for n in ["main", "node-1", "node-2"] {
        m.register(info(n), n, stats(0.1, &[]), t.at(0)).unwrap();
    }
    // physics-101 hashes to node-2 (golden vector), but it is live on node-1.
    assert_eq!(m.place("physics-101", 0.7).unwrap().node, "node-2");
    m.heartbeat("node-1", "node-1", stats(0.9, &["physics-101"]), t.at(1000))
        .unwrap();
    let c = m.place("physics-101", 0.7).unwrap();
    assert_eq!((c.node.as_str(), c.reason), ("node-1", Reason::Sticky));
    assert_eq!(
        m.rooms(),
        vec![RoomView {
            name: "physics-101".into(),
            node: "node-1".into(),
            num_participants: None
        }]
    );
    // Reported by two nodes (already split): prefer the Alive one.
    m.heartbeat("main", "main", stats(0.1, &["physics-101"]), t.at(9000))
        .unwrap();
    m.heartbeat("node-2", "node-2", stats(0.1, &[]), t.at(9000))
        .unwrap();
    m.tick(t.at(9000));
    assert_eq!(m.get("node-1").unwrap().state, Suspect);
    assert_eq!(m.room_node("physics-101"), Some("main"));
    m.tick(t.at(19_000));
    assert_eq!(m.place("physics-101", 0.7).unwrap().node, "main");
}

#[test]
fn snapshot_shows_everything() {
    let (mut m, t) = setup();
    m.register(info("node-2"), "b", stats(0.5, &["x"]), t.at(0))
        .unwrap();
    m.register(info("node-1"), "a", stats(0.1, &[]), t.at(1000))
        .unwrap();
    let s = m.snapshot(t.at(3500));
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].name.as_str(), s[0].last_seen_ms), ("node-1", 2500));
    assert_eq!(
        (s[1].name.as_str(), s[1].last_seen_ms, s[1].stats.sysload),
        ("node-2", 3500, 0.5)
    );
    assert_eq!(s[1].info, info("node-2"));
}

#[derive(Debug, Clone)]
enum Op {
    Beat(usize),
    Tick,
    Leave(usize),
}

proptest! {
    /// After every tick, each node's state agrees with its silence.
    #[test]
    fn states_follow_silence(ops in proptest::collection::vec(
        (prop_oneof![(0usize..4).prop_map(Op::Beat), Just(Op::Tick), (0usize..4).prop_map(Op::Leave)],
         0u64..9000), 1..120)) {
        let cfg = MembershipConfig::new(Duration::from_secs(2), 3, Duration::from_secs(20));
        let mut m = Membership::new(cfg);
        let t = Clock(Instant::now());
        let mut now = 0u64;
        for i in 0..4 {
            m.register(info(&format!("node-{i}")), "id", stats(0.0, &[]), t.at(0)).unwrap();
        }
        for (op, dt) in ops {
            now += dt;
            let at = t.at(now);
            match op {
                Op::Beat(i) => { let _ = m.heartbeat(&format!("node-{i}"), "id", stats(0.0, &[]), at); }
                Op::Leave(i) => { let _ = m.leave(&format!("node-{i}"), "id", at); }
                Op::Tick => {
                    for tr in m.tick(at) {
                        prop_assert!(tr.to.is_none_or(|to| to > tr.from), "moved backwards: {:?}", tr);
                    }
                    for e in m.nodes.values() {
                        let silent = at.saturating_duration_since(e.last_seen);
                        match e.state {
                            Alive => prop_assert!(silent < cfg.suspect_after()),
                            Suspect => prop_assert!(silent >= cfg.suspect_after() && silent < cfg.dead_after()),
                            Dead => prop_assert!(silent >= cfg.dead_after()),
                            Left => {}
                        }
                        if !e.state.is_live() {
                            prop_assert!(at.saturating_duration_since(e.state_since) < cfg.forget_after());
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_full_table_reuses_the_longest_dead_place_then_refuses() {
    let (m0, t) = setup();
    let mut m = Membership::new(m0.config().with_max_nodes(3));
    for n in ["node-1", "node-2", "node-3"] {
        m.register(info(n), n, stats(0.0, &[]), t.at(0)).unwrap();
    }
    let e = m
        .register(info("node-4"), "x", stats(0.0, &[]), t.at(1))
        .unwrap_err();
    assert_eq!(e, MembershipError::TableFull { max: 3 });
    assert_eq!(e.code(), ErrorCode::TableFull);
    assert!(e.to_string().contains("3 nodes"), "{e}");
    m.leave("node-2", "node-2", t.at(10)).unwrap();
    m.leave("node-1", "node-1", t.at(20)).unwrap();
    // node-2 left first: its place goes to the newcomer
    m.register(info("node-4"), "x", stats(0.0, &["r"]), t.at(30))
        .unwrap();
    assert!(m.get("node-2").is_none() && m.get("node-1").is_some());
    assert_eq!(m.len(), 3);
    assert_eq!(m.slots().len(), 3);
    assert_eq!(m.room_node("r"), Some("node-4"));
}

#[test]
fn room_names_are_bounded_per_node() {
    let (mut m, t) = setup();
    let many: Vec<String> = (0..100).map(|i| format!("room-{i:03}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    m.register(info("node-1"), "a", stats(0.0, &refs), t.at(0))
        .unwrap();
    let e = m.get("node-1").unwrap();
    assert_eq!(e.stats.room_names.len(), MAX_KEPT_ROOMS);
    assert_eq!(e.rooms_dropped, 100 - MAX_KEPT_ROOMS as u32);
    assert_eq!(m.room_node("room-000"), Some("node-1"));
    assert_eq!(m.room_node("room-099"), None);
    let long = "x".repeat(1000);
    m.heartbeat(
        "node-1",
        "a",
        stats(0.0, &[&long, &long, &long, "short"]),
        t.at(1),
    )
    .unwrap();
    let e = m.get("node-1").unwrap();
    assert_eq!(
        e.stats.room_names,
        vec![long.clone(), long.clone(), "short".to_owned()]
    );
    assert_eq!(e.rooms_dropped, 1);
    assert_eq!(
        m.room_node("room-000"),
        None,
        "the index follows the heartbeat"
    );
    let row = serde_json::to_value(&m.view_rows(t.at(1))[0]).unwrap();
    assert_eq!(row["rooms_dropped"], 1);
    let plain = serde_json::to_value(&m.snapshot(t.at(1))[0]).unwrap();
    assert_eq!(row["stats"], plain["stats"]);
    assert_eq!(row["info"], plain["info"]);
}

#[test]
fn recent_placements_stick_until_a_heartbeat_or_three_periods() {
    let (mut m, t) = setup();
    for n in ["node-1", "node-2"] {
        m.register(info(n), n, stats(0.0, &[]), t.at(0)).unwrap();
    }
    assert!(m.known_host("r", t.at(0)).is_none());
    m.note_placement("r", "node-2", t.at(0));
    assert_eq!(m.known_host("r", t.at(1)).unwrap().info.name, "node-2");
    // a heartbeat report wins over a placement
    m.heartbeat("node-1", "node-1", stats(0.0, &["r"]), t.at(2))
        .unwrap();
    assert_eq!(m.known_host("r", t.at(3)).unwrap().info.name, "node-1");
    m.heartbeat("node-1", "node-1", stats(0.0, &[]), t.at(4))
        .unwrap();
    // the placement was last used at 1 ms (the report answered since): kept 15 s (3 heartbeats)
    m.tick(t.at(15_000));
    assert_eq!(m.known_host("r", t.at(15_000)).unwrap().info.name, "node-2");
    m.heartbeat("node-2", "node-2", stats(0.0, &[]), t.at(15_002))
        .unwrap();
    m.tick(t.at(30_003));
    assert!(m.known_host("r", t.at(30_003)).is_none());
    // a node that left takes its placements with it
    m.note_placement("q", "node-2", t.at(30_004));
    m.leave("node-2", "node-2", t.at(30_005)).unwrap();
    assert!(m.known_host("q", t.at(30_006)).is_none());
}

#[test]
fn livekit_ids_are_indexed() {
    let (mut m, t) = setup();
    let mut st = stats(0.0, &[]);
    st.livekit_node_id = Some("ND_a".into());
    m.register(info("node-1"), "a", st.clone(), t.at(0))
        .unwrap();
    assert_eq!(m.node_by_livekit_id("ND_a"), Some("node-1"));
    st.livekit_node_id = Some("ND_b".into());
    m.heartbeat("node-1", "a", st, t.at(1)).unwrap();
    assert_eq!(m.node_by_livekit_id("ND_a"), None);
    assert_eq!(m.node_by_livekit_id("ND_b"), Some("node-1"));
    m.leave("node-1", "a", t.at(2)).unwrap();
    assert_eq!(m.node_by_livekit_id("ND_b"), None);
}

/// One step of a random history of the table.
#[derive(Debug, Clone)]
enum TableOp {
    Register(usize, Vec<usize>, u8),
    Heartbeat(usize, Vec<usize>, u8),
    Leave(usize),
    Tick(u64),
}

fn op() -> impl Strategy<Value = TableOp> {
    let rooms = proptest::collection::vec(0usize..6, 0..4);
    prop_oneof![
        (0usize..6, rooms.clone(), 0u8..10).prop_map(|(n, r, l)| TableOp::Register(n, r, l)),
        (0usize..6, rooms, 0u8..10).prop_map(|(n, r, l)| TableOp::Heartbeat(n, r, l)),
        (0usize..6).prop_map(TableOp::Leave),
        (1u64..20_000).prop_map(TableOp::Tick),
    ]
}

fn apply(m: &mut Membership, t: &Clock, now: &mut u64, op: &TableOp) {
    let rooms = |r: &[usize]| -> Vec<String> { r.iter().map(|i| format!("r{i}")).collect() };
    let st = |r: &[usize], l: u8| {
        let names = rooms(r);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        stats(f64::from(l) / 10.0, &refs)
    };
    match op {
        TableOp::Register(n, r, l) => {
            let _ = m.register(info(&format!("node-{n}")), "id", st(r, *l), t.at(*now));
        }
        TableOp::Heartbeat(n, r, l) => {
            let _ = m.heartbeat(&format!("node-{n}"), "id", st(r, *l), t.at(*now));
        }
        TableOp::Leave(n) => {
            let _ = m.leave(&format!("node-{n}"), "id", t.at(*now));
        }
        TableOp::Tick(d) => {
            *now += d;
            m.tick(t.at(*now));
        }
    }
}

proptest! {
    #[test]
    fn indexes_and_slots_agree_with_the_table(ops in proptest::collection::vec(op(), 1..60)) {
        let (mut m, t) = setup();
        let mut now = 0u64;
        for o in &ops {
            apply(&mut m, &t, &mut now, o);
            // the room index = a scan of the live nodes' reports (Alive first, then by name)
            for i in 0..6 {
                let room = format!("r{i}");
                let hosts = || m.live_nodes().filter(|e| e.stats.room_names.contains(&room));
                let want = hosts()
                    .find(|e| e.state == NodeState::Alive)
                    .or_else(|| hosts().next())
                    .map(|e| e.info.name.clone());
                prop_assert_eq!(m.room_node(&room).map(str::to_owned), want);
                // placement over the shared slots = placement over copied candidates
                let shared = placement::choose_among(&room, m.slots().iter(), 0.7);
                prop_assert_eq!(shared, placement::choose(&room, &m.candidates(), 0.7));
            }
            prop_assert_eq!(m.slots().len(), m.len());
        }
    }
}
