//! TLS plumbing: the process-wide rustls crypto provider (ring; no C toolchain needed).

/// Install ring as rustls' default provider; harmless when one is installed already.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Build an HTTP client, or say clearly why not (reqwest panics in `Client::new()` when it
/// cannot load the system's CA roots, e.g. without the `ca-certificates` package).
pub fn http_client() -> Result<reqwest::Client, String> {
    install_crypto_provider();
    std::panic::catch_unwind(|| reqwest::Client::builder().no_proxy().build())
        .map_err(|_| "the HTTP client panicked while loading TLS roots".to_string())?
        .map_err(|e| e.to_string())
        .map_err(|e| {
            format!("cannot initialise the HTTP client: {e} (install the ca-certificates package)")
        })
}
