//! A sub's async shell: find main (`cluster.main_url` / `MAIN_NODE_URL`, else mDNS browse), register
//! (signed), heartbeat every `heartbeat_secs` with fresh statistics, re-register at once on
//! `unknown_node` (main restarted), keep retrying on network errors or refusals, and say goodbye
//! (`/leave`) on a graceful stop. LiveKit keeps serving whatever happens here.
//!
//! The loop publishes a one-line status (systemd `STATUS=`), e.g. `sub: registered with main at
//! http://10.0.0.1:8000`, `Main Node not found (set MAIN_NODE_URL / cluster.main_url)` or
//! `rejected by main: bad_signature (…)`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::auth::{self, ClusterSecret};
use super::discovery::DiscoveryEvent;
use super::link::{self, LinkView, SubLink};
use super::main_role::{lock, unix_now};
use super::protocol::{
    ErrorBody, ErrorCode, HeartbeatRequest, HeartbeatResponse, LeaveRequest, NodeInfo, NodeStats,
    RegisterRequest, RegisterResponse,
};

/// The status text while no main is known after the discovery timeout (the seed's
/// troubleshooting entry).
pub const MAIN_NOT_FOUND: &str = "Main Node not found (set MAIN_NODE_URL / cluster.main_url)";

/// Produces fresh statistics for each register/heartbeat.
pub type StatsSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = NodeStats> + Send>> + Send + Sync>;

/// A sub's fixed settings.
#[derive(Clone)]
pub struct SubSettings {
    pub cluster_id: String,
    pub identity: String,
    pub info: NodeInfo,
    /// Fixed main URL (skips discovery); `None` = browse.
    pub main_url: Option<String>,
    pub heartbeat: Duration,
    pub discovery_timeout: Duration,
    pub secret: ClusterSecret,
}

/// Why one exchange with main failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Main answered with an error body (or a status without one: code `None`).
    Refused {
        code: Option<ErrorCode>,
        status: u16,
        message: String,
    },
    /// No answer (connection refused, timeout, bad JSON answer).
    Network(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused {
                code: Some(c),
                message,
                ..
            } => write!(f, "rejected by main: {} ({message})", c.as_str()),
            CallError::Refused {
                code: None,
                status,
                message,
            } => write!(f, "rejected by main: HTTP {status} ({message})"),
            CallError::Network(e) => write!(f, "main unreachable: {e}"),
        }
    }
}

/// Where the sub is, shared with the handle (for `leave`).
#[derive(Debug, Default)]
struct Shared {
    main_url: Option<String>,
    registered: bool,
    link: SubLink,
}

/// The running sub loop.
pub struct SubHandle {
    settings: SubSettings,
    http: reqwest::Client,
    shared: Arc<Mutex<Shared>>,
    cancel: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Signs and sends sub → main requests.
struct Client {
    settings: SubSettings,
    http: reqwest::Client,
}

impl Client {
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        body: &B,
    ) -> Result<R, CallError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CallError::Network(e.to_string()))?;
        let signed = auth::sign_request(
            &self.settings.secret,
            &self.settings.info.name,
            "POST",
            path,
            &bytes,
            unix_now(),
            &mut rand::thread_rng(),
        );
        let mut rb = self
            .http
            .post(format!("{}{path}", base.trim_end_matches('/')))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(
                self.settings
                    .heartbeat
                    .clamp(Duration::from_secs(1), Duration::from_secs(5)),
            );
        for (k, v) in signed.pairs() {
            rb = rb.header(k, v);
        }
        let resp = rb
            .body(bytes)
            .send()
            .await
            .map_err(|e| CallError::Network(e.to_string()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| CallError::Network(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| CallError::Network(format!("unreadable answer from main: {e}")));
        }
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => CallError::Refused {
                code: b.code(),
                status: status.as_u16(),
                message: b.message,
            },
            Err(_) => CallError::Refused {
                code: None,
                status: status.as_u16(),
                message: text.chars().take(200).collect(),
            },
        })
    }
}

impl SubHandle {
    /// Start the loop on `tracker`. `browse` is the discovery stream (needed when `main_url` is
    /// `None`); `status` receives the status line.
    pub fn start(
        settings: SubSettings,
        stats: StatsSource,
        browse: Option<mpsc::UnboundedReceiver<DiscoveryEvent>>,
        status: watch::Sender<String>,
        tracker: &tokio_util::task::TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let http = reqwest::Client::new();
        let shared = Arc::new(Mutex::new(Shared {
            main_url: settings.main_url.clone(),
            registered: false,
            link: SubLink::default(),
        }));
        let client = Client {
            settings: settings.clone(),
            http: http.clone(),
        };
        let task = tracker.spawn(run(
            client,
            stats,
            browse,
            status,
            shared.clone(),
            cancel.clone(),
        ));
        Arc::new(SubHandle {
            settings,
            http,
            shared,
            cancel,
            task: Mutex::new(Some(task)),
        })
    }

    /// Is the sub registered with a main right now?
    pub fn registered(&self) -> bool {
        lock(&self.shared).registered
    }

    /// The link to main as operators see it (`GET /api/node`, `status`, `/metrics`).
    pub fn link(&self) -> LinkView {
        lock(&self.shared).link.view()
    }

    /// Stop heartbeating and send `/leave` (bounded by `budget`). Returns true when main
    /// acknowledged.
    pub async fn leave(&self, budget: Duration) -> bool {
        self.cancel.cancel();
        let task = lock(&self.task).take();
        if let Some(t) = task {
            let _ = tokio::time::timeout(budget, t).await;
        }
        let (url, registered) = {
            let s = lock(&self.shared);
            (s.main_url.clone(), s.registered)
        };
        let (Some(url), true) = (url, registered) else {
            return false;
        };
        let client = Client {
            settings: self.settings.clone(),
            http: self.http.clone(),
        };
        let body = LeaveRequest {
            name: self.settings.info.name.clone(),
            identity: self.settings.identity.clone(),
        };
        let r = tokio::time::timeout(
            budget,
            client.call::<_, serde_json::Value>(&url, "/api/cluster/leave", &body),
        )
        .await;
        lock(&self.shared).registered = false;
        match r {
            Ok(Ok(_)) => {
                tracing::info!(main = %url, "left the cluster");
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(main = %url, error = %e, "leave refused");
                false
            }
            Err(_) => {
                tracing::warn!(main = %url, "leave timed out");
                false
            }
        }
    }
}

fn set_status(tx: &watch::Sender<String>, s: String) {
    tx.send_if_modified(|cur| {
        if *cur == s {
            false
        } else {
            *cur = s;
            true
        }
    });
}

/// Apply discovery events to `shared` (a found main replaces an unknown one; a lost main is
/// forgotten). Returns the name of a main that was just lost.
fn apply_event(
    ev: DiscoveryEvent,
    shared: &Mutex<Shared>,
    current_main: &mut Option<String>,
) -> Option<String> {
    let mut s = lock(shared);
    match ev {
        DiscoveryEvent::Found(m) => {
            if s.main_url.as_deref() != Some(m.api_url.as_str()) {
                tracing::info!(main = %m.node, url = %m.api_url, "main found over mDNS");
                s.main_url = Some(m.api_url);
                s.registered = false;
            }
            *current_main = Some(m.node);
            None
        }
        DiscoveryEvent::Lost(node) if current_main.as_deref() == Some(node.as_str()) => {
            tracing::warn!(main = %node, "main stopped advertising; looking for it again, LiveKit keeps serving");
            s.link.searching(&main_lost_status(&node));
            s.main_url = None;
            s.registered = false;
            *current_main = None;
            Some(node)
        }
        DiscoveryEvent::Lost(_) => None,
    }
}

/// Status while a main that was known is gone (before the discovery timeout says more).
pub fn main_lost_status(main: &str) -> String {
    format!("main {main} stopped advertising; looking for it again (LiveKit keeps serving)")
}

async fn run(
    client: Client,
    stats: StatsSource,
    mut browse: Option<mpsc::UnboundedReceiver<DiscoveryEvent>>,
    status: watch::Sender<String>,
    shared: Arc<Mutex<Shared>>,
    cancel: CancellationToken,
) {
    let st = &client.settings;
    let name = st.info.name.clone();
    let started = tokio::time::Instant::now();
    // when the current search for main began (start, or the moment a known main was lost)
    let mut search_started = started;
    let mut period = st.heartbeat;
    let mut current_main: Option<String> = None;
    let mut warned_not_found = false;
    let mut last_error: Option<String> = None;
    let mut main_name = String::from("?");
    if st.main_url.is_none() {
        set_status(&status, "sub: looking for main over mDNS".into());
    }
    loop {
        // 1. where is main?
        let url = lock(&shared).main_url.clone();
        let Some(url) = url else {
            let Some(rx) = browse.as_mut() else {
                if !warned_not_found {
                    warned_not_found = true;
                    tracing::warn!(cluster = %st.cluster_id, "{MAIN_NOT_FOUND}: no main URL and no mDNS browse; LiveKit keeps serving");
                }
                set_status(&status, MAIN_NOT_FOUND.into());
                lock(&shared).link.searching(MAIN_NOT_FOUND);
                tokio::select! { _ = cancel.cancelled() => return, _ = tokio::time::sleep(period) => continue }
            };
            let deadline = search_started + st.discovery_timeout;
            let wait = if warned_not_found {
                period
            } else {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                ev = rx.recv() => match ev {
                    Some(ev) => {
                        if let Some(lost) = apply_event(ev, &shared, &mut current_main) {
                            search_started = tokio::time::Instant::now();
                            warned_not_found = false;
                            set_status(&status, main_lost_status(&lost));
                        }
                    }
                    None => { browse = None; }
                },
                _ = tokio::time::sleep(wait) => {
                    if !warned_not_found {
                        warned_not_found = true;
                        tracing::warn!(cluster = %st.cluster_id, waited_secs = st.discovery_timeout.as_secs(), "{MAIN_NOT_FOUND}; LiveKit keeps serving, still looking");
                        set_status(&status, MAIN_NOT_FOUND.into());
                        lock(&shared).link.searching(MAIN_NOT_FOUND);
                    }
                }
            }
            continue;
        };
        // 2. register or heartbeat
        let registered = lock(&shared).registered;
        let stats_now = stats().await;
        let result = if registered {
            let body = HeartbeatRequest {
                name: name.clone(),
                identity: st.identity.clone(),
                stats: stats_now,
            };
            client
                .call::<_, HeartbeatResponse>(&url, "/api/cluster/heartbeat", &body)
                .await
                .map(|r| (r.heartbeat_secs, None))
        } else {
            let body = RegisterRequest {
                cluster_id: st.cluster_id.clone(),
                identity: st.identity.clone(),
                node: st.info.clone(),
                stats: stats_now,
            };
            client
                .call::<_, RegisterResponse>(&url, "/api/cluster/register", &body)
                .await
                .map(|r| (r.heartbeat_secs, Some(r.main_name)))
        };
        lock(&shared).link.observe(&url, &result);
        crate::metrics::exchange_sent(registered, link::result_label(&result));
        let mut again_now = false;
        let mut quick_retry = false;
        match result {
            Ok((hb, new_main)) => {
                if hb >= 1 {
                    period = Duration::from_secs(hb);
                }
                if let Some(n) = new_main {
                    main_name = n;
                    lock(&shared).registered = true;
                    tracing::info!(main = %main_name, url = %url, elapsed_ms = started.elapsed().as_millis() as u64, "registered with main");
                }
                set_status(
                    &status,
                    format!("sub: registered with main {main_name} at {url}"),
                );
                last_error = None;
            }
            Err(CallError::Refused {
                code: Some(ErrorCode::UnknownNode),
                ..
            }) => {
                tracing::warn!(url = %url, "main does not know this node (restarted?): registering again");
                lock(&shared).registered = false;
                again_now = registered; // only once: a register answered unknown_node waits
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(url = %url, error = %text, "exchange with main failed; retrying every heartbeat");
                }
                let network = matches!(e, CallError::Network(_));
                if network && registered {
                    // main may have restarted: the next success must be a register, and one
                    // quick retry covers a stale keep-alive connection to a restarted main
                    lock(&shared).registered = false;
                    quick_retry = last_error.is_none();
                }
                set_status(&status, format!("sub: {text}"));
                last_error = Some(text);
            }
        }
        if again_now {
            continue;
        }
        // 3. wait one heartbeat period, applying discovery events meanwhile
        let wait = if quick_retry {
            Duration::from_millis(200).min(period)
        } else {
            period
        };
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = &mut sleep => break,
                ev = async { match browse.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    match ev {
                        Some(ev) => {
                            if let Some(lost) = apply_event(ev, &shared, &mut current_main) {
                                search_started = tokio::time::Instant::now();
                                warned_not_found = false;
                                set_status(&status, main_lost_status(&lost));
                            }
                        }
                        None => browse = None,
                    }
                }
            }
        }
    }
}
