//! Logging: journald with structured fields under systemd, human-readable stderr otherwise, and
//! [`Summary`], the rate-limited summaries that keep floods of refused requests out of the log.
//!
//! Under systemd (`JOURNAL_STREAM` set) events go to the journal with their fields as journal
//! fields, no prefix: LiveKit's lines carry `LIVEKIT=1`, every line `INSTANCE=`, and spans add
//! `SUBSYSTEM=`. `RUST_LOG` filters (default `info`). On stderr, colour only on a terminal (and
//! never with `NO_COLOR` set).
//!
//! What is summarised: refused requests (one WARN per reason per [`SUMMARY_WINDOW`], with the
//! count and one truncated sample) and the control API's connection events. What never is:
//! node state changes and LiveKit's own lines — they are logged one by one, and the summaries
//! keep the daemon's own output far below the unit's `LogRateLimitBurst=`, so journald does not
//! drop them either.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::clock::{self, Instant};
use crate::sync::lock;

/// One summary line per key at most this often.
pub const SUMMARY_WINDOW: Duration = Duration::from_secs(10);
/// Longest sample value in a summary line (characters, after escaping).
pub const SAMPLE_MAX_CHARS: usize = 120;

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
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").is_some(),
        ))
        .with_target(false)
        .try_init();
}

/// Colour codes only for a person at a terminal who did not ask for none.
pub fn colour(stderr_is_terminal: bool, no_color: bool) -> bool {
    stderr_is_terminal && !no_color
}

/// `s` made safe for one log line: control characters escaped, at most `max` characters
/// (then `…` and the original length in bytes).
pub fn truncate(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for c in s.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        chars += piece.chars().count();
        if chars > max {
            out.push_str(&format!("…({} bytes)", s.len()));
            return out;
        }
        out.push_str(&piece);
    }
    out
}

/// What a summary line reports: events of one key since the previous line, and one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub key: &'static str,
    pub count: u64,
    pub sample: String,
}

#[derive(Debug, Default)]
struct Slot {
    last_line: Option<Instant>,
    pending: u64,
    sample: String,
}

/// Rate-limited summaries: the first event of a key is reported at once; later ones within
/// [`SUMMARY_WINDOW`] are only counted (keeping the latest sample) and reported together by the
/// next event or [`Summary::flush`] after the window. `emit` writes the line.
pub struct Summary {
    window: Duration,
    slots: Mutex<HashMap<&'static str, Slot>>,
    emit: fn(&Report),
}

impl std::fmt::Debug for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summary")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Summary {
    pub fn new(window: Duration, emit: fn(&Report)) -> Self {
        Summary {
            window,
            slots: Mutex::new(HashMap::new()),
            emit,
        }
    }

    /// Count one event of `key`; `sample` (only called when it will be kept) describes it.
    pub fn note(&self, key: &'static str, sample: impl FnOnce() -> String) {
        let now = clock::now();
        let report = {
            let mut slots = lock(&self.slots);
            let slot = slots.entry(key).or_default();
            slot.pending += 1;
            slot.sample = truncate(&sample(), SAMPLE_MAX_CHARS);
            Self::due(key, slot, now, self.window)
        };
        if let Some(r) = report {
            (self.emit)(&r);
        }
    }

    /// Report every key whose window has passed with events still unreported.
    pub fn flush(&self) {
        let now = clock::now();
        let reports: Vec<Report> = lock(&self.slots)
            .iter_mut()
            .filter_map(|(k, slot)| Self::due(k, slot, now, self.window))
            .collect();
        for r in &reports {
            (self.emit)(r);
        }
    }

    fn due(key: &'static str, slot: &mut Slot, now: Instant, window: Duration) -> Option<Report> {
        let quiet = slot
            .last_line
            .is_none_or(|t| now.saturating_duration_since(t) >= window);
        if slot.pending == 0 || !quiet {
            return None;
        }
        slot.last_line = Some(now);
        let count = std::mem::take(&mut slot.pending);
        Some(Report {
            key,
            count,
            sample: std::mem::take(&mut slot.sample),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    static LINES: AtomicU64 = AtomicU64::new(0);
    static COUNTED: AtomicU64 = AtomicU64::new(0);

    fn count_line(r: &Report) {
        LINES.fetch_add(1, Ordering::SeqCst);
        COUNTED.fetch_add(r.count, Ordering::SeqCst);
        assert!(r.sample.chars().count() <= SAMPLE_MAX_CHARS + 20, "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn one_line_per_window_and_every_event_counted() {
        let s = Summary::new(SUMMARY_WINDOW, count_line);
        let big = "x".repeat(400 * 1024);
        for _ in 0..10_000 {
            s.note("bad_signature", || big.clone());
        }
        assert_eq!(
            LINES.load(Ordering::SeqCst),
            1,
            "first event reported at once"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        s.flush();
        assert_eq!(LINES.load(Ordering::SeqCst), 1, "nothing inside the window");
        tokio::time::advance(Duration::from_secs(6)).await;
        s.flush();
        assert_eq!(LINES.load(Ordering::SeqCst), 2);
        assert_eq!(COUNTED.load(Ordering::SeqCst), 10_000);
        s.flush();
        assert_eq!(
            LINES.load(Ordering::SeqCst),
            2,
            "nothing pending, nothing said"
        );
    }

    #[test]
    fn truncation_escapes_and_cuts() {
        assert_eq!(truncate("node-1", 10), "node-1");
        assert_eq!(truncate("a\nb\0c", 20), "a\\nb\\u{0}c");
        let t = truncate(&"é".repeat(1000), 10);
        assert!(t.starts_with("éééééééééé…"), "{t}");
        assert!(t.ends_with("(2000 bytes)"), "{t}");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, false));
        assert!(!colour(false, false));
        assert!(!colour(true, true));
    }
}
