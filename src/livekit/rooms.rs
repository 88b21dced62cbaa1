//! LiveKit's RoomService seen from the daemon: ListRooms through the official `livekit-api`
//! crate (it signs a fresh server token with the minimal grant for every request).

use serde::Serialize;

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

/// List this node's rooms from its LiveKit.
pub async fn list_rooms(
    livekit_port: u16,
    api_key: &str,
    api_secret: &str,
) -> Result<Vec<RoomView>, RoomsError> {
    let host = format!("http://127.0.0.1:{livekit_port}");
    let client = livekit_api::services::room::RoomClient::with_api_key(&host, api_key, api_secret)
        .with_request_timeout(std::time::Duration::from_secs(5));
    let rooms = client
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
