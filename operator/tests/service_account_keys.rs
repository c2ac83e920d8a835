//! ApiKeys naming a ServiceAccount, through the operator binary: no Secret is generated, the
//! status carries the caller id gateways log (`sa:<namespace>:<name>`), and `Ready` says
//! whether the ServiceAccount exists, or that an earlier ApiKey names it already.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use llm_gateway_crds::api_key::ApiKey;
use serde_json::json;

mod common;

use common::*;

fn service_account_key(name: &str, account: &str) -> ApiKey {
    serde_json::from_value(
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": name},
        "spec": {"owner": "team-a", "serviceAccountRef": {"name": account}}}),
    )
    .unwrap()
}

#[tokio::test]
async fn a_service_account_key_has_no_secret_and_its_status_says_whether_the_account_exists() {
    let (_server, client, kubeconfig) = cluster().await;
    let _operator = operator(&kubeconfig, free_port());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let account = serde_json::from_value(json!({"metadata": {"name": "chat"}})).unwrap();
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let keys: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    for (name, account) in [("chat-app", "chat"), ("typo-app", "chta")] {
        keys.create(&PostParams::default(), &service_account_key(name, account))
            .await
            .unwrap();
    }
    let status = |name: &'static str| {
        let keys = keys.clone();
        async move || {
            let status = keys.get(name).await.ok()?.status?;
            let (ready, reason) = ready(&status.conditions)?;
            Some((ready, reason, status.key_id, status.key_hash))
        }
    };
    assert_eq!(
        eventually("the ServiceAccount key's status", status("chat-app")).await,
        (
            "True".to_owned(),
            "ServiceAccountReady".to_owned(),
            Some("sa:default:chat".to_owned()),
            None
        )
    );
    assert_eq!(
        eventually("the missing ServiceAccount's status", status("typo-app")).await,
        (
            "False".to_owned(),
            "ServiceAccountMissing".to_owned(),
            Some("sa:default:chta".to_owned()),
            None
        )
    );
    // A copy of the first names the same ServiceAccount: the later one says why it is refused.
    keys.create(
        &PostParams::default(),
        &service_account_key("copy-app", "chat"),
    )
    .await
    .unwrap();
    let (ready, reason, _, _) = eventually("the copy's status", status("copy-app")).await;
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", "ServiceAccountTaken")
    );
    assert_eq!(
        eventually("the first key's status", status("chat-app"))
            .await
            .0,
        "True"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let generated = secrets
        .list(&ListParams::default().labels("llmgateway.io/api-key"))
        .await
        .unwrap();
    assert!(
        generated.items.is_empty(),
        "no key Secret for a ServiceAccount key"
    );
}
