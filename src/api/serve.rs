//! Binding the control API (before LiveKit starts, so a taken port is found first) and serving
//! it (TLS when `api.tls_cert_file` and `api.tls_key_file` are set) until the token is
//! cancelled; every task on the daemon's tracker.
//!
//! The accept loop holds the node up under exhaustion: connections are capped and a waiting
//! one makes room for a newcomer ([`super::conns`]: the heaviest address's oldest); a TLS
//! handshake gets `api.header_timeout_secs`; each connection's limits are in
//! [`super::connection`]. Running out of file handles in `accept` is the daemon's own fault:
//! logged as such (rate-limited), a waiting connection is closed to free a handle,
//! and accepting resumes after a short pause.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{self, Limits};
use super::conns::{Connections, Counters, Snapshot};
use crate::config::NodeConfig;
use crate::fds;
use crate::logging::{Report, Summary, SUMMARY_WINDOW};

/// File handles kept free for everything else the daemon opens (Redis, the LiveKit probe and
/// its pipes, outgoing cluster requests, log and config files).
pub const RESERVED_FDS: u64 = 256;
/// Pending connections the kernel queues for `accept` (capped by `net.core.somaxconn`).
const BACKLOG: u32 = 4096;
/// Refused connections that may linger (so the 503 is read before the close) at once.
const LINGERING: usize = 64;

/// Why the control API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} for the control API: {source} (another node or program uses the port?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("control API TLS: cannot load {cert} / {key}: {source}")]
    Tls {
        cert: String,
        key: String,
        source: std::io::Error,
    },
}

impl ServeError {
    /// A TLS problem is a configuration error (exit 78); a bind failure is not.
    pub fn is_config(&self) -> bool {
        matches!(self, ServeError::Tls { .. })
    }
}

/// The address the API binds: `api.bind` (validated) and the node's API port.
pub fn address(node: &NodeConfig) -> SocketAddr {
    let ip: IpAddr = node
        .config
        .api
        .bind
        .parse()
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    SocketAddr::new(ip, node.ports.api_port)
}

/// The certificate and key files, when TLS is configured.
fn tls_files(node: &NodeConfig) -> Option<(&str, &str)> {
    let api = &node.config.api;
    let cert = api.tls_cert_file.as_deref().filter(|s| !s.is_empty())?;
    let key = api.tls_key_file.as_deref().filter(|s| !s.is_empty())?;
    Some((cert, key))
}

/// The connection cap: `api.max_connections`, but never more than the file handle limit
/// leaves after [`RESERVED_FDS`] (at least 16).
pub fn effective_cap(max_connections: usize, soft_nofile: Option<u64>) -> usize {
    let by_fds = soft_nofile
        .map(|s| s.saturating_sub(RESERVED_FDS).max(16))
        .unwrap_or(u64::MAX);
    max_connections.min(usize::try_from(by_fds).unwrap_or(usize::MAX))
}

/// A bound listener (and its TLS setup), before anything is served.
pub struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Load the TLS files (a configuration error) and bind the API's address (in the runtime).
pub fn bind(node: &NodeConfig) -> Result<Bound, ServeError> {
    let addr = address(node);
    let tls = match tls_files(node) {
        Some((cert, key)) => Some(load_tls(cert, key)?),
        None => None,
    };
    let err = |source| ServeError::Bind { addr, source };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    let listener = socket.listen(BACKLOG).map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    Ok(Bound {
        listener,
        addr,
        tls,
    })
}

fn load_tls(cert: &str, key: &str) -> Result<TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |source: std::io::Error| ServeError::Tls {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let other = |e: String| fail(std::io::Error::other(e));
    let cert_pem = std::fs::read(cert).map_err(fail)?;
    let key_pem = std::fs::read(key).map_err(fail)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| other(format!("certificate: {e}")))?;
    if chain.is_empty() {
        return Err(other("no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| other(format!("key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| other(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| other(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serve `app` on `bound` until `cancel`, under `limits` and the cap of `conns`.
pub fn serve(
    bound: Bound,
    app: Router,
    limits: Limits,
    conns: Arc<Connections>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> SocketAddr {
    let addr = bound.addr;
    let tls = bound.tls.is_some();
    let max_connections = conns.cap();
    let server = Server {
        app,
        limits,
        conns,
        tls: bound.tls,
        shutdown: cancel.clone(),
        tracker: tracker.clone(),
        lingering: Arc::new(Semaphore::new(LINGERING)),
    };
    tracker.spawn(server.accept_loop(bound.listener, cancel));
    tracing::info!(
        %addr,
        tls,
        max_connections,
        header_timeout_s = limits.header_timeout.as_secs(),
        request_timeout_s = limits.request_timeout.as_secs(),
        "control API listening"
    );
    addr
}

/// One line when `accept` runs out of file handles (the first at once, then one per window).
fn log_local_fault(r: &Report) {
    tracing::error!(
        count = r.count,
        error = %r.sample,
        "control API: out of file handles in accept (a local fault of this daemon, not of LiveKit); closing a waiting connection and retrying"
    );
}

/// Everything the accept loop hands to each connection.
struct Server {
    app: Router,
    limits: Limits,
    conns: Arc<Connections>,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    lingering: Arc<Semaphore>,
}

impl Server {
    async fn accept_loop(self, listener: TcpListener, cancel: CancellationToken) {
        let faults = Summary::new(SUMMARY_WINDOW, log_local_fault);
        let mut report = tokio::time::interval(SUMMARY_WINDOW);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = self.conns.snapshot();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = report.tick() => {
                    faults.flush();
                    last = report_pressure(&last, self.conns.snapshot());
                }
                r = listener.accept() => match r {
                    Ok((stream, peer)) => self.admit(stream, peer.ip()),
                    Err(e) if fds::is_exhaustion(&e) => {
                        Counters::inc(&self.conns.counters.fd_exhausted);
                        faults.note("accept", || e.to_string());
                        self.conns.evict_one();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "control API: accept failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                },
            }
        }
        drop(listener);
        tracing::debug!("control API: no longer accepting");
    }

    fn admit(&self, stream: TcpStream, peer: IpAddr) {
        let _ = stream.set_nodelay(true);
        let Some((handle, _)) = self.conns.admit(peer) else {
            self.refuse_busy(stream);
            return;
        };
        let (app, limits, shutdown) = (self.app.clone(), self.limits, self.shutdown.clone());
        match self.tls.clone() {
            None => {
                self.tracker
                    .spawn(connection::serve(stream, handle, app, limits, shutdown));
            }
            Some(acceptor) => {
                self.tracker.spawn(async move {
                    let hs = tokio::select! {
                        r = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)) => r,
                        _ = handle.close.cancelled() => return,
                        _ = shutdown.cancelled() => return,
                    };
                    match hs {
                        Ok(Ok(tls)) => connection::serve(tls, handle, app, limits, shutdown).await,
                        _ => Counters::inc(&handle.counters().tls_failed),
                    }
                });
            }
        }
    }

    /// Every connection is busy: a short JSON 503, then close. Over TLS the answer needs a
    /// handshake first; both ride on one of [`LINGERING`] refusal slots (bounded work, at most
    /// a second or the header timeout each); without a free slot the connection is just closed.
    fn refuse_busy(&self, stream: TcpStream) {
        let answer = busy_answer(self.conns.cap());
        let Ok(permit) = self.lingering.clone().try_acquire_owned() else {
            if self.tls.is_none() {
                let _ = stream.try_write(answer.as_bytes());
            }
            return;
        };
        let (tls, budget) = (
            self.tls.clone(),
            self.limits.header_timeout.min(REFUSAL_HANDSHAKE),
        );
        self.tracker.spawn(async move {
            match tls {
                None => linger(stream, answer).await,
                Some(acceptor) => {
                    if let Ok(Ok(tls)) = tokio::time::timeout(budget, acceptor.accept(stream)).await
                    {
                        linger(tls, answer).await;
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Longest a refused TLS client may take over its handshake before it is just closed.
const REFUSAL_HANDSHAKE: Duration = Duration::from_secs(1);

/// The documented `503 busy` answer (JSON body, `retry-after: 1`, `connection: close`).
fn busy_answer(cap: usize) -> String {
    let body = format!(
        "{{\"error\":\"busy\",\"message\":\"too many connections (at most {cap}); retry shortly\"}}"
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Write `answer`, half-close, and drain what the client still sends (so the close is a FIN,
/// not a reset that could discard the answer): a second at most.
async fn linger<S>(mut stream: S, answer: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 1024];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// One line per window about what the limits did (none when nothing happened); returns `now`.
fn report_pressure(last: &Snapshot, now: Snapshot) -> Snapshot {
    let d = |a: u64, b: u64| b.saturating_sub(a);
    let evicted = d(last.evicted, now.evicted);
    let refused = d(last.refused_busy, now.refused_busy);
    let timeouts = d(last.request_timeouts, now.request_timeouts) + d(last.stalled, now.stalled);
    let tls = d(last.tls_failed, now.tls_failed);
    let bad = d(last.bad_http, now.bad_http);
    let heads = d(last.header_timeouts, now.header_timeouts);
    if evicted + refused > 0 {
        tracing::warn!(
            open = now.open,
            max = now.max_connections,
            evicted,
            refused_busy = refused,
            header_timeouts = heads,
            request_timeouts = timeouts,
            tls_failed = tls,
            bad_http = bad,
            window_s = SUMMARY_WINDOW.as_secs(),
            "control API at its connection cap: waiting connections closed to make room"
        );
    } else if timeouts + tls + bad > 0 {
        tracing::info!(
            open = now.open,
            header_timeouts = heads,
            request_timeouts = timeouts,
            tls_failed = tls,
            bad_http = bad,
            window_s = SUMMARY_WINDOW.as_secs(),
            "control API: connections closed by its limits"
        );
    } else if heads > 0 {
        tracing::debug!(
            open = now.open,
            header_timeouts = heads,
            "control API: idle or slow connections closed"
        );
    }
    now
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// `serve` on a loopback port of its own: header and request timeouts in seconds, a cap.
    async fn start(
        app: Router,
        header_secs: u64,
        request_secs: u64,
        cap: usize,
    ) -> (SocketAddr, Arc<Connections>, CancellationToken, TaskTracker) {
        start_with(app, header_secs, request_secs, cap, None).await
    }

    async fn start_with(
        app: Router,
        header_secs: u64,
        request_secs: u64,
        cap: usize,
        tls: Option<TlsAcceptor>,
    ) -> (SocketAddr, Arc<Connections>, CancellationToken, TaskTracker) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bound = Bound {
            listener,
            addr,
            tls,
        };
        let limits = Limits {
            header_timeout: Duration::from_secs(header_secs),
            request_timeout: Duration::from_secs(request_secs),
        };
        let conns = Connections::new(cap);
        let (cancel, tracker) = (CancellationToken::new(), TaskTracker::new());
        serve(bound, app, limits, conns.clone(), cancel.clone(), &tracker);
        (addr, conns, cancel, tracker)
    }

    /// A router whose `GET /slow` counts the requests that reached it and holds each until
    /// a permit is added: connections that stay busy for as long as the test wants.
    fn slow_app() -> (Router, &'static AtomicUsize, &'static Semaphore) {
        let entered: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let release: &'static Semaphore = Box::leak(Box::new(Semaphore::new(0)));
        let app = Router::new().route(
            "/slow",
            axum::routing::get(move || async move {
                entered.fetch_add(1, Ordering::SeqCst);
                let _ = release.acquire().await;
                "done"
            }),
        );
        (app, entered, release)
    }

    /// Until `n` requests are with the handler (so that many connections are busy).
    async fn until_entered(entered: &AtomicUsize, n: usize) {
        while entered.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `answer` is the documented `503 busy` with a JSON body naming the cap.
    fn assert_busy(answer: &str, cap: usize) {
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        let body = answer.split_once("\r\n\r\n").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "busy", "{v}");
        let at_most = format!("at most {cap}");
        assert!(v["message"].as_str().unwrap().contains(&at_most), "{v}");
    }

    /// The cap over TCP: two requests whose handler is still working hold both slots, so a
    /// third connection is refused at once with the documented JSON `503 busy`; the two are
    /// then answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_busy_at_the_cap_is_a_clear_json_503() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (app, entered, release) = slow_app();
        let (addr, conns, cancel, tracker) = start(app, 5, 5, 2).await;
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            out
        };
        let slow: Vec<_> = (0..2).map(|_| tokio::spawn(get("/slow"))).collect();
        until_entered(entered, 2).await;
        assert_busy(&get("/slow").await, 2);
        assert_eq!(conns.snapshot().refused_busy, 1);
        release.add_permits(2);
        for t in slow {
            let answer = t.await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    /// A self-signed certificate for 127.0.0.1 (openssl) and a client that trusts only it.
    fn test_tls(dir: &std::path::Path) -> (TlsAcceptor, tokio_rustls::TlsConnector) {
        use rustls::pki_types::pem::PemObject;
        let (cert, key) = (dir.join("t.crt"), dir.join("t.key"));
        let ok = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "openssl cannot make a test certificate: apt-get install -y openssl"
        );
        let acceptor = load_tls(cert.to_str().unwrap(), key.to_str().unwrap()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&cert).unwrap();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (acceptor, tokio_rustls::TlsConnector::from(Arc::new(client)))
    }

    /// The cap over TLS: with both slots busy in the handler, a newcomer still gets the
    /// handshake and the same JSON `503 busy` (not a bare close), on a refusal slot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_busy_at_the_cap_over_tls_is_a_clear_json_503() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (app, entered, release) = slow_app();
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, connector) = test_tls(dir.path());
        let (addr, conns, cancel, tracker) = start_with(app, 5, 5, 2, Some(acceptor)).await;
        let get = move |path: &'static str| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let name = rustls::pki_types::ServerName::from(addr.ip());
                let mut s = connector.connect(name, tcp).await.unwrap();
                let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                s.write_all(req.as_bytes()).await.unwrap();
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out).await;
                String::from_utf8_lossy(&out).into_owned()
            }
        };
        let slow: Vec<_> = (0..2).map(|_| tokio::spawn(get.clone()("/slow"))).collect();
        until_entered(entered, 2).await;
        assert_busy(&get("/slow").await, 2);
        assert_eq!(conns.snapshot().refused_busy, 1);
        release.add_permits(2);
        for t in slow {
            let answer = t.await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    /// A keep-alive connection that goes idle after its answer, and one that never sends a
    /// byte, are both closed after `header_timeout` and counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_and_silent_connections_are_closed_after_the_header_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let app = Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
        let (addr, conns, cancel, tracker) = start(app, 1, 30, 16).await;
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = kept.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let mut silent = TcpStream::connect(addr).await.unwrap();
        for s in [&mut kept, &mut silent] {
            let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
            assert!(
                matches!(r, Ok(Ok(0)) | Ok(Err(_))),
                "still open after the header timeout: {r:?}"
            );
        }
        // the client sees the close before the connection's task has dropped its slot: wait
        // (bounded) for the books to settle, then check them
        let settle = crate::clock::now() + Duration::from_secs(5);
        while (conns.open() != 0 || conns.snapshot().header_timeouts < 2)
            && crate::clock::now() < settle
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            conns.snapshot().header_timeouts,
            2,
            "{:?}",
            conns.snapshot()
        );
        assert_eq!(conns.open(), 0);
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[test]
    fn the_cap_leaves_file_handles_for_the_rest() {
        assert_eq!(effective_cap(4096, Some(65536)), 4096);
        assert_eq!(effective_cap(4096, Some(1024)), 768);
        assert_eq!(effective_cap(4096, Some(100)), 16);
        assert_eq!(effective_cap(4096, None), 4096);
    }
}
