//! The sub loop, one step at a time: no main known → [`SubLoop::search`]; main known →
//! [`SubLoop::exchange`] (register or heartbeat) then [`SubLoop::wait`] one heartbeat. Discovery
//! events are handled in one place, [`SubLoop::on_event`], whichever step is waiting.
//! Heartbeats go out up to a tenth of a period early at random ([`jittered`]), so subs drift
//! apart instead of hitting main together.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::client::{CallError, Client};
use super::link;
use super::{main_lost_status, Shared, MAIN_NOT_FOUND};
use crate::clock::{self, Instant};
use crate::cluster::discovery::DiscoveryEvent;
use crate::cluster::node::{publish, StatsSource};
use crate::cluster::protocol::{
    ErrorCode, HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse,
};
use crate::metrics;
use crate::sync::lock;

type Browse = Option<mpsc::UnboundedReceiver<DiscoveryEvent>>;

/// What to do after an exchange with main.
enum Next {
    /// Exchange again at once (a heartbeat answered `unknown_node`: register now).
    Now,
    /// Wait this long (a heartbeat period, or a quick retry).
    Wait(Duration),
}

/// Share of a heartbeat period a sub may go early by (see [`jittered`]).
const JITTER: f64 = 0.1;

/// The wait before the next heartbeat: the period shortened by up to [`JITTER`] of it (`u` in
/// `[0, 1)`, random). Never longer, so main's suspect and dead timers are unaffected; subs that
/// registered in the same instant (main restarted) drift apart instead of heartbeating in
/// lockstep forever.
pub(super) fn jittered(period: Duration, u: f64) -> Duration {
    period.mul_f64(1.0 - JITTER * u.clamp(0.0, 1.0))
}

/// How a wait for main (no main known) ended.
enum Woke {
    Event(Option<DiscoveryEvent>),
    Timeout,
}

/// The loop's state between steps.
pub(super) struct SubLoop {
    client: Client,
    stats: StatsSource,
    browse: Browse,
    status: watch::Sender<String>,
    shared: Arc<Mutex<Shared>>,
    started: Instant,
    /// When the current search for main began (start, or the moment a known main was lost).
    search_started: Instant,
    period: Duration,
    current_main: Option<String>,
    warned_not_found: bool,
    last_error: Option<String>,
    main_name: String,
}

/// The next discovery event; `None` once the stream ended (browsing then stops for good).
async fn next_event(browse: &mut Browse) -> Option<DiscoveryEvent> {
    let Some(rx) = browse.as_mut() else {
        return std::future::pending().await;
    };
    let ev = rx.recv().await;
    if ev.is_none() {
        *browse = None;
    }
    ev
}

impl SubLoop {
    pub(super) fn new(
        client: Client,
        stats: StatsSource,
        browse: Browse,
        status: watch::Sender<String>,
        shared: Arc<Mutex<Shared>>,
    ) -> Self {
        let now = clock::now();
        let period = client.settings.heartbeat;
        SubLoop {
            client,
            stats,
            browse,
            status,
            shared,
            started: now,
            search_started: now,
            period,
            current_main: None,
            warned_not_found: false,
            last_error: None,
            main_name: "?".into(),
        }
    }

    /// Run until `cancel`.
    pub(super) async fn run(mut self, cancel: CancellationToken) {
        if self.client.settings.main_url.is_none() {
            self.set_status("sub: looking for main over mDNS".into());
        }
        loop {
            let url = lock(&self.shared).main_url.clone();
            let go_on = match url {
                None => self.search(&cancel).await,
                Some(url) => match self.exchange(&url).await {
                    Next::Now => true,
                    Next::Wait(d) => self.wait(d, &cancel).await,
                },
            };
            if !go_on {
                return;
            }
        }
    }

    fn set_status(&self, text: String) {
        publish(&self.status, text);
    }

    fn warn_not_found(&mut self, why: &str) {
        if !self.warned_not_found {
            self.warned_not_found = true;
            let st = &self.client.settings;
            tracing::warn!(cluster = %st.cluster_id, waited_secs = st.discovery_timeout.as_secs(), "{MAIN_NOT_FOUND}: {why}; LiveKit keeps serving");
        }
        self.set_status(MAIN_NOT_FOUND.into());
        lock(&self.shared).link.searching(MAIN_NOT_FOUND);
    }

    /// No main known: wait for discovery, saying "Main Node not found" once the discovery
    /// timeout has passed. False when cancelled.
    async fn search(&mut self, cancel: &CancellationToken) -> bool {
        if self.browse.is_none() {
            self.warn_not_found("no main URL and no mDNS browse");
            return tokio::select! {
                _ = cancel.cancelled() => false,
                _ = tokio::time::sleep(self.period) => true,
            };
        }
        let deadline = self.search_started + self.client.settings.discovery_timeout;
        let wait = if self.warned_not_found {
            self.period
        } else {
            deadline.saturating_duration_since(clock::now())
        };
        let woke = tokio::select! {
            _ = cancel.cancelled() => return false,
            ev = next_event(&mut self.browse) => Woke::Event(ev),
            _ = tokio::time::sleep(wait) => Woke::Timeout,
        };
        match woke {
            Woke::Event(Some(ev)) => self.on_event(ev),
            Woke::Event(None) => {}
            Woke::Timeout => self.warn_not_found("still looking"),
        }
        true
    }

    /// Wait `d`, handling discovery events meanwhile. False when cancelled.
    async fn wait(&mut self, d: Duration, cancel: &CancellationToken) -> bool {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = &mut sleep => return true,
                ev = next_event(&mut self.browse) => ev,
            };
            if let Some(ev) = ev {
                self.on_event(ev);
            }
        }
    }

    /// The one discovery handler: a found main replaces an unknown one; a lost main is
    /// forgotten and the search starts again.
    fn on_event(&mut self, ev: DiscoveryEvent) {
        let lost = {
            let mut s = lock(&self.shared);
            match ev {
                DiscoveryEvent::Found(m) => {
                    if s.main_url.as_deref() != Some(m.api_url.as_str()) {
                        tracing::info!(main = %m.node, url = %m.api_url, "main found over mDNS");
                        s.main_url = Some(m.api_url);
                        s.registered = false;
                    }
                    self.current_main = Some(m.node);
                    None
                }
                DiscoveryEvent::Lost(node) if self.current_main.as_deref() == Some(&node) => {
                    tracing::warn!(main = %node, "main stopped advertising; looking for it again, LiveKit keeps serving");
                    s.link.searching(&main_lost_status(&node));
                    s.main_url = None;
                    s.registered = false;
                    self.current_main = None;
                    Some(node)
                }
                DiscoveryEvent::Lost(_) => None,
            }
        };
        if let Some(node) = lost {
            self.search_started = clock::now();
            self.warned_not_found = false;
            self.set_status(main_lost_status(&node));
        }
    }

    /// Register (not registered yet) or heartbeat, and decide when to go again.
    async fn exchange(&mut self, url: &str) -> Next {
        let registered = lock(&self.shared).registered;
        let stats = (self.stats)().await;
        let st = &self.client.settings;
        let result = if registered {
            let body = HeartbeatRequest {
                name: st.info.name.clone(),
                identity: st.identity.clone(),
                stats,
            };
            self.client
                .call::<_, HeartbeatResponse>(url, "/api/cluster/heartbeat", &body)
                .await
                .map(|r| (r.heartbeat_secs, None))
        } else {
            let body = RegisterRequest {
                cluster_id: st.cluster_id.clone(),
                identity: st.identity.clone(),
                node: st.info.clone(),
                stats,
            };
            self.client
                .call::<_, RegisterResponse>(url, "/api/cluster/register", &body)
                .await
                .map(|r| (r.heartbeat_secs, Some(r.main_name)))
        };
        lock(&self.shared).link.observe(url, &result);
        metrics::exchange_sent(registered, link::result_label(&result));
        match result {
            Ok((hb, main)) => self.accepted(url, hb, main),
            Err(CallError::Refused {
                code: Some(ErrorCode::UnknownNode),
                ..
            }) => {
                tracing::warn!(url = %url, "main does not know this node (restarted?): registering again");
                lock(&self.shared).registered = false;
                // only once: a register answered unknown_node waits a heartbeat
                if registered {
                    Next::Now
                } else {
                    Next::Wait(self.period)
                }
            }
            Err(e) => self.failed(url, e, registered),
        }
    }

    fn accepted(&mut self, url: &str, heartbeat_secs: u64, new_main: Option<String>) -> Next {
        if heartbeat_secs >= 1 {
            self.period = Duration::from_secs(heartbeat_secs);
        }
        if let Some(n) = new_main {
            self.main_name = n;
            lock(&self.shared).registered = true;
            tracing::info!(main = %self.main_name, url = %url, elapsed_ms = self.started.elapsed().as_millis() as u64, "registered with main");
        }
        self.set_status(format!(
            "sub: registered with main {} at {url}",
            self.main_name
        ));
        self.last_error = None;
        Next::Wait(jittered(self.period, rand::random::<f64>()))
    }

    fn failed(&mut self, url: &str, e: CallError, registered: bool) -> Next {
        let text = e.to_string();
        if self.last_error.as_deref() != Some(text.as_str()) {
            tracing::warn!(url = %url, error = %text, "exchange with main failed; retrying every heartbeat");
        }
        let mut quick_retry = false;
        if matches!(e, CallError::Network(_)) && registered {
            // main may have restarted: the next success must be a register, and one quick
            // retry covers a stale keep-alive connection to a restarted main
            lock(&self.shared).registered = false;
            quick_retry = self.last_error.is_none();
        }
        self.set_status(format!("sub: {text}"));
        self.last_error = Some(text);
        Next::Wait(if quick_retry {
            Duration::from_millis(200).min(self.period)
        } else {
            self.period
        })
    }
}
