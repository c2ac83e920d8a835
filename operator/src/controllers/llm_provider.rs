//! LlmProvider → `Ready` saying whether its credential is in place: the referenced Secret
//! exists and holds a non-empty value under the key (or the provider needs no Secret).
//! Secrets are watched, so creating the missing Secret makes the provider Ready at once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use llm_gateway_crds::llm_provider::{LlmProvider, LlmProviderStatus};

use crate::conditions::condition;
use crate::{Context, Error};

const NAME: &str = "llmprovider";

/// Runs the controller until shutdown.
pub async fn run(context: Context) {
    let client = context.client.clone();
    let providers: Api<LlmProvider> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::all(client);
    let controller = Controller::new(providers, watcher::Config::default());
    let reader = controller.store();
    controller
        .watches(secrets, watcher::Config::default(), move |secret| {
            // Every provider of the Secret's namespace that references it.
            let namespace = secret.namespace();
            reader
                .state()
                .iter()
                .filter(|p| p.namespace() == namespace && references(p, &secret.name_any()))
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, super::error_policy, Arc::new(context))
        .for_each(|_| async {})
        .await;
}

fn references(provider: &LlmProvider, secret: &str) -> bool {
    provider
        .spec
        .credentials
        .as_ref()
        .and_then(|c| c.secret_ref.as_ref())
        .is_some_and(|r| r.name == secret)
}

/// One reconcile of one LlmProvider.
pub async fn reconcile(provider: Arc<LlmProvider>, context: Arc<Context>) -> Result<Action, Error> {
    super::timed(NAME, &context, reconcile_inner(&provider, &context)).await
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
    let desired = desired_status(provider, secret.as_ref());
    crate::status::update(
        context,
        provider,
        provider.status.as_ref(),
        &desired,
        |s: &LlmProviderStatus| &s.conditions,
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// The status a provider whose credential Secret is `secret` (looked up by its reference)
/// should have.
pub fn desired_status(provider: &LlmProvider, secret: Option<&Secret>) -> LlmProviderStatus {
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
    LlmProviderStatus {
        observed_generation: generation,
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
            reason(&desired_status(&by_secret, None)),
            ("False", "SecretNotFound")
        );
        let empty: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"other": "eA=="}}))
                .expect("secret");
        assert_eq!(
            reason(&desired_status(&by_secret, Some(&empty))),
            ("False", "KeyMissing")
        );
        let full: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"apiKey": "eA=="}}))
                .expect("secret");
        assert_eq!(
            reason(&desired_status(&by_secret, Some(&full))),
            ("True", "CredentialsFound")
        );
        let by_env = provider(json!({"env": "OPENAI_API_KEY"}));
        assert_eq!(
            reason(&desired_status(&by_env, None)),
            ("True", "EnvironmentCredentials")
        );
    }
}
