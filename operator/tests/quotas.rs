//! LlmQuota through the operator binary on the test API server: a key past the namespace's
//! caps is `Ready=False` (`OverQuota`) and listed in the quota's status until the cap is
//! raised, and the quota's shared usage is copied from a real Redis Cluster, where the
//! gateways count it.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
#[path = "../../gateway/tests/common/redis_cluster.rs"]
#[allow(
    dead_code,
    reason = "shared with the gateway's tests, which use all of it"
)]
mod redis_cluster;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use llm_gateway_crds::api_key::ApiKey;
use llm_gateway_crds::quota::LlmQuota;
use serde_json::json;

fn key(name: &str, usd: u32) -> ApiKey {
    serde_json::from_value(
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": name, "labels": {"team": "search"}},
        "spec": {"secretName": format!("{name}-key"), "owner": "search",
                 "budget": {"usd": usd, "period": "monthly"}}}),
    )
    .unwrap()
}

fn quota(spec: serde_json::Value) -> LlmQuota {
    serde_json::from_value(
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmQuota",
        "metadata": {"name": "search"}, "spec": spec}),
    )
    .unwrap()
}

async fn key_ready(keys: &Api<ApiKey>, name: &str) -> Option<(String, String, String)> {
    let status = keys.get(name).await.ok()?.status?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((
        ready.status.clone(),
        ready.reason.clone(),
        ready.message.clone(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_the_caps_is_held_back_and_the_quota_reports_it() {
    let (_server, client, kubeconfig) = cluster().await;
    let _operator = operator(&kubeconfig, free_port());
    let keys: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    let quotas: Api<LlmQuota> = Api::namespaced(client.clone(), "default");
    let caps = |usd: u32| {
        json!({"callers": {"apiKeySelector": {"matchLabels": {"team": "search"}}},
        "grants": {"budget": {"usd": usd, "period": "monthly"}}})
    };
    quotas
        .create(&PostParams::default(), &quota(caps(10)))
        .await
        .unwrap();
    keys.create(&PostParams::default(), &key("first", 6))
        .await
        .unwrap();
    eventually("the first key ready", async || {
        let (status, ..) = key_ready(&keys, "first").await?;
        (status == "True").then_some(())
    })
    .await;
    keys.create(&PostParams::default(), &key("second", 6))
        .await
        .unwrap();
    let (_, _, message) = eventually("the second key held back", async || {
        let ready = key_ready(&keys, "second").await?;
        (ready.1 == "OverQuota").then_some(ready)
    })
    .await;
    assert!(message.contains("LlmQuota default/search"), "{message}");
    assert!(message.contains("cap of $10.00"), "{message}");
    let status = eventually("the quota's status", async || {
        let status = quotas.get("search").await.ok()?.status?;
        (status.key_count == Some(2) && !status.refused_keys.is_empty()).then_some(status)
    })
    .await;
    assert_eq!(status.refused_keys[0].name, "second");
    assert_eq!(status.granted_budget_usd, Some(6.0));
    assert_eq!(
        ready(&status.conditions).unwrap(),
        ("True".to_owned(), "Applied".to_owned())
    );
    assert_eq!(
        key_ready(&keys, "first").await.unwrap().0,
        "True",
        "the first key keeps serving"
    );
    // The platform team raises the cap: the second key is let in, and the quota says so.
    let raise = Patch::Merge(json!({"spec": caps(12)}));
    quotas
        .patch("search", &PatchParams::default(), &raise)
        .await
        .unwrap();
    eventually("the second key let in", async || {
        let (status, ..) = key_ready(&keys, "second").await?;
        (status == "True").then_some(())
    })
    .await;
    eventually("the quota's refusals cleared", async || {
        let status = quotas.get("search").await.ok()?.status?;
        (status.refused_keys.is_empty() && status.granted_budget_usd == Some(12.0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_usage_is_copied_from_a_redis_cluster() {
    let (_server, client, kubeconfig) = cluster().await;
    let redis = redis_cluster::RedisCluster::start().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "redis"}, "stringData": {"url": redis.url()}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    create_gateway(
        &client,
        json!({"replicas": 1,
        "redis": {"urlSecretRef": {"name": "redis", "key": "url"}, "cluster": true}}),
    )
    .await;
    let quotas: Api<LlmQuota> = Api::namespaced(client.clone(), "default");
    let spec =
        json!({"callers": {"owners": ["search"]}, "budget": {"usd": 100, "period": "monthly"}});
    quotas
        .create(&PostParams::default(), &quota(spec))
        .await
        .unwrap();
    let keys: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    keys.create(&PostParams::default(), &key("first", 6))
        .await
        .unwrap();
    // What the gateways would have counted, each account in its own slot.
    let month = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .first_of_month();
    redis.hset(
        &format!("lgw:{{quota:default/search}}:usage:{month}"),
        &[("requests", "7"), ("spend_nanos", "1234567000")],
    );
    // The key's: the seven turns `gateway/tests/spend.rs` bills (Claude, OpenAI reasoning and
    // Gemini thoughts), whose invoice is not a whole number of micro-dollars.
    redis.hset(
        &format!("lgw:{{key:default/first}}:usage:{month}"),
        &[
            ("requests", "7"),
            ("spend_nanos", "30390425"),
            ("cache_read_tokens", "38051"),
            ("reasoning_tokens", "92"),
        ],
    );
    let _operator = operator_with(
        &kubeconfig,
        free_port(),
        &[
            ("USAGE_SYNC_INTERVAL", "1s"),
            ("USAGE_SYNC_REDIS_HOSTS", "127.0.0.1"),
        ],
    );
    let usage = eventually("the quota's usage", async || {
        quotas.get("search").await.ok()?.status?.usage
    })
    .await;
    assert_eq!((usage.requests, usage.spend_usd), (Some(7), Some(1.234567)));
    let usage = eventually("the key's usage", async || {
        keys.get("first").await.ok()?.status?.usage
    })
    .await;
    assert_eq!(usage.requests, Some(7));
    assert_eq!(
        usage.spend_nanos,
        Some(30_390_425),
        "the status spend is the invoice to the nano-dollar"
    );
    assert_eq!(usage.spend_usd, Some(0.03039));
    assert_eq!(
        (usage.cache_read_tokens, usage.reasoning_tokens),
        (Some(38_051), Some(92))
    );
}
