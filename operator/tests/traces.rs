//! The operator's traces through its binary: with an OTLP endpoint set, every reconcile is
//! exported as a span (kube-runtime's `reconciling object`, naming the object), here to a
//! real OTLP/gRPC receiver built from `opentelemetry-proto`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

#[path = "../../gateway/tests/common/otlp.rs"]
#[allow(
    dead_code,
    reason = "shared with the gateway's tests, which use all of it"
)]
mod otlp;

use std::time::Duration;

use common::*;
use kube::api::{Api, PostParams};
use llm_gateway_crds::api_key::ApiKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reconcile_is_an_exported_span_naming_its_object() {
    let (receiver, endpoint) = otlp::receiver().await;
    let (_server, client, kubeconfig) = cluster().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let _operator = operator_with(&kubeconfig, free_port(), &env);
    let keys: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    keys.create(&PostParams::default(), &api_key("traced-key"))
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let reconcile = loop {
        let found = receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|span| {
                span.name == "reconciling object"
                    && format!("{:?}", span.attributes).contains("traced-key")
            })
            .cloned();
        if let Some(span) = found {
            break span;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconcile span arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(reconcile.end_time_unix_nano >= reconcile.start_time_unix_nano);
    let attributes = format!("{:?}", reconcile.attributes);
    assert!(attributes.contains("object.reason"), "{attributes}");
    // Metadata only: the generated key never reaches a span.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, "default");
    let secret = eventually("the key's Secret", async || {
        secrets.get_opt("traced-key-key").await.unwrap()
    })
    .await;
    let key = secret_key(&secret);
    assert!(!format!("{:?}", receiver.0.lock().unwrap()).contains(&key));
}
