//! TEST DOUBLE, what a LiveKit node of a Redis cluster does beyond a single node (corrected
//! against the real server, livekit-server 1.13.5 `pkg/service/roomservice.go`,
//! `roomallocator.go`, `redisstore.go`): ListRooms reads the shared `rooms` hash, so it lists
//! **every** room of the cluster; CreateRoom with another node's `node_id` maps the room to that
//! node in `room_node_map` (unless the room is already mapped to a node that is still
//! available) — the real server then relays the creation to that node over psrpc; the stand-in
//! only writes the records, which is what main reads back.

use livekit_protocol as proto;
use prost::Message;

use crate::redisio::RedisLinkError;
use crate::state::{now_secs, Shared};

/// A node is available while its stats are under 5 s old (`selector.IsAvailable`).
const AVAILABLE_SECS: i64 = 5;

/// Every room in Redis `rooms` (undecodable entries are skipped, as the real store errors).
pub async fn redis_rooms(shared: &Shared) -> Result<Vec<proto::Room>, RedisLinkError> {
    let Some(redis) = &shared.redis else {
        return Ok(Vec::new());
    };
    let all = redis.lock().await.hgetall("rooms").await?;
    Ok(all
        .into_iter()
        .filter_map(|(_, bytes)| proto::Room::decode(bytes.as_slice()).ok())
        .collect())
}

/// CreateRoom with Redis, for a room that is not local: a room mapped to another node that is
/// still available stays there (its record is returned); otherwise a `node_id` of another node
/// gets the room mapped to it. `None`: create locally, as a single node does.
pub async fn create_elsewhere(
    shared: &Shared,
    req: &proto::CreateRoomRequest,
) -> Option<Result<proto::Room, RedisLinkError>> {
    let redis = shared.redis.as_ref()?;
    if shared.rooms_lock().contains_key(&req.name) {
        return None;
    }
    let mut link = redis.lock().await;
    let result = async {
        if let Some(host) = link.hget("room_node_map", &req.name).await? {
            let host = String::from_utf8_lossy(&host).into_owned();
            if host != shared.node_id && available(&link.hget("nodes", &host).await?) {
                if let Some(bytes) = link.hget("rooms", &req.name).await? {
                    return Ok(proto::Room::decode(bytes.as_slice()).ok());
                }
            }
        }
        if req.node_id.is_empty() || req.node_id == shared.node_id {
            return Ok(None);
        }
        let room = shared.new_room(
            &req.name,
            req.empty_timeout,
            req.departure_timeout,
            req.max_participants,
            &req.metadata,
        );
        link.hset("room_node_map", &req.name, req.node_id.as_bytes())
            .await?;
        link.hset("rooms", &req.name, &room.encode_to_vec()).await?;
        Ok(Some(room))
    }
    .await;
    result.transpose()
}

fn available(node: &Option<Vec<u8>>) -> bool {
    node.as_deref()
        .and_then(|b| proto::Node::decode(b).ok())
        .and_then(|n| n.stats)
        .is_some_and(|s| now_secs() - s.updated_at < AVAILABLE_SECS)
}
