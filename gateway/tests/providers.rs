//! Translated providers through the running binary: error mapping and token accounting.
//! (Happy paths with the official SDKs are in `tests/conformance/`.)

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use common::{Gateway, metric, new_key};
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

fn config(mock_root: &str, key: &str) -> String {
    format!(
        r#"apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: claude}}
spec: {{type: anthropic, baseUrl: "{mock_root}", allowLocalAddresses: true, credentials: {{secretRef: {{name: creds, key: key}}}}}}
---
apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: gem}}
spec: {{type: gemini, baseUrl: "{mock_root}", allowLocalAddresses: true, credentials: {{secretRef: {{name: creds, key: key}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{key: provider-secret}}
---
apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {{name: routes}}
spec:
  routes:
  - {{model: claude, targets: [{{provider: claude, model: claude-sonnet-4-5}}]}}
  - {{model: gem, targets: [{{provider: gem, model: gemini-2.5-flash}}]}}
---
apiVersion: llmgateway.io/v1alpha1
kind: ApiKey
metadata: {{name: caller}}
spec: {{secretName: caller-key, owner: team}}
---
apiVersion: v1
kind: Secret
metadata: {{name: caller-key}}
stringData: {{apiKey: {key}}}
"#
    )
}

async fn setup() -> (MockUpstream, Gateway) {
    let upstream = MockUpstream::start().await;
    let root = upstream.base_url.trim_end_matches("/v1").to_owned();
    let key = new_key();
    let gateway = Gateway::start(&config(&root, &key), key, &[]).await;
    (upstream, gateway)
}

fn hello(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn anthropic_overload_becomes_a_retryable_503_in_both_protocols() {
    let (upstream, gateway) = setup().await;
    upstream.set_fault(Fault {
        status: Some(529),
        retry_after: Some("4".into()),
        ..Fault::default()
    });
    let response = gateway.chat(hello("claude", false)).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "4");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "upstream_error");

    let response = reqwest::Client::new()
        .post(format!("{}/v1/messages", gateway.url))
        .header("x-api-key", &gateway.key)
        .json(&json!({"model": "gem", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn translated_streams_are_accounted_in_token_metrics() {
    let (_upstream, gateway) = setup().await;
    for model in ["claude", "gem"] {
        let text = gateway.chat(hello(model, true)).await.text().await.unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{model}: {text}");
    }
    // Mock usage: Anthropic 21 input + 4 cache reads, 9 output; Gemini 17 prompt, 8 output.
    let tokens = |direction: &str, model: &str, provider: &str| {
        format!(
            r#"llm_tokens_total{{direction="{direction}",model="{model}",provider="{provider}"}}"#
        )
    };
    assert_eq!(
        metric(&gateway.admin_url, &tokens("input", "claude", "claude")).await,
        Some(25.0)
    );
    assert_eq!(
        metric(&gateway.admin_url, &tokens("output", "claude", "claude")).await,
        Some(9.0)
    );
    assert_eq!(
        metric(&gateway.admin_url, &tokens("input", "gem", "gem")).await,
        Some(17.0)
    );
    assert_eq!(
        metric(&gateway.admin_url, &tokens("output", "gem", "gem")).await,
        Some(8.0)
    );
}

#[tokio::test]
async fn provider_credentials_go_in_provider_headers_only() {
    let (upstream, gateway) = setup().await;
    assert_eq!(gateway.chat(hello("claude", false)).await.status(), 200);
    assert_eq!(gateway.chat(hello("gem", false)).await.status(), 200);
    let requests = upstream.requests();
    let (claude, gem) = (&requests[0], &requests[1]);
    assert_eq!(claude.headers["x-api-key"], "provider-secret");
    assert!(!claude.headers.contains_key("authorization"));
    assert_eq!(gem.headers["x-goog-api-key"], "provider-secret");
    assert!(!gem.path.contains("key="));
    for request in [claude, gem] {
        assert!(!String::from_utf8_lossy(&request.raw).contains(&gateway.key));
    }
}

#[tokio::test]
async fn azure_openai_uses_deployment_urls_api_version_and_api_key() {
    let upstream = MockUpstream::start().await;
    let root = upstream.base_url.trim_end_matches("/v1").to_owned();
    let key = new_key();
    let azure = format!(
        "---\napiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: azure}}\nspec: {{type: azureOpenAI, baseUrl: \"{root}\", apiVersion: 2025-01-01-preview, allowLocalAddresses: true, credentials: {{secretRef: {{name: creds, key: key}}}}}}\n---\napiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: azure-routes}}\nspec:\n  routes:\n  - {{model: az, targets: [{{provider: azure, model: my-deployment}}]}}\n  - {{model: az-embed, targets: [{{provider: azure, model: my-embeddings}}]}}\n"
    );
    let gateway = Gateway::start(&(config(&root, &key) + &azure), key, &[]).await;
    assert_eq!(gateway.chat(hello("az", true)).await.status(), 200);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/embeddings", gateway.url))
        .bearer_auth(&gateway.key)
        .json(&json!({"model": "az-embed", "input": ["one", "two"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let requests = upstream.requests();
    assert_eq!(
        requests[0].path,
        "/openai/deployments/my-deployment/chat/completions?api-version=2025-01-01-preview"
    );
    assert_eq!(
        requests[1].path,
        "/openai/deployments/my-embeddings/embeddings?api-version=2025-01-01-preview"
    );
    for request in &requests {
        assert_eq!(request.headers["api-key"], "provider-secret");
        assert!(!request.headers.contains_key("authorization"));
    }
}
