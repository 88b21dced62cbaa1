//! The main/sub cluster. The pure cores own no sockets, tasks or clocks (time and randomness are
//! parameters): [`placement`] (rendezvous hashing), [`membership`] (main's node table), [`auth`]
//! (HMAC request signing, replay cache) and [`protocol`] (versioned wire messages).
//! `docs/protocol.md` describes the protocol in prose.
//!
//! The async shells, each using only what is listed before it:
//! - [`flight`]: one call at a time with its answer shared (public GETs that reach LiveKit);
//! - [`store`]: Redis (our cluster-id marker and its guard, read-only views of LiveKit's room
//!   map);
//! - [`discovery`]: mDNS and the in-memory implementation for tests;
//! - [`node`]: this node as the cluster sees it (context, node info, statistics, advert);
//! - [`main`]: the main role (membership table, endpoints, joins), also a standalone node's
//!   join endpoint;
//! - [`sub`]: the sub role (find main, register, heartbeat, leave);
//! - this file: starting the node's role ([`start`]) and stopping it ([`ClusterHandle`]).

pub mod auth;
pub mod discovery;
pub mod flight;
pub mod main;
pub mod membership;
pub mod node;
pub mod placement;
pub mod protocol;
pub mod store;
pub mod sub;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Mode;
use crate::redis_conn::RedisConn;
use discovery::{Discovery, MdnsDiscovery};
use main::Main;
use node::{ClusterContext, ClusterError};
use store::{Claim, MarkerState, Store, StoreError};
use sub::SubHandle;

/// Budget for `/leave` on a graceful stop.
pub const LEAVE_BUDGET: Duration = Duration::from_secs(2);

/// The role a node plays, with what the control API serves for it.
#[derive(Debug, Clone)]
pub enum Role {
    /// A single node: the join endpoint, placing every room on itself.
    Standalone(Arc<Main>),
    /// The cluster's main: membership, cluster endpoints, joins, cluster-wide rooms.
    Main(Arc<Main>),
    /// A sub node: registers with main and heartbeats; serves only node routes.
    Sub(Arc<SubHandle>),
}

/// The running cluster role.
pub struct ClusterHandle {
    pub role: Role,
    /// One-line cluster status for systemd's `STATUS=` (empty on a standalone node).
    pub status: watch::Receiver<String>,
    discovery: Option<Arc<dyn Discovery>>,
}

impl ClusterHandle {
    /// Graceful goodbye: a sub sends `/leave` (bounded by [`LEAVE_BUDGET`]).
    pub async fn leave(&self) {
        if let Role::Sub(s) = &self.role {
            s.leave(LEAVE_BUDGET).await;
        }
    }

    /// Withdraw mDNS adverts and stop the mDNS daemon.
    pub fn stop(&self) {
        if let Some(d) = &self.discovery {
            d.shutdown();
        }
    }
}

/// Check Redis ownership at startup: claim `airclass:cluster_id` for our cluster id.
pub async fn claim_redis(redis: &RedisConn, cluster_id: &str) -> Result<Store, StoreError> {
    let store = Store::new(redis.clone());
    match store.claim_cluster_id(cluster_id).await? {
        Claim::Created => {
            tracing::info!(address = %store.address(), cluster = cluster_id, "Redis claimed for this cluster")
        }
        Claim::Existing => {
            tracing::info!(address = %store.address(), cluster = cluster_id, "Redis belongs to this cluster")
        }
    }
    Ok(store)
}

fn discovery_for(ctx: &ClusterContext) -> Option<Arc<dyn Discovery>> {
    if let Some(d) = &ctx.discovery {
        return Some(d.clone());
    }
    if !ctx.node.config.cluster.mdns || !ctx.node.mode.is_clustered() {
        return None;
    }
    match MdnsDiscovery::new() {
        Ok(d) => Some(Arc::new(d)),
        Err(e) => {
            tracing::warn!(error = %e, "mDNS unavailable; set MAIN_NODE_URL (cluster.main_url) on subs");
            None
        }
    }
}

/// Start this node's role: advertise it (mDNS or the injected discovery), then main's table
/// and ticker (main, standalone) or the sub loop (sub).
pub async fn start(ctx: ClusterContext) -> Result<ClusterHandle, ClusterError> {
    crate::tls::install_crypto_provider();
    let info = node::node_info(&ctx.node);
    let stats = node::stats_source(&ctx);
    // configuration errors first, before anything is advertised
    ctx.cluster_secret()?;
    let discovery = discovery_for(&ctx);
    if let Some(d) = &discovery {
        if let Err(e) = d.advertise(&node::advert(&ctx.node)) {
            tracing::warn!(error = %e, "cannot advertise over mDNS");
        }
    }
    let (status_tx, role_status) = watch::channel(String::new());
    let role = match ctx.node.mode {
        Mode::Sub => Role::Sub(sub::start(
            &ctx,
            info,
            stats,
            discovery.as_ref(),
            status_tx,
        )?),
        Mode::Main => Role::Main(main::start(&ctx, info, stats, status_tx).await?),
        Mode::Standalone => Role::Standalone(main::start(&ctx, info, stats, status_tx).await?),
    };
    let status = match &ctx.store {
        Some(store) => {
            let marker = store::guard_marker(
                store.clone(),
                ctx.node.config.cluster.id.clone(),
                &ctx.tracker,
                ctx.cancel.child_token(),
            );
            with_marker(&ctx, store.address(), role_status, marker)
        }
        None => role_status,
    };
    Ok(ClusterHandle {
        role,
        status,
        discovery,
    })
}

/// The role's status line, then the marker guard's report when it has one.
fn status_text(role: &str, marker: &MarkerState, address: &str, ours: &str) -> String {
    let report = marker.status(address, ours);
    match (role.is_empty(), report.is_empty()) {
        (_, true) => role.to_owned(),
        (true, false) => report,
        (false, false) => format!("{role}; {report}"),
    }
}

/// A status watch that follows the role's line and the marker guard's report (set at once, so
/// `READY=1` already carries it).
fn with_marker(
    ctx: &ClusterContext,
    address: &str,
    mut role: watch::Receiver<String>,
    mut marker: watch::Receiver<MarkerState>,
) -> watch::Receiver<String> {
    let (address, ours) = (address.to_owned(), ctx.node.config.cluster.id.clone());
    let text = move |r: &watch::Receiver<String>, m: &watch::Receiver<MarkerState>| {
        status_text(&r.borrow(), &m.borrow(), &address, &ours)
    };
    let (tx, rx) = watch::channel(text(&role, &marker));
    let cancel = ctx.cancel.child_token();
    ctx.tracker.spawn(async move {
        let (mut role_open, mut marker_open) = (true, true);
        while role_open || marker_open {
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = role.changed(), if role_open => role_open = r.is_ok(),
                r = marker.changed(), if marker_open => marker_open = r.is_ok(),
            }
            node::publish(&tx, text(&role, &marker));
        }
    });
    rx
}
