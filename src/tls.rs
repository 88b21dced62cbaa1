//! TLS plumbing: the process-wide rustls crypto provider (ring; no C toolchain needed).

/// Install ring as rustls' default provider; harmless when one is installed already.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
