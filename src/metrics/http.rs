//! `GET /metrics`: on the control API (default) or on its own listener (`metrics.listen`),
//! optionally behind a bearer token (`metrics.token_sha256_file`, credential
//! `metrics-token-sha256`: the SHA-256 of the token Prometheus sends, as for the app token).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{render, Format, Sources};
use crate::api::ApiError;
use crate::app_token::{self, AppTokenCheck};

/// Credential name of the metrics token's hash.
pub const TOKEN_CREDENTIAL: &str = "metrics-token-sha256";

/// Why the metrics endpoint cannot be set up (configuration errors: exit 78).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics.token_sha256_file: cannot read {path}: {source} (fix: give the file with the SHA-256 of the scrape token, `airclass-node hash-token` prints it)")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metrics.token_sha256_file: {path} does not hold 64 hex digits (fix: write the output of `airclass-node hash-token` into it)")]
    TokenHash { path: PathBuf },
    #[error(
        "metrics.listen: cannot listen on {addr}: {source} (fix: choose a free address and port)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct MetricsState {
    sources: Sources,
    token: Option<Arc<AppTokenCheck>>,
}

/// The token check configured for `/metrics`: the credential first, then the file; `None` when
/// neither is set (open endpoint, the default).
pub fn load_token(
    file: Option<&str>,
    credentials_dir: Option<&Path>,
) -> Result<Option<AppTokenCheck>, MetricsError> {
    let cred = credentials_dir
        .map(|d| d.join(TOKEN_CREDENTIAL))
        .filter(|p| p.is_file());
    let path = match (cred, file.filter(|f| !f.is_empty())) {
        (Some(p), _) => p,
        (None, Some(f)) => PathBuf::from(f),
        (None, None) => return Ok(None),
    };
    let text = std::fs::read_to_string(&path).map_err(|source| MetricsError::TokenFile {
        path: path.clone(),
        source,
    })?;
    AppTokenCheck::from_hex(text.trim())
        .map(Some)
        .map_err(|_| MetricsError::TokenHash { path })
}

/// The `/metrics` route.
pub fn routes(sources: Sources, token: Option<AppTokenCheck>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(MetricsState {
            sources,
            token: token.map(Arc::new),
        })
}

async fn metrics(State(s): State<MetricsState>, headers: HeaderMap) -> Response {
    if let Some(check) = &s.token {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(app_token::parse_bearer);
        if !bearer.is_some_and(|t| check.check(t)) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong Authorization: Bearer <metrics token>",
            )
            .into_response();
        }
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match render(&s.sources, format) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "cannot encode the metrics",
        )
        .into_response(),
    }
}

/// Access to `/metrics` decided before anything starts (so a bad token file or a busy
/// `metrics.listen` address stops the daemon with exit 78 before LiveKit runs).
pub struct Access {
    token: Option<AppTokenCheck>,
    listener: Option<std::net::TcpListener>,
}

impl Access {
    /// Read the token and bind the separate listener, if configured.
    pub fn prepare(
        cfg: &crate::config::schema::MetricsSection,
        credentials_dir: Option<&Path>,
    ) -> Result<Self, MetricsError> {
        let token = load_token(Some(&cfg.token_sha256_file), credentials_dir)?;
        let listener = match cfg.listen_addr() {
            Ok(Some(addr)) => {
                let l = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|_| l))
                    .map_err(|source| MetricsError::Bind { addr, source })?;
                Some(l)
            }
            // `check` reports a malformed address; the daemon never starts with one
            _ => None,
        };
        Ok(Self { token, listener })
    }

    /// `app` with `/metrics` merged in, or `app` unchanged while `/metrics` is served on the
    /// separate listener until `cancel`.
    pub fn attach(
        self,
        app: Router,
        sources: Sources,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Router {
        let routes = routes(sources, self.token);
        let Some(std_listener) = self.listener else {
            return app.merge(routes);
        };
        match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => serve_on(l, routes, tracker, cancel),
            Err(e) => tracing::error!(error = %e, "cannot use the metrics listener"),
        }
        app
    }
}

fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) {
    let addr = listener.local_addr().ok();
    tracker.spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    tracing::info!(addr = ?addr, "metrics served on their own address (not on the control API)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_credential_or_file() {
        let d = tempfile::tempdir().unwrap();
        assert!(load_token(None, Some(d.path())).unwrap().is_none());
        let f = d.path().join("hash");
        std::fs::write(&f, app_token::token_sha256_hex("scrape-me") + "\n").unwrap();
        let t = load_token(f.to_str(), None).unwrap().unwrap();
        assert!(t.check("scrape-me") && !t.check("other"));
        std::fs::write(
            d.path().join(TOKEN_CREDENTIAL),
            app_token::token_sha256_hex("cred"),
        )
        .unwrap();
        let t = load_token(f.to_str(), Some(d.path())).unwrap().unwrap();
        assert!(t.check("cred"));
        std::fs::write(&f, "nothex").unwrap();
        let e = load_token(f.to_str(), None).unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
        let e = load_token(Some("/nonexistent/x"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read /nonexistent/x"), "{e}");
    }
}
