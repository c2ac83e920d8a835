//! L5: 500 LlmProviders, 200 RoutePolicies and 2,000 ApiKeys created at once
//! against the test API server all become Ready, and the idle minute afterwards shows only
//! periodic work: no writes except the leader's Lease renewals, and a bounded number of reads.
//! Sizes can be lowered with `SCALE_PROVIDERS`, `SCALE_POLICIES` and `SCALE_KEYS` when
//! investigating; the README's test command runs the full sizes.
//!
//! Slow (about 100 s, most of it the idle minute), so it is ignored in a plain
//! `cargo test` and run by `tests/run-all.sh` in its own step (`cargo test --workspace
//! --locked -- --ignored`); alone: `cargo test -p llm-gateway-operator --test scale --
//! --ignored`. See `docs/testing.md` (L5).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{StreamExt, stream};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

fn size(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("llmgateway.io", "v1alpha1", kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
    Api::namespaced_with(client.clone(), "default", &resource)
}

async fn create_all(api: &Api<DynamicObject>, objects: Vec<Value>) {
    stream::iter(objects)
        .for_each_concurrent(32, |object| async move {
            let object: DynamicObject = serde_json::from_value(object).unwrap();
            api.create(&PostParams::default(), &object).await.unwrap();
        })
        .await;
}

/// How many objects of `api` have `Ready=True` for their current generation.
async fn ready_count(api: &Api<DynamicObject>) -> usize {
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items
        .iter()
        .filter(|o| {
            let generation = o.metadata.generation;
            let status = &o.data["status"];
            status["observedGeneration"].as_i64() == generation
                && status["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: run by tests/run-all.sh"]
async fn thousands_of_resources_become_ready_and_then_the_operator_idles() {
    let (providers_n, policies_n, keys_n) = (
        size("SCALE_PROVIDERS", 500),
        size("SCALE_POLICIES", 200),
        size("SCALE_KEYS", 2000),
    );
    let (server, client, kubeconfig) = cluster().await;
    let admin = free_port();
    let _operator = operator(&kubeconfig, admin);
    let providers = api(&client, "LlmProvider", "llmproviders");
    let policies = api(&client, "RoutePolicy", "routepolicies");
    let keys = api(&client, "ApiKey", "apikeys");
    let started = Instant::now();
    let provider = |i: usize| {
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
        "metadata": {"name": format!("p{i}")},
        "spec": {"type": "openaiCompatible", "baseUrl": format!("https://p{i}.example.com/v1")}})
    };
    let policy = |i: usize| {
        let targets: Vec<Value> = (0..3)
            .map(|t| json!({"provider": format!("p{}", (i * 3 + t) % providers_n), "model": "m"}))
            .collect();
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "RoutePolicy",
            "metadata": {"name": format!("r{i}")},
            "spec": {"routes": [{"model": format!("model-{i}"), "targets": targets}]}})
    };
    let key = |i: usize| {
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": format!("k{i}")},
        "spec": {"secretName": format!("k{i}-key"), "owner": "load"}})
    };
    tokio::join!(
        create_all(&providers, (0..providers_n).map(provider).collect()),
        create_all(&policies, (0..policies_n).map(policy).collect()),
        create_all(&keys, (0..keys_n).map(key).collect()),
    );
    let created = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let counts = (
            ready_count(&providers).await,
            ready_count(&policies).await,
            ready_count(&keys).await,
        );
        if counts == (providers_n, policies_n, keys_n) {
            break;
        }
        if std::env::var("SCALE_VERBOSE").is_ok() {
            eprintln!("{:?} ready: {counts:?}", started.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "not all Ready within 300 s: {counts:?} of {:?}",
            (providers_n, policies_n, keys_n)
        );
        // Listing thousands of objects costs the server too: poll gently.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let all_ready = started.elapsed();
    eprintln!(
        "L5: {} objects created in {created:?}, all Ready after {all_ready:?}",
        providers_n + policies_n + keys_n
    );

    // Steady state: at most three reconciles per object (L5).
    let reconciles = reconciles_by_controller(admin).await;
    eprintln!("L5 reconciles: {reconciles:?}");
    for (controller, objects) in [
        ("apikey", keys_n),
        ("llmprovider", providers_n),
        ("routepolicy", policies_n),
    ] {
        let count = reconciles.get(controller).copied().unwrap_or(0.0);
        assert!(
            count <= 3.0 * objects as f64,
            "{controller}: {count} reconciles for {objects} objects"
        );
    }

    // The idle minute.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server.requests().len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let idle: Vec<_> = server.requests().into_iter().skip(before).collect();
    let writes: Vec<_> = idle
        .iter()
        .filter(|r| r.method != "GET" && !r.path.contains("/leases"))
        .collect();
    let reads = idle
        .iter()
        .filter(|r| r.method == "GET" && !r.path.contains("/leases"))
        .count();
    let mut by_path = std::collections::BTreeMap::<String, usize>::new();
    for request in &idle {
        *by_path
            .entry(format!("{} {}", request.method, request.path))
            .or_default() += 1;
    }
    eprintln!("L5 idle minute by path: {by_path:#?}");
    eprintln!(
        "L5 idle minute: {} requests ({reads} reads and {} writes outside the Lease)",
        idle.len(),
        writes.len()
    );
    assert!(writes.is_empty(), "writes while idle: {writes:#?}");
    assert!(reads < 20, "{reads} reads in an idle minute");
}
