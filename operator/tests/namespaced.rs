//! Namespaced mode refuses to start when it may not read a namespace it was given (a Role
//! missing there): otherwise that namespace's caches would never fill, and no replica would
//! ever become ready or reconcile any namespace.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::json;
use test_apiserver::faults::FaultRule;

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_without_rbac_is_named_at_startup() {
    let (server, client, kubeconfig) = cluster().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["team-a", "team-b"] {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    let forbidden: FaultRule = serde_json::from_value(json!({
        "verb": "list", "resource": "secrets", "namespace": "team-b",
        "action": {"type": "status", "code": 403, "reason": "Forbidden"}}))
    .unwrap();
    server.add_fault(forbidden);
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-gateway-operator"))
        .env("KUBECONFIG", kubeconfig.path())
        .env("API_KEY_PEPPER", PEPPER)
        .env("WATCH_NAMESPACES", "team-a,team-b")
        .env("ADMIN_ADDRESS", format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let operator = Process(child);
    // Blocking waits off the runtime, which serves the test API server.
    let (status, text) = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        let mut operator = operator;
        (operator.0.wait().unwrap(), text)
    })
    .await
    .unwrap();
    assert!(!status.success());
    assert!(
        text.contains("cannot list Secrets in namespace team-b"),
        "{text}"
    );
}
