//! A sub's link to main as operators see it (`GET /api/node` → `cluster`, `airclass-node status`,
//! `/metrics`): searching for main, registered, rejected by it (with the code and reason), or
//! unable to reach it. Updated by the sub loop after every exchange; pure apart from the clock.

use serde::Serialize;

use super::client::CallError;
use crate::clock::{self, Instant};
use crate::cluster::protocol::ErrorCode;

/// Where a sub stands with main.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// No main known yet (mDNS browsing, or the main that was known stopped advertising).
    Searching,
    /// The last exchange was accepted.
    Registered,
    /// Main answered with a refusal (wrong secret, name taken, …).
    Rejected,
    /// No answer from main (connection refused, timeout).
    Unreachable,
}

impl LinkState {
    pub const ALL: [LinkState; 4] = [
        LinkState::Searching,
        LinkState::Registered,
        LinkState::Rejected,
        LinkState::Unreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Searching => "searching",
            LinkState::Registered => "registered",
            LinkState::Rejected => "rejected",
            LinkState::Unreachable => "unreachable",
        }
    }
}

/// The link's state and what explains it.
#[derive(Debug, Clone)]
pub struct SubLink {
    pub state: LinkState,
    pub main_url: Option<String>,
    pub main_name: Option<String>,
    /// Protocol error code of the last refusal.
    pub error_code: Option<String>,
    /// Human text: the refusal's message, the network error, or why main is not known.
    pub reason: Option<String>,
    /// Last accepted register or heartbeat.
    pub last_ok: Option<Instant>,
    /// When `state` was entered.
    pub since: Instant,
}

impl Default for SubLink {
    fn default() -> Self {
        Self {
            state: LinkState::Searching,
            main_url: None,
            main_name: None,
            error_code: None,
            reason: Some("looking for main".into()),
            last_ok: None,
            since: clock::now(),
        }
    }
}

/// What `GET /api/node` shows under `cluster` on a sub.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LinkView {
    pub role: &'static str,
    pub state: LinkState,
    pub main_url: Option<String>,
    pub main_name: Option<String>,
    pub error_code: Option<String>,
    pub reason: Option<String>,
    /// Milliseconds since the last accepted heartbeat or registration (`null`: none yet).
    pub last_heartbeat_age_ms: Option<u64>,
    /// Milliseconds in the current state.
    pub state_age_ms: u64,
}

impl SubLink {
    fn enter(&mut self, state: LinkState) {
        if self.state != state {
            self.state = state;
            self.since = clock::now();
        }
    }

    /// No main is known; `reason` says why (shown as is).
    pub fn searching(&mut self, reason: &str) {
        self.enter(LinkState::Searching);
        self.main_url = None;
        self.error_code = None;
        self.reason = Some(reason.to_owned());
    }

    /// Record the outcome of one register (`was_registered == false`) or heartbeat with `url`.
    /// A heartbeat answered `unknown_node` is not a rejection: the sub registers again at once.
    pub fn observe<T>(&mut self, url: &str, result: &Result<(T, Option<String>), CallError>) {
        self.main_url = Some(url.to_owned());
        match result {
            Ok((_, main_name)) => {
                self.enter(LinkState::Registered);
                if let Some(n) = main_name {
                    self.main_name = Some(n.clone());
                }
                self.error_code = None;
                self.reason = None;
                self.last_ok = Some(clock::now());
            }
            Err(CallError::Refused {
                code: Some(ErrorCode::UnknownNode),
                ..
            }) => {}
            Err(CallError::Refused { code, message, .. }) => {
                self.enter(LinkState::Rejected);
                self.error_code = code.map(|c| c.as_str().to_owned());
                self.reason = Some(message.clone());
            }
            Err(CallError::Network(e)) => {
                self.enter(LinkState::Unreachable);
                self.error_code = None;
                self.reason = Some(e.clone());
            }
        }
    }

    pub fn view(&self) -> LinkView {
        let now = clock::now();
        LinkView {
            role: "sub",
            state: self.state,
            main_url: self.main_url.clone(),
            main_name: self.main_name.clone(),
            error_code: self.error_code.clone(),
            reason: self.reason.clone(),
            last_heartbeat_age_ms: self
                .last_ok
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            state_age_ms: now.saturating_duration_since(self.since).as_millis() as u64,
        }
    }
}

/// The `result` label of `airclass_cluster_{heartbeats,registrations}_sent_total`.
pub fn result_label<T>(result: &Result<T, CallError>) -> &'static str {
    match result {
        Ok(_) => "accepted",
        Err(CallError::Refused { .. }) => "refused",
        Err(CallError::Network(_)) => "unreachable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<(u64, Option<String>), CallError>;

    #[tokio::test(start_paused = true)]
    async fn states_follow_exchanges() {
        let mut l = SubLink::default();
        assert_eq!(l.view().state, LinkState::Searching);
        let ok: R = Ok((5, Some("main".into())));
        l.observe("http://m:8000", &ok);
        tokio::time::advance(std::time::Duration::from_millis(1500)).await;
        let v = l.view();
        assert_eq!(v.state, LinkState::Registered);
        assert_eq!(v.main_name.as_deref(), Some("main"));
        assert_eq!(v.last_heartbeat_age_ms, Some(1500));
        let refused: R = Err(CallError::Refused {
            code: Some(ErrorCode::BadSignature),
            status: 401,
            message: "signature does not match".into(),
        });
        l.observe("http://m:8000", &refused);
        let v = l.view();
        assert_eq!(v.state, LinkState::Rejected);
        assert_eq!(v.error_code.as_deref(), Some("bad_signature"));
        assert_eq!(v.reason.as_deref(), Some("signature does not match"));
        assert_eq!(v.state_age_ms, 0);
        // unknown_node is the re-register path, not a rejection
        let unknown: R = Err(CallError::Refused {
            code: Some(ErrorCode::UnknownNode),
            status: 404,
            message: "x".into(),
        });
        l.observe("http://m:8000", &ok);
        l.observe("http://m:8000", &unknown);
        assert_eq!(l.view().state, LinkState::Registered);
        let down: R = Err(CallError::Network("connection refused".into()));
        l.observe("http://m:8000", &down);
        assert_eq!(l.view().state, LinkState::Unreachable);
        assert_eq!(result_label(&down), "unreachable");
        assert_eq!(result_label(&refused), "refused");
        assert_eq!(result_label(&ok), "accepted");
        l.searching("Main Node not found");
        assert_eq!(l.view().state, LinkState::Searching);
        assert_eq!(l.view().main_url, None);
    }
}
