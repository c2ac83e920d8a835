//! The usage sync dials only Services of the gateway's own namespace: a namespace whose Redis
//! Secret names any other host (here a real Redis on loopback, as an attacker's or another
//! team's would be) gets no connection from the operator unless `USAGE_SYNC_REDIS_HOSTS`
//! names the host. (`deployment.rs` shows the allowed case syncing usage.)

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
#[path = "../../gateway/tests/common/redis_server.rs"]
#[allow(
    dead_code,
    reason = "shared with the gateway's tests, which use all of it"
)]
mod redis_server;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::json;

async fn create(client: &kube::Client, kind: &str, plural: &str, object: serde_json::Value) {
    let gvk = kube::api::GroupVersionKind::gvk("llmgateway.io", "v1alpha1", kind);
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    );
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).unwrap(),
    )
    .await
    .unwrap();
}

async fn connections_received(redis: &redis_server::RedisServer) -> i64 {
    let Some(redis::Value::BulkString(info)) = redis.query(&["INFO", "stats"]).await else {
        panic!("Redis answers INFO");
    };
    let text = String::from_utf8(info).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outside_the_namespace_is_never_dialled() {
    let (_server, client, kubeconfig) = cluster().await;
    let redis = redis_server::RedisServer::start().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "redis"}, "stringData": {"url": redis.url()}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    create(
        &client,
        "LlmGateway",
        "llmgateways",
        json!({
        "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmGateway", "metadata": {"name": "main"},
        "spec": {"replicas": 1, "redis": {"urlSecretRef": {"name": "redis", "key": "url"}}}}),
    )
    .await;
    create(
        &client,
        "ApiKey",
        "apikeys",
        serde_json::to_value(api_key("caller")).unwrap(),
    )
    .await;
    let before = connections_received(&redis).await;
    let admin = free_port();
    let _operator = operator_with(&kubeconfig, admin, &[("USAGE_SYNC_INTERVAL", "1s")]);
    eventually("three usage sync passes", async || {
        let passes = reconciles_by_controller(admin).await;
        (passes.get("usagesync").copied().unwrap_or(0.0) >= 3.0).then_some(())
    })
    .await;
    // Only this test's own INFO queries connected.
    assert_eq!(connections_received(&redis).await, before + 1);
}
