//! A sub's calls to main: sign (HMAC, fresh nonce, wall-clock timestamp), POST JSON, and turn
//! the answer into the response type or a [`CallError`].

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::SubSettings;
use crate::clock;
use crate::cluster::auth;
use crate::cluster::protocol::{ErrorBody, ErrorCode};

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

impl std::error::Error for CallError {}

/// Signs and sends sub → main requests.
#[derive(Clone)]
pub struct Client {
    pub settings: SubSettings,
    pub http: reqwest::Client,
}

impl Client {
    /// POST `body` to `base` + `path`, signed; the answer as `R`.
    pub async fn call<B: Serialize, R: DeserializeOwned>(
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
            clock::unix_now(),
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
