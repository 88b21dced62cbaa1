//! Shared helpers of the suite: an HTTP client, server API tokens, and "a participant in room
//! X" for either server — a real signal WebSocket join for the real server, the stand-in's
//! `/standin/participants` hook for the stand-in (it has no `/rtc` WebSocket).

use std::time::Duration;

use livekit_api::access_token::{AccessToken, VideoGrants};

use crate::common::livekit_proc::{LkProc, Server, KEY, SECRET};
use crate::common::signal;

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

/// A server API token with `grants`.
pub fn token(grants: VideoGrants) -> String {
    AccessToken::with_api_key(KEY, SECRET)
        .with_identity("tester")
        .with_grants(grants)
        .to_jwt()
        .expect("jwt")
}

/// Signs arbitrary claims with HS256 (for tokens the SDK refuses to build, e.g. long expired).
pub fn hs256_jwt(claims: &serde_json::Value, secret: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(format!("{head}.{body}").as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

/// `http://127.0.0.1:PORT` of a server started on `port`.
pub fn base(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// A participant present in a room until dropped (or [`Present::leave`]).
pub enum Present {
    Real(Box<signal::Participant>),
    Standin { url: String, room: String },
}

/// Puts one participant `identity` into `room` of the server on `port`.
pub async fn add_participant(p: &LkProc, port: u16, room: &str, identity: &str) -> Present {
    match p.server {
        Server::Real => {
            let t = signal::join_token(KEY, SECRET, room, identity);
            let joined = signal::join(&base(port), &t)
                .await
                .unwrap_or_else(|e| panic!("real server: join {room} as {identity}: {e}"));
            Present::Real(Box::new(joined))
        }
        Server::Standin => {
            let url = format!(
                "{}/standin/participants?room={room}&identity={identity}",
                base(port)
            );
            let r = http()
                .post(format!("{url}&count=1"))
                .send()
                .await
                .expect("stand-in participants hook");
            assert_eq!(r.status(), 200, "stand-in participants hook");
            Present::Standin {
                url,
                room: room.into(),
            }
        }
    }
}

impl Present {
    /// The participant leaves (the real one closes its WebSocket).
    pub async fn leave(self) {
        match self {
            Present::Real(p) => drop(p),
            Present::Standin { url, room } => {
                let r = http().post(format!("{url}&count=0")).send().await;
                assert!(r.is_ok(), "stand-in hook: empty {room}");
            }
        }
    }
}
