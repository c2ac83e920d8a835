//! Unit tests of `pod_policy`: which images an allowlist lets through (prefix boundaries,
//! Docker Hub short names, malformed references) and what a model server may read.

use super::*;
use serde_json::json;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn policy(list: &str) -> ImagePolicy {
    ImagePolicy::parse(list).expect("a valid list")
}

#[test]
fn an_empty_list_allows_only_the_operator_s_own_gateway_repository() {
    let none = policy("");
    assert!(none.entries().is_empty());
    assert!(none.permits(DEFAULT_IMAGE));
    assert!(none.permits("ghcr.io/llm-gateway/llm-gateway:0.0.9"));
    assert!(none.permits(&format!("ghcr.io/llm-gateway/llm-gateway@{DIGEST}")));
    for refused in [
        "ghcr.io/llm-gateway/llm-gateway-evil:1",
        "ghcr.io/llm-gateway/llm-gateway/sub:1",
        "vllm/vllm-openai:v0.8.5",
        "busybox",
    ] {
        assert!(!none.permits(refused), "{refused}");
    }
}

#[test]
fn a_prefix_allows_what_is_under_it_and_nothing_beside_it() {
    let acme = policy(" ghcr.io/acme/ , ,registry.local:5000/models/");
    let pinned = format!("ghcr.io/acme/vllm@{DIGEST}");
    let tagged_and_pinned = format!("ghcr.io/acme/vllm:v1@{DIGEST}");
    assert_eq!(
        acme.entries(),
        ["ghcr.io/acme/", "registry.local:5000/models/"]
    );
    for allowed in [
        "ghcr.io/acme/vllm:v1",
        "ghcr.io/acme/team/server",
        "GHCR.IO/acme/vllm:v1",
        pinned.as_str(),
        tagged_and_pinned.as_str(),
        "registry.local:5000/models/llama:3",
    ] {
        assert!(acme.permits(allowed), "{allowed}");
    }
    for refused in [
        "ghcr.io/acme",
        "ghcr.io/acme-evil/vllm:v1",
        "ghcr.io/acmevllm:v1",
        "evil.io/ghcr.io/acme/vllm",
        "ghcr.io/acme/../evil/x",
        "ghcr.io/acme//x",
        "ghcr.io/acme/x:",
        "ghcr.io/acme/x:-bad",
        "ghcr.io/acme/x@sha256:short",
        " ghcr.io/acme/x",
        "ghcr.io/acme/x y",
        "ghcr.io/acme/Upper",
        "registry.local:5001/models/llama",
        "",
    ] {
        assert!(!acme.permits(refused), "{refused:?}");
    }
}

#[test]
fn docker_hub_names_match_in_short_and_long_form_and_exact_entries_match_one_repository() {
    let hub = policy("vllm/,docker.io/ollama/ollama,nginx");
    assert_eq!(
        hub.entries(),
        [
            "docker.io/vllm/",
            "docker.io/ollama/ollama",
            "docker.io/library/nginx"
        ]
    );
    for allowed in [
        "vllm/vllm-openai:v0.8.5",
        "docker.io/vllm/vllm-openai:v0.8.5",
        "index.docker.io/vllm/vllm-openai",
        "ollama/ollama:0.6.0",
        "nginx:1.27",
        "library/nginx",
        "docker.io/library/nginx",
    ] {
        assert!(hub.permits(allowed), "{allowed}");
    }
    for refused in [
        "ollama/ollama-extra",
        "ollama/ollama/sub",
        "nginx-evil",
        "redis",
    ] {
        assert!(!hub.permits(refused), "{refused}");
    }
    let registry = policy("ghcr.io/");
    assert!(registry.permits("ghcr.io/anyone/anything:1"));
    assert!(!registry.permits("ghcr.io.evil.com/x"));
}

#[test]
fn malformed_entries_are_refused_at_startup() {
    let pinned = format!("ghcr.io/acme/app@{DIGEST}");
    for bad in [
        "ghcr.io/acme/app:v1",
        pinned.as_str(),
        "ghcr.io/Acme/",
        "a b/",
        "/",
        "ghcr.io//",
    ] {
        assert!(ImagePolicy::parse(bad).is_err(), "{bad:?}");
    }
}

fn hosted(spec: serde_json::Value) -> SelfHosted {
    serde_json::from_value(spec).expect("a valid selfHosted")
}

#[test]
fn a_model_server_reads_only_secrets_that_consented_through_secret_env() {
    let images = policy("vllm/");
    let plain = hosted(json!({"image": "vllm/vllm-openai:v0.8.5",
        "env": [{"name": "A", "value": "1"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}));
    assert_eq!(check_self_hosted(&plain, &images, &BTreeMap::new()), Ok(()));
    let elsewhere = hosted(json!({"image": "attacker/miner:1"}));
    let refusal = check_self_hosted(&elsewhere, &images, &BTreeMap::new()).expect_err("refused");
    assert_eq!(refusal.reason, "ImageNotAllowed");
    assert!(
        refusal.message.contains("attacker/miner:1"),
        "{}",
        refusal.message
    );
    let stealing = hosted(json!({"image": "vllm/vllm-openai:v0.8.5",
        "env": [{"name": "A", "value": "1"}, {"name": "KEYS", "valueFrom": {"secretKeyRef": {"name": "main-gateway-credentials", "key": "credentials.yaml"}}}]}));
    let refusal = check_self_hosted(&stealing, &images, &BTreeMap::new()).expect_err("refused");
    assert_eq!(refusal.reason, "EnvSecretNotAllowed");
    assert!(
        refusal.message.contains("env[1] (KEYS)"),
        "{}",
        refusal.message
    );
    let token = hosted(json!({"image": "vllm/vllm-openai:v0.8.5",
        "secretEnv": [{"name": "HF_TOKEN", "secretKeyRef": {"name": "hf", "key": "token"}}]}));
    let missing = check_self_hosted(&token, &images, &BTreeMap::new()).expect_err("refused");
    assert_eq!(missing.reason, "SecretNotFound");
    let unlabelled = BTreeMap::from([("hf".to_owned(), false)]);
    let refusal = check_self_hosted(&token, &images, &unlabelled).expect_err("refused");
    assert_eq!(refusal.reason, "SecretNotShared");
    assert!(refusal.message.contains(MODEL_SERVER_SECRET_LABEL.0));
    let labelled = BTreeMap::from([("hf".to_owned(), true)]);
    assert_eq!(check_self_hosted(&token, &images, &labelled), Ok(()));
}

#[test]
fn consent_is_the_label_with_its_exact_value() {
    let secret = |labels: serde_json::Value| -> Secret {
        serde_json::from_value(json!({"metadata": {"name": "hf", "labels": labels}}))
            .expect("a Secret")
    };
    assert!(shared_with_model_servers(&secret(
        json!({"llmgateway.io/model-server-secret": "true"})
    )));
    assert!(!shared_with_model_servers(&secret(
        json!({"llmgateway.io/model-server-secret": "yes"})
    )));
    assert!(!shared_with_model_servers(&secret(json!({}))));
}

#[test]
fn a_gateway_image_is_checked_only_when_set() {
    let gateway = |spec: serde_json::Value| -> LlmGateway {
        serde_json::from_value(
            json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmGateway",
            "metadata": {"name": "main"}, "spec": spec}),
        )
        .expect("a valid LlmGateway")
    };
    let images = policy("");
    assert_eq!(check_gateway(&gateway(json!({})), &images), Ok(()));
    assert_eq!(
        check_gateway(
            &gateway(json!({"image": "ghcr.io/llm-gateway/llm-gateway:0.1.0"})),
            &images
        ),
        Ok(())
    );
    let refusal = check_gateway(&gateway(json!({"image": "evil.example/gw:1"})), &images)
        .expect_err("refused");
    assert_eq!(refusal.reason, "ImageNotAllowed");
    assert!(
        refusal.message.starts_with("spec.image"),
        "{}",
        refusal.message
    );
}
