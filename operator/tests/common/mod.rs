//! Shared by the operator's end-to-end tests: the test API server with our CRDs, the operator
//! and gateway binaries as processes, and polling helpers.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use llm_gateway_crds::api_key::ApiKey;
use serde_json::json;
use test_apiserver::TestApiServer;

pub mod kubelet;
pub mod restricted;

pub const PEPPER: &str = "test-pepper";

/// The operator setting that lets the tests' model servers (`vllm/vllm-openai`) run: by
/// default the operator runs no image but its own gateway's.
pub const ALLOW_VLLM: (&str, &str) = ("ALLOWED_IMAGE_REPOSITORIES", "vllm/vllm-openai");

pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn cluster() -> (TestApiServer, kube::Client, tempfile::NamedTempFile) {
    let server = TestApiServer::start().await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/yaml");
    server.create_crds_from(&dir).unwrap();
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kubeconfig.path(), server.kubeconfig()).unwrap();
    (server, client, kubeconfig)
}

pub fn operator(kubeconfig: &tempfile::NamedTempFile, admin_port: u16) -> Process {
    operator_with(kubeconfig, admin_port, &[])
}

/// The operator with extra environment variables (which may override the defaults below).
pub fn operator_with(
    kubeconfig: &tempfile::NamedTempFile,
    admin_port: u16,
    env: &[(&str, &str)],
) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_llm-gateway-operator"))
        .env("KUBECONFIG", kubeconfig.path())
        .env("API_KEY_PEPPER", PEPPER)
        .env("ADMIN_ADDRESS", format!("127.0.0.1:{admin_port}"))
        .env("LOG_LEVEL", "warn")
        .env("LEASE_DURATION", "2s")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Process(child)
}

pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn ready(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Creates the LlmGateway `main` in `default` with `spec`; returns the API to read it back.
pub async fn create_gateway(
    client: &kube::Client,
    spec: serde_json::Value,
) -> kube::Api<llm_gateway_crds::llm_gateway::LlmGateway> {
    let gateways = kube::Api::namespaced(client.clone(), "default");
    let gateway = serde_json::from_value(json!({"apiVersion": "llmgateway.io/v1alpha1",
        "kind": "LlmGateway", "metadata": {"name": "main"}, "spec": spec}))
    .unwrap();
    gateways
        .create(&kube::api::PostParams::default(), &gateway)
        .await
        .unwrap();
    gateways
}

pub fn api_key(name: &str) -> ApiKey {
    serde_json::from_value(json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": name}, "spec": {"secretName": format!("{name}-key"), "owner": "team-a"}}))
    .unwrap()
}

pub fn secret_key(secret: &Secret) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()["apiKey"].0.clone()).unwrap()
}

/// The gateway binary (built by `cargo build -p llm-gateway`, which the README's test command
/// runs first).
pub fn gateway_binary() -> std::path::PathBuf {
    let binary =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/llm-gateway");
    assert!(
        binary.exists(),
        "{} not found: build it with `cargo build -p llm-gateway`",
        binary.display()
    );
    binary
}

/// `llm_operator_reconciles_total` summed per controller (empty before the operator listens).
pub async fn reconciles_by_controller(admin: u16) -> std::collections::BTreeMap<String, f64> {
    // Empty until the admin server listens.
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{admin}/metrics")).await else {
        return std::collections::BTreeMap::new();
    };
    let text = response.text().await.unwrap();
    let mut out = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("llm_operator_reconciles_total{"))
    {
        let controller = line
            .split("controller=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(controller.to_owned()).or_default() += value;
    }
    out
}
