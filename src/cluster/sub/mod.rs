//! The sub role: find main (`cluster.main_url` / `MAIN_NODE_URL`, else mDNS browse), register
//! (signed), heartbeat every `heartbeat_secs` with fresh statistics, re-register at once on
//! `unknown_node` (main restarted), keep retrying on network errors or refusals, and say goodbye
//! (`/leave`) on a graceful stop. LiveKit keeps serving whatever happens here.
//!
//! The loop ([`run`]) publishes a one-line status (systemd `STATUS=`), e.g. `sub: registered with
//! main main at http://10.0.0.1:8000`, [`MAIN_NOT_FOUND`] or `sub: rejected by main:
//! bad_signature (…)`, and keeps the [`link`] to main that `GET /api/node`, `status` and
//! `/metrics` show. [`client`] signs and sends the calls.

pub mod client;
pub mod link;
mod run;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::ClusterSecret;
use super::discovery::{Discovery, DiscoveryEvent};
use super::node::{ClusterContext, ClusterError, StatsSource};
use super::protocol::{self, LeaveRequest, NodeInfo};
use crate::sync::lock;
use client::Client;
use link::{LinkView, SubLink};

pub use client::CallError;

/// The status text while no main is known after the discovery timeout (the seed's
/// troubleshooting entry).
pub const MAIN_NOT_FOUND: &str = "Main Node not found (set MAIN_NODE_URL / cluster.main_url)";

/// Status while a main that was known is gone (before the discovery timeout says more).
pub fn main_lost_status(main: &str) -> String {
    format!("main {main} stopped advertising; looking for it again (LiveKit keeps serving)")
}

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

/// Where the sub is, shared by the loop and the handle (for `leave`).
#[derive(Debug, Default)]
struct Shared {
    main_url: Option<String>,
    registered: bool,
    /// The link to main as operators see it (updated after every exchange).
    link: SubLink,
}

/// The running sub loop.
pub struct SubHandle {
    client: Client,
    shared: Arc<Mutex<Shared>>,
    cancel: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for SubHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubHandle")
            .field("node", &self.client.settings.info.name)
            .finish_non_exhaustive()
    }
}

/// Start this node's sub role: browse for main unless `main_url` is set, then run the loop.
pub fn start(
    ctx: &ClusterContext,
    info: NodeInfo,
    stats: StatsSource,
    discovery: Option<&Arc<dyn Discovery>>,
    status_tx: watch::Sender<String>,
) -> Result<Arc<SubHandle>, ClusterError> {
    let secret = ctx.cluster_secret()?.ok_or(ClusterError::MissingSecret)?;
    let c = &ctx.node.config.cluster;
    let main_url = c.main_url.clone().filter(|u| !u.trim().is_empty());
    let browse = match (&main_url, discovery) {
        (None, Some(d)) => match d.browse(&c.id) {
            Ok(rx) => Some(rx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot browse mDNS for main");
                None
            }
        },
        _ => None,
    };
    let settings = SubSettings {
        cluster_id: c.id.clone(),
        identity: protocol::new_identity(&mut rand::thread_rng()),
        info,
        main_url,
        heartbeat: ctx.heartbeat(),
        discovery_timeout: Duration::from_secs(c.discovery_timeout_secs),
        secret,
    };
    Ok(SubHandle::start(
        settings,
        stats,
        browse,
        status_tx,
        ctx.http.clone(),
        &ctx.tracker,
        ctx.cancel.child_token(),
    ))
}

impl SubHandle {
    /// Start the loop on `tracker`. `browse` is the discovery stream (needed when `main_url` is
    /// `None`); `status` receives the status line; `http` carries the calls to main.
    pub fn start(
        settings: SubSettings,
        stats: StatsSource,
        browse: Option<mpsc::UnboundedReceiver<DiscoveryEvent>>,
        status: watch::Sender<String>,
        http: reqwest::Client,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let shared = Arc::new(Mutex::new(Shared {
            main_url: settings.main_url.clone(),
            registered: false,
            link: SubLink::default(),
        }));
        let client = Client { settings, http };
        let sub = run::SubLoop::new(client.clone(), stats, browse, status, shared.clone());
        let task = tracker.spawn(sub.run(cancel.clone()));
        Arc::new(SubHandle {
            client,
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
        let st = &self.client.settings;
        let body = LeaveRequest {
            name: st.info.name.clone(),
            identity: st.identity.clone(),
        };
        let r = tokio::time::timeout(
            budget,
            self.client
                .call::<_, serde_json::Value>(&url, "/api/cluster/leave", &body),
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

#[cfg(test)]
mod tests;
