//! What main refuses, and that a refusal changes nothing: replay, skew, oversize, malformed JSON,
//! header/body mismatch, wrong cluster, unknown node, application tokens.

use std::time::Duration;

use airclass_node::cluster::protocol::{HeartbeatRequest, LeaveRequest, RegisterRequest};
use serde_json::json;

use crate::roles::*;

const HB: Duration = Duration::from_secs(5);

fn register_body(name: &str, identity: &str, cluster: &str) -> Vec<u8> {
    let r = RegisterRequest {
        cluster_id: cluster.into(),
        identity: identity.into(),
        node: info(
            name,
            airclass_node::cluster::protocol::NodeMode::Sub,
            "http://127.0.0.1:1",
            7890,
        ),
        stats: stats(0.1, &[]),
    };
    serde_json::to_vec(&r).unwrap()
}

const REG: &str = "/api/cluster/register";

#[tokio::test]
async fn replay_skew_and_bad_signature_are_refused_without_state_change() {
    let m = MainServer::start(HB, None).await;
    let body = register_body("node-1", "ident-1", CLUSTER);
    let nonce = "00112233445566778899aabbccddeeff";
    let (code, v) = post_signed(&m.url, REG, &body, "node-1", &secret(), None, Some(nonce)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["accepted"], true);
    // the same request again: replay
    let (code, v) = post_signed(&m.url, REG, &body, "node-1", &secret(), None, Some(nonce)).await;
    assert_eq!((code, v["error"].as_str()), (401, Some("replay")));
    // 40 s behind and 40 s ahead: skew (the message says by how much). Not 31: on a loaded
    // machine a second or more passes between signing and checking, and 31 s ahead becomes 30.
    for off in [-40i64, 40] {
        let ts = (airclass_node::clock::unix_now() as i64 + off) as u64;
        let (code, v) = post_signed(&m.url, REG, &body, "node-1", &secret(), Some(ts), None).await;
        assert_eq!((code, v["error"].as_str()), (401, Some("skew")), "{v}");
        // main reads its clock a moment later: up to a few second boundaries may pass
        let said: Vec<String> = (off - 5..=off)
            .map(|o| format!("request timestamp is {o} s off our clock"))
            .collect();
        let message = v["message"].as_str().unwrap();
        assert!(said.iter().any(|s| message.contains(s.as_str())), "{v}");
    }
    // a fresh nonce is accepted (same identity re-registers); no signature headers: bad_signature
    let (code, v) = post_signed(&m.url, REG, &body, "node-1", &secret(), None, None).await;
    assert_eq!(code, 200, "{v}");
    let client = http();
    let r = client
        .post(format!("{}{REG}", m.url))
        .header("x-airclass-node", "node-1")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!((code, v["error"].as_str()), (401, Some("bad_signature")));
    let counts = m.main.refused_counts();
    assert_eq!(counts.get("replay"), Some(&1));
    assert_eq!(counts.get("skew"), Some(&2));
    assert_eq!(counts.get("bad_signature"), Some(&1));
    let (_, st) = m.get("/api/cluster/status").await;
    assert_eq!(st["refused"]["skew"], 2);
    assert_eq!(st["nodes_alive"], 2); // main + node-1, nothing else
}

#[tokio::test]
async fn oversize_is_413_before_anything_and_malformed_is_400() {
    let m = MainServer::start(HB, None).await;
    let big = vec![b' '; 64 * 1024 + 1];
    let (code, v) = post_signed(&m.url, REG, &big, "node-1", &secret(), None, None).await;
    assert_eq!((code, v["error"].as_str()), (413, Some("too_large")));
    // oversize with no signature at all is still 413 (size is checked first)
    let r = http()
        .post(format!("{}{REG}", m.url))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // exactly at the cap is read (and then fails as JSON, not as size)
    let at_cap = vec![b' '; 64 * 1024];
    let (code, v) = post_signed(&m.url, REG, &at_cap, "node-1", &secret(), None, None).await;
    assert_eq!((code, v["error"].as_str()), (400, Some("malformed")));
    // broken JSON, unknown fields, header/body name mismatch, invalid names
    let (code, v) = post_signed(
        &m.url,
        REG,
        b"{\"cluster_id\":",
        "node-1",
        &secret(),
        None,
        None,
    )
    .await;
    assert_eq!((code, v["error"].as_str()), (400, Some("malformed")));
    let mut extra: serde_json::Value =
        serde_json::from_slice(&register_body("node-1", "i1", CLUSTER)).unwrap();
    extra["surprise"] = json!(1);
    let (code, _) = post_signed(
        &m.url,
        REG,
        extra.to_string().as_bytes(),
        "node-1",
        &secret(),
        None,
        None,
    )
    .await;
    assert_eq!(code, 400);
    let (code, v) = post_signed(
        &m.url,
        REG,
        &register_body("node-1", "i1", CLUSTER),
        "node-9",
        &secret(),
        None,
        None,
    )
    .await;
    assert_eq!((code, v["error"].as_str()), (400, Some("malformed")));
    let (code, _) = post_signed(
        &m.url,
        REG,
        &register_body("Node_1", "i1", CLUSTER),
        "Node_1",
        &secret(),
        None,
        None,
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(m.state_of("node-1"), None);
    assert_eq!(m.main.refused_counts().get("too_large"), Some(&2));
}

#[tokio::test]
async fn wrong_cluster_unknown_node_and_foreign_leave() {
    let m = MainServer::start(HB, None).await;
    let (code, v) = post_signed(
        &m.url,
        REG,
        &register_body("node-1", "i1", "other-cluster"),
        "node-1",
        &secret(),
        None,
        None,
    )
    .await;
    assert_eq!((code, v["error"].as_str()), (403, Some("wrong_cluster")));
    let hb = serde_json::to_vec(&HeartbeatRequest {
        name: "node-1".into(),
        identity: "i1".into(),
        stats: stats(0.1, &[]),
    })
    .unwrap();
    let (code, v) = post_signed(
        &m.url,
        "/api/cluster/heartbeat",
        &hb,
        "node-1",
        &secret(),
        None,
        None,
    )
    .await;
    assert_eq!((code, v["error"].as_str()), (404, Some("unknown_node")));
    let (code, _) = post_signed(
        &m.url,
        REG,
        &register_body("node-1", "i1", CLUSTER),
        "node-1",
        &secret(),
        None,
        None,
    )
    .await;
    assert_eq!(code, 200);
    // another identity may neither heartbeat nor make node-1 leave
    let hb2 = serde_json::to_vec(&HeartbeatRequest {
        name: "node-1".into(),
        identity: "i2".into(),
        stats: stats(0.1, &[]),
    })
    .unwrap();
    let (code, v) = post_signed(
        &m.url,
        "/api/cluster/heartbeat",
        &hb2,
        "node-1",
        &secret(),
        None,
        None,
    )
    .await;
    assert_eq!((code, v["error"].as_str()), (409, Some("name_taken")));
    let lv = serde_json::to_vec(&LeaveRequest {
        name: "node-1".into(),
        identity: "i2".into(),
    })
    .unwrap();
    let (code, _) = post_signed(
        &m.url,
        "/api/cluster/leave",
        &lv,
        "node-1",
        &secret(),
        None,
        None,
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(m.state_of("node-1").as_deref(), Some("alive"));
    // registering over main's own name is refused too
    let (code, v) = post_signed(
        &m.url,
        REG,
        &register_body("main", "i3", CLUSTER),
        "main",
        &secret(),
        None,
        None,
    )
    .await;
    assert_eq!((code, v["error"].as_str()), (409, Some("name_taken")));
}

#[tokio::test]
async fn join_needs_the_application_token() {
    let m = MainServer::start(HB, None).await;
    let body = json!({"identity": "alice", "name": "Alice", "role": "teacher"});
    let (code, v) = join(&m.url, "physics-101", None, body.clone()).await;
    assert_eq!((code, v["error"].as_str()), (401, Some("unauthorized")));
    let (code, v) = join(&m.url, "physics-101", Some("not-the-token"), body.clone()).await;
    assert_eq!((code, v["error"].as_str()), (401, Some("unauthorized")));
    assert!(!v.to_string().contains("not-the-token"));
    assert_eq!(m.main.refused_counts().get("unauthorized"), Some(&2));
    let (code, v) = join(&m.url, "physics-101", Some(APP_TOKEN), body).await;
    assert_eq!(code, 200, "{v}");
    // a bad role is malformed
    let (code, v) = join(
        &m.url,
        "physics-101",
        Some(APP_TOKEN),
        json!({"identity": "x", "role": "admin"}),
    )
    .await;
    assert_eq!((code, v["error"].as_str()), (400, Some("malformed")));
}
