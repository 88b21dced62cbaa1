//! A registered node that turns hostile (it holds the cluster secret): heartbeat floods, a full
//! table, maximal records, URLs that point at a tarpit, and a main whose own LiveKit hangs.
//! Main must keep serving every other node and every public GET within bounds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use airclass_node::clock::{unix_now, Instant};
use airclass_node::cluster::auth;
use airclass_node::cluster::main::join::ROOMS_BUDGET;
use airclass_node::cluster::main::{endpoints, Main, Refusal, MAX_VIEW_BYTES};
use airclass_node::cluster::membership::MAX_NODES as DEFAULT_MAX_NODES;
use airclass_node::cluster::protocol::{HeartbeatRequest, NodeMode, NodeStats, RegisterRequest};
use axum::body::Body;
use axum::extract::State;
use serde_json::json;

use crate::roles::*;

/// A signed request for `path` from `node`, timestamped `ts` (fresh nonce), as a sub sends it.
fn signed_request(path: &str, node: &str, body: Vec<u8>, ts: u64) -> axum::extract::Request {
    let nonce = auth::new_nonce(&mut rand::thread_rng());
    let sig = auth::sign(&secret(), "POST", path, ts, &nonce, &body);
    axum::http::Request::builder()
        .method("POST")
        .uri(path)
        .header(auth::HEADER_NODE, node)
        .header(auth::HEADER_TIMESTAMP, ts.to_string())
        .header(auth::HEADER_NONCE, nonce)
        .header(auth::HEADER_SIGNATURE, sig)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn register_body(name: &str, identity: &str, st: NodeStats) -> Vec<u8> {
    let r = RegisterRequest {
        cluster_id: CLUSTER.into(),
        identity: identity.into(),
        node: info(name, NodeMode::Sub, "http://127.0.0.1:1", 7890),
        stats: st,
    };
    serde_json::to_vec(&r).unwrap()
}

/// Register `name` straight through main's handler; the refusal when refused.
async fn register(main: &Arc<Main>, name: &str, body: Vec<u8>) -> Result<(), Refusal> {
    let req = signed_request("/api/cluster/register", name, body, unix_now());
    endpoints::register(State(main.clone()), req)
        .await
        .map(|_| ())
}

/// A flooding node's heartbeats, straight into main's handler (no sockets: the flood is as fast
/// as this machine signs and main verifies). Timestamps 29 s ahead keep each nonce ~59 s.
/// Returns (accepted, refused busy, refused otherwise).
async fn flood(main: &Arc<Main>, name: &str, identity: &str, n: usize) -> (usize, usize, usize) {
    let body = serde_json::to_vec(&HeartbeatRequest {
        name: name.into(),
        identity: identity.into(),
        stats: stats(0.1, &[]),
    })
    .unwrap();
    let (mut ok, mut busy, mut other) = (0, 0, 0);
    for _ in 0..n {
        let req = signed_request(
            "/api/cluster/heartbeat",
            name,
            body.clone(),
            unix_now() + 29,
        );
        match endpoints::heartbeat(State(main.clone()), req).await {
            Ok(_) => ok += 1,
            Err(r) if r.code.as_str() == "busy" => busy += 1,
            Err(_) => other += 1,
        }
    }
    (ok, busy, other)
}

/// `airclass_cluster_refusals_total{code}` as counted so far in this process (the metrics are
/// process-wide: tests running at once may add to it, never subtract).
fn refusals_counted(code: &'static str) -> u64 {
    airclass_node::metrics::families()
        .refusals
        .get_or_create(&airclass_node::metrics::families::CodeLabel { code })
        .get()
}

/// More signed heartbeats than the old shared replay cache held (100 000 within the window)
/// come from one registered node; a real sub heartbeating at 1 Hz through the same main must
/// stay alive and registered the whole time, and the flooder is the one refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_flood_does_not_lock_out_other_nodes() {
    let m = MainServer::start(Duration::from_secs(1), None).await;
    let sub = Sub::of(&m, "node-1", stats(0.1, &[]));
    wait_until(Duration::from_secs(5), || async { sub.handle.registered() })
        .await
        .expect("node-1 registers");
    register(
        &m.main,
        "evil",
        register_body("evil", "evil-id", stats(0.1, &[])),
    )
    .await
    .unwrap();
    let busy_counted = refusals_counted("busy");
    let t0 = Instant::now();
    let (ok, busy, other) = flood(&m.main, "evil", "evil-id", 100_500).await;
    let flood_secs = t0.elapsed().as_secs_f64();
    figure(
        "hostile flood: signed heartbeats from one node",
        format!("100500 in {flood_secs:.1} s: {ok} accepted, {busy} refused busy, {other} other"),
    );
    // the flood goes on while the real sub must keep its place for > dead_after (3.5 s)
    let (main, stop) = (m.main.clone(), Arc::new(AtomicUsize::new(0)));
    let stop2 = stop.clone();
    let flooder = tokio::spawn(async move {
        let mut sent = 0;
        while stop2.load(Ordering::Relaxed) == 0 {
            flood(&main, "evil", "evil-id", 200).await;
            sent += 200;
            tokio::task::yield_now().await;
        }
        sent
    });
    let watch = Instant::now();
    let mut states = Vec::new();
    while watch.elapsed() < Duration::from_secs(5) {
        states.push(m.state_of("node-1").unwrap_or_else(|| "gone".into()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(1, Ordering::Relaxed);
    let more = flooder.await.unwrap();
    figure(
        "hostile flood: real sub during 5 s of continued flood",
        format!(
            "{more} more flood heartbeats; node-1 alive in {}/{} samples; sub status {:?}",
            states.iter().filter(|s| *s == "alive").count(),
            states.len(),
            sub.status_text()
        ),
    );
    assert!(
        states.iter().all(|s| s == "alive"),
        "node-1 must stay alive while another node floods: {states:?}; status {:?}",
        sub.status_text()
    );
    assert!(
        sub.status_text().contains("registered"),
        "{:?}",
        sub.status_text()
    );
    assert!(busy > 0, "the flooder itself is refused busy");
    assert!(
        refusals_counted("busy") >= busy_counted + busy as u64,
        "every busy refusal is counted in airclass_cluster_refusals_total"
    );
    assert!(ok < 100_000, "the flooder got {ok} heartbeats through");
}

/// The membership table holds at most DEFAULT_MAX_NODES (1024) nodes; the next newcomer gets a
/// JSON refusal that says so, and nodes already in the table keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_is_capped_with_a_clear_refusal() {
    let m = MainServer::start(Duration::from_secs(5), None).await;
    // main itself is the first entry
    for i in 1..DEFAULT_MAX_NODES {
        let name = format!("node-{i}");
        let body = register_body(&name, &format!("id-{i}"), stats(0.1, &[]));
        register(&m.main, &name, body)
            .await
            .unwrap_or_else(|r| panic!("{name} refused: {} {}", r.code.as_str(), r.message));
    }
    let counted = refusals_counted("table_full");
    let body = register_body("one-too-many", "id-x", stats(0.1, &[]));
    let req = signed_request("/api/cluster/register", "one-too-many", body, unix_now());
    let refusal = endpoints::register(State(m.main.clone()), req)
        .await
        .map(|_| ())
        .expect_err("the table is full");
    let resp = axum::response::IntoResponse::into_response(refusal);
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    figure("table cap refusal", format!("{status} {v}"));
    assert_eq!(
        (status, v["error"].as_str()),
        (503, Some("table_full")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("1024"), "{v}");
    assert!(
        refusals_counted("table_full") > counted,
        "counted in airclass_cluster_refusals_total"
    );
    assert_eq!(m.main.nodes().len(), DEFAULT_MAX_NODES);
    // a member still heartbeats
    let hb = serde_json::to_vec(&HeartbeatRequest {
        name: "node-7".into(),
        identity: "id-7".into(),
        stats: stats(0.2, &[]),
    })
    .unwrap();
    let req = signed_request("/api/cluster/heartbeat", "node-7", hb, unix_now());
    assert!(endpoints::heartbeat(State(m.main.clone()), req)
        .await
        .is_ok());
}

/// A register body for `name` with every string at its longest and `rooms` as room names.
fn maximal_body(name: &str, rooms: Vec<String>) -> Vec<u8> {
    let mut st = stats(0.1, &[]);
    st.room_names = rooms;
    let mut r: RegisterRequest =
        serde_json::from_slice(&register_body(name, &format!("id-{name}"), st)).unwrap();
    r.node.software_version = "v".repeat(512);
    r.node.api_url = format!("http://{}", "a".repeat(505));
    r.node.livekit_url = format!("ws://{}", "\"".repeat(507));
    serde_json::to_vec(&r).unwrap()
}

/// As many 255-byte room names full of `"` (JSON doubles each) as fit `name`'s body in 64 KiB.
fn maximal_rooms(name: &str) -> Vec<String> {
    let room = "\"".repeat(251);
    let mut rooms: Vec<String> = Vec::new();
    loop {
        rooms.push(format!("{:04}{room}", rooms.len()));
        if maximal_body(name, rooms.clone()).len() > 64 * 1024 {
            rooms.pop();
            return rooms;
        }
    }
}

/// A full table of maximal register bodies (just under the 64 KiB body limit, every string at
/// its longest, room names full of characters JSON must escape) keeps `/api/cluster/nodes` and
/// `/api/cluster/status` under MAX_VIEW_BYTES.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximal_records_keep_answers_bounded() {
    let m = MainServer::start(Duration::from_secs(5), None).await;
    let t0 = Instant::now();
    // names of one length (node-0001 …), so one maximal body serves as every node's template
    let template =
        String::from_utf8(maximal_body("node-0000", maximal_rooms("node-0000"))).unwrap();
    for i in 1..DEFAULT_MAX_NODES {
        let name = format!("node-{i:04}");
        let body = template.replace("node-0000", &name).into_bytes();
        assert!(body.len() <= 64 * 1024, "{} bytes", body.len());
        register(&m.main, &name, body)
            .await
            .unwrap_or_else(|r| panic!("{name} refused: {} {}", r.code.as_str(), r.message));
    }
    let fill = t0.elapsed().as_secs_f64();
    let limit = MAX_VIEW_BYTES;
    for path in [
        "/api/cluster/nodes",
        "/api/cluster/status",
        "/api/livekit/rooms",
    ] {
        let t = Instant::now();
        let r = http().get(format!("{}{path}", m.url)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let len = r.bytes().await.unwrap().len();
        figure(
            &format!("maximal table ({DEFAULT_MAX_NODES} nodes) {path}"),
            format!(
                "{len} bytes in {:.0} ms (table filled in {fill:.1} s)",
                t.elapsed().as_secs_f64() * 1000.0
            ),
        );
        assert!(len <= limit, "{path}: {len} bytes > {limit}");
    }
}

/// A TCP listener that accepts and never answers; counts what it accepted.
struct Tarpit {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Tarpit {
    async fn start() -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        Tarpit { port, accepted }
    }
}

/// A hostile node points its `api_url` and `livekit_url` at a tarpit and reports rooms: main
/// never dials them, for any public GET or join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_urls_are_never_dialled() {
    let tarpit = Tarpit::start().await;
    let m = MainServer::start(Duration::from_secs(5), None).await;
    let mut r: RegisterRequest =
        serde_json::from_slice(&register_body("evil", "evil-id", stats(0.0, &["trap"]))).unwrap();
    r.node.api_url = format!("http://127.0.0.1:{}", tarpit.port);
    r.node.livekit_url = format!("ws://127.0.0.1:{}", tarpit.port);
    register(&m.main, "evil", serde_json::to_vec(&r).unwrap())
        .await
        .unwrap();
    let t0 = Instant::now();
    for path in [
        "/api/livekit/rooms",
        "/api/cluster/status",
        "/api/cluster/nodes",
    ] {
        let (code, _) = m.get(path).await;
        assert_eq!(code, 200, "{path}");
    }
    for room in ["trap", "elsewhere", "more"] {
        let body = json!({"identity": "u", "role": "student"});
        let (code, v) = join(&m.url, room, Some(APP_TOKEN), body).await;
        assert_eq!(code, 200, "{v}");
    }
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    figure(
        "hostile URLs: connections main opened to the tarpit",
        format!(
            "{} (3 GETs + 3 joins in {took:?})",
            tarpit.accepted.load(Ordering::SeqCst)
        ),
    );
    assert_eq!(tarpit.accepted.load(Ordering::SeqCst), 0);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Main's own LiveKit hangs (a tarpit on its port) while 200 clients GET `/api/livekit/rooms`
/// at once: main opens at most two connections to it (one ListRooms in flight, the answer shared)
/// and every client gets an answer (the heartbeat rooms) within the rooms budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_room_lists_do_not_fan_out_to_a_hung_livekit() {
    let tarpit = Tarpit::start().await;
    let redis = crate::support::redis::Redis::start();
    let probe = airclass_node::redis_conn::RedisConn::open(
        &airclass_node::config::RedisTarget {
            address: format!("127.0.0.1:{}", redis.port),
            username: None,
            db: 0,
            tls: false,
        },
        None,
    )
    .unwrap();
    let store = airclass_node::cluster::store::Store::new(probe);
    let m = MainServer::start_with_livekit(tarpit.port, Duration::from_secs(5), Some(store)).await;
    let t0 = Instant::now();
    let client = http();
    let gets: Vec<_> = (0..200)
        .map(|_| {
            let (c, url) = (client.clone(), format!("{}/api/livekit/rooms", m.url));
            tokio::spawn(async move {
                let r = c.get(url).send().await.unwrap();
                (r.status().as_u16(), t0.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for g in gets {
        let (code, at) = g.await.unwrap();
        assert_eq!(code, 200);
        slowest = slowest.max(at);
    }
    let opened = tarpit.accepted.load(Ordering::SeqCst);
    figure(
        "200 concurrent GET /api/livekit/rooms, main's LiveKit hung",
        format!("{opened} connections to it; slowest answer {slowest:?}"),
    );
    assert!(opened <= 2, "{opened} connections to main's own LiveKit");
    let budget = ROOMS_BUDGET;
    assert!(slowest < budget * 2 + Duration::from_secs(1), "{slowest:?}");
}
