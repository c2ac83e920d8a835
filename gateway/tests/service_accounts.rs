//! Kubernetes ServiceAccounts as callers, through the running binary in Kubernetes mode: the
//! test API server is the cluster's service-account issuer (OIDC discovery, JWKS,
//! `TokenRequest`), an ApiKey names a ServiceAccount, and a workload's projected token is
//! served with that ApiKey's limits. Every other token (wrong audience, also valid at the API
//! server, minted for too long, expired, another ServiceAccount, another issuer's key, an
//! ApiKey since deleted) gets the same 401 body;
//! a rotation of the issuer's keys is picked up; with the API server down, loaded keys keep
//! verifying; a gateway that could not reach the issuer at start retries within seconds; an
//! LlmQuota selecting the ApiKey holds its ServiceAccount to the quota's limits.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, new_key};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use test_apiserver::TestApiServer;
use test_apiserver::issuer::TokenClaims;

const AUDIENCE: &str = "llm-gateway";

fn llm(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "llmgateway.io".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: "llmgateway.io/v1alpha1".to_owned(),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    };
    Api::namespaced_with(client.clone(), "default", &resource)
}

async fn create(client: &kube::Client, kind: &str, plural: &str, name: &str, spec: Value) {
    let object = json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": kind,
        "metadata": {"name": name}, "spec": spec});
    llm(client, kind, plural)
        .create(
            &PostParams::default(),
            &serde_json::from_value(object).unwrap(),
        )
        .await
        .unwrap();
}

/// A cluster with ServiceAccounts `apps/chat` and `apps/other`, one fake route, a gateway
/// accepting ServiceAccount tokens, and an ApiKey for `apps/chat` with `limits`.
async fn cluster(limits: Value) -> (TestApiServer, kube::Client) {
    let server = TestApiServer::start().await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/yaml");
    server.create_crds_from(&dir).unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace = json!({"metadata": {"name": "apps"}});
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(namespace).unwrap(),
        )
        .await
        .unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "apps");
    for name in ["chat", "other"] {
        let account = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        accounts
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
    }
    create(
        &client,
        "LlmProvider",
        "llmproviders",
        "fake",
        json!({"type": "fake"}),
    )
    .await;
    create(
        &client,
        "RoutePolicy",
        "routepolicies",
        "routes",
        json!({"routes": [{"model": "m", "targets": [{"provider": "fake"}]}]}),
    )
    .await;
    create(
        &client,
        "LlmGateway",
        "llmgateways",
        "gw",
        json!({"auth": {"apiKeys": true, "serviceAccounts": {"audiences": [AUDIENCE]}}}),
    )
    .await;
    create(
        &client,
        "ApiKey",
        "apikeys",
        "chat-app",
        json!({
        "owner": "chat-team", "serviceAccountRef": {"namespace": "apps", "name": "chat"},
        "limits": limits}),
    )
    .await;
    (server, client)
}

async fn start_gateway(server: &TestApiServer) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap().to_owned();
    let env = [
        ("KUBECONFIG", kubeconfig.as_str()),
        ("WATCH_NAMESPACE", "default"),
        ("GATEWAY_NAME", "gw"),
        ("LOG_FORMAT", "json"),
    ];
    let gateway = Gateway::spawn(dir, &[], new_key(), &env);
    gateway.wait_ready().await;
    gateway
}

/// A token from `TokenRequest`, as the kubelet asks for a projected volume.
async fn token_request(client: &kube::Client, name: &str, audience: &str) -> String {
    minted(client, name, &[audience], 600).await
}

/// A token for `audiences` valid for `seconds`, from `TokenRequest`.
async fn minted(client: &kube::Client, name: &str, audiences: &[&str], seconds: u64) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "apps");
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": audiences, "expirationSeconds": seconds}}))
    .unwrap();
    let answer = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap();
    let answer = serde_json::to_value(answer).unwrap();
    answer["status"]["token"].as_str().unwrap().to_owned()
}

async fn call(gateway: &Gateway, token: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(token)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Calls with `token` every 50 ms until the answer is `status` (at most 30 s).
async fn until_status(gateway: &Gateway, token: &str, status: u16) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = call(gateway, token).await;
        if answer.0 == status || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn jwks_fetches(server: &TestApiServer) -> usize {
    let requests = server.requests();
    requests
        .iter()
        .filter(|r| r.path == "/openid/v1/jwks")
        .count()
}

#[tokio::test]
async fn a_token_is_served_with_its_api_keys_limits_and_every_bad_one_refused_alike() {
    let (server, client) = cluster(json!({"requestsPerMinute": 3})).await;
    let gateway = start_gateway(&server).await;
    let token = token_request(&client, "chat", AUDIENCE).await;
    assert_eq!(until_status(&gateway, &token, 200).await.0, 200);
    for _ in 0..2 {
        assert_eq!(call(&gateway, &token).await.0, 200);
    }
    let (status, body) = call(&gateway, &token).await;
    assert_eq!(
        status, 429,
        "the ApiKey's requestsPerMinute applies: {body}"
    );
    let log = gateway
        .log_when(|log| log.contains(r#""key_id":"sa:apps:chat""#))
        .await;
    assert!(log.contains(r#""owner":"chat-team""#), "{log}");

    let reference = call(&gateway, "not-a-token").await;
    assert_eq!(reference.0, 401);
    let issuer = &server.shared().issuer;
    let claims = |name: &str, expires_in| TokenClaims {
        namespace: "apps".to_owned(),
        name: name.to_owned(),
        uid: String::new(),
        audiences: vec![AUDIENCE.to_owned()],
        expires_in,
    };
    let elsewhere = TestApiServer::start().await.unwrap();
    let refused = [
        (
            "wrong audience",
            token_request(&client, "chat", "https://kubernetes.default.svc").await,
        ),
        ("expired", issuer.mint(&claims("chat", -120)).0),
        (
            "another ServiceAccount",
            token_request(&client, "other", AUDIENCE).await,
        ),
        (
            "another issuer's key",
            elsewhere.shared().issuer.mint(&claims("chat", 600)).0,
        ),
        (
            "also valid at the API server",
            minted(
                &client,
                "chat",
                &[AUDIENCE, "https://kubernetes.default.svc"],
                600,
            )
            .await,
        ),
        (
            "minted for two days",
            minted(&client, "chat", &[AUDIENCE], 2 * 86_400).await,
        ),
    ];
    for (what, token) in &refused {
        assert_eq!(call(&gateway, token).await, reference, "{what}");
    }

    let fresh = token_request(&client, "chat", AUDIENCE).await;
    llm(&client, "ApiKey", "apikeys")
        .delete("chat-app", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        until_status(&gateway, &fresh, 401).await,
        reference,
        "the ApiKey is deleted"
    );
}

#[tokio::test]
async fn rotated_issuer_keys_are_picked_up_and_loaded_ones_outlive_an_api_outage() {
    let (server, client) = cluster(json!({})).await;
    let gateway = start_gateway(&server).await;
    let before = token_request(&client, "chat", AUDIENCE).await;
    assert_eq!(until_status(&gateway, &before, 200).await.0, 200);
    let fetches = jwks_fetches(&server);

    // The issuer signs with a new key from now on, still publishing the old one.
    server.shared().issuer.rotate(true);
    let after = token_request(&client, "chat", AUDIENCE).await;
    assert_eq!(until_status(&gateway, &after, 200).await.0, 200);
    assert!(
        jwks_fetches(&server) > fetches,
        "the unknown key id made the gateway fetch the JWKS again"
    );

    // With the API server gone, a token naming a key nobody has seen makes the gateway try
    // to fetch and fail; the keys it holds keep verifying.
    server.go_down();
    server.shared().issuer.rotate(true);
    let unseen = server.shared().issuer.mint(&TokenClaims {
        namespace: "apps".to_owned(),
        name: "chat".to_owned(),
        uid: String::new(),
        audiences: vec![AUDIENCE.to_owned()],
        expires_in: 600,
    });
    assert_eq!(call(&gateway, &unseen.0).await.0, 401);
    gateway
        .log_when(|log| log.contains("ServiceAccount token keys could not be fetched"))
        .await;
    assert_eq!(call(&gateway, &before).await.0, 200);
    assert_eq!(call(&gateway, &after).await.0, 200);
}

#[tokio::test]
async fn a_gateway_started_while_the_issuer_failed_serves_tokens_once_it_answers() {
    let (server, client) = cluster(json!({})).await;
    server.shared().issuer.set_serving(false);
    let gateway = start_gateway(&server).await;
    let token = token_request(&client, "chat", AUDIENCE).await;
    gateway
        .log_when(|log| log.contains("ServiceAccount token keys could not be fetched"))
        .await;
    assert_eq!(call(&gateway, &token).await.0, 401);
    server.shared().issuer.set_serving(true);
    // Retried within seconds, not at the 5-minute refresh.
    assert_eq!(until_status(&gateway, &token, 200).await.0, 200);
}

#[tokio::test]
async fn an_llm_quota_selecting_the_api_key_limits_its_service_account() {
    let (server, client) = cluster(json!({})).await;
    let labels = json!({"metadata": {"labels": {"team": "chat"}}});
    llm(&client, "ApiKey", "apikeys")
        .patch(
            "chat-app",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&labels),
        )
        .await
        .unwrap();
    create(
        &client,
        "LlmQuota",
        "llmquotas",
        "shared",
        json!({
        "callers": {"apiKeySelector": {"matchLabels": {"team": "chat"}}},
        "limits": {"requestsPerMinute": 2}}),
    )
    .await;
    let gateway = start_gateway(&server).await;
    let token = token_request(&client, "chat", AUDIENCE).await;
    assert_eq!(until_status(&gateway, &token, 200).await.0, 200);
    assert_eq!(call(&gateway, &token).await.0, 200);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&token)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        429,
        "the quota's limit, not the key's (it has none)"
    );
    assert_eq!(response.headers()["x-llm-gateway-reason"], "rate_limited");
}
