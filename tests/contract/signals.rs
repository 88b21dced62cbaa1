//! Signals: the 1st SIGTERM drains while a participant remains (no deadline, `/` stays 200),
//! the 2nd forces an exit 0; the drain ends by itself once the room is empty; an idle server
//! exits at once. Exit times are figures.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::participants::{add_participant, base, http, Present};
use crate::common::figures::figure;
use crate::common::livekit_proc::{base_config, free_port, parse_console, LkProc, Opts, Server};

both!(
    first_sigterm_drains_second_forces,
    drain_ends_when_the_room_empties,
    idle_exit_is_quick,
    signal_within_100ms_of_ready_is_lost,
    create_room_while_draining,
);

/// The real server marks itself running 100 ms after the ready line; a first signal before
/// that is swallowed (see [`signal_within_100ms_of_ready_is_lost`]). Tests that want the
/// drain wait past it.
fn settle() {
    std::thread::sleep(Duration::from_millis(250));
}

/// Milliseconds of the day of a console line's `2026-12-01T19:58:43.115Z` timestamp.
fn ms_of_day(ts: &str) -> i64 {
    let t = &ts[11..23];
    let n = |a: usize, b: usize| t[a..b].parse::<i64>().expect("ts digits");
    ((n(0, 2) * 60 + n(3, 5)) * 60 + n(6, 8)) * 1000 + n(9, 12)
}

/// Starts `cfg` (HTTP on `port`), puts a participant in room `class` and sends the 1st
/// SIGTERM; returns the server, the participant and the `exit requested` line.
async fn start_draining(s: Server, cfg: String, port: u16) -> (LkProc, Present, String) {
    let p = LkProc::spawn(s, &Opts::new(cfg));
    p.wait_ready();
    let who = add_participant(&p, port, "class", "student-1").await;
    p.signal(Signal::SIGTERM);
    let line = p
        .wait_line("exit requested, shutting down", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("{}: no exit-requested line", s.name()));
    (p, who, line)
}

async fn first_sigterm_drains_second_forces(s: Server) {
    let port = free_port();
    let (mut p, who, line) = start_draining(s, base_config(port, free_port()), port).await;
    let n = s.name();
    let l = parse_console(&line);
    assert_eq!(l.caller, "server/main.go:315", "{n}");
    assert_eq!(
        l.fields,
        serde_json::json!({"signal": "terminated", "force": false}),
        "{n}"
    );
    // The real server logs its first "waiting" line 5 s after the signal, then every 5 s.
    let t0 = Instant::now();
    let waiting = p
        .wait_line("waiting for participants to exit", Duration::from_secs(8))
        .unwrap_or_else(|| panic!("{n}: no waiting line: {:?}", p.lines()));
    figure(
        &format!(
            "contract {}: first 'waiting for participants' after SIGTERM",
            s.tag()
        ),
        format!("{:.1} s", t0.elapsed().as_secs_f64()),
    );
    assert_eq!(
        parse_console(&waiting).fields,
        serde_json::Value::Null,
        "{n}: {waiting}"
    );
    assert!(
        p.wait_exit(Duration::from_millis(500)).is_none(),
        "{n}: must keep draining"
    );
    let r = http().get(base(port)).send().await.expect("health");
    assert_eq!(r.status(), 200, "{n}: / while draining");
    // 2nd signal forces; exit 0.
    p.signal(Signal::SIGINT);
    let t1 = Instant::now();
    let st = p
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{n}: no exit after the 2nd signal"));
    assert_eq!(st.code(), Some(0), "{n}");
    figure(
        &format!(
            "contract {}: exit after the 2nd signal (participant still in)",
            s.tag()
        ),
        format!("{:.2} s", t1.elapsed().as_secs_f64()),
    );
    let forced = p
        .lines()
        .into_iter()
        .filter(|l| l.contains("exit requested"))
        .map(|l| parse_console(&l).fields)
        .nth(1);
    assert_eq!(
        forced,
        Some(serde_json::json!({"signal": "interrupt", "force": true})),
        "{n}"
    );
    drop(who);
}

async fn drain_ends_when_the_room_empties(s: Server) {
    let port = free_port();
    let (mut p, who, _) = start_draining(s, base_config(port, free_port()), port).await;
    let n = s.name();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        p.wait_exit(Duration::from_millis(10)).is_none(),
        "{n}: must drain"
    );
    let t0 = Instant::now();
    who.leave().await;
    let st = p.wait_exit(Duration::from_secs(40)).unwrap_or_else(|| {
        panic!(
            "{n}: still draining after the room emptied: {:?}",
            p.lines()
        )
    });
    assert_eq!(st.code(), Some(0), "{n}");
    figure(
        &format!(
            "contract {}: exit after the last participant left a drain",
            s.tag()
        ),
        format!("{:.1} s", t0.elapsed().as_secs_f64()),
    );
}

async fn idle_exit_is_quick(s: Server) {
    let mut p = LkProc::spawn(s, &Opts::new(base_config(free_port(), free_port())));
    p.wait_ready();
    settle();
    let n = s.name();
    let t0 = Instant::now();
    p.signal(Signal::SIGQUIT);
    let st = p
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{n}: idle server did not exit on SIGQUIT"));
    assert_eq!(st.code(), Some(0), "{n}");
    figure(
        &format!("contract {}: idle exit after SIGQUIT", s.tag()),
        format!("{:.2} s", t0.elapsed().as_secs_f64()),
    );
    let quit = p.lines().into_iter().find(|l| l.contains("exit requested"));
    let fields = quit.map(|l| parse_console(&l).fields);
    assert_eq!(
        fields,
        Some(serde_json::json!({"signal": "quit", "force": false})),
        "{n}"
    );
}

/// `Stop(false)` returns at once when `running` is still false, which it is for the first
/// 100 ms after the ready line (`server.go`: `time.Sleep(100ms)` before `running.Store(true)`):
/// an early first SIGTERM is logged, marks the node draining, and is otherwise lost; only a
/// second signal ends the process. Proven from the server's own timestamps (ready line vs
/// "exit requested"); retried until one signal lands inside the window.
async fn signal_within_100ms_of_ready_is_lost(s: Server) {
    let n = s.name();
    for _ in 0..8 {
        let mut p = LkProc::spawn(s, &Opts::new(base_config(free_port(), 0)));
        let ready = p.wait_ready();
        p.signal(Signal::SIGTERM);
        let line = p
            .wait_line("exit requested, shutting down", Duration::from_secs(3))
            .unwrap_or_else(|| panic!("{n}: no exit-requested line"));
        let dt = ms_of_day(&parse_console(&line).ts) - ms_of_day(&ready.ts);
        if !(0..80).contains(&dt) {
            continue; // not inside the window this time
        }
        assert!(
            p.wait_exit(Duration::from_millis(1500)).is_none(),
            "{n}: a SIGTERM {dt} ms after the ready line must be lost"
        );
        p.signal(Signal::SIGTERM);
        let st = p.wait_exit(Duration::from_secs(5));
        assert_eq!(
            st.and_then(|s| s.code()),
            Some(0),
            "{n}: the 2nd signal ends it"
        );
        figure(
            &format!(
                "contract {}: SIGTERM lost when sent this soon after the ready line",
                s.tag()
            ),
            format!("{dt} ms"),
        );
        return;
    }
    panic!("{n}: could not land a SIGTERM within 80 ms of the ready line in 8 tries");
}

/// While draining (a participant still in), CreateRoom of a new room: single-node routing
/// places it anyway (the local router ignores the node state); with Redis the node selector
/// skips the SHUTTING_DOWN node: `could not find any available nodes`.
async fn create_room_while_draining(s: Server) {
    let n = s.name();
    for with_redis in [false, true] {
        let redis = with_redis.then(crate::common::redis_proc::RedisProc::start);
        let port = free_port();
        let mut cfg = base_config(port, free_port());
        if let Some(r) = &redis {
            cfg += &format!("redis:\n  address: {}\n", r.address());
        }
        let (_p, who, _) = start_draining(s, cfg, port).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let client = livekit_api::services::room::RoomClient::with_api_key(
            &base(port),
            crate::common::livekit_proc::KEY,
            crate::common::livekit_proc::SECRET,
        );
        let created = client.create_room("late", Default::default()).await;
        match (with_redis, created) {
            (false, Ok(room)) => assert_eq!(room.name, "late", "{n}"),
            (true, Err(livekit_api::services::ServiceError::Twirp(e))) => {
                let text = format!("{e:?}");
                assert!(text.contains("code: \"unknown\""), "{n}: {text}");
                assert!(
                    text.contains("could not find any available nodes"),
                    "{n}: {text}"
                );
            }
            (r, other) => panic!("{n} redis={r}: CreateRoom while draining: {other:?}"),
        }
        drop(who);
    }
}
