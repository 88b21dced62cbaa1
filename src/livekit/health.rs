//! LiveKit's health as a supervisor sees it: `GET /` on its port, and what a 406 means.
//!
//! 200 `OK` is healthy. 406 `Not Ready` while Redis itself is unreachable is *degraded*: every
//! node sees the same outage, and restarting them all is a restart storm (livekit#4663). A 406
//! with Redis up, any other answer, or no answer counts as a failed probe.

use std::time::Duration;

/// One probe's raw result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Ok,
    NotReady(String),
    Unexpected(u16),
    Down(String),
}

impl Probe {
    /// The `result` label of `airclass_livekit_health_probe_duration_seconds` (the `Down` texts
    /// are the ones [`probe`] writes).
    pub fn label(&self) -> &'static str {
        match self {
            Probe::Ok => "ok",
            Probe::NotReady(_) => "not_ready",
            Probe::Unexpected(_) => "unexpected",
            Probe::Down(why) if why.starts_with("no answer within") => "timeout",
            Probe::Down(why) if why == "connection refused" => "refused",
            Probe::Down(_) => "error",
        }
    }

    /// A failed probe that got no answer in time: LiveKit is hung rather than unhealthy.
    pub fn is_timeout(&self) -> bool {
        self.label() == "timeout"
    }
}

/// What the supervisor makes of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Degraded(String),
    Failing(String),
}

/// GET `http://127.0.0.1:PORT/`.
pub async fn probe(client: &reqwest::Client, port: u16, timeout: Duration) -> Probe {
    let url = format!("http://127.0.0.1:{port}/");
    match client.get(&url).timeout(timeout).send().await {
        Ok(r) if r.status().as_u16() == 200 => Probe::Ok,
        Ok(r) if r.status().as_u16() == 406 => {
            let body = r.text().await.unwrap_or_default();
            Probe::NotReady(body.lines().next().unwrap_or("Not Ready").to_string())
        }
        Ok(r) => Probe::Unexpected(r.status().as_u16()),
        Err(e) if e.is_timeout() => Probe::Down(format!("no answer within {timeout:?}")),
        Err(e) if e.is_connect() => Probe::Down("connection refused".into()),
        Err(e) => Probe::Down(e.to_string()),
    }
}

/// Classify a probe; `redis_up` is `Some` only for clustered nodes, checked after a 406.
pub fn classify(probe: &Probe, redis_up: Option<bool>) -> Verdict {
    match (probe, redis_up) {
        (Probe::Ok, _) => Verdict::Healthy,
        (Probe::NotReady(_), Some(false)) => Verdict::Degraded(
            "Redis is unreachable: LiveKit answers 406 Not Ready; not restarting it".into(),
        ),
        (Probe::NotReady(b), _) => Verdict::Failing(format!("406 {b}")),
        (Probe::Unexpected(code), _) => Verdict::Failing(format!("unexpected HTTP {code} on /")),
        (Probe::Down(why), _) => Verdict::Failing(why.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(&Probe::Ok, None), Verdict::Healthy);
        assert!(matches!(
            classify(&Probe::NotReady("Not Ready".into()), Some(false)),
            Verdict::Degraded(_)
        ));
        assert!(matches!(
            classify(&Probe::NotReady("Not Ready".into()), Some(true)),
            Verdict::Failing(_)
        ));
        assert!(matches!(
            classify(&Probe::NotReady("x".into()), None),
            Verdict::Failing(_)
        ));
        assert!(matches!(
            classify(&Probe::Unexpected(500), Some(false)),
            Verdict::Failing(_)
        ));
        assert!(matches!(
            classify(&Probe::Down("refused".into()), None),
            Verdict::Failing(_)
        ));
    }

    #[tokio::test]
    async fn probe_labels_follow_what_probe_writes() {
        crate::tls::install_crypto_provider();
        let client = crate::tls::test_client();
        // a port nobody listens on
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = probe(&client, port, Duration::from_millis(500)).await;
        assert_eq!(p.label(), "refused", "{p:?}");
        // a listener that accepts and never answers
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let p = probe(&client, port, Duration::from_millis(200)).await;
        assert_eq!(p.label(), "timeout", "{p:?}");
        assert!(p.is_timeout());
        drop(l);
        assert_eq!(Probe::Ok.label(), "ok");
        assert_eq!(Probe::Unexpected(500).label(), "unexpected");
    }
}
