//! The API-key pepper without `API_KEY_PEPPER`: the operator creates its Secret once (random),
//! keeps it across restarts and replicas, refuses a Secret that is someone else's, and stamps
//! the gateway pods with its fingerprint so a changed pepper rolls them.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

mod common;

use common::*;

const PEPPER_SECRET: &str = "llm-gateway-pepper";
const FINGERPRINT: &str = "llmgateway.io/pepper-fingerprint";

fn operator_keeping_the_pepper(kubeconfig: &tempfile::NamedTempFile, admin: u16) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_llm-gateway-operator"))
        .env("KUBECONFIG", kubeconfig.path())
        .env("API_KEY_PEPPER_SECRET", PEPPER_SECRET)
        .env("POD_NAMESPACE", "default")
        .env("ADMIN_ADDRESS", format!("127.0.0.1:{admin}"))
        .env("LEADER_ELECTION", "false")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Process(child)
}

/// The exit status and stderr of an operator expected to stop on its own.
async fn exit_and_stderr(mut operator: Process) -> (std::process::ExitStatus, String) {
    let mut output = operator.0.stderr.take().unwrap();
    // Blocking waits off the runtime, which serves the test API server.
    tokio::task::spawn_blocking(move || {
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut output, &mut stderr).unwrap();
        (operator.0.wait().unwrap(), stderr)
    })
    .await
    .unwrap()
}

async fn pepper(secrets: &Api<Secret>) -> Option<Vec<u8>> {
    let secret = secrets.get_opt(PEPPER_SECRET).await.unwrap()?;
    Some(secret.data?.get("pepper")?.0.clone())
}

async fn fingerprint(deployments: &Api<Deployment>) -> Option<String> {
    let deployment = serde_json::to_value(deployments.get_opt("main-gateway").await.unwrap()?);
    let annotations = &deployment.unwrap()["spec"]["template"]["metadata"]["annotations"];
    annotations[FINGERPRINT].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_creates_the_pepper_once_and_the_gateway_pods_follow_it() {
    let (_server, client, kubeconfig) = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    create_gateway(&client, json!({"replicas": 1})).await;

    // Two replicas starting together end up with one pepper.
    let first = operator_keeping_the_pepper(&kubeconfig, free_port());
    let second = operator_keeping_the_pepper(&kubeconfig, free_port());
    let created = eventually("the pepper Secret", async || pepper(&secrets).await).await;
    assert_eq!(created.len(), 64, "256 random bits, hex");
    let stamped = eventually("the gateway pods' pepper fingerprint", async || {
        fingerprint(&deployments).await
    })
    .await;
    drop((first, second));

    // A restart reads it back, and its reconcile leaves the pods alone: nothing rotates it.
    let admin = free_port();
    let restarted = operator_keeping_the_pepper(&kubeconfig, admin);
    eventually("the restarted operator ready", async || {
        let ready = reqwest::get(format!("http://127.0.0.1:{admin}/ready")).await;
        ready.is_ok_and(|r| r.status() == 200).then_some(())
    })
    .await;
    eventually("a reconcile by the restarted operator", async || {
        let reconciles = reconciles_by_controller(admin).await;
        (reconciles.get("llmgateway").copied().unwrap_or(0.0) > 0.0).then_some(())
    })
    .await;
    assert_eq!(pepper(&secrets).await.unwrap(), created);
    assert_eq!(fingerprint(&deployments).await.unwrap(), stamped);
    drop(restarted);

    // An administrator replaces the pepper: the pod template changes, so the pods roll.
    let patch = json!({"data": {"pepper": k8s_openapi::ByteString(b"a-new-pepper".to_vec())}});
    secrets
        .patch(
            PEPPER_SECRET,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let _again = operator_keeping_the_pepper(&kubeconfig, free_port());
    let changed = eventually("a new fingerprint", async || {
        fingerprint(&deployments).await.filter(|f| *f != stamped)
    })
    .await;
    assert_ne!(changed, stamped);
    let credentials = secrets.get("main-gateway-credentials").await.unwrap();
    assert_eq!(
        credentials.data.unwrap()["apiKeyPepper"].0,
        b"a-new-pepper".to_vec()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_without_the_entry_is_refused_not_overwritten() {
    let (_server, client, kubeconfig) = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let foreign: Secret = serde_json::from_value(json!({
        "metadata": {"name": PEPPER_SECRET}, "stringData": {"other": "value"}}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let (status, stderr) =
        exit_and_stderr(operator_keeping_the_pepper(&kubeconfig, free_port())).await;
    assert!(!status.success());
    assert!(stderr.contains("has no entry \"pepper\""), "{stderr}");
    let kept = secrets.get(PEPPER_SECRET).await.unwrap();
    assert!(!kept.data.unwrap().contains_key("pepper"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_pepper_is_not_replaced_once_keys_were_issued() {
    let (_server, client, kubeconfig) = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let keys: Api<llm_gateway_crds::api_key::ApiKey> = Api::namespaced(client.clone(), "default");
    let first = operator_keeping_the_pepper(&kubeconfig, free_port());
    keys.create(&PostParams::default(), &api_key("caller"))
        .await
        .unwrap();
    eventually("the key's hash", async || {
        keys.get("caller").await.ok()?.status?.key_hash
    })
    .await;
    drop(first);
    // Argo CD pruning the Secret the chart used to render, a mistaken delete...
    secrets
        .delete(PEPPER_SECRET, &Default::default())
        .await
        .unwrap();
    let (status, stderr) =
        exit_and_stderr(operator_keeping_the_pepper(&kubeconfig, free_port())).await;
    assert!(!status.success());
    assert!(stderr.contains("1 ApiKey(s) have hashes"), "{stderr}");
    assert!(
        secrets.get_opt(PEPPER_SECRET).await.unwrap().is_none(),
        "no new pepper"
    );
}
