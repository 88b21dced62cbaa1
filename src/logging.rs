//! Logging: journald with structured fields under systemd, human-readable stderr otherwise.
//!
//! Under systemd (`JOURNAL_STREAM` set) events go to the journal with their fields as journal
//! fields, no prefix: LiveKit's lines carry `LIVEKIT=1`, every line `INSTANCE=`, and spans add
//! `SUBSYSTEM=`. `RUST_LOG` filters (default `info`).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Set up the global subscriber. `default_level` applies when `RUST_LOG` is unset.
pub fn init(instance: Option<&str>, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    if under_journal {
        if let Ok(layer) = tracing_journald::layer() {
            let layer = layer
                .with_field_prefix(None)
                .with_syslog_identifier("airclass-node".into())
                .with_custom_fields([("INSTANCE", instance.unwrap_or("-"))]);
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(layer)
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
