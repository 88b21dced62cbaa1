//! The systemd contract: READY, STATUS, WATCHDOG, STOPPING and EXTEND_TIMEOUT_USEC.
//!
//! Everything here is a no-op outside systemd (no `NOTIFY_SOCKET`). Messages go through one
//! dedicated thread: `sd_notify` writes to a blocking datagram socket, and a receiver that does
//! not read (a stalled systemd, a test) must never stall the async runtime. If that thread
//! falls behind, watchdog pings and status lines are dropped (counted), never queued forever.
//! The watchdog period is half of `WATCHDOG_USEC` (sd_watchdog_enabled(3)); whether a ping is
//! deserved is decided by the daemon, not here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sd_notify::NotifyState;

use crate::clock::Instant;
use crate::sync::lock;

/// The `sd_notify` states one notification stands for.
fn wire(m: &Notification) -> Vec<NotifyState<'_>> {
    match m {
        Notification::Ready(s) => vec![NotifyState::Ready, NotifyState::Status(s)],
        Notification::Status(s) => vec![NotifyState::Status(s)],
        Notification::Watchdog => vec![NotifyState::Watchdog],
        Notification::WatchdogTrigger => vec![NotifyState::WatchdogTrigger],
        Notification::Stopping(s) => vec![NotifyState::Stopping, NotifyState::Status(s)],
        Notification::ExtendTimeout(us) => vec![NotifyState::ExtendTimeoutUsec(*us)],
    }
}

/// One notification, owned so it can cross to the notify thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// `READY=1` with a status line.
    Ready(String),
    Status(String),
    Watchdog,
    WatchdogTrigger,
    /// `STOPPING=1` with a status line.
    Stopping(String),
    /// `EXTEND_TIMEOUT_USEC=…`.
    ExtendTimeout(u32),
}

/// Notifications kept by a recording notifier, with the time each was sent (the one clock).
pub type NotifyLog = Arc<Mutex<Vec<(Instant, Notification)>>>;

#[derive(Debug, Clone)]
enum Sink {
    /// The notify thread (under systemd).
    Thread(SyncSender<Notification>),
    /// Kept in memory (in-process tests play systemd by reading it).
    Record(NotifyLog),
}

/// Handle for sending notifications; cheap to clone. The default sends nothing.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    sink: Option<Sink>,
    dropped: Arc<AtomicU64>,
}

impl Notifier {
    /// Starts the notify thread when `NOTIFY_SOCKET` is set; otherwise every call is a no-op.
    pub fn from_env() -> Self {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Self::default();
        }
        let (tx, rx) = sync_channel::<Notification>(64);
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                while let Ok(m) = rx.recv() {
                    if let Err(e) = sd_notify::notify(&wire(&m)) {
                        tracing::warn!(error = %e, "sd_notify failed");
                    }
                }
            });
        match spawned {
            Ok(_) => Self {
                sink: Some(Sink::Thread(tx)),
                dropped: Arc::default(),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the sd-notify thread; systemd notifications are off");
                Self::default()
            }
        }
    }

    /// A notifier that keeps every notification in memory (tests).
    pub fn recording() -> (Self, NotifyLog) {
        let log = NotifyLog::default();
        let n = Self {
            sink: Some(Sink::Record(log.clone())),
            dropped: Arc::default(),
        };
        (n, log)
    }

    fn send(&self, m: Notification) {
        let tx = match &self.sink {
            None => return,
            Some(Sink::Record(log)) => return lock(log).push((Instant::now(), m)),
            Some(Sink::Thread(tx)) => tx,
        };
        let important = matches!(m, Notification::Ready(_) | Notification::Stopping(_));
        let r = if important {
            // READY and STOPPING must not be lost: wait for room (the thread drains it)
            tx.send(m).map_err(|_| ())
        } else {
            match tx.try_send(m) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(TrySendError::Disconnected(_)) => Err(()),
            }
        };
        if r.is_err() {
            tracing::warn!("sd-notify thread is gone");
        }
    }

    /// Notifications dropped because the notify socket was not being read.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// `READY=1` with a first status line.
    pub fn ready(&self, status: &str) {
        self.send(Notification::Ready(status.to_string()));
    }

    /// `STATUS=…`, shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(Notification::Status(status.to_string()));
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send(Notification::Watchdog);
    }

    /// `WATCHDOG=trigger`: a definite fatal state; systemd acts as on a watchdog timeout.
    pub fn watchdog_trigger(&self) {
        self.send(Notification::WatchdogTrigger);
    }

    /// `STOPPING=1`.
    pub fn stopping(&self, status: &str) {
        self.send(Notification::Stopping(status.to_string()));
    }

    /// `EXTEND_TIMEOUT_USEC=…`: more time for a slow start or drain.
    pub fn extend_timeout(&self, by: Duration) {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        self.send(Notification::ExtendTimeout(usec));
    }
}

/// How often to ping: half of `WATCHDOG_USEC` (None when the watchdog is off or meant for
/// another PID).
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
