//! Every CEL rule of the CRDs, evaluated client-side (kube's CEL support) on a good and a bad
//! object, so a rule that cannot fire or fires on valid input fails here, not in a cluster.

#![allow(clippy::unwrap_used, reason = "test helpers panic on bad fixtures")]

use kube::core::cel::validate_cel;
use llm_gateway_crds::manifest::Manifests;

fn manifests(yaml: &str) -> Manifests {
    let mut m = Manifests::default();
    m.add_yaml("test.yaml", yaml).unwrap();
    m
}

fn provider_errors(spec: &str) -> Option<String> {
    let m = manifests(&format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: p}}\nspec: {spec}\n"
    ));
    validate_cel(&m.providers[0]).err().map(|e| e.to_string())
}

fn route_errors(spec: &str) -> Option<String> {
    let m = manifests(&format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: r}}\nspec: {spec}\n"
    ));
    validate_cel(&m.route_policies[0])
        .err()
        .map(|e| e.to_string())
}

#[test]
fn provider_rules() {
    assert_eq!(provider_errors("{type: fake, fake: {chunks: 3}}"), None);
    assert_eq!(
        provider_errors("{type: openai, credentials: {env: OPENAI_API_KEY}}"),
        None
    );
    assert_eq!(
        provider_errors(
            "{type: openaiCompatible, baseUrl: 'https://vllm.example.com/v1', protocols: [responses, completions]}"
        ),
        None
    );
    let cases = [
        (
            "{type: anthropic, protocols: [responses], credentials: {env: X}}",
            "spec.protocols is only allowed",
        ),
        (
            "{type: openai, fake: {}, credentials: {env: X}}",
            "spec.fake is only allowed",
        ),
        ("{type: openaiCompatible}", "spec.baseUrl is required"),
        ("{type: openai}", "spec.credentials is required"),
        (
            "{type: openai, credentials: {}}",
            "exactly one of credentials.secretRef or credentials.env",
        ),
        (
            "{type: openai, credentials: {env: A, secretRef: {name: s, key: k}}}",
            "exactly one of credentials.secretRef or credentials.env",
        ),
        (
            "{type: openaiCompatible, baseUrl: 'http://169.254.169.254/latest'}",
            "loopback, link-local or metadata address",
        ),
        (
            "{type: openaiCompatible, baseUrl: 'http://127.0.0.1:8000/v1'}",
            "loopback",
        ),
        (
            "{type: openaiCompatible, baseUrl: 'http://[::1]:8000/v1'}",
            "loopback",
        ),
    ];
    for (spec, expected) in cases {
        let errors = provider_errors(spec).unwrap_or_else(|| panic!("{spec} passed CEL"));
        assert!(errors.contains(expected), "{spec}: {errors}");
    }
    assert_eq!(
        provider_errors(
            "{type: openaiCompatible, baseUrl: 'http://127.0.0.1:8000/v1', allowLocalAddresses: true}"
        ),
        None
    );
}

#[test]
fn route_rules() {
    assert_eq!(
        route_errors("{routes: [{model: m, targets: [{provider: p, weight: 1}]}]}"),
        None
    );
    assert_eq!(
        route_errors(
            "{routes: [{model: m, strategy: priority, targets: [{provider: p, weight: 0}]}]}"
        ),
        None
    );
    let cases = [
        (
            "{routes: [{model: m, targets: [{provider: p, weight: 0}]}]}",
            "at least one target with weight > 0",
        ),
        (
            "{routes: [{model: m, fallbacks: [m], targets: [{provider: p, weight: 1}]}]}",
            "cannot fall back to itself",
        ),
        (
            "{retry: {attempts: 1, backoff: {base: 5s, max: 1s}, on: ['5xx']}, routes: [{model: m, targets: [{provider: p, weight: 1}]}]}",
            "backoff.base must not exceed backoff.max",
        ),
    ];
    for (spec, expected) in cases {
        let errors = route_errors(spec).unwrap_or_else(|| panic!("{spec} passed CEL"));
        assert!(errors.contains(expected), "{spec}: {errors}");
    }
}

#[test]
fn gateway_rules() {
    let gateway = |spec: &str| {
        let m = manifests(&format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmGateway\nmetadata: {{name: g}}\nspec: {spec}\n"
        ));
        validate_cel(&m.gateways[0]).err().map(|e| e.to_string())
    };
    assert_eq!(
        gateway("{autoscaling: {minReplicas: 3, maxReplicas: 10}}"),
        None
    );
    let errors = gateway("{autoscaling: {minReplicas: 5, maxReplicas: 2}}").unwrap();
    assert!(
        errors.contains("minReplicas must not exceed maxReplicas"),
        "{errors}"
    );
    let errors = gateway("{auth: {jwt: {issuer: i, audiences: [a]}}}").unwrap();
    assert!(
        errors.contains("exactly one of jwt.jwksUri or jwt.hs256SecretRef"),
        "{errors}"
    );
    assert_eq!(gateway("{auth: {serviceAccounts: {}}}"), None);
    assert_eq!(
        gateway(
            "{auth: {serviceAccounts: {issuer: 'https://oidc.example.com', jwksUri: 'https://oidc.example.com/keys'}}}"
        ),
        None
    );
    for (spec, expected) in [
        (
            "{auth: {serviceAccounts: {jwksUri: 'https://oidc.example.com/keys'}}}",
            "jwksUri needs spec.auth.serviceAccounts.issuer",
        ),
        (
            "{auth: {serviceAccounts: {issuer: i, jwksUri: 'https://10.0.0.1/keys'}}}",
            "serviceAccounts.jwksUri points at a loopback",
        ),
        (
            "{auth: {serviceAccounts: {issuer: i, jwksUri: 'https://u:p@oidc.example.com/keys'}}}",
            "serviceAccounts.jwksUri must be https://host",
        ),
    ] {
        let errors = gateway(spec).unwrap_or_else(|| panic!("{spec} passed CEL"));
        assert!(errors.contains(expected), "{spec}: {errors}");
    }
    assert_eq!(
        gateway("{cors: {allowedOrigins: ['https://app.example.com'], allowCredentials: true}}"),
        None
    );
    let errors = gateway("{cors: {allowedOrigins: ['*'], allowCredentials: true}}").unwrap();
    assert!(
        errors.contains("allowCredentials cannot be used with the origin '*'"),
        "{errors}"
    );
    // Both transports speak TLS to an https:// collector.
    assert_eq!(
        gateway("{telemetry: {otlpEndpoint: 'https://collector.example.com:4317'}}"),
        None
    );
    assert_eq!(
        gateway(
            "{telemetry: {otlpEndpoint: 'https://collector.example.com:4318', protocol: httpProtobuf}}"
        ),
        None
    );
    assert_eq!(
        gateway("{telemetry: {otlpEndpoint: 'http://collector:4317'}}"),
        None
    );
}

#[test]
fn api_key_rules() {
    let key = |spec: &str| {
        let m = manifests(&format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: k}}\nspec: {spec}\n"
        ));
        validate_cel(&m.api_keys[0]).err().map(|e| e.to_string())
    };
    assert_eq!(key("{owner: o, secretName: s}"), None);
    assert_eq!(key("{owner: o, serviceAccountRef: {name: chat}}"), None);
    for spec in [
        "{owner: o}",
        "{owner: o, secretName: s, serviceAccountRef: {name: chat}}",
    ] {
        let errors = key(spec).unwrap_or_else(|| panic!("{spec} passed CEL"));
        assert!(
            errors.contains("exactly one of secretName or serviceAccountRef"),
            "{spec}: {errors}"
        );
    }
}
