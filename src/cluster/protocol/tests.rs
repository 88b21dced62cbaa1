//! Unit and property tests of `cluster::protocol`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};

fn sample_info(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.to_owned(),
        mode: NodeMode::Sub,
        protocol_version: PROTOCOL_VERSION,
        software_version: "0.1.0".to_owned(),
        api_url: "http://127.0.0.1:8001".to_owned(),
        livekit_url: "ws://127.0.0.1:7890".to_owned(),
        rtc_range: PortRange {
            start: 51000,
            end: 51020,
        },
    }
}

fn sample_stats() -> NodeStats {
    NodeStats {
        cpu_percent: 12.5,
        memory_used_bytes: 1 << 30,
        memory_total_bytes: 8 << 30,
        load1: 0.5,
        sysload: 0.125,
        num_cpus: 4,
        rooms: 1,
        participants: 3,
        livekit_health: LivekitHealth::Healthy,
        room_names: vec!["physics-101".to_owned()],
        livekit_node_id: None,
    }
}

fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(v: &T) {
    let text = serde_json::to_string(v).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, v, "round trip of {text}");
}

#[test]
fn every_message_round_trips() {
    let reg = RegisterRequest {
        cluster_id: "airclass".into(),
        identity: "0011".into(),
        node: sample_info("node-1"),
        stats: sample_stats(),
    };
    round_trip(&reg);
    round_trip(&HeartbeatRequest {
        name: "node-1".into(),
        identity: "a".into(),
        stats: sample_stats(),
    });
    round_trip(&LeaveRequest {
        name: "node-1".into(),
        identity: "a".into(),
    });
    round_trip(&RegisterResponse {
        accepted: true,
        heartbeat_secs: 5,
        main_name: "main".into(),
        protocol_version: 1,
    });
    round_trip(&HeartbeatResponse {
        accepted: true,
        heartbeat_secs: 5,
    });
    round_trip(&LeaveResponse { left: true });
    round_trip(&ErrorBody::new(ErrorCode::Replay, "nonce seen"));
    round_trip(&JoinRequest {
        identity: "alice".into(),
        name: "Alice".into(),
        role: Role::Teacher,
    });
    round_trip(&JoinResponse {
        room: "r".into(),
        node: "node-1".into(),
        livekit_url: "ws://x".into(),
        token: "t".into(),
        expires_at: 1_700_000_000,
    });
    let view = NodeView {
        name: "node-1".into(),
        state: NodeState::Suspect,
        info: sample_info("node-1"),
        stats: sample_stats(),
        last_seen_ms: 6000,
    };
    round_trip(&view);
    round_trip(&ClusterStatus {
        cluster_id: "airclass".into(),
        main_name: "main".into(),
        protocol_version: 1,
        heartbeat_secs: 5,
        sysload_limit: 0.7,
        nodes_alive: 1,
        nodes_suspect: 1,
        nodes_dead: 0,
        nodes_left: 0,
        rooms: 1,
        participants: 3,
        nodes: vec![view],
    });
    round_trip(&RoomView {
        name: "r".into(),
        node: "main".into(),
        num_participants: Some(2),
    });
}

#[test]
fn wire_spelling_is_stable() {
    let v = serde_json::to_value(sample_stats()).unwrap();
    assert_eq!(v["livekit_health"], "healthy");
    let v = serde_json::to_value(sample_info("main")).unwrap();
    assert_eq!(v["mode"], "sub");
    assert_eq!(v["rtc_range"]["start"], 51000);
    assert_eq!(serde_json::to_value(NodeState::Left).unwrap(), "left");
    assert_eq!(serde_json::to_value(Role::Student).unwrap(), "student");
    let e = serde_json::to_value(ErrorBody::new(ErrorCode::NameTaken, "m")).unwrap();
    assert_eq!(
        e,
        serde_json::json!({"error": "name_taken", "message": "m"})
    );
}

#[test]
fn requests_refuse_unknown_fields() {
    let j = r#"{"name":"node-1","identity":"a","extra":1}"#;
    assert!(serde_json::from_str::<LeaveRequest>(j).is_err());
    let j = r#"{"identity":"a","role":"teacher","admin":true}"#;
    assert!(serde_json::from_str::<JoinRequest>(j).is_err());
    let j = r#"{"identity":"a","role":"janitor"}"#;
    assert!(serde_json::from_str::<JoinRequest>(j).is_err());
    let ok: JoinRequest = serde_json::from_str(r#"{"identity":"a","role":"student"}"#).unwrap();
    assert_eq!(ok.name, "");
}

#[test]
fn responses_tolerate_new_fields() {
    let j = r#"{"accepted":true,"heartbeat_secs":5,"future":1}"#;
    let r: HeartbeatResponse = serde_json::from_str(j).unwrap();
    assert!(r.accepted);
}

#[test]
fn error_codes_parse_and_map() {
    for c in ErrorCode::ALL {
        assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        assert!((400..600).contains(&c.http_status()));
    }
    assert_eq!(ErrorCode::parse("nope"), None);
    assert_eq!(ErrorCode::TooLarge.http_status(), 413);
    assert_eq!(ErrorCode::UnknownNode.http_status(), 404);
    assert_eq!(ErrorCode::Unauthorized.http_status(), 401);
}

#[test]
fn validation_rules() {
    assert!(validate_node_name("node-1").is_ok());
    assert!(validate_node_name("main").is_ok());
    for bad in ["", "-a", "a-", "Node", "a.b", "a b", &"x".repeat(55)] {
        assert!(validate_node_name(bad).is_err(), "{bad:?}");
    }
    assert!(validate_identity(&"a".repeat(64)).is_ok());
    assert!(validate_identity(&"a".repeat(65)).is_err());
    assert!(validate_identity("a b").is_err());
    assert!(validate_room_name("maths 1°").is_ok());
    assert!(validate_room_name("a\nb").is_err());
    assert!(validate_room_name("").is_err());

    let mut s = sample_stats();
    assert!(s.validate().is_ok());
    s.sysload = f64::NAN;
    assert!(s.validate().is_err());
    let mut s = sample_stats();
    s.room_names = vec!["r".into(); MAX_ROOMS_PER_NODE + 1];
    assert!(s.validate().is_err());
    let mut i = sample_info("node-1");
    i.rtc_range = PortRange { start: 2, end: 1 };
    assert!(i.validate().is_err());
    let mut i = sample_info("node-1");
    i.api_url.clear();
    assert!(i.validate().is_err());
}

#[test]
fn identities_are_32_hex_and_differ() {
    let mut rng = StdRng::seed_from_u64(7);
    let a = new_identity(&mut rng);
    let b = new_identity(&mut rng);
    assert_eq!(a.len(), 32);
    assert!(validate_identity(&a).is_ok());
    assert_ne!(a, b);
}

proptest! {
    /// serde_json (without its `float_roundtrip` feature) may change the last bit of an f64;
    /// everything else must survive exactly.
    #[test]
    fn stats_round_trip(cpu in 0.0f64..1e4, used: u64, total: u64, load in 0.0f64..1e3,
                        cpus in 1u32..512, rooms in proptest::collection::vec("[a-z0-9 -]{1,20}", 0..8)) {
        let s = NodeStats { cpu_percent: cpu, memory_used_bytes: used, memory_total_bytes: total,
            load1: load, sysload: load / f64::from(cpus), num_cpus: cpus, rooms: rooms.len() as u32,
            participants: 0, livekit_health: LivekitHealth::Degraded, room_names: rooms,
            livekit_node_id: Some("ND_abc123".into()) };
        let back: NodeStats = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= a.abs() * 1e-12;
        prop_assert!(close(back.cpu_percent, s.cpu_percent) && close(back.load1, s.load1)
                     && close(back.sysload, s.sysload));
        let exact = NodeStats { cpu_percent: s.cpu_percent, load1: s.load1, sysload: s.sysload, ..back };
        prop_assert_eq!(exact, s);
    }
}

#[test]
fn mdns_names() {
    assert_eq!(mdns_host_name("node-1"), "airclass-node-1.local.");
    assert_eq!(MDNS_SERVICE_TYPE, "_airclass._tcp.local.");
    // The longest valid node name still fits one DNS label (63 bytes).
    let longest = "x".repeat(MAX_NODE_NAME_LEN);
    let label = mdns_host_name(&longest);
    assert_eq!(label.trim_end_matches(".local.").len(), 63);
}
