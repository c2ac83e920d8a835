//! Copies each ApiKey's and LlmQuota's usage in its current budget period from Redis, where
//! the gateways count it, into `status.usage`, so `kubectl get apikeys,llmquotas` shows spend
//! without a query tool.
//!
//! One pass per interval: for every namespace whose LlmGateway names a Redis, one pipelined
//! `HMGET` per namespace (one per key on a Redis Cluster) reads every key's counters, and only statuses whose usage changed
//! are patched (a JSON merge patch of `status.usage` alone, so it never races the ApiKey
//! controller's fields). Redis connections are kept per URL between passes.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use llm_gateway_crds::api_key::{ApiKey, Usage};
use llm_gateway_crds::llm_gateway::{LlmGateway, Redis};
use llm_gateway_crds::quota::{LlmQuota, quota_account};
use llm_gateway_crds::usage::{Period, USAGE_FIELDS, api_key_account, usage_key};

use crate::usage_redis::Connections;
use crate::{Context, Error};

const NAME: &str = "usagesync";

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

/// One pass over every namespace with a Redis-backed LlmGateway. A failing namespace does
/// not stop the others; the first error is returned for the metrics.
async fn pass(context: &Context, connections: &mut Connections) -> Result<(), Error> {
    let gateways = context
        .api::<LlmGateway>()
        .list(&ListParams::default())
        .await?;
    let mut redis_of: HashMap<String, &Redis> = HashMap::new();
    for gateway in &gateways {
        if let (Some(namespace), Some(redis)) = (gateway.namespace(), &gateway.spec.redis) {
            redis_of.entry(namespace).or_insert(redis);
        }
    }
    let mut first_error = None;
    for (namespace, redis) in redis_of {
        if let Err(error) = sync_namespace(context, connections, &namespace, redis).await {
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
    redis: &Redis,
) -> Result<(), Error> {
    let (secret, key) = (&redis.url_secret_ref.name, &redis.url_secret_ref.key);
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    let url = secrets
        .get_opt(secret)
        .await?
        .and_then(|s| s.data?.remove(key))
        .and_then(|v| String::from_utf8(v.0).ok())
        .ok_or_else(|| Error::Redis(format!("Secret {namespace}/{secret} has no {key:?}")))?;
    let allowed = &context.settings.redis_hosts;
    let connection = connections
        .get(url.trim(), redis.cluster, namespace, allowed)
        .await?;
    let keys = crate::caches::in_namespace(&context.caches.api_keys, namespace);
    let quotas = crate::caches::in_namespace(&context.caches.quotas, namespace);
    if keys.is_empty() && quotas.is_empty() {
        return Ok(());
    }
    let now = jiff::Timestamp::now();
    let mut periods: Vec<Period> = keys.iter().map(|k| period_of(k, now)).collect();
    periods.extend(quotas.iter().map(|q| quota_period(q, now)));
    let accounts = keys
        .iter()
        .map(|k| api_key_account(namespace, &k.name_any()))
        .chain(
            quotas
                .iter()
                .map(|q| quota_account(namespace, &q.name_any())),
        );
    let usage_keys: Vec<String> = accounts
        .zip(&periods)
        .map(|(account, period)| usage_key(&account, period))
        .collect();
    let replies = connection.hmget_all(&usage_keys, &USAGE_FIELDS).await?;
    let mut usages = periods
        .iter()
        .zip(&replies)
        .map(|(period, counters)| usage_from(period, counters));
    // A new period's counters start without a last use: the previous one stays.
    let keep_last_use = |current: Option<&Usage>, mut usage: Usage| {
        if usage.last_used_at.is_none() {
            usage.last_used_at = current.and_then(|c| c.last_used_at.clone());
        }
        usage
    };
    for (api_key, usage) in keys.iter().zip(usages.by_ref()) {
        let current = api_key.status.as_ref().and_then(|s| s.usage.as_ref());
        patch_usage(context, api_key, current, keep_last_use(current, usage)).await?;
    }
    for (quota, usage) in quotas.iter().zip(usages) {
        let current = quota.status.as_ref().and_then(|s| s.usage.as_ref());
        patch_usage(context, quota, current, keep_last_use(current, usage)).await?;
    }
    Ok(())
}

/// Writes `status.usage` of `object` alone (a merge patch), unless it is `current` already.
async fn patch_usage<K>(
    context: &Context,
    object: &K,
    current: Option<&Usage>,
    usage: Usage,
) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if current == Some(&usage) {
        return Ok(());
    }
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(context.client.clone(), &namespace);
    let patch = serde_json::json!({"status": {"usage": usage}});
    api.patch_status(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    Ok(())
}

/// The period an LlmQuota's shared usage is counted in: its budget's, or the calendar month.
pub fn quota_period(quota: &LlmQuota, now: jiff::Timestamp) -> Period {
    Period::of_budget(quota.spec.budget.as_ref(), now)
}

/// The period an ApiKey's usage is counted in: its budget's, or the calendar month.
pub fn period_of(api_key: &ApiKey, now: jiff::Timestamp) -> Period {
    Period::of_budget(api_key.spec.budget.as_ref(), now)
}

/// The status usage of the counters `HMGET` answered (fields in [`USAGE_FIELDS`] order).
pub fn usage_from(period: &Period, counters: &[Option<i64>]) -> Usage {
    let get = |i: usize| counters.get(i).copied().flatten().unwrap_or(0).max(0);
    Usage {
        period_start: Some(period.start.to_string()),
        requests: Some(get(0) as u64),
        input_tokens: Some(get(1) as u64),
        output_tokens: Some(get(2) as u64),
        // Rounded to micro-dollars for reading; `spend_nanos` is exact.
        spend_usd: Some((get(3) as f64 / 1e3).round() / 1e6),
        spend_nanos: Some(get(3)),
        cache_read_tokens: Some(get(5) as u64),
        cache_write_tokens: Some(get(6) as u64),
        reasoning_tokens: Some(get(7) as u64),
        last_used_at: counters
            .get(8)
            .copied()
            .flatten()
            .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
            .map(|t| t.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_gateway_crds::policy::BudgetPeriod;

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
        assert_eq!(usage.spend_nanos, Some(1_234_567), "exact");
        let empty = usage_from(&period, &[]);
        assert_eq!(empty.requests, Some(0));
    }
}
