//! Where the usage sync reads from: which Redis URLs the operator may dial, and the
//! connections to them, kept between passes (a single server, or a Redis Cluster).
//!
//! A cluster announces its nodes by address, which the operator would then dial: a cluster
//! is read only when `USAGE_SYNC_REDIS_HOSTS` names every seed node, i.e. when the cluster
//! admin trusts it.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::ConnectionManager;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

use crate::Error;

/// Longest one Redis round trip may take before the pass for that namespace fails.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// `url` as the gateway pods of `namespace` resolve it, if the operator may dial it. Only a
/// Service of that namespace is dialled (`redis`, `redis.<ns>`, `redis.<ns>.svc` or
/// `redis.<ns>.svc.<cluster domain>`), always by its fully qualified name, so neither the
/// operator's own namespace (a bare name would resolve there) nor a public name can be
/// reached (the cluster domain is not one; no trailing dot, which TLS names refuse). Anything else (another namespace's
/// Service, an IP address, an outside name) is refused unless `allowed.extra_hosts` names it:
/// whoever can write a namespace's Redis Secret must not make the operator connect wherever
/// they like.
fn as_seen_from(url: &str, namespace: &str, allowed: &RedisHosts) -> Result<String, Error> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| Error::Redis(format!("invalid Redis URL in namespace {namespace}: {e}")))?;
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    if allowed.extra_hosts.contains(&host) {
        return Ok(url.to_owned());
    }
    if !matches!(parsed.host(), Some(url::Host::Domain(_))) {
        return Err(refused(namespace));
    }
    let domain = allowed
        .cluster_domain
        .trim_matches('.')
        .to_ascii_lowercase();
    let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
    let service = match labels.as_slice() {
        [service] => *service,
        [service, ns] if *ns == namespace => *service,
        [service, ns, "svc", rest @ ..]
            if *ns == namespace && (rest.is_empty() || rest.join(".") == domain) =>
        {
            *service
        }
        _ => return Err(refused(namespace)),
    };
    let qualified = format!("{service}.{namespace}.svc.{domain}");
    parsed
        .set_host(Some(&qualified))
        .map_err(|_| refused(namespace))?;
    Ok(parsed.into())
}

/// Where the usage sync may connect.
#[derive(Clone, Debug)]
pub struct RedisHosts {
    /// The cluster's DNS domain (`cluster.local` unless the cluster was set up otherwise).
    pub cluster_domain: String,
    /// Hosts allowed besides Services of each gateway's namespace, lower case.
    pub extra_hosts: Vec<String>,
}

impl Default for RedisHosts {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".to_owned(),
            extra_hosts: Vec::new(),
        }
    }
}

fn refused(namespace: &str) -> Error {
    Error::Redis(format!(
        "the Redis URL of namespace {namespace} is not a Service of that namespace; the \
         operator reads usage only from there (or hosts USAGE_SYNC_REDIS_HOSTS names)"
    ))
}

/// A connection to one Redis or to a Redis Cluster.
#[derive(Clone)]
pub enum Connection {
    /// One server.
    Single(ConnectionManager),
    /// A cluster (each command goes to the node serving its key).
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Connection::Single",
            Self::Cluster(_) => "Connection::Cluster",
        })
    }
}

impl Connection {
    /// `HMGET key fields` for every key, in order: one pipeline on a single server, one
    /// command per key in a cluster (a pipeline may not span slots there).
    pub async fn hmget_all(
        &self,
        keys: &[String],
        fields: &[&str],
    ) -> Result<Vec<Vec<Option<i64>>>, Error> {
        let hmget = |key: &String| {
            let mut command = redis::cmd("HMGET");
            command.arg(key).arg(fields);
            command
        };
        let replies = async {
            match self {
                Self::Single(connection) => {
                    let mut pipeline = redis::pipe();
                    keys.iter().for_each(|key| {
                        pipeline.add_command(hmget(key));
                    });
                    pipeline.query_async(&mut connection.clone()).await
                }
                Self::Cluster(connection) => {
                    let calls = keys.iter().map(|key| {
                        let mut connection = connection.clone();
                        let command = hmget(key);
                        async move { command.query_async(&mut connection).await }
                    });
                    join_all(calls).await.into_iter().collect()
                }
            }
        };
        tokio::time::timeout(REDIS_TIMEOUT, replies)
            .await
            .map_err(|_| Error::Redis("no answer within 5 s".to_owned()))?
            .map_err(|e: redis::RedisError| Error::Redis(e.to_string()))
    }
}

/// Redis connections by URL (the URL holds a password: it is never logged).
#[derive(Default)]
pub struct Connections(HashMap<String, Connection>);

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connections({})", self.0.len())
    }
}

impl Connections {
    /// The connection for `namespace`'s Redis at `url` (seed nodes, comma-separated, when
    /// `cluster`), if the operator may dial it.
    pub async fn get(
        &mut self,
        url: &str,
        cluster: bool,
        namespace: &str,
        allowed: &RedisHosts,
    ) -> Result<Connection, Error> {
        let url = if cluster {
            trusted_seeds(url, namespace, allowed)?
        } else {
            as_seen_from(url, namespace, allowed)?
        };
        if let Some(connection) = self.0.get(&url) {
            return Ok(connection.clone());
        }
        let invalid =
            |e: redis::RedisError| Error::Redis(format!("invalid Redis URL: {:?}", e.kind()));
        let connecting = async {
            if cluster {
                let client =
                    ClusterClient::new(url.split(',').collect::<Vec<_>>()).map_err(invalid)?;
                client.get_async_connection().await.map(Connection::Cluster)
            } else {
                let client = redis::Client::open(url.as_str()).map_err(invalid)?;
                ConnectionManager::new(client).await.map(Connection::Single)
            }
            .map_err(|e| Error::Redis(e.to_string()))
        };
        let connection = tokio::time::timeout(REDIS_TIMEOUT, connecting)
            .await
            .map_err(|_| Error::Redis("no connection within 5 s".to_owned()))??;
        self.0.insert(url, connection.clone());
        Ok(connection)
    }
}

/// The seed list of a cluster, when `USAGE_SYNC_REDIS_HOSTS` names every seed's host.
fn trusted_seeds(urls: &str, namespace: &str, allowed: &RedisHosts) -> Result<String, Error> {
    let seeds: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let trusted = |seed: &&str| {
        url::Url::parse(seed).is_ok_and(|u| {
            u.host_str()
                .is_some_and(|h| allowed.extra_hosts.contains(&h.to_ascii_lowercase()))
        })
    };
    if seeds.is_empty() || !seeds.iter().all(trusted) {
        return Err(Error::Redis(format!(
            "the Redis Cluster of namespace {namespace} is read only when \
             USAGE_SYNC_REDIS_HOSTS names every seed node (a cluster sends the operator to \
             the addresses its nodes announce)"
        )));
    }
    Ok(seeds.join(","))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_services_of_the_gateways_namespace_are_dialled() {
        let seen = |url: &str, extra: &[&str]| {
            let allowed = super::RedisHosts {
                extra_hosts: extra.iter().map(|h| (*h).to_owned()).collect(),
                ..super::RedisHosts::default()
            };
            super::as_seen_from(url, "team-a", &allowed).ok()
        };
        for own in [
            "redis://:secret@redis:6379/0",
            "redis://:secret@redis.team-a:6379/0",
            "redis://:secret@redis.team-a.svc:6379/0",
            "redis://:secret@REDIS.team-a.svc.cluster.local:6379/0",
            "redis://:secret@redis.team-a.svc.cluster.local.:6379/0",
        ] {
            assert_eq!(
                seen(own, &[]).as_deref(),
                Some("redis://:secret@redis.team-a.svc.cluster.local:6379/0"),
                "{own}"
            );
        }
        for elsewhere in [
            "redis://redis.shared.svc.cluster.local:6379",
            "redis://redis.team-a.svc.evil.com:6379",
            "redis://x.team-a.svc.10.0.0.5.nip.io:6379",
            "redis://evil.ai:6379",
            "rediss://10.0.0.5:6380",
            "redis://[::1]:6379",
            "redis://169.254.169.254:80",
            "redis://cache.example.com:6379",
            "redis+unix:///tmp/redis.sock",
            "not a url",
        ] {
            assert_eq!(seen(elsewhere, &[]), None, "{elsewhere}");
        }
        assert!(seen("redis://127.0.0.1:6379", &["127.0.0.1"]).is_some());
        assert!(seen("redis://[::1]:6379", &["[::1]"]).is_some());
    }

    #[test]
    fn a_cluster_is_read_only_when_every_seed_is_trusted() {
        let allowed = super::RedisHosts {
            extra_hosts: vec![
                "redis-0.redis.shared".to_owned(),
                "redis-1.redis.shared".to_owned(),
            ],
            ..super::RedisHosts::default()
        };
        let both = "redis://:p@redis-0.redis.shared:6379, redis://:p@redis-1.redis.shared:6379";
        assert!(super::trusted_seeds(both, "team-a", &allowed).is_ok());
        let one_more = format!("{both},redis://evil.example:6379");
        assert!(super::trusted_seeds(&one_more, "team-a", &allowed).is_err());
        assert!(
            super::trusted_seeds(
                "redis://redis:6379",
                "team-a",
                &super::RedisHosts::default()
            )
            .is_err()
        );
    }
}
