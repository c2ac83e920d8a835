//! Kubernetes mode end to end: the gateway binary watches resources on the in-repo test API
//! server (over HTTP, through a kubeconfig) and serves what they say; edits, deletions,
//! rejections, watch drops, 410s, an API outage and a last-known-good start (F10, F11 and B7
//! in `docs/testing.md`). Checks that something did *not* happen first see, in the test API
//! server's request log or the gateway's health, that what could have caused it did happen.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Gateway, Load, metric, new_key};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use llm_gateway_mock_upstream::MockUpstream;
use serde_json::{Value, json};
use test_apiserver::TestApiServer;

async fn client(server: &TestApiServer) -> kube::Client {
    kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap()
}

fn api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: if kind == "Secret" {
            ""
        } else {
            "llmgateway.io"
        }
        .to_owned(),
        version: if kind == "Secret" { "v1" } else { "v1alpha1" }.to_owned(),
        api_version: if kind == "Secret" {
            "v1"
        } else {
            "llmgateway.io/v1alpha1"
        }
        .to_owned(),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    };
    Api::namespaced_with(client.clone(), "default", &resource)
}

async fn create(client: &kube::Client, kind: &str, plural: &str, object: Value) {
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    api(client, kind, plural)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// A test API server with our CRDs, two fake providers, a weighted route and one key.
async fn cluster(key: &str) -> (TestApiServer, kube::Client) {
    let server = TestApiServer::start().await.unwrap();
    let client = client(&server).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/yaml");
    server.create_crds_from(&dir).unwrap();
    for name in ["a", "b"] {
        create(
            &client,
            "LlmProvider",
            "llmproviders",
            json!({
            "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
            "metadata": {"name": name}, "spec": {"type": "fake"}}),
        )
        .await;
    }
    create(&client, "RoutePolicy", "routepolicies", json!({
        "apiVersion": "llmgateway.io/v1alpha1", "kind": "RoutePolicy", "metadata": {"name": "routes"},
        "spec": {"routes": [{"model": "m", "targets": [{"provider": "a", "weight": 1}, {"provider": "b", "weight": 0}]}]}})).await;
    create(
        &client,
        "Secret",
        "secrets",
        json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "caller-key"},
        "stringData": {"apiKey": key}}),
    )
    .await;
    create(
        &client,
        "ApiKey",
        "apikeys",
        json!({
        "apiVersion": "llmgateway.io/v1alpha1", "kind": "ApiKey", "metadata": {"name": "caller"},
        "spec": {"secretName": "caller-key", "owner": "team-a"}}),
    )
    .await;
    (server, client)
}

async fn start_gateway(server: &TestApiServer, key: &str, extra: &[(&str, &str)]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap().to_owned();
    let mut env = vec![
        ("KUBECONFIG", kubeconfig.as_str()),
        ("WATCH_NAMESPACE", "default"),
    ];
    env.extend_from_slice(extra);
    Gateway::spawn(dir, &[], key.to_owned(), &env)
}

fn body() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

async fn provider_of(gateway: &Gateway) -> String {
    let response = gateway.chat(body()).await;
    assert_eq!(response.status(), 200);
    response.headers()["x-llm-gateway-provider"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn generation(gateway: &Gateway) -> f64 {
    metric(&gateway.admin_url, "llm_config_generation")
        .await
        .unwrap()
}

/// Polls `check` every 20 ms until it holds; returns how long that took.
async fn within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// The collections the gateway's reflectors list and watch (paths end with these).
const WATCHED: [&str; 5] = [
    "/llmproviders",
    "/routepolicies",
    "/apikeys",
    "/llmgateways",
    "/secrets",
];

#[derive(Clone, Copy, PartialEq)]
enum Request {
    List,
    Watch,
}

/// The answered lists or watches of `collection` among the requests after the first `mark`.
fn since(
    server: &TestApiServer,
    mark: usize,
    collection: &str,
    kind: Request,
) -> Vec<test_apiserver::RequestRecord> {
    server
        .requests()
        .into_iter()
        .skip(mark)
        .filter(|r| r.method == "GET" && r.status == 200 && r.path.ends_with(collection))
        .filter(|r| {
            let watch = r.query.split('&').any(|p| p == "watch=true");
            (kind == Request::Watch) == watch
        })
        .collect()
}

/// When the configuration source was last looked at (`last_reload.at`, whole seconds).
async fn last_attempt(gateway: &Gateway) -> u64 {
    gateway.detailed().await["config"]["last_reload"]["at"]
        .as_u64()
        .unwrap_or(0)
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn weights(a: u32, b: u32) -> Patch<Value> {
    Patch::Merge(json!({"spec": {"routes": [
        {"model": "m", "targets": [{"provider": "a", "weight": a}, {"provider": "b", "weight": b}]}]}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_drive_the_gateway_and_bad_ones_are_rejected() {
    let key = new_key();
    let (server, client) = cluster(&key).await;
    let gateway = start_gateway(&server, &key, &[]).await;
    gateway.wait_ready().await;
    assert_eq!(provider_of(&gateway).await, "a");

    let routes = api(&client, "RoutePolicy", "routepolicies");
    routes
        .patch("routes", &PatchParams::default(), &weights(0, 1))
        .await
        .unwrap();
    let took = within(Duration::from_secs(1), "the weight flip", async || {
        provider_of(&gateway).await == "b"
    })
    .await;
    eprintln!("weights applied after {took:?}");

    let before = generation(&gateway).await;
    let broken = Patch::Merge(
        json!({"spec": {"routes": [{"model": "m", "targets": [{"provider": "missing"}]}]}}),
    );
    routes
        .patch("routes", &PatchParams::default(), &broken)
        .await
        .unwrap();
    within(Duration::from_secs(2), "the rejection", async || {
        let detailed: Value = gateway.detailed().await;
        detailed["config"]["last_reload"]["result"] == "error"
    })
    .await;
    assert_eq!(
        generation(&gateway).await,
        before,
        "the previous configuration keeps serving"
    );
    let event = within(
        Duration::from_secs(2),
        "the ConfigRejected event",
        async || {
            events(&client).await.iter().any(|e| {
                e.reason.as_deref() == Some("ConfigRejected")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("routes")
            })
        },
    )
    .await;
    eprintln!("rejection event after {event:?}");
    assert_eq!(provider_of(&gateway).await, "b");

    // While any object is invalid the whole configuration is held back, revocations
    // included, so fix the route first.
    routes
        .patch("routes", &PatchParams::default(), &weights(1, 0))
        .await
        .unwrap();
    within(Duration::from_secs(1), "the fix", async || {
        provider_of(&gateway).await == "a"
    })
    .await;
    api(&client, "ApiKey", "apikeys")
        .delete("caller", &DeleteParams::default())
        .await
        .unwrap();
    let took = within(Duration::from_secs(2), "revocation", async || {
        gateway.chat(body()).await.status() == 401
    })
    .await;
    eprintln!("key revoked after {took:?}");
}

// Apart from the drops and 410s so that this binary's other tests run meanwhile: the outage
// and the watchers' backoff after it are most of the binary's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_no_request_and_the_gateway_converges_after_it() {
    let key = new_key();
    let (server, client) = cluster(&key).await;
    let gateway = Arc::new(start_gateway(&server, &key, &[]).await);
    gateway.wait_ready().await;
    let load = Load::start(&gateway, 4, 100_000, body());
    let routes = api(&client, "RoutePolicy", "routepolicies");
    assert_eq!(provider_of(&gateway).await, "a", "served before the outage");

    // The outage itself is the scenario (long enough for the watchers' backoff to grow), not
    // a wait for something: the load keeps running through it and must see no failure.
    server.go_down();
    tokio::time::sleep(Duration::from_secs(10)).await;
    server.come_back().await.unwrap();
    routes
        .patch("routes", &PatchParams::default(), &weights(0, 1))
        .await
        .unwrap();
    // Bounded by the watchers' backoff, not by a guess: kube-runtime's default backoff doubles
    // from 0.8 s with jitter, so after a 10 s outage the next attempt may be over 10 s away
    // (its cap is 30 s), and a loaded machine adds to that.
    let took = within(
        Duration::from_secs(40),
        "convergence after the outage",
        async || provider_of(&gateway).await == "b",
    )
    .await;
    eprintln!("converged {took:?} after the API server came back");

    let report = load.finish().await;
    eprintln!(
        "load: {} ok, {} failed, generations {:?}",
        report.ok, report.failed, report.generations
    );
    assert_eq!(report.failed, 0);
    let last = generation(&gateway).await as u64;
    assert!(report.generations.iter().all(|g| (1..=last).contains(g)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_and_410s_cause_no_churn_and_no_failed_request() {
    let key = new_key();
    let (server, client) = cluster(&key).await;
    let gateway = Arc::new(start_gateway(&server, &key, &[]).await);
    gateway.wait_ready().await;
    let load = Load::start(&gateway, 4, 100_000, body());
    let routes = api(&client, "RoutePolicy", "routepolicies");
    let stable = generation(&gateway).await;

    // A dropped watch: every reflector watches again from where it was (the request log shows
    // the new watches), without a relist, and nothing is reloaded.
    let mark = server.requests().len();
    server.drop_watches();
    within(Duration::from_secs(5), "every watch resumed", async || {
        WATCHED
            .iter()
            .all(|c| !since(&server, mark, c, Request::Watch).is_empty())
    })
    .await;
    for collection in WATCHED {
        assert!(
            since(&server, mark, collection, Request::List).is_empty(),
            "{collection} was listed again after a drop"
        );
    }
    assert_eq!(generation(&gateway).await, stable, "a drop reloads nothing");

    // A 410: every reflector relists (seen in the request log), the relist wakes the reload
    // task (seen as a newer `last_reload.at` in /health/detailed: that attempt found the
    // fingerprint unchanged), and still nothing is reloaded. `at` counts whole seconds, so the
    // 410 is sent in a later second than the last attempt before it.
    let attempted_before = last_attempt(&gateway).await;
    within(Duration::from_secs(2), "the next second", async || {
        unix_seconds() > attempted_before
    })
    .await;
    let mark = server.requests().len();
    server.expire_watches();
    within(
        Duration::from_secs(10),
        "every relist after the 410",
        async || {
            WATCHED
                .iter()
                .all(|c| !since(&server, mark, c, Request::List).is_empty())
        },
    )
    .await;
    within(
        Duration::from_secs(5),
        "a reload attempt after the relist",
        async || last_attempt(&gateway).await > attempted_before,
    )
    .await;
    assert_eq!(generation(&gateway).await, stable, "a 410 reloads nothing");

    // 100 edits under load, paced 10 ms apart (pacing, not synchronisation: the load checks
    // the outcome).
    for i in 0..100u32 {
        routes
            .patch("routes", &PatchParams::default(), &weights(i % 2, 1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = load.finish().await;
    eprintln!(
        "load: {} ok, {} failed, generations {:?}",
        report.ok, report.failed, report.generations
    );
    assert_eq!(report.failed, 0);
    let last = generation(&gateway).await as u64;
    assert!(report.generations.iter().all(|g| (1..=last).contains(g)));
}

#[tokio::test]
async fn an_unreachable_api_at_start_serves_the_last_known_good_directory() {
    let key = new_key();
    let (server, _client) = cluster(&key).await;
    let upstream = MockUpstream::start().await;
    let lkg = tempfile::tempdir().unwrap();
    std::fs::write(
        lkg.path().join("config.yaml"),
        common::manifests(&upstream.base_url, &key),
    )
    .unwrap();
    let lkg_dir = lkg.path().to_str().unwrap().to_owned();
    server.go_down();
    let gateway = start_gateway(
        &server,
        &key,
        &[
            ("LAST_KNOWN_GOOD_DIR", &lkg_dir),
            ("INITIAL_SYNC_TIMEOUT", "1s"),
        ],
    )
    .await;
    gateway.wait_ready().await;
    assert!(
        gateway.detailed().await["config"]["source"]
            .as_str()
            .unwrap()
            .starts_with("last-known-good:")
    );
    let served = gateway
        .chat(json!({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(served.status(), 200);
    server.come_back().await.unwrap();
    within(Duration::from_secs(10), "the first sync", async || {
        gateway.detailed().await["config"]["source"] == "kubernetes:default"
    })
    .await;
    assert_eq!(provider_of(&gateway).await, "a");
}

async fn events(client: &kube::Client) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    api.list(&Default::default()).await.unwrap().items
}

#[tokio::test]
async fn breaker_transitions_become_events_on_the_provider() {
    let key = new_key();
    let (server, client) = cluster(&key).await;
    create(&client, "LlmProvider", "llmproviders", json!({
        "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider", "metadata": {"name": "broken"},
        "spec": {"type": "fake", "fake": {"failureRate": 1.0},
                 "circuitBreaker": {"failureThreshold": 2, "window": "10s", "openFor": "30s"}}})).await;
    create(&client, "RoutePolicy", "routepolicies", json!({
        "apiVersion": "llmgateway.io/v1alpha1", "kind": "RoutePolicy", "metadata": {"name": "broken"},
        "spec": {"retry": {"attempts": 0}, "routes": [{"model": "broken", "targets": [{"provider": "broken"}]}]}})).await;
    let gateway = start_gateway(&server, &key, &[]).await;
    gateway.wait_ready().await;
    for _ in 0..3 {
        let body = json!({"model": "broken", "messages": [{"role": "user", "content": "hi"}]});
        assert_ne!(gateway.chat(body).await.status(), 200);
    }
    within(Duration::from_secs(2), "the breaker event", async || {
        events(&client).await.iter().any(|e| {
            e.reason.as_deref() == Some("CircuitBreakerOpened")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("broken")
                && e.type_.as_deref() == Some("Warning")
        })
    })
    .await;
}
