//! Redis as the cluster sees it: our cluster-id marker and read-only views of LiveKit's keys.
//!
//! LiveKit has no key prefix (livekit#1777), so two clusters on one Redis corrupt each other.
//! Every key *we* write lives under [`KEY_PREFIX`] (`airclass:`); today that is only
//! [`CLUSTER_ID_KEY`] (`airclass:cluster_id`), claimed with `SET NX` and then compared with `GET`.
//! A Redis that already holds another id is refused at startup ([`StoreError::OwnedByOther`],
//! exit 78).
//!
//! While the node runs, [`guard_marker`] keeps the claim: every [`MARKER_CHECK_PERIOD`], and at
//! once whenever the shared connection is opened anew (Redis came back), it claims the marker
//! again — a Redis restarted empty (or flushed) gets our id back within seconds. Finding
//! *another* cluster's id mid-run is not a reason to exit: exiting 78 would stop LiveKit and end
//! every class on this node, while the fault (two clusters on one Redis) is elsewhere and
//! LiveKit goes on serving its rooms. So the node reports it — [`MarkerState::Foreign`], an error
//! in the journal and `degraded: …` in its `STATUS=` line — keeps LiveKit running, never
//! overwrites the other id, and goes back to normal as soon as the marker is ours again.
//!
//! LiveKit's own keys are only read, never written: `room_node_map` (hash: room name → LiveKit
//! node id) and `nodes` (hash: node id → protobuf `livekit.Node`, which carries the node's IP).
//! Main uses them to keep a room that is already live on its node (see [`Store::room_host_ip`]).

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::redis_conn::{RedisConn, RedisError};

/// The one prefix of every key airclass-node writes.
pub const KEY_PREFIX: &str = "airclass:";
/// The cluster-id marker: the value is the `cluster.id` that owns this Redis.
pub const CLUSTER_ID_KEY: &str = "airclass:cluster_id";
/// LiveKit's hash of room name → LiveKit node id (read only).
pub const LIVEKIT_ROOM_NODE_MAP: &str = "room_node_map";
/// LiveKit's hash of node id → protobuf `livekit.Node` (read only).
pub const LIVEKIT_NODES: &str = "nodes";

const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a running node checks that the cluster-id marker is still its own.
pub const MARKER_CHECK_PERIOD: Duration = Duration::from_secs(2);

/// Why a Redis operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("Redis at {address}: {CLUSTER_ID_KEY} vanished right after SET NX")]
    MarkerVanished { address: String },
    #[error(
        "Redis at {address} belongs to cluster {theirs:?} ({CLUSTER_ID_KEY}), not to this cluster \
         {ours:?}: LiveKit has no key prefix, so two clusters must not share one Redis. Give this \
         cluster its own Redis (or its own database: redis.url …/N), or set cluster.id to {theirs:?} \
         if this node belongs to that cluster"
    )]
    OwnedByOther {
        address: String,
        ours: String,
        theirs: String,
    },
}

/// What claiming the marker found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The marker was absent and now holds our id.
    Created,
    /// The marker already held our id.
    Existing,
}

/// The cluster's Redis (the same one LiveKit uses).
#[derive(Clone, Debug)]
pub struct Store {
    redis: RedisConn,
}

impl Store {
    pub fn new(redis: RedisConn) -> Self {
        Store { redis }
    }

    pub fn address(&self) -> &str {
        self.redis.address()
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        Ok(self.redis.query(cmd, OP_TIMEOUT).await?)
    }

    /// Claim this Redis for `cluster_id`: `SET airclass:cluster_id ID NX`, then `GET` and compare.
    pub async fn claim_cluster_id(&self, cluster_id: &str) -> Result<Claim, StoreError> {
        let created: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(CLUSTER_ID_KEY)
                    .arg(cluster_id)
                    .arg("NX"),
            )
            .await?;
        let current: Option<String> = self.query(redis::cmd("GET").arg(CLUSTER_ID_KEY)).await?;
        match current {
            Some(c) if c == cluster_id => Ok(if created.is_some() {
                Claim::Created
            } else {
                Claim::Existing
            }),
            Some(theirs) => Err(StoreError::OwnedByOther {
                address: self.address().to_owned(),
                ours: cluster_id.to_owned(),
                theirs,
            }),
            None => Err(StoreError::MarkerVanished {
                address: self.address().to_owned(),
            }),
        }
    }

    /// LiveKit's node id for `room`, from `room_node_map` (None: the room is not live).
    pub async fn livekit_room_node(&self, room: &str) -> Result<Option<String>, StoreError> {
        self.query(redis::cmd("HGET").arg(LIVEKIT_ROOM_NODE_MAP).arg(room))
            .await
    }

    /// LiveKit's node record for `node_id`, from `nodes` (None: unknown or undecodable).
    pub async fn livekit_node(
        &self,
        node_id: &str,
    ) -> Result<Option<livekit_protocol::Node>, StoreError> {
        let raw: Option<Vec<u8>> = self
            .query(redis::cmd("HGET").arg(LIVEKIT_NODES).arg(node_id))
            .await?;
        Ok(raw.and_then(|b| livekit_protocol::Node::decode(b.as_slice()).ok()))
    }

    /// The IP of the LiveKit node that hosts `room`, if the room is live.
    pub async fn room_host_ip(&self, room: &str) -> Result<Option<String>, StoreError> {
        let Some(id) = self.livekit_room_node(room).await? else {
            return Ok(None);
        };
        Ok(self
            .livekit_node(&id)
            .await?
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty()))
    }

    /// The whole `room_node_map` (room → LiveKit node id).
    pub async fn livekit_room_node_map(&self) -> Result<HashMap<String, String>, StoreError> {
        self.query(redis::cmd("HGETALL").arg(LIVEKIT_ROOM_NODE_MAP))
            .await
    }
}

/// What the marker guard last found in `airclass:cluster_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerState {
    /// Our cluster id (claimed at startup, or again after Redis lost it).
    Ours,
    /// Another cluster's id: two clusters share this Redis.
    Foreign { theirs: String },
}

impl MarkerState {
    /// The report for the status line (empty when all is well).
    pub fn status(&self, address: &str, ours: &str) -> String {
        match self {
            MarkerState::Ours => String::new(),
            MarkerState::Foreign { theirs } => format!(
                "degraded: Redis at {address} belongs to cluster {theirs:?} ({CLUSTER_ID_KEY}), \
                 not {ours:?}: two clusters share one Redis (LiveKit has no key prefix, their \
                 rooms can mix); LiveKit keeps serving; give each cluster its own Redis"
            ),
        }
    }
}

/// One check of the marker; the new state, `None` when Redis did not say (state unchanged).
async fn check_marker(store: &Store, ours: &str, was: &MarkerState) -> Option<MarkerState> {
    match store.claim_cluster_id(ours).await {
        Ok(Claim::Created) => {
            tracing::warn!(address = %store.address(), cluster = ours, "Redis had lost the cluster-id marker (restarted empty or flushed?): claimed it again");
            Some(MarkerState::Ours)
        }
        Ok(Claim::Existing) => {
            if *was != MarkerState::Ours {
                tracing::info!(address = %store.address(), cluster = ours, "the cluster-id marker is ours again");
            }
            Some(MarkerState::Ours)
        }
        Err(StoreError::OwnedByOther { theirs, .. }) => {
            let state = MarkerState::Foreign { theirs };
            if state != *was {
                tracing::error!(address = %store.address(), cluster = ours, status = %state.status(store.address(), ours), "another cluster's id is in the cluster-id marker; not overwriting it, LiveKit keeps serving");
            }
            Some(state)
        }
        Err(e) => {
            tracing::debug!(error = %e, "cluster-id marker not checked");
            None
        }
    }
}

/// Keep `airclass:cluster_id` claimed for `ours` while the node runs (see the module docs):
/// every [`MARKER_CHECK_PERIOD`] and whenever the connection is opened anew. The watch carries
/// what was last found (starting from [`MarkerState::Ours`], the startup claim).
pub fn guard_marker(
    store: Store,
    ours: String,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> watch::Receiver<MarkerState> {
    let (tx, rx) = watch::channel(MarkerState::Ours);
    let mut connected = store.redis.connected();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(MARKER_CHECK_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
                r = connected.changed() => if r.is_err() { break },
            }
            let was = tx.borrow().clone();
            if let Some(now) = check_marker(&store, &ours, &was).await {
                tx.send_if_modified(|cur| {
                    let changed = *cur != now;
                    *cur = now;
                    changed
                });
            }
        }
    });
    rx
}
