//! Redis as the cluster sees it: our cluster-id marker and read-only views of LiveKit's keys.
//!
//! LiveKit has no key prefix (livekit#1777), so two clusters on one Redis corrupt each other.
//! Every key *we* write lives under [`KEY_PREFIX`] (`airclass:`); today that is only
//! [`CLUSTER_ID_KEY`] (`airclass:cluster_id`), claimed with `SET NX` and then compared with `GET`.
//! A Redis that already holds another id is refused ([`StoreError::OwnedByOther`], exit 78).
//!
//! LiveKit's own keys are only read, never written: `room_node_map` (hash: room name → LiveKit
//! node id) and `nodes` (hash: node id → protobuf `livekit.Node`, which carries the node's IP).
//! Main uses them to keep a room that is already live on its node (see [`Store::room_host_ip`]).

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;

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
