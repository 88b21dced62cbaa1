//! The systemd contract: READY, STATUS, WATCHDOG, STOPPING and EXTEND_TIMEOUT_USEC.
//!
//! Everything here is a no-op outside systemd (no `NOTIFY_SOCKET`). The watchdog period is
//! half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) recommends; whether a ping is deserved
//! is decided by the daemon (see `daemon.rs`), not here.

use std::time::Duration;

use sd_notify::NotifyState;

/// Handle for sending notifications; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    _private: (),
}

impl Notifier {
    pub fn new() -> Self {
        Self { _private: () }
    }

    fn send(&self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }

    /// `READY=1` with a first status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `STATUS=…`, shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// `WATCHDOG=trigger`: a definite fatal state; systemd acts as on a watchdog timeout.
    pub fn watchdog_trigger(&self) {
        self.send(&[NotifyState::WatchdogTrigger]);
    }

    /// `STOPPING=1`.
    pub fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// `EXTEND_TIMEOUT_USEC=…`: more time for a slow start or drain.
    pub fn extend_timeout(&self, by: Duration) {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        self.send(&[NotifyState::ExtendTimeoutUsec(usec)]);
    }
}

/// How often to ping: half of `WATCHDOG_USEC` (None when the watchdog is off or meant for
/// another PID).
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
