//! ApiKeys naming a ServiceAccount: no Secret to generate; the status carries the caller id
//! (`sa:<namespace>:<name>`) and whether the ServiceAccount exists (looked for again every
//! 30 s while it does not: ServiceAccounts are not watched).

use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use llm_gateway_crds::api_key::{ApiKey, ApiKeyStatus};

use super::api_key::{grant_refusal, hold_back};
use crate::caches::in_namespace;
use crate::conditions::condition;
use crate::{Context, Error};

/// An ApiKey naming a ServiceAccount: `keyId` `sa:<namespace>:<name>` and `Ready` saying
/// whether the ServiceAccount exists (the gateways accept its tokens either way: a missing
/// ServiceAccount has none).
pub(super) async fn reconcile(
    key: &ApiKey,
    context: &Context,
    namespace: &str,
) -> Result<Action, Error> {
    let Some(account) = &key.spec.service_account_ref else {
        return Ok(Action::await_change());
    };
    let account_ns = account.namespace.as_deref().unwrap_or(namespace);
    let accounts: Api<ServiceAccount> = Api::namespaced(context.client.clone(), account_ns);
    let found = match accounts.get_opt(&account.name).await {
        Ok(found) => Some(found.is_some()),
        Err(kube::Error::Api(e)) if e.code == 403 => None,
        Err(e) => return Err(e.into()),
    };
    let mut desired = service_account_status(key, account_ns, found);
    if let Some(first) = named_before(key, context, namespace) {
        taken(&mut desired, key, &first);
    }
    hold_back(&mut desired, key, grant_refusal(key, context).as_ref());
    crate::status::update(
        context,
        key,
        key.status.as_ref(),
        &desired,
        |s: &ApiKeyStatus| &s.conditions,
    )
    .await?;
    // ServiceAccounts are not watched: a missing one is looked for again soon, and so is a
    // ServiceAccount another key holds (that key may go).
    let ready = desired.conditions.iter().any(|c| c.status == "True");
    let again = if ready { 300 } else { 30 };
    Ok(Action::requeue(Duration::from_secs(again)))
}

/// Another ApiKey of the namespace, created earlier, naming the same ServiceAccount: the
/// gateways refuse the namespace's configuration while both do, so the later one says why.
fn named_before(key: &ApiKey, context: &Context, namespace: &str) -> Option<String> {
    let subject = key.spec.service_account_ref.as_ref()?.subject(namespace);
    let order = |k: &ApiKey| (k.meta().creation_timestamp.clone(), k.name_any());
    in_namespace(&context.caches.api_keys, namespace)
        .into_iter()
        .filter(|other| other.name_any() != key.name_any())
        .filter(|other| {
            let account = other.spec.service_account_ref.as_ref();
            account.is_some_and(|a| a.subject(namespace) == subject)
        })
        .filter(|other| order(other) < order(key))
        .map(|other| other.name_any())
        .min()
}

/// Turns `status` `Ready=False` (`ServiceAccountTaken`): ApiKey `first` names the account.
pub fn taken(status: &mut ApiKeyStatus, key: &ApiKey, first: &str) {
    let previous = key.status.as_ref().map_or(&[][..], |s| &s.conditions[..]);
    let message = format!(
        "ApiKey {first} names the same ServiceAccount: gateways refuse the namespace's \
         configuration until one of them names another"
    );
    status.conditions = vec![condition(
        previous,
        "Ready",
        false,
        "ServiceAccountTaken",
        message,
        key.meta().generation,
    )];
}

/// The status of an ApiKey naming ServiceAccount `account_ns/…`; `found` is `None` when the
/// operator may not read ServiceAccounts there.
pub fn service_account_status(key: &ApiKey, account_ns: &str, found: Option<bool>) -> ApiKeyStatus {
    let current = key.status.clone().unwrap_or_default();
    let generation = key.meta().generation;
    let name = key
        .spec
        .service_account_ref
        .as_ref()
        .map_or("", |a| a.name.as_str());
    let (ready, reason, message) = match found {
        Some(true) => (
            true,
            "ServiceAccountReady",
            format!("callers authenticate with the tokens of ServiceAccount {account_ns}/{name}"),
        ),
        None => (
            true,
            "ServiceAccountReady",
            format!(
                "callers authenticate with the tokens of ServiceAccount {account_ns}/{name} \
                 (the operator may not read ServiceAccounts there to check that it exists)"
            ),
        ),
        Some(false) => (
            false,
            "ServiceAccountMissing",
            format!("ServiceAccount {account_ns}/{name} does not exist"),
        ),
    };
    ApiKeyStatus {
        observed_generation: generation,
        key_id: Some(format!("sa:{account_ns}:{name}")),
        key_hash: None,
        previous_key_id: None,
        previous_key_hash: None,
        previous_key_expires_at: None,
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
