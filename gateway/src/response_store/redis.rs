//! Kept responses in Redis, shared by every replica: one string per response or item, JSON,
//! expiring after the store's TTL (Redis's own `maxmemory` policy bounds the total).

use std::time::Duration;

use super::{Key, Kind, StoreSettings, Unavailable};
use crate::limits::demand::KEY_PREFIX;
use crate::redis_conn::RedisConnection;

/// The Redis backend.
pub(super) struct Redis {
    connection: RedisConnection,
    ttl: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The Redis key of `key`: the scope is length-prefixed, so no scope or id can be spelt to
/// reach another caller's keys.
pub(super) fn redis_key((scope, kind, id): &Key) -> String {
    let kind = match kind {
        Kind::Response => "r",
        Kind::Item => "i",
    };
    format!("{KEY_PREFIX}:resp:{}:{scope}:{kind}:{id}", scope.len())
}

impl Redis {
    /// Connects lazily (the gateway starts while Redis is down); `timeout` bounds every call.
    pub(super) fn new(url: &str, settings: &StoreSettings) -> Result<Self, String> {
        let timeout = settings.redis_timeout;
        Ok(Self {
            connection: RedisConnection::open(url, settings.redis_cluster, timeout)?,
            ttl: settings.ttl,
            timeout,
        })
    }

    /// Writes every `(key, JSON)` with the TTL, in one round trip.
    pub(super) async fn set(&self, records: &[(Key, String)]) -> Result<(), Unavailable> {
        let ttl = u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let commands = records
            .iter()
            .map(|(key, json)| {
                let mut set = redis::cmd("SET");
                set.arg(redis_key(key)).arg(json).arg("PX").arg(ttl);
                set
            })
            .collect();
        self.bounded(self.connection.query_each::<redis::Value>(commands))
            .await
            .map(drop)
    }

    /// The JSON under `key`, if any.
    pub(super) async fn get(&self, key: &Key) -> Result<Option<String>, Unavailable> {
        let mut connection = self.connection.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(redis_key(key));
        self.bounded(cmd.query_async::<Option<String>>(&mut connection))
            .await
    }

    /// The sizes of the values under `keys` (0 for a missing one), in one round trip.
    pub(super) async fn lengths(&self, keys: &[Key]) -> Result<Vec<usize>, Unavailable> {
        let commands = keys
            .iter()
            .map(|key| {
                let mut strlen = redis::cmd("STRLEN");
                strlen.arg(redis_key(key));
                strlen
            })
            .collect();
        self.bounded(self.connection.query_each::<usize>(commands))
            .await
    }

    /// Deletes `key`; whether it existed.
    pub(super) async fn delete(&self, key: &Key) -> Result<bool, Unavailable> {
        let mut connection = self.connection.clone();
        let mut cmd = redis::cmd("DEL");
        cmd.arg(redis_key(key));
        let deleted = self
            .bounded(cmd.query_async::<u64>(&mut connection))
            .await?;
        Ok(deleted > 0)
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        match tokio::time::timeout(self.timeout.max(Duration::from_millis(100)), call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Unavailable(e.to_string())),
            Err(_) => Err(Unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_scope_reaches_another_callers_keys() {
        let key =
            |scope: &str, id: &str| redis_key(&(scope.to_owned(), Kind::Response, id.to_owned()));
        assert_ne!(key("a", "1:r:x"), key("a:1:r", "x"));
        assert_ne!(key("a:r", "x"), key("a", "r:x"));
    }
}
