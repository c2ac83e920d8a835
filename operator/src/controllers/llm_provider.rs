//! LlmProvider → `Ready` saying whether its credential is in place: the referenced Secret
//! exists and holds a non-empty value under the key (or the provider needs no Secret).
//! Secrets are watched, so creating the missing Secret makes the provider Ready at once.
//!
//! A `selfHosted` provider also gets its model server (see `build::model_server`), and is
//! Ready only once a model-server pod is. One the operator may not run (`pod_policy`: an
//! image outside the allowed repositories, a Secret read without consent) is `Ready=False`
//! naming the rule, and its model server is neither created nor changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use llm_gateway_crds::llm_provider::{LlmProvider, LlmProviderStatus};
use llm_gateway_crds::self_hosted::SelfHosted;

use crate::apply::Prunable;
use crate::build::model_server::{self, PROVIDER_LABEL};
use crate::conditions::condition;
use crate::pod_policy::{self, Refusal};
use crate::{Context, Error, apply};

const NAME: &str = "llmprovider";

/// Runs the controller until `shutdown` (then lets reconciles in flight finish).
pub async fn run(context: Context, shutdown: crate::shutdown::Shutdown) {
    let controller = Controller::new(context.api::<LlmProvider>(), watcher::Config::default());
    let reader = controller.store();
    // Secrets come from the cache's one watch, not a second watch of every Secret.
    let secrets = crate::caches::changed_objects(&context.caches.secret_events);
    controller
        .owns(
            context.api::<Deployment>(),
            watcher::Config::default().labels("app.kubernetes.io/managed-by=llm-gateway-operator"),
        )
        .watches_stream(secrets, move |secret: Secret| {
            // Every provider of the Secret's namespace that references it.
            let namespace = secret.namespace();
            reader
                .state()
                .iter()
                .filter(|p| p.namespace() == namespace && references(p, &secret.name_any()))
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(super::config(Duration::from_millis(0)))
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, super::error_policy, Arc::new(context))
        .for_each(|_| async {})
        .await;
}

/// Whether `provider` reads `secret`: its credential, or (self-hosted) a `secretEnv` entry,
/// whose consent label is watched too.
fn references(provider: &LlmProvider, secret: &str) -> bool {
    let credential = provider
        .spec
        .credentials
        .as_ref()
        .and_then(|c| c.secret_ref.as_ref())
        .is_some_and(|r| r.name == secret);
    let shared = provider.spec.self_hosted.as_ref().is_some_and(|hosted| {
        hosted
            .secret_env
            .iter()
            .any(|v| v.secret_key_ref.name == secret)
    });
    credential || shared
}

/// One reconcile of one LlmProvider.
pub async fn reconcile(provider: Arc<LlmProvider>, context: Arc<Context>) -> Result<Action, Error> {
    super::timed(
        NAME,
        &context,
        &*provider,
        reconcile_inner(&provider, &context),
    )
    .await
}

async fn reconcile_inner(provider: &LlmProvider, context: &Context) -> Result<Action, Error> {
    let namespace = provider.namespace().unwrap_or_else(|| "default".to_owned());
    let reference = provider
        .spec
        .credentials
        .as_ref()
        .and_then(|c| c.secret_ref.clone());
    let secret = match &reference {
        Some(r) => {
            let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
            secrets.get_opt(&r.name).await?
        }
        None => None,
    };
    let refusal = match &provider.spec.self_hosted {
        Some(hosted) => {
            let shared = shared_secrets(hosted, context, &namespace).await?;
            pod_policy::check_self_hosted(hosted, &context.settings.images, &shared).err()
        }
        None => None,
    };
    let written = match &refusal {
        // Not built, and a running model server is removed: a refusal is a withdrawn consent
        // (a Secret's label removed, the image allowlist narrowed) as often as a bad edit, and
        // the old pods would keep the image and the Secrets they were refused.
        Some(refusal) => {
            tracing::warn!(provider = %provider.name_any(), %namespace, reason = refusal.reason, "model server refused");
            remove_model_server(provider, context, &namespace)
                .await
                .map(|()| refused_status(provider, refusal))
        }
        None => model_server(provider, context, &namespace)
            .await
            .map(|ready| desired_status(provider, secret.as_ref(), ready)),
    };
    let (desired, failure) = match written {
        Ok(desired) => (desired, None),
        // Reported where the owner looks, then retried ever less often.
        Err(Error::ChildRejected(rejection)) => (
            refused_status(provider, &rejection.refusal()),
            Some(Error::ChildRejected(rejection)),
        ),
        Err(e) => return Err(e),
    };
    crate::status::update(
        context,
        provider,
        provider.status.as_ref(),
        &desired,
        |s: &LlmProviderStatus| &s.conditions,
    )
    .await?;
    match failure {
        Some(failure) => Err(failure),
        None => Ok(Action::requeue(Duration::from_secs(600))),
    }
}

/// For each Secret named in `secretEnv` that exists, whether it consents to model servers
/// reading it (read from the API server, not a cache: the watch that triggered this
/// reconcile may have been a label change the cache has not seen yet).
async fn shared_secrets(
    hosted: &SelfHosted,
    context: &Context,
    namespace: &str,
) -> Result<BTreeMap<String, bool>, Error> {
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    let mut shared = BTreeMap::new();
    for variable in &hosted.secret_env {
        let name = &variable.secret_key_ref.name;
        if shared.contains_key(name) {
            continue;
        }
        if let Some(secret) = secrets.get_opt(name).await? {
            shared.insert(name.clone(), pod_policy::shared_with_model_servers(&secret));
        }
    }
    Ok(shared)
}

/// The status of a provider whose model server was refused: `Ready=False` naming the rule
/// (the Event follows from the condition change); the URL it would have stays, so removing
/// `selfHosted` later still prunes children built before.
pub fn refused_status(provider: &LlmProvider, refusal: &Refusal) -> LlmProviderStatus {
    let generation = provider.meta().generation;
    let current = provider
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let mut status = desired_status(provider, None, None);
    status.conditions = vec![condition(
        current,
        "Ready",
        false,
        refusal.reason,
        refusal.message.clone(),
        generation,
    )];
    status
}

/// Deletes the provider's model-server children (Deployment, Service, autoscaler), if any.
async fn remove_model_server(
    provider: &LlmProvider,
    context: &Context,
    namespace: &str,
) -> Result<(), Error> {
    converge_model_server(provider, context, namespace, &[]).await
}

/// Applies `children` and prunes the provider's model-server children not among them.
async fn converge_model_server(
    provider: &LlmProvider,
    context: &Context,
    namespace: &str,
    children: &[crate::build::Child],
) -> Result<(), Error> {
    let selector = format!("{PROVIDER_LABEL}={}", provider.name_any());
    let uid = provider.uid().unwrap_or_default();
    let owned = apply::Owned {
        selector: &selector,
        owner_uid: &uid,
    };
    let prunable = Prunable::always(model_server::prunable());
    apply::converge(&context.client, namespace, children, &prunable, owned).await
}

/// Applies a self-hosted provider's children and prunes those no longer wanted; returns the
/// model server's ready pods (`None` when the provider is not self-hosted).
async fn model_server(
    provider: &LlmProvider,
    context: &Context,
    namespace: &str,
) -> Result<Option<i32>, Error> {
    let was_hosted = provider
        .status
        .as_ref()
        .is_some_and(|s| s.model_server_url.is_some());
    if provider.spec.self_hosted.is_none() && !was_hosted {
        return Ok(None);
    }
    let children = model_server::children(provider);
    converge_model_server(provider, context, namespace, &children).await?;
    let Some(deployment) = children.first() else {
        return Ok(None);
    };
    Ok(Some(
        apply::ready_replicas(&context.client, namespace, deployment.name()).await?,
    ))
}

/// The status a provider whose credential Secret is `secret` (looked up by its reference) and
/// whose model server has `model_ready` ready pods (`None`: not self-hosted) should have.
pub fn desired_status(
    provider: &LlmProvider,
    secret: Option<&Secret>,
    model_ready: Option<i32>,
) -> LlmProviderStatus {
    let current = provider.status.clone().unwrap_or_default();
    let generation = provider.meta().generation;
    let credentials = provider.spec.credentials.as_ref();
    let (ok, reason, message) = match (
        credentials.and_then(|c| c.secret_ref.as_ref()),
        credentials.and_then(|c| c.env.as_ref()),
    ) {
        (Some(reference), _) => match secret {
            None => (
                false,
                "SecretNotFound",
                format!(
                    "Secret {} does not exist; create it with the provider's API key under {:?}",
                    reference.name, reference.key
                ),
            ),
            Some(secret) => {
                let value = secret.data.as_ref().and_then(|d| d.get(&reference.key));
                match value {
                    Some(v) if !v.0.is_empty() => (
                        true,
                        "CredentialsFound",
                        format!("Secret {} holds {:?}", reference.name, reference.key),
                    ),
                    Some(_) => (
                        false,
                        "KeyEmpty",
                        format!("Secret {} has an empty {:?}", reference.name, reference.key),
                    ),
                    None => (
                        false,
                        "KeyMissing",
                        format!("Secret {} has no {:?} entry", reference.name, reference.key),
                    ),
                }
            }
        },
        (None, Some(variable)) => (
            true,
            "EnvironmentCredentials",
            format!("the credential comes from the gateway's environment variable {variable}"),
        ),
        (None, None) => (
            true,
            "NoCredentialsNeeded",
            "this provider type needs no credential".to_owned(),
        ),
    };
    let (ok, reason, message) = match model_ready {
        Some(0) if ok => (
            false,
            "ModelServerProgressing",
            "waiting for a model-server pod to load the model and become ready".to_owned(),
        ),
        Some(pods) if ok => (
            true,
            "ModelServerReady",
            format!("{pods} model-server pod(s) ready"),
        ),
        _ => (ok, reason, message),
    };
    let namespace = provider.namespace().unwrap_or_else(|| "default".to_owned());
    LlmProviderStatus {
        observed_generation: generation,
        model_server_url: provider
            .spec
            .self_hosted
            .as_ref()
            .map(|h| h.base_url(&provider.name_any(), &namespace)),
        ready_replicas: model_ready.filter(|_| provider.spec.self_hosted.is_some()),
        conditions: vec![condition(
            &current.conditions,
            "Ready",
            ok,
            reason,
            message,
            generation,
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider(credentials: serde_json::Value) -> LlmProvider {
        serde_json::from_value(
            json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
            "metadata": {"name": "p", "generation": 2},
            "spec": {"type": "openai", "credentials": credentials}}),
        )
        .expect("valid LlmProvider")
    }

    fn reason(status: &LlmProviderStatus) -> (&str, &str) {
        (
            status.conditions[0].status.as_str(),
            status.conditions[0].reason.as_str(),
        )
    }

    #[test]
    fn readiness_names_what_is_missing() {
        let by_secret = provider(json!({"secretRef": {"name": "s", "key": "apiKey"}}));
        assert_eq!(
            reason(&desired_status(&by_secret, None, None)),
            ("False", "SecretNotFound")
        );
        let empty: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"other": "eA=="}}))
                .expect("secret");
        assert_eq!(
            reason(&desired_status(&by_secret, Some(&empty), None)),
            ("False", "KeyMissing")
        );
        let full: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"apiKey": "eA=="}}))
                .expect("secret");
        assert_eq!(
            reason(&desired_status(&by_secret, Some(&full), None)),
            ("True", "CredentialsFound")
        );
        let mut hosted = provider(json!({"env": "X"}));
        hosted.spec.self_hosted = Some(
            serde_json::from_value(json!({"image": "vllm/vllm-openai:v0.8.5"})).expect("valid"),
        );
        let loading = desired_status(&hosted, None, Some(0));
        assert_eq!(reason(&loading), ("False", "ModelServerProgressing"));
        assert_eq!(
            loading.model_server_url.as_deref(),
            Some("http://p-model.default.svc.cluster.local:8000/v1")
        );
        assert_eq!(
            reason(&desired_status(&hosted, None, Some(2))),
            ("True", "ModelServerReady")
        );
        let by_env = provider(json!({"env": "OPENAI_API_KEY"}));
        assert_eq!(
            reason(&desired_status(&by_env, None, None)),
            ("True", "EnvironmentCredentials")
        );
        let refusal = Refusal {
            reason: "ImageNotAllowed",
            message: "not allowed".to_owned(),
        };
        let refused = refused_status(&hosted, &refusal);
        assert_eq!(reason(&refused), ("False", "ImageNotAllowed"));
        assert!(refused.model_server_url.is_some() && refused.ready_replicas.is_none());
    }
}
