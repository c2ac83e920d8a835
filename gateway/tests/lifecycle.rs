//! Hot reload under load and graceful shutdown, through the running binary.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::scenario::Scenario;
use common::{Gateway, Load, manifests, metric, new_key};
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

fn fake_request(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

async fn wait_for_generation(gateway: &Gateway, generation: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if gateway.detailed().await["config"]["generation"] == generation {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "generation {generation} was not applied: {}",
        gateway.detailed().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request_and_rejects_bad_edits() {
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let base = Scenario::parse(&manifests(&upstream.base_url, &key))
        .replace(
            "ApiKey",
            "caller",
            "spec.models",
            ["alias", "same-name", "fake-*"],
        )
        .render();
    let gateway = Arc::new(Gateway::start(&base, key, &[]).await);
    let load = Load::start(&gateway, 4, 5000, fake_request("fake-model"));

    // A valid change: a new route appears, generation 2.
    let extra_route = Scenario::parse(
        "apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: extra}\nspec:\n  routes:\n  - model: fake-extra\n    targets: [{provider: fake}]\n",
    );
    gateway.write_config("extra.yaml", &extra_route.render());
    wait_for_generation(&gateway, 2).await;
    assert_eq!(gateway.chat(fake_request("fake-extra")).await.status(), 200);

    // An invalid change is rejected; generation 2 keeps serving.
    let broken = extra_route
        .clone()
        .replace(
            "RoutePolicy",
            "extra",
            "spec.routes.0.targets.0.provider",
            "missing",
        )
        .render();
    gateway.write_config("extra.yaml", &broken);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metric(
        &gateway.admin_url,
        r#"llm_config_reloads_total{result="error"}"#,
    )
    .await
    .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bad edit was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let health = gateway.detailed().await;
    assert_eq!(health["config"]["generation"], 2);
    assert_eq!(health["status"], "degraded");
    let error = health["config"]["last_reload"]["errors"][0]
        .as_str()
        .unwrap();
    assert!(
        error.contains("RoutePolicy default/extra: spec.routes[0].targets[0].provider"),
        "{error}"
    );
    assert_eq!(gateway.chat(fake_request("fake-extra")).await.status(), 200);

    // Fixing it applies generation 3.
    let fixed = extra_route
        .clone()
        .replace(
            "RoutePolicy",
            "extra",
            "spec.routes.0.model",
            "fake-extra-2",
        )
        .render();
    gateway.write_config("extra.yaml", &fixed);
    wait_for_generation(&gateway, 3).await;
    assert_eq!(gateway.chat(fake_request("fake-extra")).await.status(), 404);

    let report = load.finish().await;
    assert_eq!(report.failed, 0, "requests failed during reloads");
    assert!(report.ok > 20, "too little load to mean anything");
    assert!(report.generations.len() >= 2, "load never saw a reload");
}

#[tokio::test]
async fn sigterm_turns_readiness_off_and_lets_streams_finish() {
    let upstream = MockUpstream::start().await;
    upstream.set_fault(Fault {
        chunk_gap: Duration::from_millis(200),
        ..Fault::default()
    });
    let key = new_key();
    let mut gateway = Gateway::start(
        &manifests(&upstream.base_url, &key),
        key,
        &[("SHUTDOWN_DELAY", "500ms")],
    )
    .await;
    let response = gateway.chat(json!({"model": "alias", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(response.status(), 200);
    let stream = tokio::spawn(async move { response.bytes().await });

    // The shell's builtin `kill`: no dependency on procps.
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", gateway.pid())])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let ready = reqwest::get(format!("{}/ready", gateway.url))
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        503,
        "readiness must drop at once on SIGTERM"
    );

    let body = stream.await.unwrap().unwrap();
    assert_eq!(
        body,
        MockUpstream::SSE_EVENTS.concat().as_bytes(),
        "in-flight stream was cut"
    );
    let exit = tokio::task::spawn_blocking(move || gateway.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(exit.map(|s| s.code()), Some(Some(0)));
}
