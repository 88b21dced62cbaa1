//! LiveKit's RoomService seen from the daemon: ListRooms and CreateRoom through the official
//! `livekit-api` crate (it signs a fresh server token with the minimal grant for every request).
//! One [`Rooms`] per consumer, built once: its HTTP client keeps its connections to LiveKit.

use std::sync::Arc;
use std::time::Duration;

use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use serde::Serialize;

/// Budget of a ListRooms call.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// Budget of a CreateRoom call (it is on the join path).
const CREATE_TIMEOUT: Duration = Duration::from_secs(2);

/// A room as the control API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoomView {
    pub name: String,
    pub sid: String,
    pub num_participants: u32,
    pub num_publishers: u32,
    pub creation_time: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("LiveKit RoomService failed: {0}")]
pub struct RoomsError(pub String);

/// This node's LiveKit RoomService (on 127.0.0.1).
#[derive(Clone)]
pub struct Rooms {
    list: Arc<RoomClient>,
    create: Arc<RoomClient>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").finish_non_exhaustive()
    }
}

impl Rooms {
    pub fn new(livekit_port: u16, api_key: &str, api_secret: &str) -> Self {
        let host = format!("http://127.0.0.1:{livekit_port}");
        let client = |timeout| {
            Arc::new(
                RoomClient::with_api_key(&host, api_key, api_secret).with_request_timeout(timeout),
            )
        };
        Rooms {
            list: client(LIST_TIMEOUT),
            create: client(CREATE_TIMEOUT),
        }
    }

    /// Every room this LiveKit knows (with Redis: every room of the cluster, see
    /// `cluster::node` for how a node tells its own).
    pub async fn list(&self) -> Result<Vec<RoomView>, RoomsError> {
        let rooms = self
            .list
            .list_rooms(Vec::new())
            .await
            .map_err(|e| RoomsError(e.to_string()))?;
        Ok(rooms
            .into_iter()
            .map(|r| RoomView {
                name: r.name,
                sid: r.sid,
                num_participants: r.num_participants,
                num_publishers: r.num_publishers,
                creation_time: r.creation_time,
            })
            .collect())
    }

    /// Create `room` on the LiveKit node `node_id` (CreateRoom's `node_id`: with Redis, LiveKit
    /// maps the room to that node unless it is already live elsewhere, and relays the request
    /// there; without it, LiveKit would pick the node itself when the first participant comes).
    pub async fn create_on(&self, room: &str, node_id: &str) -> Result<(), RoomsError> {
        let options = CreateRoomOptions {
            node_id: node_id.to_owned(),
            ..Default::default()
        };
        self.create
            .create_room(room, options)
            .await
            .map(|_| ())
            .map_err(|e| RoomsError(e.to_string()))
    }
}
