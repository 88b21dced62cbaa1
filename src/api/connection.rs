//! One HTTP/1.1 connection of the control API, served by hyper with the API's limits: the head
//! within `header_timeout` (hyper's header-read timer, which also bounds an idle keep-alive
//! connection), the body and the answer within `request_timeout` (408 `timeout` while the body
//! was still arriving, 503 `busy` when the answer was not ready), no more than `request_timeout`
//! without a byte moving while the server waits for the client, and an immediate close when the
//! connection is evicted (`conns`). Whether the server works on a request or waits for the
//! client is told to the registry as it changes.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::conn_io::{Metered, Shared, MAX_HEAD_BYTES};
use super::conns::{ConnHandle, Counters};
use crate::clock::{self, Instant};

/// How long a connection may finish its answer once the server stops.
pub const GRACEFUL: Duration = Duration::from_secs(2);

/// The per-connection limits (from `[api]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

/// A request body that tells the registry "busy" once it has been read to its end (or at once
/// when there is none): until then the server waits for the client.
struct BusyWhenRead {
    inner: Incoming,
    handle: Arc<ConnHandle>,
    told: bool,
}

impl BusyWhenRead {
    fn new(inner: Incoming, handle: Arc<ConnHandle>) -> Self {
        let mut b = BusyWhenRead {
            inner,
            handle,
            told: false,
        };
        if b.inner.is_end_stream() {
            b.tell();
        }
        b
    }

    fn tell(&mut self) {
        if !self.told {
            self.told = true;
            self.handle.busy();
        }
    }
}

impl HttpBody for BusyWhenRead {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.tell();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A JSON error answer that also closes the connection.
fn closing_error(status: StatusCode, code: &str, message: String) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Hand one request to the router under the request timeout.
async fn handle(
    mut app: Router,
    req: Request<Incoming>,
    conn: Arc<ConnHandle>,
    limits: Limits,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, BusyWhenRead::new(body, conn.clone()));
    let t = limits.request_timeout;
    let resp = match tokio::time::timeout(t, app.call(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(never)) => match never {},
        Err(_) => {
            Counters::inc(&conn.counters().request_timeouts);
            if conn.is_busy() {
                closing_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    format!("the answer was not ready within {} s", t.as_secs()),
                )
            } else {
                closing_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!("the request was not received within {} s", t.as_secs()),
                )
            }
        }
    };
    conn.waiting();
    resp
}

/// Serve one connection until it ends, is evicted, stalls or the server stops (`shutdown`:
/// finish the current answer within [`GRACEFUL`]).
pub async fn serve<I>(
    io: I,
    conn: ConnHandle,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let shared = Shared::new();
    let io = Metered::new(io, shared.clone(), conn.registry());
    let svc_conn = conn.clone();
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        svc_shared.responses_due.fetch_add(1, Ordering::Relaxed);
        let fut = handle(app.clone(), req, svc_conn.clone(), limits);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(2 * MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let http = builder.serve_connection(TokioIo::new(io), svc);
    drive(http, &conn, &shared, limits, shutdown).await;
}

/// Poll the hyper connection against eviction, stalls and shutdown.
async fn drive<F>(
    http: F,
    conn: &ConnHandle,
    shared: &Shared,
    limits: Limits,
    shutdown: CancellationToken,
) where
    F: std::future::Future<Output = Result<(), hyper::Error>> + GracefulConn,
{
    tokio::pin!(http);
    let mut stop_by: Option<Instant> = None;
    loop {
        // while the server works on a request, its own timeout applies (see `handle`)
        let stall_at = if conn.is_busy() {
            clock::now() + limits.request_timeout
        } else {
            shared.last_progress() + limits.request_timeout
        };
        let deadline = stop_by.map_or(stall_at, |s| s.min(stall_at));
        tokio::select! {
            r = http.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        Counters::inc(&conn.counters().header_timeouts);
                    }
                }
                return;
            }
            _ = conn.close.cancelled() => return,
            _ = shutdown.cancelled(), if stop_by.is_none() => {
                http.as_mut().begin_graceful();
                stop_by = Some(clock::now() + GRACEFUL);
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = clock::now();
                if stop_by.is_some_and(|s| now >= s) {
                    return;
                }
                let idle_for = now.saturating_duration_since(shared.last_progress());
                if idle_for >= limits.request_timeout && !conn.is_busy() {
                    Counters::inc(&conn.counters().stalled);
                    return;
                }
            }
        }
    }
}

/// hyper's connection future, so `drive` can ask it to finish gracefully.
pub trait GracefulConn {
    fn begin_graceful(self: Pin<&mut Self>);
}

impl<I, S> GracefulConn for http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn begin_graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
