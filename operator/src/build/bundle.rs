//! LlmGateway → the credentials Secret and the last-known-good ConfigMap its pods read (the
//! format is [`llm_gateway_crds::snapshot`]'s). The credentials follow the namespace's
//! Secrets at once; the last-known-good configuration is replaced only by one that compiles.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use llm_gateway_crds::compile::{CompileInputs, compile};
use llm_gateway_crds::llm_gateway::LlmGateway;
use llm_gateway_crds::manifest::Manifests;
use llm_gateway_crds::snapshot::{
    CONFIG_FILE, CREDENTIALS_FILE, PEPPER_ENTRY, config_yaml, credentials_yaml, expand_credentials,
};

use super::gateway::Base;
use super::{Child, typed};

/// Largest last-known-good file written: a ConfigMap holds at most 1 MiB in all.
pub const MAX_CONFIG_BYTES: usize = 1_000_000;

/// Name of the credentials Secret of `gateway`.
pub fn credentials_name(gateway: &LlmGateway) -> String {
    format!("{}-credentials", Base::of(gateway).name)
}

/// Name of the last-known-good ConfigMap of `gateway`.
pub fn last_known_good_name(gateway: &LlmGateway) -> String {
    format!("{}-last-known-good", Base::of(gateway).name)
}

/// What one LlmGateway's pods read besides the API server.
#[derive(Debug)]
pub struct Bundle {
    /// The credentials Secret: copies of the entries the namespace references, and the pepper.
    pub credentials: Child,
    /// The last-known-good ConfigMap, or why the previous one is kept.
    pub last_known_good: Result<Child, Refused>,
}

/// Why a last-known-good ConfigMap was not produced.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// The namespace's configuration does not compile (messages, sorted).
    Invalid(Vec<String>),
    /// The file would not fit in a ConfigMap (its size in bytes).
    TooLarge(usize),
}

/// The bundle of `gateway`, from `namespace` (its providers, policies, keys and Secrets, and
/// `gateway` as its only LlmGateway).
pub fn bundle(gateway: &LlmGateway, namespace: &Manifests, pepper: &[u8]) -> Bundle {
    let credentials = credentials_yaml(namespace, &namespace.secrets);
    Bundle {
        last_known_good: last_known_good(gateway, namespace, &credentials),
        credentials: credentials_secret(gateway, credentials, pepper),
    }
}

fn credentials_secret(gateway: &LlmGateway, credentials: String, pepper: &[u8]) -> Child {
    let data = [
        (CREDENTIALS_FILE, ByteString(credentials.into_bytes())),
        (PEPPER_ENTRY, ByteString(pepper.to_vec())),
    ];
    typed(&Secret {
        metadata: Base::of(gateway).metadata(&credentials_name(gateway)),
        type_: Some("Opaque".to_owned()),
        data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
        ..Secret::default()
    })
}

/// Pod-template annotation carrying [`crate::pepper::fingerprint`].
pub const PEPPER_FINGERPRINT: &str = "llmgateway.io/pepper-fingerprint";

/// Marks the gateway Deployment among `children` with the pepper's fingerprint: gateways read
/// the pepper once, from their environment, so without it a changed pepper would leave every
/// pod rejecting every key until someone restarted them by hand.
pub fn stamp_pepper(children: &mut [Child], pepper: &[u8]) {
    let fingerprint = crate::pepper::fingerprint(pepper);
    for deployment in children
        .iter_mut()
        .filter(|c| c.resource.kind == "Deployment")
    {
        if let Some(template) = deployment.object.pointer_mut("/spec/template") {
            template["metadata"]["annotations"][PEPPER_FINGERPRINT] = fingerprint.clone().into();
        }
    }
}

/// The last-known-good ConfigMap, if what the gateway would load from it (this file plus
/// the `credentials` file) compiles.
fn last_known_good(
    gateway: &LlmGateway,
    namespace: &Manifests,
    credentials: &str,
) -> Result<Child, Refused> {
    let config = config_yaml(namespace);
    if config.len() > MAX_CONFIG_BYTES {
        return Err(Refused::TooLarge(config.len()));
    }
    let mut loaded = Manifests::default();
    loaded
        .add_yaml(CONFIG_FILE, &config)
        .map_err(|e| Refused::Invalid(vec![e.to_string()]))?;
    loaded.secrets = copies(credentials);
    // Environment credentials belong to the pods and cannot be checked here.
    let env = |_: &str| Some(String::new());
    let inputs = CompileInputs {
        env: &env,
        key_pepper: b"",
        admitted: true,
    };
    if let Err(errors) = compile(&loaded, &inputs) {
        let mut messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        messages.sort();
        return Err(Refused::Invalid(messages));
    }
    Ok(typed(&ConfigMap {
        metadata: Base::of(gateway).metadata(&last_known_good_name(gateway)),
        data: Some([(CONFIG_FILE.to_owned(), config)].into()),
        ..ConfigMap::default()
    }))
}

/// The Secrets a pod reads from the `credentials` file, parsed as the pod parses them.
fn copies(credentials: &str) -> Vec<Secret> {
    let bundle = Secret {
        data: Some(
            [(
                CREDENTIALS_FILE.to_owned(),
                ByteString(credentials.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    expand_credentials(&bundle).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(routes_to: &str) -> Manifests {
        let yaml = format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmGateway\nmetadata: {{name: main, namespace: ai, uid: u-1}}\nspec: {{}}\n---\n\
             apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: openai, namespace: ai}}\n\
             spec: {{type: openai, credentials: {{secretRef: {{name: openai, key: apiKey}}}}}}\n---\n\
             apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: r, namespace: ai}}\n\
             spec: {{routes: [{{model: m, targets: [{{provider: {routes_to}, model: gpt-4o}}]}}]}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: openai, namespace: ai}}\ndata: {{apiKey: c2stb3BlbmFp}}\n"
        );
        let mut m = Manifests::default();
        m.add_yaml("ns.yaml", &yaml).expect("valid");
        m
    }

    #[test]
    fn a_valid_namespace_gets_a_snapshot_and_an_invalid_one_keeps_the_old() {
        let good = namespace("openai");
        let gateway = &good.gateways[0];
        let made = bundle(gateway, &good, b"pepper");
        let config = made.last_known_good.expect("compiles");
        assert_eq!(config.name(), "main-gateway-last-known-good");
        let text = config.object["data"][CONFIG_FILE].as_str().expect("file");
        assert!(text.contains("kind: RoutePolicy") && !text.contains("c2st"));
        let secret = made.credentials;
        assert_eq!(secret.object["data"][PEPPER_ENTRY], "cGVwcGVy");
        assert_eq!(secret.name(), "main-gateway-credentials");
        let encoded: k8s_openapi::ByteString =
            serde_json::from_value(secret.object["data"][CREDENTIALS_FILE].clone())
                .expect("base64");
        assert!(String::from_utf8_lossy(&encoded.0).contains("c2stb3BlbmFp"));
        let bad = namespace("missing");
        match bundle(&bad.gateways[0], &bad, b"").last_known_good {
            Err(Refused::Invalid(messages)) => {
                assert!(
                    messages.iter().any(|m| m.contains("missing")),
                    "{messages:?}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_gateway_pods_change_with_the_pepper() {
        let gateway = &namespace("openai").gateways[0];
        let stamped = |pepper: &[u8]| {
            let mut children = crate::build::gateway::children(gateway);
            stamp_pepper(&mut children, pepper);
            let deployment = children.iter().find(|c| c.resource.kind == "Deployment");
            deployment.expect("a Deployment").object["spec"]["template"]["metadata"]["annotations"]
                [PEPPER_FINGERPRINT]
                .clone()
        };
        assert_eq!(stamped(b"one"), stamped(b"one"));
        assert_ne!(stamped(b"one"), stamped(b"two"));
        assert!(stamped(b"one").is_string());
    }
}
