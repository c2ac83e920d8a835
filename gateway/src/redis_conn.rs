//! The one kind of Redis connection every store uses: a single server through a
//! `ConnectionManager`, or a Redis Cluster (or Valkey in cluster mode) through redis-rs's
//! cluster client, which follows `MOVED`/`ASK` redirections and failovers by itself.
//!
//! Both connect lazily, so a gateway starts while Redis is down. In a cluster a script or a
//! pipeline may only touch keys of one hash slot: the limiter lays its keys out by hash tag
//! (see `limits::redis_store`), and [`RedisConnection::query_each`] sends unrelated single-key
//! commands one by one instead of in a pipeline.

use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

/// A connection to a single Redis or to a Redis Cluster.
#[derive(Clone)]
pub enum RedisConnection {
    /// One server (a primary, or a managed endpoint that is not in cluster mode).
    Single(ConnectionManager),
    /// A Redis Cluster, reached through any of its nodes.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries a password: never shown.
        f.write_str(match self {
            Self::Single(_) => "RedisConnection::Single",
            Self::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// A lazy connection to `url`: with `cluster`, a comma-separated list of seed nodes
    /// (`redis://[:password@]host:port`, one is enough). `timeout` bounds connecting (at least
    /// 100 ms) and each answer.
    pub fn open(url: &str, cluster: bool, timeout: Duration) -> Result<Self, String> {
        let connect_timeout = timeout.max(Duration::from_millis(100));
        if cluster {
            let nodes: Vec<&str> = url
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect();
            let client = ClusterClient::builder(nodes)
                .retries(2)
                .min_retry_wait(20)
                .max_retry_wait(200)
                .build()
                .map_err(|e| redacted(&e))?;
            let config = ClusterConfig::new()
                .set_connection_timeout(connect_timeout)
                .set_response_timeout(timeout);
            return Ok(Self::Cluster(
                client.get_pending_async_connection_with_config(config),
            ));
        }
        let client = redis::Client::open(url).map_err(|e| redacted(&e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        ConnectionManager::new_lazy_with_config(client, config)
            .map(Self::Single)
            .map_err(|e| redacted(&e))
    }

    /// Whether this is a cluster connection (scripts and pipelines must stay in one slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Runs single-key commands that may live in different slots: one pipeline on a single
    /// server, each command on its own (concurrently) in a cluster. Answers in order.
    pub async fn query_each<T: FromRedisValue>(&self, commands: Vec<Cmd>) -> RedisResult<Vec<T>> {
        match self {
            Self::Single(_) => {
                let mut pipeline = redis::pipe();
                for command in commands {
                    pipeline.add_command(command);
                }
                pipeline.query_async(&mut self.clone()).await
            }
            Self::Cluster(_) => {
                let calls = commands.into_iter().map(|command| {
                    let mut connection = self.clone();
                    async move { command.query_async::<T>(&mut connection).await }
                });
                join_all(calls).await.into_iter().collect()
            }
        }
    }
}

/// A redis-rs error without the parts that may quote the URL (and its password).
fn redacted(error: &redis::RedisError) -> String {
    format!("invalid Redis URL ({:?})", error.kind())
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
