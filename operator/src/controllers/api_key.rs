//! ApiKey → the key Secret (generated once, never overwritten) and status `keyId`/`keyHash`.
//!
//! A key is generated (CSPRNG, `sk-lgw-…` with checksum) only when the Secret named in
//! `spec.secretName` does not exist. An existing Secret is never rewritten: if it holds no
//! valid key the ApiKey is `Ready=False` with the reason, so a restart, a race or a hand edit
//! can never replace a key callers already use. An ApiKey naming a ServiceAccount instead has
//! no Secret: its status says whether the ServiceAccount exists.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use llm_gateway_crds::api_key::{
    ApiKey, ApiKeyStatus, SECRET_KEY_FIELD, SECRET_PREVIOUS_KEY_FIELD,
};
use llm_gateway_crds::grants::{self, GrantRefusal};
use llm_gateway_crds::keys;

use super::rotation;
use crate::caches::in_namespace;
use crate::conditions::condition;
use crate::{Context, Error, MANAGED_BY};

const NAME: &str = "apikey";

/// Runs the controller until `shutdown` (then lets reconciles in flight finish).
pub async fn run(context: Context, shutdown: crate::shutdown::Shutdown) {
    let keys = context.api::<ApiKey>();
    let secrets = context.api::<Secret>();
    let controller = Controller::new(keys, watcher::Config::default());
    // A quota, or another key of the namespace, changing may move a key over or back under
    // the namespace's caps: its keys are re-checked (only where caps apply or applied).
    let reader = controller.store();
    let caches = context.caches.clone();
    let changes = context
        .caches
        .namespace_changes()
        .flat_map(move |namespace| {
            futures_util::stream::iter(keys_to_recheck(&reader, &caches, &namespace))
        });
    controller
        .reconcile_on(changes)
        .owns(
            secrets,
            watcher::Config::default().labels("app.kubernetes.io/managed-by=llm-gateway-operator"),
        )
        .with_config(super::config(Duration::from_millis(0)))
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, super::error_policy, Arc::new(context))
        .for_each(|_| async {})
        .await;
}

/// The keys of `namespace` whose grant check no longer agrees with their status: held back
/// but now within the caps, or the reverse. Computed from the caches alone, so the status
/// writes of a busy namespace (the usage sync's among them) requeue nothing.
fn keys_to_recheck(
    reader: &Store<ApiKey>,
    caches: &crate::caches::Caches,
    namespace: &str,
) -> Vec<ObjectRef<ApiKey>> {
    let keys: Vec<Arc<ApiKey>> = reader
        .state()
        .into_iter()
        .filter(|k| k.namespace().as_deref() == Some(namespace))
        .collect();
    let refused = namespace_refusals(caches, namespace);
    keys.iter()
        .filter(|k| {
            let id = format!("{namespace}/{}", k.name_any());
            refused.contains_key(&id) != held_back(k)
        })
        .map(|k| ObjectRef::from_obj(k.as_ref()))
        .collect()
}

/// Whether `key`'s status says an LlmQuota holds it back.
fn held_back(key: &ApiKey) -> bool {
    key.status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "OverQuota"))
}

/// The keys the caps of `namespace`'s quotas refuse, counting the keys gateways serve (those
/// issued: a key without a hash yet is in no gateway's count either).
fn namespace_refusals(
    caches: &crate::caches::Caches,
    namespace: &str,
) -> std::collections::BTreeMap<String, GrantRefusal> {
    let quotas = in_namespace(&caches.quotas, namespace);
    if quotas.iter().all(|q| q.spec.grants.is_none()) {
        return Default::default();
    }
    let mut keys = in_namespace(&caches.api_keys, namespace);
    keys.retain(llm_gateway_crds::snapshot::issued);
    grants::refusals(&quotas, &keys)
}

/// One reconcile of one ApiKey.
pub async fn reconcile(key: Arc<ApiKey>, context: Arc<Context>) -> Result<Action, Error> {
    super::timed(NAME, &context, &*key, reconcile_inner(&key, &context)).await
}

async fn reconcile_inner(key: &ApiKey, context: &Context) -> Result<Action, Error> {
    let namespace = key.namespace().unwrap_or_else(|| "default".to_owned());
    let Some(secret_name) = key.spec.secret_name.as_deref() else {
        return super::service_account_key::reconcile(key, context, &namespace).await;
    };
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let mut secret = match secrets.get_opt(secret_name).await? {
        Some(secret) => secret,
        None => create_secret(&secrets, key).await?,
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    if let Some(plan) = rotation::plan(key, &secret, now) {
        let new_key = keys::generate().map_err(|e| Error::Randomness(e.to_string()))?;
        let patch = Patch::Merge(rotation::patch(&plan, &secret, &new_key, now));
        secret = secrets
            .patch(secret_name, &PatchParams::default(), &patch)
            .await?;
        tracing::info!(apikey = %key.name_any(), step = ?plan_name(&plan), "rotated the API key");
    }
    let mut desired = desired_status(key, &secret, &context.settings.key_pepper);
    let refusal = grant_refusal(key, context);
    hold_back(&mut desired, key, refusal.as_ref());
    crate::status::update(
        context,
        key,
        key.status.as_ref(),
        &desired,
        |s: &ApiKeyStatus| &s.conditions,
    )
    .await?;
    // Come back when the old key's grace period ends, to drop it.
    let until_grace_ends = rotation::previous_expiry(&secret).map(|at| {
        Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_secs(1)
    });
    let next = until_grace_ends.map_or(Duration::from_secs(300), |d| {
        d.min(Duration::from_secs(300))
    });
    Ok(Action::requeue(next))
}

/// Why the namespace's LlmQuota caps refuse `key`, if they do (read from the caches, which
/// hold every key and quota of the namespace).
pub(super) fn grant_refusal(key: &ApiKey, context: &Context) -> Option<GrantRefusal> {
    let namespace = key.namespace().unwrap_or_else(|| "default".to_owned());
    let id = format!("{namespace}/{}", key.name_any());
    namespace_refusals(&context.caches, &namespace).remove(&id)
}

/// Turns a ready key's status `Ready=False` (`OverQuota`) when an LlmQuota's caps refuse it:
/// the gateways refuse it too, with the same reason.
pub fn hold_back(status: &mut ApiKeyStatus, key: &ApiKey, refusal: Option<&GrantRefusal>) {
    let Some(refusal) = refusal else { return };
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return;
    }
    let message = format!(
        "held back by LlmQuota {}: {}; the gateways refuse the key until it fits",
        refusal.quota, refusal.reason
    );
    let generation = key.meta().generation;
    let previous = key.status.as_ref().map_or(&[][..], |s| &s.conditions[..]);
    status.conditions = vec![condition(
        previous,
        "Ready",
        false,
        "OverQuota",
        message,
        generation,
    )];
}

fn plan_name(plan: &rotation::Plan) -> &'static str {
    match plan {
        rotation::Plan::Rotate { .. } => "new key, old one in grace",
        rotation::Plan::EndGrace => "grace over, old key dropped",
    }
}

/// Creates the Secret with a fresh key, owned by the ApiKey (deleting the ApiKey deletes it).
/// A concurrent creation (409) is not an error: the existing Secret is used.
async fn create_secret(secrets: &Api<Secret>, key: &ApiKey) -> Result<Secret, Error> {
    let plaintext = keys::generate().map_err(|e| Error::Randomness(e.to_string()))?;
    let secret = build_secret(key, &plaintext);
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(created) => {
            tracing::info!(apikey = %key.name_any(), key_id = %keys::key_id(&plaintext), "generated an API key");
            Ok(created)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(secrets.get(&secret_name(key)).await?),
        Err(e) => Err(e.into()),
    }
}

/// The name of the key's Secret (only keys with one get here).
fn secret_name(key: &ApiKey) -> String {
    key.spec.secret_name.clone().unwrap_or_default()
}

/// The Secret holding a newly generated key.
pub fn build_secret(key: &ApiKey, plaintext: &str) -> Secret {
    let owner = key.controller_owner_ref(&());
    let labels = BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        ("llmgateway.io/api-key".to_owned(), key.name_any()),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(key)),
            namespace: key.namespace(),
            labels: Some(labels),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            SECRET_KEY_FIELD.to_owned(),
            ByteString(plaintext.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// The status an ApiKey with `secret` should have.
pub fn desired_status(key: &ApiKey, secret: &Secret, pepper: &[u8]) -> ApiKeyStatus {
    let current = key.status.clone().unwrap_or_default();
    let generation = key.meta().generation;
    let plaintext = secret
        .data
        .as_ref()
        .and_then(|d| d.get(SECRET_KEY_FIELD))
        .and_then(|b| String::from_utf8(b.0.clone()).ok());
    let checked = plaintext
        .as_deref()
        .map(|p| keys::check_format(p.trim_end()).map(|()| p.trim_end().to_owned()));
    let (ready, reason, message, key_id, key_hash) = match checked {
        Some(Ok(plaintext)) => (
            true,
            "KeyReady",
            "the key in the Secret is valid".to_owned(),
            Some(keys::key_id(&plaintext)),
            Some(keys::hash(pepper, &plaintext)),
        ),
        Some(Err(e)) => (
            false,
            "InvalidKey",
            format!(
                "Secret {} holds no valid key ({e}); delete the Secret to have a new key generated",
                secret_name(key)
            ),
            None,
            None,
        ),
        None => (
            false,
            "KeyMissing",
            format!(
                "Secret {} has no {SECRET_KEY_FIELD:?} entry; delete the Secret to have a new key generated",
                secret_name(key)
            ),
            None,
            None,
        ),
    };
    let previous = secret
        .data
        .as_ref()
        .and_then(|d| d.get(SECRET_PREVIOUS_KEY_FIELD))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|p| keys::check_format(p.trim_end()).is_ok());
    ApiKeyStatus {
        observed_generation: generation,
        key_id,
        key_hash,
        previous_key_id: previous.as_deref().map(keys::key_id),
        previous_key_hash: previous.as_deref().map(|p| keys::hash(pepper, p)),
        previous_key_expires_at: rotation::previous_expiry(secret).map(|t| t.to_string()),
        conditions: vec![condition(
            &current.conditions,
            "Ready",
            ready,
            reason,
            message,
            generation,
        )],
        ..current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ApiKey {
        serde_json::from_value(
            json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "ApiKey",
            "metadata": {"name": "k", "namespace": "team", "uid": "u-1", "generation": 3},
            "spec": {"secretName": "k-secret", "owner": "team-a"}}),
        )
        .expect("valid ApiKey")
    }

    #[test]
    fn the_secret_is_owned_labelled_and_holds_the_key() {
        let secret = build_secret(&key(), "sk-lgw-x");
        assert_eq!(secret.metadata.name.as_deref(), Some("k-secret"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("team"));
        let owner = &secret.metadata.owner_references.expect("owner")[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("u-1", Some(true)));
        assert_eq!(secret.data.expect("data")["apiKey"].0, b"sk-lgw-x");
        assert_eq!(
            secret.metadata.labels.expect("labels")[MANAGED_BY.0],
            MANAGED_BY.1
        );
    }

    #[test]
    fn status_follows_the_secret_and_is_stable() {
        let plaintext = keys::generate().expect("randomness");
        let secret = build_secret(&key(), &plaintext);
        let mut api_key = key();
        let status = desired_status(&api_key, &secret, b"p");
        assert_eq!(status.key_hash, Some(keys::hash(b"p", &plaintext)));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.conditions[0].reason, "KeyReady");
        api_key.status = Some(status.clone());
        assert_eq!(
            desired_status(&api_key, &secret, b"p"),
            status,
            "idempotent"
        );
        let broken = build_secret(&key(), "nope");
        let status = desired_status(&api_key, &broken, b"p");
        assert_eq!(status.conditions[0].reason, "InvalidKey");
        assert_eq!(status.key_hash, None);
    }
}
