//! The one Redis client (the Redis the cluster shares with LiveKit): connecting, PING and
//! bounded queries, every failure naming the address (never the password).
//!
//! Below both users: the supervisor PINGs it to tell "degraded" from "failing" on a 406, and
//! `cluster::store` keeps our keys and reads LiveKit's through it.

use std::time::Duration;

use crate::config::{RedisTarget, Secret};

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
}

/// A Redis client bound to one target; cheap to clone.
#[derive(Clone)]
pub struct RedisConn {
    client: redis::Client,
    address: String,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("address", &self.address)
            .finish()
    }
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
        })
    }

    /// The address, for messages (never the password).
    pub fn address(&self) -> &str {
        &self.address
    }

    fn err(&self, cause: impl Into<RedisCause>) -> RedisError {
        RedisError {
            address: self.address.clone(),
            cause: cause.into(),
        }
    }

    async fn connect(
        &self,
        timeout: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, RedisError> {
        match tokio::time::timeout(timeout, self.client.get_multiplexed_async_connection()).await {
            Ok(r) => r.map_err(|e| self.err(e)),
            Err(_) => Err(self.err(RedisCause::Timeout(timeout))),
        }
    }

    /// Run one command: connecting and the command each get `timeout`.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        timeout: Duration,
    ) -> Result<T, RedisError> {
        let mut con = self.connect(timeout).await?;
        match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut con)).await {
            Ok(r) => r.map_err(|e| self.err(e)),
            Err(_) => Err(self.err(RedisCause::Timeout(timeout))),
        }
    }

    /// Ok when PING answers within `timeout` (connecting included).
    pub async fn ping(&self, timeout: Duration) -> Result<(), RedisError> {
        let fut = async {
            let mut con = self.connect(timeout).await?;
            redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .map_err(|e| self.err(e))
        };
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
    async fn unreachable_names_the_address() {
        let t = RedisTarget {
            address: "127.0.0.1:1".into(),
            username: None,
            db: 0,
            tls: false,
        };
        let c = RedisConn::open(&t, None).unwrap();
        let e = c.ping(Duration::from_secs(2)).await.unwrap_err();
        assert!(e.to_string().starts_with("Redis at 127.0.0.1:1: "), "{e}");
    }
}
