//! The bundle the operator hands each gateway in Kubernetes mode, so a gateway pod needs no
//! access to arbitrary Secrets and can cold-start without the API server:
//!
//! - a **credentials Secret** (`credentials.yaml`): copies of exactly the Secret entries the
//!   namespace's LlmProviders and the LlmGateway's JWT settings reference. Gateways watch this
//!   one Secret by name (their Role names it in `resourceNames`) instead of every Secret.
//! - a **last-known-good ConfigMap** (`config.yaml`): the namespace's providers, route
//!   policies, issued ApiKeys (key hashes only, never plaintext) and the LlmGateway, written
//!   only when they compile, and mounted next to the credentials as `LAST_KNOWN_GOOD_DIR`.
//!
//! Both sides use these functions, so what the operator writes is what the gateway reads.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api_key::{ApiKey, ApiKeyStatus};
use crate::manifest::{ManifestError, Manifests};

/// Entry of the credentials Secret holding the copied Secrets as YAML manifests.
pub const CREDENTIALS_FILE: &str = "credentials.yaml";

/// Entry of the credentials Secret holding the key pepper gateways hash API keys with (the
/// operator's `API_KEY_PEPPER`, so both compute the same hashes).
pub const PEPPER_ENTRY: &str = "apiKeyPepper";

/// Entry of the last-known-good ConfigMap holding the namespace's resources as YAML.
pub const CONFIG_FILE: &str = "config.yaml";

/// Whether the operator has issued the key (its status carries the hash gateways verify
/// against), or the ApiKey names a ServiceAccount (nothing to issue). A key not issued yet
/// cannot authenticate anyone, so it is left out of a gateway's configuration instead of
/// making the whole configuration invalid.
pub fn issued(key: &ApiKey) -> bool {
    key.spec.service_account_ref.is_some()
        || key.status.as_ref().is_some_and(|s| s.key_hash.is_some())
}

/// `(secret name, entry)` pairs the namespace's providers and gateways reference.
pub fn referenced_entries(manifests: &Manifests) -> Vec<(String, String)> {
    let providers = manifests
        .providers
        .iter()
        .filter_map(|p| p.spec.credentials.as_ref()?.secret_ref.as_ref());
    let jwt = manifests
        .gateways
        .iter()
        .filter_map(|g| g.spec.auth.jwt.as_ref()?.hs256_secret_ref.as_ref());
    let mut entries: Vec<(String, String)> = providers
        .chain(jwt)
        .map(|r| (r.name.clone(), r.key.clone()))
        .collect();
    entries.sort();
    entries.dedup();
    entries
}

/// The credentials file: for every referenced Secret present in `secrets`, a Secret manifest
/// with only the referenced entries (other entries of a shared Secret are not copied).
pub fn credentials_yaml(manifests: &Manifests, secrets: &[Secret]) -> String {
    type Entries = BTreeMap<String, k8s_openapi::ByteString>;
    let mut copies: BTreeMap<(String, Option<String>), Entries> = BTreeMap::new();
    for (name, entry) in referenced_entries(manifests) {
        let Some(secret) = secrets.iter().find(|s| s.name_any() == name) else {
            continue;
        };
        if let Some(value) = secret.data.as_ref().and_then(|d| d.get(&entry)) {
            copies
                .entry((name, secret.namespace()))
                .or_default()
                .insert(entry, value.clone());
        }
    }
    let documents = copies.into_iter().map(|((name, namespace), data)| {
        to_yaml(&Secret {
            metadata: ObjectMeta {
                name: Some(name),
                namespace,
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..Secret::default()
        })
    });
    join(documents)
}

/// The Secrets a credentials Secret carries.
pub fn expand_credentials(bundle: &Secret) -> Result<Vec<Secret>, ManifestError> {
    let text = bundle
        .data
        .as_ref()
        .and_then(|d| d.get(CREDENTIALS_FILE))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .unwrap_or_default();
    let mut manifests = Manifests::default();
    manifests.add_yaml(&format!("Secret {}", bundle.name_any()), &text)?;
    Ok(manifests.secrets)
}

/// The last-known-good file: the namespace's resources without status (except an ApiKey's
/// key identity), unissued keys or server-set metadata other than the creation time (the
/// order in which LlmQuota caps weigh keys); labels are kept (LlmQuotas select keys by them).
pub fn config_yaml(manifests: &Manifests) -> String {
    let providers = manifests
        .providers
        .iter()
        .map(|p| manifest(p, &p.spec, None));
    let policies = manifests
        .route_policies
        .iter()
        .map(|p| manifest(p, &p.spec, None));
    let keys = manifests.api_keys.iter().filter(|k| issued(k)).map(|k| {
        let status = k.status.as_ref().map(|s| ApiKeyStatus {
            key_id: s.key_id.clone(),
            key_hash: s.key_hash.clone(),
            previous_key_id: s.previous_key_id.clone(),
            previous_key_hash: s.previous_key_hash.clone(),
            previous_key_expires_at: s.previous_key_expires_at.clone(),
            ..ApiKeyStatus::default()
        });
        manifest(
            k,
            &k.spec,
            status.map(|s| serde_json::to_value(s).unwrap_or_default()),
        )
    });
    let gateways = manifests
        .gateways
        .iter()
        .map(|g| manifest(g, &g.spec, None));
    let quotas = manifests.quotas.iter().map(|q| manifest(q, &q.spec, None));
    join(
        providers
            .chain(policies)
            .chain(keys)
            .chain(gateways)
            .chain(quotas)
            .map(|v| to_yaml(&v)),
    )
}

fn manifest<K: Resource<DynamicType = ()>>(
    object: &K,
    spec: &impl Serialize,
    status: Option<Value>,
) -> Value {
    let mut value = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": object.meta().name, "namespace": object.meta().namespace},
        "spec": spec,
    });
    let meta = object.meta();
    if let Some(labels) = meta.labels.as_ref().filter(|l| !l.is_empty()) {
        value["metadata"]["labels"] = json!(labels);
    }
    if let Some(created) = &meta.creation_timestamp {
        value["metadata"]["creationTimestamp"] = json!(created);
    }
    if let Some(status) = status {
        value["status"] = status;
    }
    value
}

fn to_yaml(value: &impl Serialize) -> String {
    // Serialising plain data to YAML cannot fail.
    serde_yaml::to_string(value).unwrap_or_default()
}

fn join(documents: impl Iterator<Item = String>) -> String {
    documents.collect::<Vec<_>>().join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMESPACE: &str = "apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {name: openai, namespace: ai}
spec: {type: openai, credentials: {secretRef: {name: shared, key: openai}}}
---
apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {name: r, namespace: ai}
spec: {routes: [{model: m, targets: [{provider: openai, model: gpt-4o}]}]}
---
apiVersion: llmgateway.io/v1alpha1
kind: ApiKey
metadata: {name: issued, namespace: ai}
spec: {secretName: issued-key, owner: a}
status: {keyId: lgw_abc, keyHash: 'hmac-sha256:00', usage: {requests: 5}}
---
apiVersion: llmgateway.io/v1alpha1
kind: ApiKey
metadata: {name: keyless, namespace: ai}
spec: {serviceAccountRef: {namespace: apps, name: chat}, owner: a}
---
apiVersion: llmgateway.io/v1alpha1
kind: ApiKey
metadata: {name: pending, namespace: ai}
spec: {secretName: pending-key, owner: a}
---
apiVersion: v1
kind: Secret
metadata: {name: shared, namespace: ai}
data: {openai: c2stb3BlbmFp, anthropic: c2stYW50}
";

    /// A credentials bundle Secret holding `file`.
    fn bundle_of(file: &[u8]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("bundle".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                CREDENTIALS_FILE.to_owned(),
                k8s_openapi::ByteString(file.to_vec()),
            )])),
            ..Secret::default()
        }
    }

    #[test]
    fn credentials_copy_only_referenced_entries_and_round_trip() {
        let mut m = Manifests::default();
        m.add_yaml("ns.yaml", NAMESPACE).expect("valid");
        let yaml = credentials_yaml(&m, &m.secrets);
        assert!(!yaml.contains("anthropic"), "{yaml}");
        let bundle = bundle_of(yaml.as_bytes());
        let copies = expand_credentials(&bundle).expect("parses");
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0].metadata.namespace.as_deref(), Some("ai"));
        assert_eq!(
            copies[0].data.as_ref().expect("data")["openai"].0,
            b"sk-openai"
        );
    }

    #[test]
    fn the_config_keeps_issued_keys_without_usage_or_plaintext() {
        let mut m = Manifests::default();
        m.add_yaml("ns.yaml", NAMESPACE).expect("valid");
        let yaml = config_yaml(&m);
        let mut back = Manifests::default();
        back.add_yaml(CONFIG_FILE, &yaml).expect("round trip");
        assert_eq!(back.providers.len(), 1);
        assert_eq!(back.route_policies.len(), 1);
        let names: Vec<_> = back.api_keys.iter().map(ResourceExt::name_any).collect();
        assert_eq!(
            names,
            ["issued", "keyless"],
            "the pending key is left out; a ServiceAccount key has nothing to issue"
        );
        let status = back.api_keys[0].status.as_ref().expect("status");
        assert_eq!(status.key_id.as_deref(), Some("lgw_abc"));
        assert!(status.usage.is_none());
        assert!(back.secrets.is_empty() && !yaml.contains("c2st"));
    }

    /// The gateway logs a credentials bundle it cannot read; the log must not hold a key.
    #[test]
    fn a_malformed_bundle_is_reported_without_its_content() {
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: copy}\ndata: {openai: 'sk-live-SECRET!'}\n";
        let bundle = bundle_of(yaml.as_bytes());
        let error = expand_credentials(&bundle).unwrap_err().to_string();
        assert!(
            error.starts_with("Secret bundle: document 1: Secret copy: field data.openai"),
            "{error}"
        );
        assert!(
            !error.contains("SECRET") && !error.contains("sk-live"),
            "{error}"
        );
    }
}
