//! Signals and drain of the livekit-server stand-in (TEST DOUBLE), as the real server's
//! `main.go` signal loop and `LivekitServer.Stop`: the 1st SIGTERM/SIGINT/SIGQUIT drains
//! (node `SHUTTING_DOWN`; while participants remain, a 5 s ticker logs `waiting for
//! participants to exit` and re-checks; no deadline), the 2nd forces, later ones are caught
//! and ignored. A 1st signal within 100 ms of the ready line (before `running` is set) is
//! lost: the node stays up, marked draining, until the 2nd.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::log;
use crate::state::Shared;

/// Shutdown requests from signals: 0 none, 1 graceful drain, 2 force.
pub type Level = watch::Receiver<u8>;

/// The real server sets `running` this long after its ready line.
const RUNNING_AFTER: Duration = Duration::from_millis(100);
/// `LivekitServer.Stop`'s participant ticker.
const PARTICIPANT_TICK: Duration = Duration::from_secs(5);

/// Counts SIGTERM/SIGINT/SIGQUIT: 1st drains, 2nd forces, later ones are ignored.
pub fn spawn_signal_loop(tx: watch::Sender<u8>, ignore_all: bool) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    tokio::spawn(async move {
        let mut count: u8 = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "terminated",
                _ = int.recv() => "interrupt",
                _ = quit.recv() => "quit",
            };
            if ignore_all {
                let msg = "stand-in ignoring signal (STANDIN_IGNORE_SIGTERM)";
                log::log(
                    log::Level::Warn,
                    "standin/main.rs:1",
                    msg,
                    &[("signal", name.into())],
                );
                continue;
            }
            count = count.saturating_add(1);
            if count <= 2 {
                let fields = [("signal", name.into()), ("force", (count == 2).into())];
                log::info(
                    "server/main.go:315",
                    "exit requested, shutting down",
                    &fields,
                );
                let _ = tx.send(count);
            }
            // 3rd and later: caught and never acted on.
        }
    });
    Ok(())
}

pub async fn wait_level(rx: &mut Level, at_least: u8) {
    loop {
        if *rx.borrow_and_update() >= at_least {
            return;
        }
        if rx.changed().await.is_err() {
            // Sender gone: never happens while the signal task lives; park forever.
            std::future::pending::<()>().await;
        }
    }
}

/// Waits for the signals and runs the drain; returns when the process should stop.
pub async fn drain(shared: &Shared, rx: &mut Level, ready_at: Instant) {
    wait_level(rx, 1).await;
    shared.draining.store(true, Ordering::Relaxed);
    shared.publish_node().await;
    let mut waiting = *rx.borrow() < 2 && shared.total_participants() > 0;
    while waiting {
        tokio::select! {
            _ = tokio::time::sleep(PARTICIPANT_TICK) => {
                log::info("service/server.go:359", "waiting for participants to exit", &[]);
                waiting = shared.total_participants() > 0;
            }
            _ = wait_level(rx, 2) => waiting = false,
        }
    }
    if *rx.borrow() < 2 && ready_at.elapsed() < RUNNING_AFTER {
        // `running` was still false: this Stop returned without stopping anything.
        wait_level(rx, 2).await;
    }
}
