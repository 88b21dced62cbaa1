//! Closed-LAN STUN, against the real server only (the stand-in has no signal WebSocket): the
//! ICE servers a client is handed in its `JoinResponse`. Without `rtc.stun_servers` the real
//! livekit-server hands out Google's and Twilio's public STUN servers; with the config our
//! renderer produces by default it hands out only the loopback placeholder (nothing leaves a
//! client); with `livekit.stun_servers` set, exactly those. The server runs with an explicit
//! `rtc.node_ip`, so it gathers no server-side STUN candidates itself; no packet leaves loopback.

use super::participants::base;
use super::rendered;
use crate::common::livekit_proc::{base_config, free_block, LkProc, Opts, Server, KEY, SECRET};
use crate::common::signal;

/// Joins a fresh room on the server at `port`; the ICE server URLs handed out.
async fn ice_urls(port: u16) -> Vec<String> {
    let t = signal::join_token(KEY, SECRET, "lan-class", "student-1");
    let p = signal::join(&base(port), &t)
        .await
        .unwrap_or_else(|e| panic!("join: {e}"));
    p.ice_urls()
}

/// A standalone node on free loopback ports, rendered by airclass-node from `livekit_toml`.
async fn rendered_urls(livekit_toml: &str) -> Vec<String> {
    let p = free_block(3);
    let udp = free_block(21);
    let toml = format!(
        "[node]\nlivekit_port = {p}\nrtc_tcp_port = {}\nrtc_udp_start = {udp}\nrtc_udp_end = {}\napi_port = {}\n[livekit]\nnode_ip = \"127.0.0.1\"\nport_mode = \"range\"\n{livekit_toml}",
        p + 1,
        udp + 20,
        p + 2
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let node = rendered::node("main", &toml, Some(dir.path()));
    let lk = LkProc::spawn(Server::Real, &Opts::new(rendered::write_runnable(&node)));
    lk.wait_ready();
    ice_urls(p).await
}

fn public(url: &str) -> bool {
    ["google.com", "twilio.com"].iter().any(|h| url.contains(h))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_hands_out_public_stun_without_stun_servers() {
    let port = free_block(2);
    let p = LkProc::spawn(Server::Real, &Opts::new(base_config(port, 0)));
    p.wait_ready();
    let urls = ice_urls(port).await;
    assert_eq!(
        urls,
        [
            "stun:global.stun.twilio.com:3478",
            "stun:stun.l.google.com:19302",
            "stun:stun1.l.google.com:19302"
        ],
        "the real server's default (rtcconfig.DefaultStunServers)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_default_hands_out_no_public_stun() {
    let urls = rendered_urls("").await;
    assert!(!urls.iter().any(|u| public(u)), "{urls:?}");
    assert_eq!(
        urls,
        [format!(
            "stun:{}",
            airclass_node::livekit::render::NO_STUN_PLACEHOLDER
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_stun_servers_are_what_clients_get() {
    let urls = rendered_urls("stun_servers = [\"10.77.0.1:3478\", \"stun.lan:3478\"]\n").await;
    assert_eq!(urls, ["stun:10.77.0.1:3478", "stun:stun.lan:3478"]);
}
