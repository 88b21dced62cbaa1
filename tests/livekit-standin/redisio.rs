//! Redis link of the livekit-server stand-in (TEST DOUBLE): connect + PING at startup, the
//! `nodes` / `rooms` / `room_node_map` hashes, reconnect after errors (CONTRACT §2.2, §8).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::config::{io_reason, RedisConfig};

#[derive(Debug, thiserror::Error)]
pub enum RedisLinkError {
    /// Text shaped like go-redis's dial errors.
    #[error("dial tcp {addr}: {reason}")]
    Dial { addr: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("i/o timeout")]
    Timeout,
}

/// One connection to the configured Redis, re-established lazily after any error.
pub struct RedisLink {
    host: String,
    port: u16,
    info: redis::ConnectionInfo,
    conn: Option<MultiplexedConnection>,
    timeout: Duration,
}

impl RedisLink {
    /// Validates the config; only the simple (single address, no TLS) mode is supported.
    pub fn new(cfg: &RedisConfig) -> Result<Self, RedisLinkError> {
        if cfg.address.is_empty() {
            return Err(RedisLinkError::Unsupported(
                "livekit-standin supports only redis.address (no sentinel or cluster mode)".into(),
            ));
        }
        if cfg.tls.enabled || cfg.use_tls {
            return Err(RedisLinkError::Unsupported(
                "livekit-standin does not support redis TLS".into(),
            ));
        }
        let (host, port) = match cfg.address.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(p) => (
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    p,
                ),
                Err(_) => {
                    return Err(RedisLinkError::Dial {
                        addr: cfg.address.clone(),
                        reason: format!("lookup port {p}: invalid port"),
                    })
                }
            },
            None => {
                return Err(RedisLinkError::Dial {
                    addr: String::new(),
                    reason: format!("address {}: missing port in address", cfg.address),
                })
            }
        };
        let mut settings = RedisConnectionInfo::default().set_db(cfg.db);
        if !cfg.username.is_empty() {
            settings = settings.set_username(&cfg.username);
        }
        if !cfg.password.is_empty() {
            settings = settings.set_password(&cfg.password);
        }
        let info = ConnectionAddr::Tcp(host.clone(), port)
            .into_connection_info()?
            .set_redis_settings(settings);
        let timeout = Duration::from_millis(if cfg.dial_timeout > 0 {
            cfg.dial_timeout
        } else {
            2000
        });
        Ok(Self {
            host,
            port,
            info,
            conn: None,
            timeout,
        })
    }

    async fn connection(&mut self) -> Result<&mut MultiplexedConnection, RedisLinkError> {
        if self.conn.is_none() {
            let addr = format!("{}:{}", self.host, self.port);
            // Dial first ourselves, so failures read like go-redis ("connect: connection refused").
            match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(&addr)).await {
                Err(_) => {
                    return Err(RedisLinkError::Dial {
                        addr,
                        reason: "i/o timeout".into(),
                    })
                }
                Ok(Err(e)) => {
                    return Err(RedisLinkError::Dial {
                        addr,
                        reason: format!("connect: {}", io_reason(&e)),
                    })
                }
                Ok(Ok(stream)) => drop(stream),
            }
            let client = redis::Client::open(self.info.clone())?;
            let conn =
                tokio::time::timeout(self.timeout, client.get_multiplexed_async_connection())
                    .await
                    .map_err(|_| RedisLinkError::Timeout)??;
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or(RedisLinkError::Timeout)
    }

    async fn run<T: redis::FromRedisValue>(
        &mut self,
        cmd: redis::Cmd,
    ) -> Result<T, RedisLinkError> {
        let timeout = self.timeout;
        let result = async {
            let conn = self.connection().await?;
            match tokio::time::timeout(timeout, cmd.query_async::<T>(conn)).await {
                Ok(r) => r.map_err(RedisLinkError::from),
                Err(_) => Err(RedisLinkError::Timeout),
            }
        }
        .await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    pub async fn ping(&mut self) -> Result<(), RedisLinkError> {
        self.run::<String>(redis::cmd("PING")).await.map(|_| ())
    }

    pub async fn hset(
        &mut self,
        key: &str,
        field: &str,
        value: &[u8],
    ) -> Result<(), RedisLinkError> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(key).arg(field).arg(value);
        self.run::<i64>(cmd).await.map(|_| ())
    }

    pub async fn hget(
        &mut self,
        key: &str,
        field: &str,
    ) -> Result<Option<Vec<u8>>, RedisLinkError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(key).arg(field);
        self.run(cmd).await
    }

    pub async fn hgetall(&mut self, key: &str) -> Result<Vec<(String, Vec<u8>)>, RedisLinkError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(key);
        self.run(cmd).await
    }

    pub async fn hdel(&mut self, key: &str, field: &str) -> Result<(), RedisLinkError> {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(key).arg(field);
        self.run::<i64>(cmd).await.map(|_| ())
    }

    /// `RemoveDeadNodes`: HDEL `nodes` entries whose stats are at least 5 s old.
    pub async fn remove_dead_nodes(&mut self, now: i64) -> Result<usize, RedisLinkError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg("nodes");
        let all: Vec<(String, Vec<u8>)> = self.run(cmd).await?;
        let mut removed = 0;
        for (id, bytes) in all {
            let Ok(node) = <livekit_protocol::Node as prost::Message>::decode(bytes.as_slice())
            else {
                continue;
            };
            if let Some(stats) = node.stats {
                if now - stats.updated_at >= 5 {
                    self.hdel("nodes", &id).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
