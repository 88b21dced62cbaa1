//! The byte stream under hyper, for one connection: it stamps every byte moved (so a connection
//! on which nothing moves can be closed) and turns hyper's own error answers into the API's JSON.
//!
//! hyper answers a request it cannot parse by itself — `400` (bad syntax), `414` (target too
//! long), `431` (head too large) — with an empty body, before any handler runs. Those are the
//! only answers written while no request is with the service ([`Shared::responses_due`] is 0):
//! such a head is replaced by `{"error": CODE, "message": TEXT}` with `connection: close`
//! (hyper closes the connection after it anyway) and counted.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conns::{Connections, Counters};
use crate::clock::{self, Instant};

/// Largest request head hyper reads (beyond: 431, in JSON).
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// What the connection's stream and its service share.
#[derive(Debug)]
pub struct Shared {
    started: Instant,
    /// Milliseconds after `started` when a byte last moved.
    last_progress_ms: AtomicU64,
    /// Requests handed to the service whose answer head is not written yet.
    pub responses_due: AtomicU32,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            started: clock::now(),
            last_progress_ms: AtomicU64::new(0),
            responses_due: AtomicU32::new(0),
        })
    }

    fn stamp(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_progress_ms.store(ms, Ordering::Relaxed);
    }

    /// When a byte last moved.
    pub fn last_progress(&self) -> Instant {
        self.started + Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed))
    }
}

/// The status code of a response head starting `buf`, if it starts one.
fn head_status(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The JSON answer that replaces hyper's empty one for `status`.
pub fn json_head_error(status: u16) -> Vec<u8> {
    let (reason, code, message) = match status {
        414 => (
            "URI Too Long",
            "too_large",
            "the request target is too long".to_string(),
        ),
        431 => (
            "Request Header Fields Too Large",
            "too_large",
            format!("the request head is over {MAX_HEAD_BYTES} bytes or has too many fields"),
        ),
        505 => (
            "HTTP Version Not Supported",
            "malformed",
            "only HTTP/1.1 is served".to_string(),
        ),
        _ => (
            "Bad Request",
            "malformed",
            "the request is not valid HTTP/1.1".to_string(),
        ),
    };
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A connection's stream: progress stamps and the JSON rewrite of hyper's own error answers.
pub struct Metered<T> {
    inner: T,
    shared: Arc<Shared>,
    conns: Arc<Connections>,
    /// Our answer still to be written (after a rewrite).
    pending: Vec<u8>,
    /// A rewrite happened: whatever hyper writes from now on is dropped.
    rewritten: bool,
}

impl<T> Metered<T> {
    pub fn new(inner: T, shared: Arc<Shared>, conns: Arc<Connections>) -> Self {
        Metered {
            inner,
            shared,
            conns,
            pending: Vec::new(),
            rewritten: false,
        }
    }

    /// Look at the start of what hyper writes: a service's answer head settles one due
    /// response; an error head with none due is hyper's own and gets rewritten.
    fn inspect(&mut self, first: &[u8]) {
        let Some(status) = head_status(first) else {
            return;
        };
        if status < 200 {
            return; // 100 Continue: the final answer follows
        }
        let due = &self.shared.responses_due;
        if due.load(Ordering::Relaxed) > 0 {
            due.fetch_sub(1, Ordering::Relaxed);
        } else if status >= 400 {
            self.pending = json_head_error(status);
            self.rewritten = true;
            Counters::inc(&self.conns.counters.bad_http);
        }
    }
}

impl<T: AsyncWrite + Unpin> Metered<T> {
    /// Write what is pending of our own answer; Ready once it is all out.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.shared.stamp();
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        if buf.filled().len() > before {
            this.shared.stamp();
        }
        Poll::Ready(r)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.rewritten {
            this.inspect(buf);
        }
        if this.rewritten {
            ready!(this.drain(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if n > 0 {
            this.shared.stamp();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.rewritten {
            if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
                this.inspect(first);
            }
        }
        if this.rewritten {
            ready!(this.drain(cx))?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            this.shared.stamp();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_status_reads_only_response_heads() {
        assert_eq!(head_status(b"HTTP/1.1 431 Request Header"), Some(431));
        assert_eq!(head_status(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(head_status(b"{\"error\":\"x\"}"), None);
        assert_eq!(head_status(b"HTTP/1.1 4"), None);
    }

    #[test]
    fn rewritten_heads_are_json_with_their_length() {
        for status in [400u16, 414, 431, 505] {
            let text = String::from_utf8(json_head_error(status)).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(head.contains(&format!("content-length: {}", body.len())));
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
        }
    }
}
