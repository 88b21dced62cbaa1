//! SIGTERM and SIGINT from the first instant of `run`: [`catch_early`] installs a handler
//! before anything starts, so a signal that arrives before the daemon's own handlers exist no
//! longer kills the process with 143 — it is remembered. [`Shutdown::install`] then registers
//! the daemon's handlers inside the runtime; its future resolves at once for a remembered
//! signal, else on the next one. Either way the daemon unwinds through its one stop path
//! (`STOPPING=1`, LiveKit stopped gracefully, exit 0), while LiveKit is still starting included.
//!
//! Both handlers live in the same registry (`signal-hook-registry`, which tokio uses), and no
//! signal is ever blocked: LiveKit, spawned later, inherits the default action (a handler does
//! not survive `exec`) and an empty signal mask, so it still receives its SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

/// A SIGTERM or SIGINT arrived (at any time since [`catch_early`]).
static CAUGHT: AtomicBool = AtomicBool::new(false);

/// Remember SIGTERM and SIGINT instead of dying of them, from now on.
#[allow(unsafe_code)]
pub fn catch_early() -> std::io::Result<()> {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the action runs in a signal handler and only stores to an atomic, which is
        // async-signal-safe; it allocates nothing and takes no lock.
        unsafe {
            signal_hook_registry::register(sig as i32, || CAUGHT.store(true, Ordering::SeqCst))
        }?;
    }
    Ok(())
}

/// The daemon's signal handlers, installed.
pub struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Register the handlers (in the runtime).
    pub fn install() -> std::io::Result<Self> {
        let term = signal(SignalKind::terminate())?;
        let int = signal(SignalKind::interrupt())?;
        Ok(Shutdown { term, int })
    }

    /// Resolves on a signal caught before the handlers existed, or on the next one.
    pub async fn recv(mut self) {
        if CAUGHT.load(Ordering::SeqCst) {
            tracing::info!("shutting down: a stop signal arrived while starting");
            return;
        }
        tokio::select! {
            _ = self.term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = self.int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
        }
    }
}
