//! `/` health: 200 `OK` on any method, 404 elsewhere, the join-token validation route; with
//! Redis, 406 `Not Ready` once Redis is gone and 200 again once it is back (both flip times
//! are figures), and the node's entry in Redis `nodes` (SERVING, SHUTTING_DOWN, HDEL).

use std::time::{Duration, Instant};

use livekit_api::access_token::{AccessToken, VideoGrants};
use nix::sys::signal::Signal;
use prost::Message as _;

use super::participants::{add_participant, base, http};
use crate::common::figures::figure;
use crate::common::livekit_proc::{base_config, free_port, LkProc, Opts, Server, KEY, SECRET};
use crate::common::redis_proc::RedisProc;

both!(
    health_ok_and_404,
    redis_outage_flips_health_both_ways,
    redis_node_entry_lifecycle,
);

async fn health_ok_and_404(s: Server) {
    let port = free_port();
    let p = LkProc::spawn(s, &Opts::new(base_config(port, free_port())));
    p.wait_ready();
    let (c, n, url) = (http(), s.name(), base(port));
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ] {
        let r = c
            .request(method.clone(), &url)
            .send()
            .await
            .expect("health");
        assert_eq!(r.status(), 200, "{n}: {method}");
        assert_eq!(
            r.headers()["content-type"],
            "text/plain; charset=utf-8",
            "{n}"
        );
        assert_eq!(r.text().await.expect("body"), "OK", "{n}");
    }
    for path in ["/healthz", "/readyz", "/foo"] {
        let r = c.get(format!("{url}{path}")).send().await.expect("get");
        assert_eq!(r.status(), 404, "{n}: {path}");
        assert_eq!(r.text().await.expect("body"), "404 page not found\n", "{n}");
    }
    let join = AccessToken::with_api_key(KEY, SECRET)
        .with_identity("alice")
        .with_grants(VideoGrants {
            room_join: true,
            room: "r1".into(),
            ..Default::default()
        })
        .to_jwt()
        .expect("jwt");
    // The join-token validation routes: (path, status, body).
    let checks = [
        (format!("/rtc/validate?access_token={join}"), 200, "success"),
        (
            "/rtc/v1/validate?access_token=garbage".to_string(),
            401,
            "invalid authorization token",
        ),
        (
            format!("/rtc/v1/validate?access_token={join}"),
            400,
            "join_request is required",
        ),
    ];
    for (path, status, body) in checks {
        let r = c
            .get(format!("{url}{path}"))
            .send()
            .await
            .expect("validate");
        assert_eq!(r.status(), status, "{n}: {path}");
        assert_eq!(r.text().await.expect("body"), body, "{n}: {path}");
    }
}

fn with_redis(port: u16, redis: &RedisProc) -> Opts {
    let cfg = format!(
        "{}redis:\n  address: {}\n",
        base_config(port, free_port()),
        redis.address()
    );
    Opts::new(cfg)
}

/// Polls `/` every 50 ms until it answers `want` (or `limit` passes); the time it took.
async fn time_until(url: &str, want: u16, limit: Duration) -> Option<Duration> {
    let (c, t0) = (http(), Instant::now());
    while t0.elapsed() < limit {
        if let Ok(r) = c.get(url).timeout(Duration::from_secs(1)).send().await {
            if r.status().as_u16() == want {
                return Some(t0.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn redis_outage_flips_health_both_ways(s: Server) {
    let mut redis = RedisProc::start();
    let port = free_port();
    let mut p = LkProc::spawn(s, &with_redis(port, &redis));
    p.wait_ready();
    let (n, url) = (s.name(), base(port));
    assert!(
        time_until(&url, 200, Duration::from_secs(5))
            .await
            .is_some(),
        "{n}"
    );
    redis.stop();
    let down = time_until(&url, 406, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("{n}: / must turn 406 without Redis"));
    let body = http()
        .get(&url)
        .send()
        .await
        .expect("health")
        .text()
        .await
        .expect("body");
    assert!(
        body.starts_with("Not Ready\nNode Updated At "),
        "{n}: {body:?}"
    );
    assert!(body.ends_with(" +0000 UTC"), "{n}: {body:?}");
    // Degraded, not dead: the server keeps running without Redis.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        p.wait_exit(Duration::from_millis(10)).is_none(),
        "{n}: exited without Redis"
    );
    redis.restart();
    let up = time_until(&url, 200, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("{n}: / must answer 200 again once Redis is back"));
    let tag = s.tag();
    figure(
        &format!("contract {tag}: / 200 -> 406 after Redis stops"),
        format!("{:.2} s", down.as_secs_f64()),
    );
    figure(
        &format!("contract {tag}: / 406 -> 200 after Redis is back"),
        format!("{:.2} s", up.as_secs_f64()),
    );
}

fn node_entry(con: &mut redis::Connection, id: &str) -> Option<livekit_protocol::Node> {
    let bytes: Option<Vec<u8>> = redis::cmd("HGET")
        .arg("nodes")
        .arg(id)
        .query(con)
        .expect("HGET");
    bytes.map(|b| livekit_protocol::Node::decode(b.as_slice()).expect("decode Node"))
}

async fn redis_node_entry_lifecycle(s: Server) {
    let redis = RedisProc::start();
    let port = free_port();
    let mut p = LkProc::spawn(s, &with_redis(port, &redis));
    let ready = p.wait_ready();
    let n = s.name();
    let id = ready.fields["nodeID"].as_str().expect("id").to_string();
    let connecting = p
        .wait_line("connecting to redis", Duration::from_secs(1))
        .expect("line");
    let l = crate::common::livekit_proc::parse_console(&connecting);
    assert_eq!(
        l.fields,
        serde_json::json!({"simple": true, "addr": redis.address()}),
        "{n}"
    );
    assert_eq!(p.count("using single-node routing"), 0, "{n}");

    let mut con = redis.conn();
    let node = node_entry(&mut con, &id).unwrap_or_else(|| panic!("{n}: node not in `nodes`"));
    assert_eq!(
        node.state,
        livekit_protocol::NodeState::Serving as i32,
        "{n}"
    );
    assert_eq!(node.ip, "127.0.0.1", "{n}");
    assert!(node.num_cpus >= 1, "{n}: {node:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let stats = node.stats.expect("stats");
    assert!(
        (now - stats.updated_at).abs() <= 3,
        "{n}: updated_at {}",
        stats.updated_at
    );
    // The real server's first entry carries only started_at/updated_at; the full stats
    // (CPUs, load) come with the first refresh, about 2 s later.
    let t0 = Instant::now();
    let full = loop {
        let s = node_entry(&mut con, &id)
            .and_then(|n| n.stats)
            .expect("stats");
        if s.num_cpus >= 1 || t0.elapsed() > Duration::from_secs(6) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(full.num_cpus >= 1, "{n}: {full:?}");

    drain_in_redis(&mut p, port, &mut con, &id).await;
}

/// Drain: `SHUTTING_DOWN` in `nodes` while a participant stays, HDEL on exit.
async fn drain_in_redis(p: &mut LkProc, port: u16, con: &mut redis::Connection, id: &str) {
    let n = p.server.name();
    let who = add_participant(p, port, "busy", "alice").await;
    p.signal(Signal::SIGTERM);
    p.wait_line("exit requested, shutting down", Duration::from_secs(3))
        .expect("line");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut state = -1;
    while Instant::now() < deadline {
        state = node_entry(con, id).map_or(-1, |n| n.state);
        if state == livekit_protocol::NodeState::ShuttingDown as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        state,
        livekit_protocol::NodeState::ShuttingDown as i32,
        "{n}"
    );
    p.signal(Signal::SIGTERM);
    assert_eq!(
        p.wait_exit(Duration::from_secs(10)).expect("exit").code(),
        Some(0),
        "{n}"
    );
    assert!(node_entry(con, id).is_none(), "{n}: HDEL on exit");
    drop(who);
}
