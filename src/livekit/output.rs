//! Forwarding LiveKit's stdout and stderr into our log, line by line, without ever blocking it.
//!
//! A reader task per stream drains the pipe as fast as the child writes and hands lines to a
//! bounded queue; a logger task emits them with `target: "livekit"` and the field `livekit = 1`
//! (journald: `LIVEKIT=1`), prefixed `[LiveKit]` as in the original design. When the log is
//! slower than the child, lines are dropped and counted instead of stalling the child. The last
//! lines are kept for error reports (LiveKit prints fatal startup errors on stdout and exits 0).
//! The ready line also carries LiveKit's node id (`nodeID`, new on every start), which the
//! cluster needs to match LiveKit's own Redis records (`room_node_map`) to our node names, and
//! the moment it was seen: the real server loses a first SIGTERM that comes within ~100 ms of it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::clock::{self, Instant};

/// Lines kept for error reports.
const TAIL_LINES: usize = 40;
/// Lines queued between readers and the logger before lines are dropped.
const QUEUE: usize = 4096;
/// LiveKit's ready line.
pub const READY_LINE: &str = "starting LiveKit server";

/// Shared view of the child's recent output.
#[derive(Debug, Clone, Default)]
pub struct OutputTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    ready_line_seen: Arc<AtomicBool>,
    node_id: Arc<Mutex<Option<String>>>,
    ready_line_at: Arc<Mutex<Option<Instant>>>,
    dropped: Arc<AtomicU64>,
}

impl OutputTail {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&self, line: &str) {
        if line.contains(READY_LINE) {
            if let (Some(id), Ok(mut slot)) = (ready_line_node_id(line), self.node_id.lock()) {
                *slot = Some(id);
            }
            if let Ok(mut at) = self.ready_line_at.lock() {
                at.get_or_insert_with(clock::now);
            }
            self.ready_line_seen.store(true, Ordering::SeqCst);
        }
        if let Ok(mut l) = self.lines.lock() {
            if l.len() == TAIL_LINES {
                l.pop_front();
            }
            l.push_back(line.to_string());
        }
    }

    /// The last lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Last `n` lines joined for an error message.
    pub fn summary(&self, n: usize) -> String {
        let lines = self.lines();
        let start = lines.len().saturating_sub(n);
        lines[start..].join(" | ")
    }

    pub fn ready_line_seen(&self) -> bool {
        self.ready_line_seen.load(Ordering::SeqCst)
    }

    /// When the ready line was read (`None` before it, or at log levels that hide it).
    pub fn ready_line_at(&self) -> Option<Instant> {
        self.ready_line_at.lock().ok().and_then(|at| *at)
    }

    /// LiveKit's node id from its ready line (`None` before it, or at log levels that hide it).
    pub fn node_id(&self) -> Option<String> {
        self.node_id.lock().ok().and_then(|id| id.clone())
    }

    /// Lines dropped because the log could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The `nodeID` field of LiveKit's ready line, in the console format
/// (`… starting LiveKit server\t{"portHttp": 7880, "nodeID": "ND_…", …}`) or the JSON one
/// (`{"msg":"starting LiveKit server","nodeID":"ND_…",…}`). Only `ND_` + alphanumerics is
/// accepted: the id goes onto the wire and into Redis lookups.
pub fn ready_line_node_id(line: &str) -> Option<String> {
    let rest = &line[line.find(READY_LINE)?..];
    let after_key = &rest[rest.find("\"nodeID\"")? + "\"nodeID\"".len()..];
    let value = after_key.trim_start().strip_prefix(':')?.trim_start();
    let value = value.strip_prefix('"')?;
    let id = &value[..value.find('"')?];
    let ok = id.len() <= 64
        && id
            .strip_prefix("ND_")
            .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()));
    ok.then(|| id.to_owned())
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Start forwarding; the tasks end when both pipes close.
pub fn forward<O, E>(stdout: O, stderr: E, tail: &OutputTail, pid: u32, tracker: &TaskTracker)
where
    O: AsyncRead + Unpin + Send + 'static,
    E: AsyncRead + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<(Stream, String)>(QUEUE);
    tracker.spawn(read_lines(stdout, Stream::Stdout, tx.clone(), tail.clone()));
    tracker.spawn(read_lines(stderr, Stream::Stderr, tx, tail.clone()));
    tracker.spawn(log_lines(rx, pid, tail.clone()));
}

async fn read_lines<R: AsyncRead + Unpin>(
    r: R,
    stream: Stream,
    tx: mpsc::Sender<(Stream, String)>,
    tail: OutputTail,
) {
    let mut lines = BufReader::new(r).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                tail.push(&line);
                if tx.try_send((stream, line)).is_err() {
                    tail.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "reading LiveKit output failed");
                break;
            }
        }
    }
}

async fn log_lines(mut rx: mpsc::Receiver<(Stream, String)>, pid: u32, tail: OutputTail) {
    let mut reported_drops = 0;
    while let Some((stream, line)) = rx.recv().await {
        emit(stream, &line, pid);
        let dropped = tail.dropped();
        if dropped > reported_drops {
            tracing::warn!(
                target: "livekit",
                livekit = 1u8,
                dropped = dropped - reported_drops,
                "[LiveKit] log could not keep up; lines dropped"
            );
            reported_drops = dropped;
        }
    }
}

/// LiveKit's console format is `ts\tLEVEL\tlogger\tcaller\tmsg\tfields`; map LEVEL to ours.
/// Lines on stdout are fatal errors (LiveKit prints them there before exiting).
fn emit(stream: Stream, line: &str, pid: u32) {
    let level = line.split('\t').nth(1).unwrap_or("");
    let s = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    match (stream, level) {
        (Stream::Stdout, _) | (_, "ERROR" | "DPANIC" | "PANIC" | "FATAL") => {
            tracing::error!(target: "livekit", livekit = 1u8, livekit_pid = pid, stream = s, "[LiveKit] {line}")
        }
        (_, "WARN") => {
            tracing::warn!(target: "livekit", livekit = 1u8, livekit_pid = pid, stream = s, "[LiveKit] {line}")
        }
        (_, "DEBUG") => {
            tracing::debug!(target: "livekit", livekit = 1u8, livekit_pid = pid, stream = s, "[LiveKit] {line}")
        }
        _ => {
            tracing::info!(target: "livekit", livekit = 1u8, livekit_pid = pid, stream = s, "[LiveKit] {line}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines_and_sees_ready() {
        let t = OutputTail::new();
        for i in 0..50 {
            t.push(&format!("line {i}"));
        }
        assert_eq!(t.lines().len(), TAIL_LINES);
        assert_eq!(t.lines()[0], "line 10");
        assert!(!t.ready_line_seen());
        assert_eq!(t.ready_line_at(), None);
        let before = clock::now();
        t.push("2026-01-01T00:00:00Z\tINFO\tlivekit\tservice/server.go:292\tstarting LiveKit server\t{}");
        assert!(t.ready_line_seen());
        let at = t.ready_line_at().unwrap();
        assert!(at >= before && at <= clock::now());
        assert_eq!(
            t.summary(2),
            format!("line 49 | {}", t.lines()[TAIL_LINES - 1])
        );
    }

    #[test]
    fn node_id_from_the_ready_line_in_both_formats() {
        let console = "2026-08-16T02:11:13.658Z\tINFO\tlivekit\tservice/server.go:292\tstarting LiveKit server\t{\"portHttp\": 7880, \"nodeID\": \"ND_fPeMV8yHGvre\", \"nodeIP\": \"172.16.20.10\"}";
        assert_eq!(
            ready_line_node_id(console).as_deref(),
            Some("ND_fPeMV8yHGvre")
        );
        let json = r#"{"level":"info","msg":"starting LiveKit server","nodeID":"ND_abc123XYZ789","version":"1.13.5"}"#;
        assert_eq!(ready_line_node_id(json).as_deref(), Some("ND_abc123XYZ789"));
        // other lines, other nodes' ids before the message, and odd values are not taken
        assert_eq!(
            ready_line_node_id(r#"selected node for room {"selectedNodeID": "ND_x"}"#),
            None
        );
        assert_eq!(
            ready_line_node_id(r#"{"nodeID":"ND_other1","msg":"starting LiveKit server"}"#),
            None
        );
        for bad in [
            r#""ND_""#,
            r#""XX_abc""#,
            r#""ND_a b""#,
            r#""ND_a\nb""#,
            "17",
        ] {
            let line = format!("starting LiveKit server\t{{\"nodeID\": {bad}}}");
            assert_eq!(ready_line_node_id(&line), None, "{bad}");
        }
        let t = OutputTail::new();
        assert_eq!(t.node_id(), None);
        t.push(console);
        assert_eq!(t.node_id().as_deref(), Some("ND_fPeMV8yHGvre"));
    }

    #[tokio::test]
    async fn slow_log_never_blocks_reader() {
        // A reader with a full queue must keep draining the pipe (and count drops).
        let (tx, _rx_held_but_never_read) = mpsc::channel(1);
        let tail = OutputTail::new();
        let data: Vec<u8> = (0..10_000)
            .flat_map(|i| format!("l{i}\n").into_bytes())
            .collect();
        let reader = read_lines(&data[..], Stream::Stderr, tx, tail.clone());
        tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .unwrap();
        assert!(tail.dropped() >= 9_998, "dropped {}", tail.dropped());
        assert_eq!(tail.lines().last().unwrap(), "l9999");
    }
}
