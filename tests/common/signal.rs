//! A LiveKit participant over the signal WebSocket only (`GET /rtc?access_token=…`): enough for
//! the real server to count it in its room (the drain waits for it) and to read the
//! `JoinResponse` it hands a client (ICE servers, server version). No media, no ICE traffic:
//! the real server drops a participant whose ICE never connects after about a minute.

#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_protocol::{signal_request, signal_response, JoinResponse, SignalRequest};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;

/// A join token for `identity` in `room`.
pub fn join_token(key: &str, secret: &str, room: &str, identity: &str) -> String {
    AccessToken::with_api_key(key, secret)
        .with_identity(identity)
        .with_grants(VideoGrants {
            room_join: true,
            room: room.into(),
            ..Default::default()
        })
        .to_jwt()
        .expect("join token")
}

/// A joined participant; leaves (closes the socket) on drop.
pub struct Participant {
    pub join: JoinResponse,
    task: tokio::task::JoinHandle<()>,
}

/// Joins through `http_base` (`http://127.0.0.1:PORT`) with `token`; the WebSocket stays open
/// (pinging every 5 s) until the participant is dropped.
pub async fn join(http_base: &str, token: &str) -> Result<Participant, String> {
    let url = format!(
        "{}/rtc?access_token={token}&protocol=15&sdk=rust&auto_subscribe=1",
        http_base.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| "signal connect timed out".to_string())?
    .map_err(|e| format!("signal connect: {e}"))?;
    let join = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = ws.next().await {
            let msg = msg.map_err(|e| format!("signal read: {e}"))?;
            if let Message::Binary(b) = msg {
                let resp = livekit_protocol::SignalResponse::decode(b.as_ref())
                    .map_err(|e| format!("decode SignalResponse: {e}"))?;
                if let Some(signal_response::Message::Join(j)) = resp.message {
                    return Ok(j);
                }
            }
        }
        Err("signal closed before the JoinResponse".to_string())
    })
    .await
    .map_err(|_| "no JoinResponse within 10 s".to_string())??;
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let ping = SignalRequest {
                        message: Some(signal_request::Message::Ping(0)),
                    };
                    if ws.send(Message::Binary(ping.encode_to_vec().into())).await.is_err() {
                        return;
                    }
                }
                msg = ws.next() => if msg.is_none_or(|m| m.is_err()) { return },
            }
        }
    });
    Ok(Participant { join, task })
}

impl Participant {
    /// Every ICE server URL the server handed this client.
    pub fn ice_urls(&self) -> Vec<String> {
        self.join
            .ice_servers
            .iter()
            .flat_map(|s| s.urls.clone())
            .collect()
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.task.abort();
    }
}
