//! Copies each ApiKey's usage in its current budget period from Redis, where the gateways
//! count it, into `status.usage`, so `kubectl get apikeys` shows spend without a query tool.
//!
//! One pass per interval: for every namespace whose LlmGateway names a Redis, one pipelined
//! `HMGET` per namespace reads every key's counters, and only statuses whose usage changed
//! are patched (a JSON merge patch of `status.usage` alone, so it never races the ApiKey
//! controller's fields). Redis connections are kept per URL between passes.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use llm_gateway_crds::api_key::{ApiKey, Usage};
use llm_gateway_crds::llm_gateway::LlmGateway;
use llm_gateway_crds::policy::BudgetPeriod;
use llm_gateway_crds::usage::{Period, USAGE_FIELDS, api_key_account, usage_key};
use redis::aio::ConnectionManager;

use crate::{Context, Error};

const NAME: &str = "usagesync";

/// Longest one Redis round trip may take before the pass for that namespace fails.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a pass every `interval` until the process ends.
pub async fn run(context: Context, interval: Duration) {
    let mut connections = Connections::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = std::time::Instant::now();
        let result = pass(&context, &mut connections).await;
        if let Err(error) = &result {
            tracing::warn!(%error, "usage sync failed; retrying next interval");
        }
        context
            .metrics
            .record(NAME, started.elapsed().as_secs_f64(), result.err().as_ref());
    }
}

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

/// Redis connections by URL (the URL holds a password: it is never logged).
#[derive(Default)]
struct Connections(HashMap<String, ConnectionManager>);

impl Connections {
    async fn get(&mut self, url: &str) -> Result<ConnectionManager, Error> {
        if let Some(connection) = self.0.get(url) {
            return Ok(connection.clone());
        }
        let client = redis::Client::open(url)
            .map_err(|e| Error::Redis(format!("invalid Redis URL: {:?}", e.kind())))?;
        let connection = tokio::time::timeout(REDIS_TIMEOUT, ConnectionManager::new(client))
            .await
            .map_err(|_| Error::Redis("no connection within 5 s".to_owned()))?
            .map_err(|e| Error::Redis(e.to_string()))?;
        self.0.insert(url.to_owned(), connection.clone());
        Ok(connection)
    }
}

/// One pass over every namespace with a Redis-backed LlmGateway. A failing namespace does
/// not stop the others; the first error is returned for the metrics.
async fn pass(context: &Context, connections: &mut Connections) -> Result<(), Error> {
    let gateways = context
        .api::<LlmGateway>()
        .list(&ListParams::default())
        .await?;
    let mut urls: HashMap<String, (String, String)> = HashMap::new();
    for gateway in &gateways {
        if let (Some(namespace), Some(redis)) = (gateway.namespace(), &gateway.spec.redis) {
            let reference = &redis.url_secret_ref;
            urls.entry(namespace)
                .or_insert_with(|| (reference.name.clone(), reference.key.clone()));
        }
    }
    let mut first_error = None;
    for (namespace, (secret, key)) in urls {
        if let Err(error) = sync_namespace(context, connections, &namespace, &secret, &key).await {
            tracing::warn!(%namespace, %error, "could not sync usage");
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn sync_namespace(
    context: &Context,
    connections: &mut Connections,
    namespace: &str,
    secret: &str,
    key: &str,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    let url = secrets
        .get_opt(secret)
        .await?
        .and_then(|s| s.data?.remove(key))
        .and_then(|v| String::from_utf8(v.0).ok())
        .ok_or_else(|| Error::Redis(format!("Secret {namespace}/{secret} has no {key:?}")))?;
    let mut connection = connections
        .get(&as_seen_from(
            url.trim(),
            namespace,
            &context.settings.redis_hosts,
        )?)
        .await?;
    let api: Api<ApiKey> = Api::namespaced(context.client.clone(), namespace);
    let keys = crate::caches::in_namespace(&context.caches.api_keys, namespace);
    if keys.is_empty() {
        return Ok(());
    }
    let now = jiff::Timestamp::now();
    let periods: Vec<Period> = keys.iter().map(|k| period_of(k, now)).collect();
    let mut pipeline = redis::pipe();
    for (api_key, period) in keys.iter().zip(&periods) {
        let account = api_key_account(namespace, &api_key.name_any());
        pipeline
            .cmd("HMGET")
            .arg(usage_key(&account, period))
            .arg(&USAGE_FIELDS);
    }
    let replies: Vec<Vec<Option<i64>>> =
        tokio::time::timeout(REDIS_TIMEOUT, pipeline.query_async(&mut connection))
            .await
            .map_err(|_| Error::Redis("no answer within 5 s".to_owned()))?
            .map_err(|e| Error::Redis(e.to_string()))?;
    for ((api_key, period), counters) in keys.iter().zip(&periods).zip(replies) {
        let usage = usage_from(period, &counters);
        let current = api_key.status.as_ref().and_then(|s| s.usage.as_ref());
        if current != Some(&usage) {
            let patch = serde_json::json!({"status": {"usage": usage}});
            api.patch_status(
                &api_key.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
        }
    }
    Ok(())
}

/// The period an ApiKey's usage is counted in: its budget's, or the calendar month.
pub fn period_of(api_key: &ApiKey, now: jiff::Timestamp) -> Period {
    let kind = api_key
        .spec
        .budget
        .as_ref()
        .map_or(BudgetPeriod::Monthly, |b| b.period);
    Period::containing(kind, now)
}

/// The status usage of the counters `HMGET` answered (fields in [`USAGE_FIELDS`] order).
pub fn usage_from(period: &Period, counters: &[Option<i64>]) -> Usage {
    let get = |i: usize| counters.get(i).copied().flatten().unwrap_or(0).max(0);
    Usage {
        period_start: Some(period.start.to_string()),
        requests: Some(get(0) as u64),
        input_tokens: Some(get(1) as u64),
        output_tokens: Some(get(2) as u64),
        // Rounded to micro-dollars so a status diff means a real change.
        spend_usd: Some((get(3) as f64 / 1e3).round() / 1e6),
        cache_read_tokens: Some(get(5) as u64),
        cache_write_tokens: Some(get(6) as u64),
        reasoning_tokens: Some(get(7) as u64),
    }
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connections({})", self.0.len())
    }
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

    use super::*;

    #[test]
    fn counters_become_status_usage() {
        let now: jiff::Timestamp = "2026-11-27T12:00:00Z".parse().expect("time");
        let period = Period::containing(BudgetPeriod::Monthly, now);
        let usage = usage_from(
            &period,
            &[
                Some(3),
                Some(120),
                None,
                Some(1_234_567),
                Some(9),
                Some(100),
                Some(7),
                Some(4),
            ],
        );
        assert_eq!(
            (
                usage.cache_read_tokens,
                usage.cache_write_tokens,
                usage.reasoning_tokens
            ),
            (Some(100), Some(7), Some(4))
        );
        assert_eq!(usage.period_start.as_deref(), Some("2026-11-01T00:00:00Z"));
        assert_eq!(
            (usage.requests, usage.input_tokens, usage.output_tokens),
            (Some(3), Some(120), Some(0))
        );
        assert_eq!(usage.spend_usd, Some(0.001235));
        let empty = usage_from(&period, &[]);
        assert_eq!(empty.requests, Some(0));
    }
}
