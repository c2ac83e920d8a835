use super::*;
use crate::compiled::KeyCredential;
use crate::keys;

const PEPPER: &[u8] = b"test-pepper";

fn manifests(yaml: &str) -> Manifests {
    let mut m = Manifests::default();
    m.add_yaml("test.yaml", yaml).unwrap();
    m
}

fn compile_with_env(
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CompiledConfig, Vec<ConfigError>> {
    compile(
        &manifests(yaml),
        &CompileInputs {
            env,
            key_pepper: PEPPER,
            admitted: false,
        },
    )
}

fn compile_yaml(yaml: &str) -> Result<CompiledConfig, Vec<ConfigError>> {
    compile_with_env(yaml, &|_| None)
}

fn errors(yaml: &str) -> Vec<String> {
    compile_yaml(yaml)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

const FAKE: &str = "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: fake}\nspec: {type: fake}\n---\n";

#[test]
fn compiles_a_route_with_defaults() {
    let config = compile_yaml(&format!(
        "{FAKE}apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: r}}\nspec:\n  routes:\n  - model: demo\n    targets: [{{provider: fake}}]\n"
    ))
    .unwrap();
    let route = &config.routes["demo"];
    assert_eq!(route.policy, "default/r");
    assert_eq!(route.targets[0].upstream_model, "demo");
    assert_eq!(
        config.providers[route.targets[0].provider].id,
        "default/fake"
    );
    assert!(config.auth.api_keys && config.auth.jwt.is_none());
}

#[test]
fn names_missing_provider_with_field_path() {
    let errs = errors(
        "apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: r, namespace: team}\nspec:\n  routes:\n  - model: demo\n    targets: [{provider: nope}]\n",
    );
    assert_eq!(
        errs,
        ["RoutePolicy team/r: spec.routes[0].targets[0].provider: LlmProvider team/nope not found"]
    );
}

#[test]
fn rejects_duplicate_models_across_policies_and_fallback_cycles() {
    let route = |name: &str, model: &str, fallback: &str| {
        format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: {name}}}\nspec:\n  routes:\n  - model: {model}\n    fallbacks: [{fallback}]\n    targets: [{{provider: fake}}]\n---\n"
        )
    };
    let errs = errors(&format!(
        "{FAKE}{}{}{}",
        route("a", "m1", "m2"),
        route("b", "m2", "m1"),
        route("c", "m1", "m2")
    ));
    assert!(errs.iter().any(|e| e.contains("RoutePolicy default/c: spec.routes[0].model: model \"m1\" is already routed by RoutePolicy default/a")), "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.contains("fallbacks form a cycle: m1 -> m2 -> m1")),
        "{errs:?}"
    );
}

#[test]
fn blocks_loopback_base_urls_unless_allowed() {
    let provider = |allow: bool| {
        format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: local}}\nspec: {{type: openaiCompatible, baseUrl: 'http://127.0.0.1/v1', allowLocalAddresses: {allow}}}\n"
        )
    };
    let errs = errors(&provider(false));
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.baseUrl: points at a loopback")),
        "{errs:?}"
    );
    // The CRD's CEL rule fires in standalone mode too, as it would in a cluster.
    assert!(
        errs.iter()
            .any(|e| e.starts_with("LlmProvider default/local: spec: spec.baseUrl points at")),
        "{errs:?}"
    );
    assert!(compile_yaml(&provider(true)).is_ok());
}

#[test]
fn env_credentials_missing_make_the_provider_unavailable_not_invalid() {
    let yaml = "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: openai}\nspec: {type: openai, credentials: {env: OPENAI_API_KEY}}\n";
    let config = compile_yaml(yaml).unwrap();
    assert_eq!(
        config.providers[0].unavailable.as_deref(),
        Some("environment variable OPENAI_API_KEY is not set")
    );
    let config = compile_with_env(yaml, &|name| {
        (name == "OPENAI_API_KEY").then(|| "sk-test".to_owned())
    })
    .unwrap();
    assert_eq!(
        config.providers[0].credential.as_ref().unwrap().expose(),
        "sk-test"
    );
    assert_eq!(
        format!("{:?}", config.providers[0].credential),
        "Some(*****)"
    );
}

#[test]
fn api_keys_are_hashed_and_checked() {
    let key = keys::generate().unwrap();
    let yaml = format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: k}}\nspec: {{secretName: s, owner: team, models: ['gpt-*']}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {{apiKey: {key}}}\n"
    );
    let config = compile_yaml(&yaml).unwrap();
    assert_eq!(
        config.keys[0].credential,
        KeyCredential::Hash(keys::hash_bytes(PEPPER, &key))
    );
    assert!(config.keys[0].allows_model("gpt-4o") && !config.keys[0].allows_model("claude"));

    let bad = yaml.replace(&key, "sk-lgw-not-a-real-key");
    assert!(errors(&bad)[0].contains("spec.secretName: Secret default/s holds an invalid key"));
    let missing = yaml.replace("name: s}", "name: other}");
    assert_eq!(
        errors(&missing),
        ["ApiKey default/k: spec.secretName: Secret default/s not found"]
    );
}

#[test]
fn service_account_keys_need_no_secret_and_each_account_has_one_key() {
    let key = |name: &str, spec: &str| {
        format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}, namespace: ai}}\nspec: {spec}\n---\n"
        )
    };
    let yaml = key(
        "chat",
        "{owner: apps, serviceAccountRef: {namespace: apps, name: chat}}",
    ) + &key("local", "{owner: ai, serviceAccountRef: {name: batch}}");
    let config = compile_yaml(&yaml).unwrap();
    let subjects: Vec<_> = config
        .keys
        .iter()
        .map(|k| (k.key_id.as_str(), &k.credential))
        .collect();
    assert_eq!(
        subjects,
        [
            (
                "sa:apps:chat",
                &KeyCredential::ServiceAccount("system:serviceaccount:apps:chat".to_owned())
            ),
            (
                "sa:ai:batch",
                &KeyCredential::ServiceAccount("system:serviceaccount:ai:batch".to_owned())
            ),
        ]
    );
    let twice = yaml.clone()
        + &key(
            "again",
            "{owner: x, serviceAccountRef: {namespace: apps, name: chat}}",
        );
    assert_eq!(
        errors(&twice),
        [
            "ApiKey ai/again: spec.serviceAccountRef: names the same ServiceAccount as ApiKey ai/chat"
        ]
    );
    for spec in [
        "{owner: o}",
        "{owner: o, secretName: s, serviceAccountRef: {name: x}}",
    ] {
        let errs = errors(&key("bad", spec));
        assert!(
            errs.iter()
                .any(|e| e.contains("set exactly one of secretName or serviceAccountRef")),
            "{spec}: {errs:?}"
        );
    }
}

#[test]
fn gateway_jwt_settings_compile_with_their_secret() {
    let gateway = |secret: &str| {
        format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmGateway\nmetadata: {{name: gw}}\nspec:\n  auth: {{apiKeys: false, jwt: {{issuer: i, audiences: [a], hs256SecretRef: {{name: jwt, key: secret}}}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: jwt}}\nstringData: {{secret: {secret}}}\n"
        )
    };
    let config = compile_yaml(&gateway(&"x".repeat(32))).unwrap();
    assert!(!config.auth.api_keys);
    let jwt = config.auth.jwt.unwrap();
    assert_eq!(
        (jwt.issuer.as_str(), jwt.audiences.as_slice()),
        ("i", ["a".to_owned()].as_slice())
    );
    assert!(matches!(jwt.key, crate::compiled::JwtKey::Hs256(_)));
    let errs = errors(&gateway("short"));
    assert_eq!(
        errs,
        [
            "LlmGateway default/gw: spec.auth.jwt.hs256SecretRef: the HS256 secret must be at least 32 bytes"
        ]
    );
}

#[test]
fn a_provider_waiting_for_its_secret_is_unavailable_not_fatal() {
    let config = compile_yaml(&format!(
        "{FAKE}apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: openai}}\n\
         spec: {{type: openai, credentials: {{secretRef: {{name: openai, key: apiKey}}}}}}\n---\n\
         apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: r}}\nspec:\n  routes:\n\
         \x20 - {{model: demo, targets: [{{provider: fake}}]}}\n\
         \x20 - {{model: gpt, targets: [{{provider: openai, model: gpt-4o}}]}}\n"
    ))
    .unwrap();
    let openai = config
        .providers
        .iter()
        .find(|p| p.id == "default/openai")
        .unwrap();
    assert!(
        openai
            .unavailable
            .as_deref()
            .is_some_and(|why| why.contains("default/openai")),
        "{:?}",
        openai.unavailable
    );
    assert!(config.routes.contains_key("demo"));
}

#[test]
fn keys_with_the_same_model_list_share_one_glob_set_and_star_allows_all() {
    let key = |name: &str, models: &str| {
        let secret = crate::keys::generate().unwrap_or_default();
        format!(
            "---\napiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}}}\nspec: {{secretName: {name}, owner: team, models: {models}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{apiKey: {secret}}}\n"
        )
    };
    let yaml = [
        key("a", "['gpt-*', 'o1-*']"),
        key("b", "['gpt-*', 'o1-*']"),
        key("c", "['*']"),
        key("d", "['claude-*']"),
    ]
    .concat();
    let config = compile_yaml(&yaml).unwrap_or_else(|e| panic!("{e:?}"));
    let by_name = |n: &str| {
        config
            .keys
            .iter()
            .find(|k| k.name.ends_with(&format!("/{n}")))
            .unwrap_or_else(|| panic!("key {n}"))
    };
    let (a, b, c, d) = (by_name("a"), by_name("b"), by_name("c"), by_name("d"));
    let (Some(set_a), Some(set_b)) = (&a.models, &b.models) else {
        panic!("a and b have model lists");
    };
    assert!(std::sync::Arc::ptr_eq(set_a, set_b));
    assert!(a.allows_model("gpt-4o") && a.allows_model("o1-mini") && !a.allows_model("claude"));
    assert!(c.models.is_none() && c.allows_model("anything/at-all"));
    assert!(d.allows_model("claude-sonnet") && !d.allows_model("gpt-4o"));
}

#[test]
fn a_bad_rotation_time_in_a_secret_is_reported_without_the_value() {
    let key = keys::generate().unwrap();
    let previous = keys::generate().unwrap();
    let errs = errors(&format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: k}}\nspec: {{secretName: s, owner: o}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {{apiKey: {key}, previousApiKey: {previous}, previousApiKeyExpiresAt: sk-live-SECRET42}}\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "ApiKey default/k: spec.secretName: Secret default/s previousApiKeyExpiresAt: not an RFC 3339 time"
        ),
        "{errs:?}"
    );
    assert!(!errs[0].contains("SECRET42"), "{errs:?}");
}
