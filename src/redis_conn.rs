//! The one Redis client (the Redis the cluster shares with LiveKit): one multiplexed connection
//! for the whole daemon, reconnected when it breaks, PING and bounded queries, every failure
//! naming the address (never the password).
//!
//! Below both users: the supervisor PINGs it to tell "degraded" from "failing" on a 406, and
//! `cluster::store` keeps our keys and reads LiveKit's through it (joins read `room_node_map`).
//!
//! Connection: opened on first use and shared by every clone (commands are pipelined over it,
//! so a burst of joins costs no new sockets). A command that fails because the connection broke
//! (Redis restarted, the socket reset) drops it and is retried once on a fresh one, so a Redis
//! restart costs no failed call; a timeout drops it too (a hung connection is not reused).
//! While Redis is unreachable, connecting is tried at most every [`RECONNECT_PAUSE`]; calls in
//! between fail at once with the last error. Each new connection bumps [`RedisConn::connected`],
//! which `cluster::store`'s marker guard watches to re-claim a Redis that came back empty.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use crate::clock::{self, Instant};
use crate::config::{RedisTarget, Secret};
use crate::sync::lock;

/// Shortest pause between two connection attempts while Redis is unreachable.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// Why a Redis call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Redis at {address}: {cause}")]
pub struct RedisError {
    /// `host:port` (for messages; never the password).
    pub address: String,
    pub cause: RedisCause,
}

/// What went wrong, without the address.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisCause {
    #[error("{0}")]
    Client(#[from] redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unreachable (last attempt {ago_ms} ms ago: {last})")]
    Pausing { ago_ms: u64, last: String },
}

/// The shared connection, or the last failure to get one.
enum Link {
    Idle,
    Up {
        generation: u64,
        conn: MultiplexedConnection,
    },
    Failed {
        at: Instant,
        cause: String,
    },
}

struct Shared {
    link: Mutex<Link>,
    /// Held while connecting: one attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    /// Connections opened so far (also sent on `connected`).
    opened: AtomicU64,
    connected: watch::Sender<u64>,
}

/// A Redis client bound to one target; clones share one connection.
#[derive(Clone)]
pub struct RedisConn {
    client: redis::Client,
    address: String,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("address", &self.address)
            .finish()
    }
}

/// Does `e` mean the connection itself is gone (drop it, try a fresh one)?
fn connection_lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

impl RedisConn {
    /// A client for `target` (nothing is sent yet).
    pub fn open(target: &RedisTarget, password: Option<&Secret>) -> Result<Self, RedisError> {
        let client = redis::Client::open(redis_url(target, password)).map_err(|e| RedisError {
            address: target.address.clone(),
            cause: e.into(),
        })?;
        Ok(Self {
            client,
            address: target.address.clone(),
            shared: Arc::new(Shared {
                link: Mutex::new(Link::Idle),
                connecting: tokio::sync::Mutex::new(()),
                opened: AtomicU64::new(0),
                connected: watch::channel(0).0,
            }),
        })
    }

    /// The address, for messages (never the password).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Connections opened so far by this client and its clones.
    pub fn connections_opened(&self) -> u64 {
        self.shared.opened.load(Ordering::Relaxed)
    }

    /// Changes (to the number of connections opened) each time a new connection is up.
    pub fn connected(&self) -> watch::Receiver<u64> {
        self.shared.connected.subscribe()
    }

    fn err(&self, cause: impl Into<RedisCause>) -> RedisError {
        RedisError {
            address: self.address.clone(),
            cause: cause.into(),
        }
    }

    /// The shared connection if it is up.
    fn current(&self) -> Result<Option<(u64, MultiplexedConnection)>, RedisError> {
        match &*lock(&self.shared.link) {
            Link::Up { generation, conn } => Ok(Some((*generation, conn.clone()))),
            Link::Failed { at, cause } if at.elapsed() < RECONNECT_PAUSE => {
                Err(self.err(RedisCause::Pausing {
                    ago_ms: at.elapsed().as_millis() as u64,
                    last: cause.clone(),
                }))
            }
            _ => Ok(None),
        }
    }

    /// The shared connection, opened (one attempt at a time) when there is none.
    async fn connection(
        &self,
        timeout: Duration,
    ) -> Result<(u64, MultiplexedConnection), RedisError> {
        if let Some(c) = self.current()? {
            return Ok(c);
        }
        let _one = self.shared.connecting.lock().await;
        if let Some(c) = self.current()? {
            return Ok(c);
        }
        let opened =
            tokio::time::timeout(timeout, self.client.get_multiplexed_async_connection()).await;
        let result = match opened {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.err(e)),
            Err(_) => Err(self.err(RedisCause::Timeout(timeout))),
        };
        let mut link = lock(&self.shared.link);
        match result {
            Ok(conn) => {
                let generation = self.shared.opened.fetch_add(1, Ordering::Relaxed) + 1;
                *link = Link::Up {
                    generation,
                    conn: conn.clone(),
                };
                self.shared.connected.send_replace(generation);
                Ok((generation, conn))
            }
            Err(e) => {
                *link = Link::Failed {
                    at: clock::now(),
                    cause: e.cause.to_string(),
                };
                Err(e)
            }
        }
    }

    /// Forget connection `generation` (if it is still the current one).
    fn drop_connection(&self, generation: u64) {
        let mut link = lock(&self.shared.link);
        if matches!(&*link, Link::Up { generation: g, .. } if *g == generation) {
            *link = Link::Idle;
        }
    }

    /// One try of `cmd` on the shared connection; `Err(true)` = the connection was lost.
    async fn try_once<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        timeout: Duration,
    ) -> Result<T, (RedisError, bool)> {
        let (generation, mut con) = self.connection(timeout).await.map_err(|e| (e, false))?;
        match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut con)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let lost = connection_lost(&e);
                if lost {
                    self.drop_connection(generation);
                }
                Err((self.err(e), lost))
            }
            Err(_) => {
                self.drop_connection(generation);
                Err((self.err(RedisCause::Timeout(timeout)), false))
            }
        }
    }

    /// Run one command: connecting and the command each get `timeout`; a command that found
    /// the connection broken is retried once on a fresh one.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        timeout: Duration,
    ) -> Result<T, RedisError> {
        match self.try_once(cmd, timeout).await {
            Ok(v) => Ok(v),
            Err((_, true)) => self.try_once(cmd, timeout).await.map_err(|(e, _)| e),
            Err((e, false)) => Err(e),
        }
    }

    /// Ok when PING answers within `timeout` (connecting included).
    pub async fn ping(&self, timeout: Duration) -> Result<(), RedisError> {
        let ping = redis::cmd("PING");
        let fut = self.query::<String>(&ping, timeout);
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(self.err(RedisCause::Timeout(timeout))),
        }
    }
}

/// Build a `redis://` URL for the client library (the password never leaves this process).
pub fn redis_url(target: &RedisTarget, password: Option<&Secret>) -> String {
    let scheme = if target.tls { "rediss" } else { "redis" };
    let mut u = match url::Url::parse(&format!("{scheme}://{}/{}", target.address, target.db)) {
        Ok(u) => u,
        Err(_) => return format!("{scheme}://{}/{}", target.address, target.db),
    };
    if let Some(user) = &target.username {
        let _ = u.set_username(user);
    }
    if let Some(p) = password {
        let _ = u.set_password(Some(p.expose()));
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_password_is_encoded() {
        let t = RedisTarget {
            address: "127.0.0.1:6380".into(),
            username: None,
            db: 1,
            tls: false,
        };
        let u = redis_url(&t, Some(&Secret::new("p@ss/word")));
        assert_eq!(u, "redis://:p%40ss%2Fword@127.0.0.1:6380/1");
        assert_eq!(redis_url(&t, None), "redis://127.0.0.1:6380/1");
    }

    #[tokio::test]
    async fn unreachable_names_the_address_and_pauses_between_attempts() {
        let t = RedisTarget {
            address: "127.0.0.1:1".into(),
            username: None,
            db: 0,
            tls: false,
        };
        let c = RedisConn::open(&t, None).unwrap();
        let e = c.ping(Duration::from_secs(2)).await.unwrap_err();
        assert!(e.to_string().starts_with("Redis at 127.0.0.1:1: "), "{e}");
        // at once again: no new attempt, the last error
        let e = c.ping(Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e.cause, RedisCause::Pausing { .. }), "{e}");
        assert_eq!(c.connections_opened(), 0);
    }
}
