//! TLS plumbing: the process-wide rustls crypto provider (ring; no C toolchain needed) and the
//! one checked way to build an HTTP client (`reqwest::Client::new()` panics without CA roots).

use std::time::Duration;

/// Why no HTTP client could be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error(
        "the HTTP client panicked while loading TLS roots (install the ca-certificates package)"
    )]
    Panicked,
    #[error("cannot initialise the HTTP client: {0} (install the ca-certificates package)")]
    Build(#[source] reqwest::Error),
}

/// Install ring as rustls' default provider; harmless when one is installed already.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How a client is set up; [`ClientOptions::build`] is the only constructor in the daemon.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientOptions {
    /// Keep no idle connection (probes of a child that restarts on the same port).
    pub no_pool: bool,
    /// Default timeout of every request.
    pub timeout: Option<Duration>,
    /// Plain HTTP only: load no CA roots (an `https://` request then fails to verify). For
    /// LiveKit on loopback, and for tests on machines without CA certificates (the Nix sandbox).
    pub http_only: bool,
}

impl ClientOptions {
    /// Build a client that ignores proxy variables, or say clearly why not.
    pub fn build(self) -> Result<reqwest::Client, HttpClientError> {
        install_crypto_provider();
        std::panic::catch_unwind(|| {
            let mut b = reqwest::Client::builder().no_proxy();
            if self.no_pool {
                b = b.pool_max_idle_per_host(0);
            }
            if let Some(t) = self.timeout {
                b = b.timeout(t);
            }
            if self.http_only {
                b = b.tls_certs_only([]);
            }
            b.build()
        })
        .map_err(|_| HttpClientError::Panicked)?
        .map_err(HttpClientError::Build)
    }
}

/// A default client (no proxy), or why not.
pub fn http_client() -> Result<reqwest::Client, HttpClientError> {
    ClientOptions::default().build()
}

/// A plain-HTTP client for unit tests: works without CA certificates.
#[cfg(test)]
pub(crate) fn test_client() -> reqwest::Client {
    match (ClientOptions {
        http_only: true,
        ..Default::default()
    })
    .build()
    {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_only_client_needs_no_ca_roots() {
        // (the sandbox of the Nix build has none; this holds there as here)
        let c = ClientOptions {
            http_only: true,
            ..Default::default()
        }
        .build();
        assert!(c.is_ok(), "{c:?}");
    }
}
