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
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

/// One notification, owned so it can cross to the notify thread.
#[derive(Debug, Clone)]
enum Message {
    Ready(String),
    Status(String),
    Watchdog,
    WatchdogTrigger,
    Stopping(String),
    ExtendTimeout(u32),
}

/// Handle for sending notifications; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    tx: Option<SyncSender<Message>>,
    dropped: Arc<AtomicU64>,
}

impl Notifier {
    /// Starts the notify thread when `NOTIFY_SOCKET` is set; otherwise every call is a no-op.
    pub fn new() -> Self {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Self::default();
        }
        let (tx, rx) = sync_channel::<Message>(64);
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                while let Ok(m) = rx.recv() {
                    let r = match &m {
                        Message::Ready(s) => {
                            sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(s)])
                        }
                        Message::Status(s) => sd_notify::notify(&[NotifyState::Status(s)]),
                        Message::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
                        Message::WatchdogTrigger => {
                            sd_notify::notify(&[NotifyState::WatchdogTrigger])
                        }
                        Message::Stopping(s) => {
                            sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status(s)])
                        }
                        Message::ExtendTimeout(us) => {
                            sd_notify::notify(&[NotifyState::ExtendTimeoutUsec(*us)])
                        }
                    };
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "sd_notify failed");
                    }
                }
            });
        match spawned {
            Ok(_) => Self {
                tx: Some(tx),
                dropped: Arc::default(),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the sd-notify thread; systemd notifications are off");
                Self::default()
            }
        }
    }

    fn send(&self, m: Message) {
        let Some(tx) = &self.tx else { return };
        let important = matches!(m, Message::Ready(_) | Message::Stopping(_));
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
        self.send(Message::Ready(status.to_string()));
    }

    /// `STATUS=…`, shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(Message::Status(status.to_string()));
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send(Message::Watchdog);
    }

    /// `WATCHDOG=trigger`: a definite fatal state; systemd acts as on a watchdog timeout.
    pub fn watchdog_trigger(&self) {
        self.send(Message::WatchdogTrigger);
    }

    /// `STOPPING=1`.
    pub fn stopping(&self, status: &str) {
        self.send(Message::Stopping(status.to_string()));
    }

    /// `EXTEND_TIMEOUT_USEC=…`: more time for a slow start or drain.
    pub fn extend_timeout(&self, by: Duration) {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        self.send(Message::ExtendTimeout(usec));
    }
}

/// How often to ping: half of `WATCHDOG_USEC` (None when the watchdog is off or meant for
/// another PID).
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
