//! Hostile input to the control API of the real binary, with the real livekit-server (issue 10,
//! points 3 and 4): names with control, bidirectional or invisible characters are refused with a
//! JSON reason; every 4xx — the router's, axum's own and hyper's — has the documented JSON body;
//! a flood of refused requests (20 KiB tokens and 100 KiB headers among them) adds a bounded number of log lines,
//! is counted in `/metrics`, and the log carries no ANSI colour codes off a terminal.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::daemon::Daemon;
use crate::support::figure;
use crate::support::node::{NodeDir, NodeSpec, APP_TOKEN};
use crate::support::real_livekit::real_livekit;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn standalone() -> (NodeDir, Daemon) {
    let node = NodeSpec::standalone("main").livekit(real_livekit()).write();
    let d = Daemon::spawn_ready(&node, &[]).await;
    (node, d)
}

/// One raw request on a fresh connection; the whole answer (the server closes or we stop after
/// 5 s): (status, body).
async fn raw(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer to {request:?}: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// The body is `{"error": CODE, "message": TEXT}` with a non-empty message.
fn assert_error_json(what: &str, status: u16, body: &str, code: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: {status} body is not JSON ({e}): {body:?}"));
    assert_eq!(v["error"], code, "{what}: {v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message: {v}"
    );
    v
}

/// A join with `body` (`role` = student unless it says otherwise).
async fn join(
    base: &str,
    room_path: &str,
    mut body: serde_json::Value,
) -> (u16, serde_json::Value) {
    if body.get("role").is_none() {
        body["role"] = "student".into();
    }
    let r = client()
        .post(format!("{base}/api/rooms/{room_path}/join"))
        .bearer_auth(APP_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_control_bidi_or_invisible_characters_are_refused_with_a_reason() {
    let (node, mut d) = standalone().await;
    let base = node.api_url();
    let (s, v) = join(&base, "math", serde_json::json!({"identity": "kim"})).await;
    assert_eq!(s, 200, "a clean join: {v}");
    let bad_identities = [
        "kim\nINFO forged line",
        "kim\0",
        "\u{202e}mik",
        "k\u{200b}im",
        "kim\u{2066}",
        "\u{feff}kim",
    ];
    for identity in bad_identities {
        let (s, v) = join(&base, "math", serde_json::json!({"identity": identity})).await;
        assert_eq!(s, 400, "identity {identity:?} got a token: {v}");
        assert_eq!(v["error"], "malformed", "{v}");
        assert!(v["message"].as_str().unwrap().contains("identity"), "{v}");
    }
    let (s, v) = join(
        &base,
        "math",
        serde_json::json!({"identity": "kim", "name": "Kim\r\nX"}),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("malformed")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("name"), "{v}");
    // `math` and a zero-width space before it would be two rooms that look alike
    for room in ["%E2%80%8Bmath", "ma%E2%80%AEth", "math%0A", "math%00"] {
        let (s, v) = join(&base, room, serde_json::json!({"identity": "kim"})).await;
        assert_eq!(s, 400, "room {room} was accepted: {v}");
        assert_eq!(v["error"], "malformed", "{v}");
        assert!(v["message"].as_str().unwrap().contains("room"), "{v}");
    }
    let (s, v) = join(
        &base,
        "math",
        serde_json::json!({"identity": "Kim Ödön 🎓"}),
    )
    .await;
    assert_eq!(s, 200, "letters and emoji stay allowed: {v}");
    d.sigterm_and_exit_0(Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_4xx_has_the_documented_json_body() {
    let (node, mut d) = standalone().await;
    let port = node.api_port;
    let host = "Host: 127.0.0.1\r\nConnection: close\r\n";
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "unknown route",
            format!("GET /nope HTTP/1.1\r\n{host}\r\n").into_bytes(),
            404,
            "not_found",
        ),
        (
            "wrong method",
            format!("DELETE /healthz HTTP/1.1\r\n{host}\r\n").into_bytes(),
            405,
            "method_not_allowed",
        ),
        (
            "a path that does not decode",
            format!("POST /api/rooms/%FF%FE/join HTTP/1.1\r\n{host}Content-Length: 2\r\n\r\n{{}}")
                .into_bytes(),
            400,
            "malformed",
        ),
        (
            "a request line that is not HTTP",
            b"GET /healthz HTTP/1.1 garbage\r\n\r\n".to_vec(),
            400,
            "malformed",
        ),
        (
            "a 100 KiB header",
            format!(
                "GET /healthz HTTP/1.1\r\n{host}X-Big: {}\r\n\r\n",
                "a".repeat(100 * 1024)
            )
            .into_bytes(),
            431,
            "too_large",
        ),
        (
            "a join without the token",
            format!("POST /api/rooms/math/join HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: 35\r\n\r\n{{\"identity\":\"kim\",\"role\":\"student\"}}")
                .into_bytes(),
            401,
            "unauthorized",
        ),
        (
            "a join body that is not JSON",
            format!("POST /api/rooms/math/join HTTP/1.1\r\n{host}Authorization: Bearer {APP_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{{{{x")
                .into_bytes(),
            400,
            "malformed",
        ),
    ];
    for (what, req, status, code) in cases {
        let (s, body) = raw(port, &req).await;
        assert_eq!(s, status, "{what}: {body:?}");
        assert_error_json(what, s, &body, code);
    }
    d.sigterm_and_exit_0(Duration::from_secs(20));
}

/// Lines in the daemon's log that mention refused requests.
fn refusal_lines(log: &str) -> usize {
    log.lines().filter(|l| l.contains("refused")).count()
}

/// The value of the sample `SERIES` (name and labels) from `/metrics`.
async fn metric(base: &str, series: &str) -> f64 {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_requests_adds_a_bounded_number_of_short_log_lines() {
    const FLOOD: usize = 600;
    let (node, mut d) = standalone().await;
    let base = node.api_url();
    let c = client();
    let before = d.log_text();
    let big_token = "x".repeat(20 * 1024);
    let big_header = "y".repeat(100 * 1024);
    let mut unauthorized = 0;
    for i in 0..FLOOD {
        let req = c
            .post(format!("{base}/api/rooms/math/join"))
            .json(&serde_json::json!({"identity": format!("kim-{i}"), "role": "student"}));
        let (req, want) = match i % 4 {
            0 => (req.bearer_auth(&big_token), 401), // a wrong token of 20 KiB
            1 => (req.bearer_auth("wrong-token"), 401),
            2 => (req, 401),                              // no token at all
            _ => (req.header("x-big", &big_header), 431), // a head over the limit
        };
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), want, "request {i}");
        if want == 401 {
            unauthorized += 1;
        }
    }
    // joins that succeed are not logged at info either
    for i in 0..50 {
        let (s, v) = join(
            &base,
            "math",
            serde_json::json!({"identity": format!("ok-{i}")}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(
        metric(
            &base,
            "airclass_cluster_refusals_total{code=\"unauthorized\"}"
        )
        .await,
        f64::from(unauthorized),
        "every refusal counted"
    );
    assert_eq!(
        metric(
            &base,
            "airclass_api_connections_closed_total{reason=\"bad_http\"}"
        )
        .await,
        (FLOOD / 4) as f64,
        "every 431 counted"
    );
    // the summary of the rest of the window comes with the next window's first line
    tokio::time::sleep(Duration::from_secs(11)).await;
    let r = c
        .post(format!("{base}/api/rooms/math/join"))
        .json(&serde_json::json!({"identity": "late", "role": "student"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = d.log_text();
    let added = after.get(before.len()..).unwrap_or("").to_string();
    let lines = added.lines().count();
    let refused = refusal_lines(&added);
    figure("log_flood_requests", FLOOD + 1);
    figure("log_flood_lines_added", lines);
    figure("log_flood_bytes_added", added.len());
    figure(
        "log_bytes_per_refused_request",
        format!("{:.1}", added.len() as f64 / (FLOOD + 1) as f64),
    );
    assert!(
        (1..=6).contains(&refused),
        "{refused} refusal lines for {} refused requests:\n{added}",
        FLOOD + 1
    );
    assert!(lines <= 12, "{lines} lines added by the flood:\n{added}");
    assert!(
        added.len() < 8 * 1024,
        "{} bytes of log for the flood (a 20 KiB token and a 100 KiB header were sent {} times each)",
        added.len(),
        FLOOD / 4
    );
    assert!(
        !added.contains("join placed"),
        "joins logged at info:\n{added}"
    );
    assert!(
        added.contains("count="),
        "the summary says how many:\n{added}"
    );
    assert!(
        !after.contains('\u{1b}'),
        "ANSI codes in a log that is not a terminal"
    );
    d.sigterm_and_exit_0(Duration::from_secs(20));
}

/// Issue 10: unsigned cluster requests with huge header values (the 400 KiB header that
/// became 400 KiB of log) are refused, counted and summarised: a bounded number of short lines,
/// the header value truncated. A real sub registering meanwhile is still logged (node state
/// changes are never summarised).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unsigned_cluster_requests_is_summarised_with_truncated_values() {
    const FLOOD: usize = 300;
    let redis = crate::support::redis::Redis::start();
    let main_dir = NodeSpec::main("main").redis(redis.url()).write();
    let mut main = Daemon::spawn_ready(&main_dir, &[]).await;
    let base = main_dir.api_url();
    let before = main.log_text();
    let c = client();
    let huge_name = format!("node-{}", "9".repeat(28 * 1024));
    for i in 0..FLOOD {
        let r = c
            .post(format!("{base}/api/cluster/heartbeat"))
            .header("x-airclass-node", &huge_name)
            .header("x-airclass-timestamp", "1700000000")
            .header("x-airclass-nonce", format!("{i:032x}"))
            .header("x-airclass-signature", "0".repeat(64))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "request {i}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{v}");
    }
    let sub_dir = NodeSpec::sub("node-1")
        .redis(redis.url())
        .main_url(&base)
        .write();
    let mut sub = Daemon::spawn_ready(&sub_dir, &[]).await;
    let deadline = airclass_node::clock::now() + Duration::from_secs(15);
    while !main.log_text().contains("node registered") && airclass_node::clock::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let added = main
        .log_text()
        .get(before.len()..)
        .unwrap_or("")
        .to_string();
    let refused: Vec<&str> = added.lines().filter(|l| l.contains("refused")).collect();
    figure("cluster_flood_requests", FLOOD);
    figure("cluster_flood_log_bytes_added", added.len());
    assert!(
        (1..=4).contains(&refused.len()),
        "{} refusal lines for {FLOOD} refused requests:\n{added}",
        refused.len()
    );
    assert!(
        refused.iter().all(|l| l.len() < 1024),
        "a refusal line carries the header verbatim: {} bytes",
        refused.iter().map(|l| l.len()).max().unwrap_or(0)
    );
    assert!(
        added.len() < 16 * 1024,
        "{} bytes of log for {FLOOD} requests with a 28 KiB header",
        added.len()
    );
    assert!(
        added.contains("node registered"),
        "the real sub's registration is not in the log:\n{added}"
    );
    sub.sigterm_and_exit_0(Duration::from_secs(20));
    main.sigterm_and_exit_0(Duration::from_secs(20));
}
