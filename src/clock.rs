//! The one clock: tokio's [`Instant`] everywhere (so `tokio::time::pause`/`advance` drive every
//! timer and deadline in tests), plus wall-clock unix seconds for signatures and token expiry.
//!
//! `std::time::Instant` is banned by `clippy.toml`: a second clock would not stop when a test
//! pauses time.

use std::time::{SystemTime, UNIX_EPOCH};

pub use tokio::time::Instant;

/// Now, on the one clock (paused and advanced by tests).
pub fn now() -> Instant {
    Instant::now()
}

/// Wall clock, unix seconds (request signatures, token expiry); 0 before 1970.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
