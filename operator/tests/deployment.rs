//! The samples in `deployments/kubernetes/` applied to the test API server, the operator
//! reconciling them, and the gateway started from nothing but what the operator wrote (its
//! Deployment, settings ConfigMap, credentials Secret and volumes, resolved by a kubelet
//! stand-in): it serves with the operator's generated key, stays inside its Role, its usage
//! shows up in ApiKey status, and a second pod cold-starts from the last-known-good volume
//! while the API server is unreachable.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
#[path = "../../gateway/tests/common/redis_server.rs"]
#[allow(
    dead_code,
    reason = "shared with the gateway's tests, which use all of it"
)]
mod redis_server;

use std::process::{Command, Stdio};

use common::kubelet::{self, PodSpec};
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use llm_gateway_crds::api_key::ApiKey;
use serde_json::{Value, json};

const GATEWAY_USER: &str = "system:serviceaccount:default:main-gateway";

/// Creates every document of every file in `deployments/kubernetes/`.
async fn apply_samples(client: &kube::Client) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deployments/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document).unwrap();
            let kind = value["kind"].as_str().unwrap().to_owned();
            let plural = match kind.as_str() {
                "Secret" => "secrets",
                "LlmGateway" => "llmgateways",
                "LlmProvider" => "llmproviders",
                "RoutePolicy" => "routepolicies",
                "ApiKey" => "apikeys",
                other => panic!("a sample of unexpected kind {other}"),
            };
            let (group, version) = value["apiVersion"]
                .as_str()
                .unwrap()
                .rsplit_once('/')
                .unwrap_or(("", "v1"));
            let gvk = kube::api::GroupVersionKind::gvk(group, version, &kind);
            let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
            let object: DynamicObject = serde_json::from_value(value).unwrap();
            Api::<DynamicObject>::namespaced_with(client.clone(), "default", &resource)
                .create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|e| panic!("{} {kind}: {e}", file.display()));
        }
    }
}

/// Starts the gateway as the pod would run, on `port`, talking to the API server through
/// `kubeconfig` (the service account's credentials).
fn start_pod(
    pod: &PodSpec,
    port: u16,
    kubeconfig: &std::path::Path,
    extra: &[(&str, &str)],
) -> Process {
    let child = Command::new(gateway_binary())
        .env_clear()
        .envs(&pod.env)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("ADMIN_ADDRESS", "127.0.0.1:0")
        .env("KUBECONFIG", kubeconfig)
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Process(child)
}

async fn chat(port: u16, key: &str, model: &str) -> Option<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// Whether the pod on `port` reports the OpenAI provider available (`/health/detailed`).
/// Whether the pod's admin listener (`/health/detailed`) reports the OpenAI provider usable.
async fn openai_available(admin: &str) -> Option<bool> {
    let detailed: Value = reqwest::get(format!("http://{admin}/health/detailed"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let providers = detailed["providers"].as_array()?;
    let openai = providers.iter().find(|p| p["name"] == "default/openai")?;
    openai["available"].as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_samples_run_a_gateway_from_the_operator_s_manifests_alone() {
    let (server, client, kubeconfig) = cluster().await;
    let redis = redis_server::RedisServer::start().await;
    apply_samples(&client).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .patch(
            "redis",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"url": redis.url()}})),
        )
        .await
        .unwrap();
    // The test's Redis is on loopback, not a Service of the namespace: allowed explicitly.
    let operator_env = [
        ("USAGE_SYNC_INTERVAL", "1s"),
        ("USAGE_SYNC_REDIS_HOSTS", "127.0.0.1"),
    ];
    let _operator = operator_with(&kubeconfig, free_port(), &operator_env);

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let deployment = eventually("the operator's children", async || {
        maps.get_opt("main-gateway-last-known-good").await.ok()??;
        secrets.get_opt("main-gateway-credentials").await.ok()??;
        deployments.get_opt("main-gateway").await.ok()?
    })
    .await;
    let key = eventually("the generated key", async || {
        let secret = secrets.get_opt("search-team-llm-key").await.ok()??;
        String::from_utf8(secret.data?.remove("apiKey")?.0).ok()
    })
    .await;
    let pod = kubelet::resolve(&client, "default", &deployment).await;
    assert_eq!(pod.service_account, "main-gateway");
    assert_eq!(pod.env["CREDENTIALS_SECRET"], "main-gateway-credentials");
    assert_eq!(pod.env["REDIS_URL"], redis.url());
    let gateway_kubeconfig = kubelet::kubeconfig_file(
        pod.volumes.path(),
        "kubeconfig",
        &server.kubeconfig_as(GATEWAY_USER),
    );

    let port = free_port();
    let admin = format!("127.0.0.1:{}", free_port());
    let _gateway = start_pod(
        &pod,
        port,
        &gateway_kubeconfig,
        &[("ADMIN_ADDRESS", admin.as_str())],
    );
    // The issued key serves once the gateway has synced (the key's status hash is what it
    // verifies against: it never reads the key's Secret).
    let (status, body) = eventually("a served request", async || {
        chat(port, &key, "fake-gpt")
            .await
            .filter(|(status, _)| *status != 503 && *status != 401)
    })
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from llm-gateway in Kubernetes."
    );
    // OpenAI has no Secret yet: that provider is unavailable and its route falls back.
    let (status, body) = chat(port, &key, "gpt-4o-mini").await.unwrap();
    assert_eq!(status, 200, "{body}");
    chat(port, &key, "fake-gpt").await.unwrap();

    // Usage counted in Redis by the gateway reaches the ApiKey's status.
    let keys: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    let usage = eventually("usage in the ApiKey status", async || {
        let usage = keys.get("search-team").await.ok()?.status?.usage?;
        (usage.requests == Some(3)).then_some(usage)
    })
    .await;
    assert!(usage.input_tokens.unwrap() > 0 && usage.spend_usd.is_some());
    let last_used: jiff::Timestamp = usage.last_used_at.as_deref().unwrap().parse().unwrap();
    let age = jiff::Timestamp::now().duration_since(last_used);
    assert!(
        age.as_secs() < 600 && age.as_secs() > -600,
        "the status says when the key was last used: {last_used}"
    );

    // Every request the gateway made is one its Role allows.
    let role = Api::<Role>::namespaced(client.clone(), "default")
        .get("main-gateway")
        .await
        .unwrap();
    let made: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.user == GATEWAY_USER)
        .collect();
    assert!(
        made.iter().any(|r| r.path.ends_with("/secrets")),
        "the gateway watches its Secret"
    );
    let denied: Vec<_> = made
        .iter()
        .filter(|r| !kubelet::permits(&role, r))
        .collect();
    assert!(denied.is_empty(), "requests outside the Role: {denied:#?}");

    // A provider credential created later reaches the running pod through the credentials
    // Secret (the pod never reads the provider's own Secret).
    let openai: Secret = serde_json::from_value(
        json!({"metadata": {"name": "openai"}, "stringData": {"apiKey": "sk-test-openai"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &openai)
        .await
        .unwrap();
    eventually("the OpenAI provider available in the pod", async || {
        openai_available(&admin).await?.then_some(())
    })
    .await;

    // A second pod starting while the API server is unreachable serves the last-known-good
    // snapshot from its volume.
    let unreachable = kubelet::kubeconfig_file(
        pod.volumes.path(),
        "unreachable",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster: {{server: \"http://127.0.0.1:{}\"}}\ncontexts:\n- name: x\n  context: {{cluster: x, user: x}}\ncurrent-context: x\nusers:\n- name: x\n  user: {{token: x}}\n",
            free_port()
        ),
    );
    let fresh = kubelet::resolve(&client, "default", &deployment).await;
    let cold = free_port();
    let _cold = start_pod(
        &fresh,
        cold,
        &unreachable,
        &[("INITIAL_SYNC_TIMEOUT", "1s")],
    );
    let (status, body) = eventually("a request served from the snapshot", async || {
        chat(cold, &key, "fake-gpt")
            .await
            .filter(|(s, _)| *s != 503)
    })
    .await;
    assert_eq!(status, 200, "{body}");
}
