//! LiveKit's health as a supervisor sees it: `GET /` on its port, and what a 406 means.
//!
//! 200 `OK` is healthy. 406 `Not Ready` while Redis itself is unreachable is *degraded*: every
//! node sees the same outage, and restarting them all is a restart storm (livekit#4663). A 406
//! with Redis up, any other answer, or no answer counts as a failed probe — except when the
//! probe could not even open its socket because the daemon ran out of file handles
//! (EMFILE/ENFILE): that is a local fault of the daemon and says nothing about LiveKit.

use std::time::Duration;

/// One probe's raw result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Ok,
    NotReady(String),
    Unexpected(u16),
    Down(String),
    /// The daemon could not open the probe's socket (out of file handles).
    LocalFault(String),
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
            Probe::LocalFault(_) => "local_fault",
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
    /// Nothing learnt about LiveKit: the daemon's own fault; not counted against LiveKit.
    LocalFault(String),
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
        Err(e) if crate::fds::chain_is_exhaustion(&e) => Probe::LocalFault(format!(
            "the daemon is out of file handles and could not open the probe's socket ({e})"
        )),
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
        (Probe::LocalFault(why), _) => Verdict::LocalFault(why.clone()),
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
        assert!(matches!(
            classify(&Probe::LocalFault("EMFILE".into()), Some(true)),
            Verdict::LocalFault(_)
        ));
    }

    const CHILD: &str = "AIRCLASS_TEST_FD_EXHAUSTION_CHILD";
    const NAME: &str =
        "livekit::health::tests::out_of_file_handles_is_a_local_fault_not_a_failed_probe";

    /// Runs itself again in a child process (it lowers that process' file handle limit).
    #[test]
    fn out_of_file_handles_is_a_local_fault_not_a_failed_probe() {
        if std::env::var_os(CHILD).is_some() {
            return exhaust_and_probe();
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("LOCAL_FAULT_CHECKED"),
            "the child did not run: {text}"
        );
    }

    /// A loopback server answering 200 to anything, on a fresh port.
    async fn ok_server() -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK",
                    )
                    .await;
            }
        });
        port
    }

    fn exhaust_and_probe() {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let port = ok_server().await;
            let client = crate::tls::ClientOptions {
                no_pool: true,
                http_only: true,
                ..Default::default()
            }
            .build()
            .unwrap();
            let t = Duration::from_secs(2);
            assert_eq!(probe(&client, port, t).await, Probe::Ok);
            let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
            setrlimit(Resource::RLIMIT_NOFILE, open + 16, hard).unwrap();
            let mut files = Vec::new();
            loop {
                match std::fs::File::open("/dev/null") {
                    Ok(f) => files.push(f),
                    Err(e) if crate::fds::is_exhaustion(&e) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            let p = probe(&client, port, t).await;
            assert!(matches!(p, Probe::LocalFault(_)), "{p:?}");
            assert!(matches!(classify(&p, Some(true)), Verdict::LocalFault(_)));
            drop(files);
            assert_eq!(probe(&client, port, t).await, Probe::Ok);
            println!("LOCAL_FAULT_CHECKED");
        });
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
