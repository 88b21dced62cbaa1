//! Binding the control API and serving it (TLS when `api.tls_cert_file` and `api.tls_key_file`
//! are set) until the token is cancelled; every task on the daemon's tracker.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::NodeConfig;

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

/// Bind and serve `app` until `cancel`.
pub async fn serve(
    node: &NodeConfig,
    app: Router,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<SocketAddr, ServeError> {
    let addr = address(node);
    if let Some((cert, key)) = tls_files(node) {
        serve_tls(addr, (cert, key), app, cancel, tracker).await?;
    } else {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        tracker.spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "control API failed");
            }
        });
    }
    tracing::info!(%addr, tls = tls_files(node).is_some(), "control API listening");
    Ok(addr)
}

async fn serve_tls(
    addr: SocketAddr,
    (cert, key): (&str, &str),
    app: Router,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), ServeError> {
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|source| ServeError::Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })?;
    let bind = |source| ServeError::Bind { addr, source };
    let std_listener = std::net::TcpListener::bind(addr).map_err(bind)?;
    std_listener.set_nonblocking(true).map_err(bind)?;
    let handle = axum_server::Handle::new();
    let h2 = handle.clone();
    tracker.spawn(async move {
        cancel.cancelled().await;
        h2.graceful_shutdown(Some(Duration::from_secs(2)));
    });
    let server = axum_server::from_tcp_rustls(std_listener, tls)
        .map_err(bind)?
        .handle(handle);
    tracker.spawn(async move {
        if let Err(e) = server.serve(app.into_make_service()).await {
            tracing::error!(error = %e, "control API (TLS) failed");
        }
    });
    Ok(())
}
