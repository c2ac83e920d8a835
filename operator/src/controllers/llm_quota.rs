//! LlmQuota → status: the keys that share it, the keys its caps refuse and what the others
//! are granted. Its shared usage is copied in by the usage sync ([`crate::usage_sync`]).
//!
//! The gateways enforce the quota themselves (they watch LlmQuotas); this status is what a
//! platform team reads, computed by the same functions ([`llm_gateway_crds::grants`]).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::core::Selector;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use llm_gateway_crds::api_key::ApiKey;
use llm_gateway_crds::grants;
use llm_gateway_crds::quota::{LlmQuota, LlmQuotaStatus, RefusedKey};

use crate::caches::in_namespace;
use crate::conditions::condition;
use crate::{Context, Error};

const NAME: &str = "llmquota";

/// Keys listed by name in the status at most (the count is always exact).
const LISTED_KEYS: usize = 100;

/// Runs the controller until `shutdown` (then lets reconciles in flight finish).
pub async fn run(context: Context, shutdown: crate::shutdown::Shutdown) {
    let controller = Controller::new(context.api::<LlmQuota>(), watcher::Config::default());
    let reader = controller.store();
    // A key (or another quota) changing in a namespace re-checks its quotas, triggered from
    // the caches the reconcile reads, after they applied the change.
    let changes = context
        .caches
        .namespace_changes()
        .flat_map(move |namespace| futures_util::stream::iter(quotas_in(&reader, &namespace)));
    controller
        .reconcile_on(changes)
        .with_config(super::config(Duration::from_millis(500)))
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, super::error_policy, Arc::new(context))
        .for_each(|_| async {})
        .await;
}

fn quotas_in(reader: &Store<LlmQuota>, namespace: &str) -> Vec<ObjectRef<LlmQuota>> {
    reader
        .state()
        .iter()
        .filter(|q| q.namespace().as_deref() == Some(namespace))
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

/// One reconcile of one LlmQuota.
pub async fn reconcile(quota: Arc<LlmQuota>, context: Arc<Context>) -> Result<Action, Error> {
    super::timed(NAME, &context, &*quota, async {
        let namespace = quota.namespace().unwrap_or_else(|| "default".to_owned());
        let mut keys = in_namespace(&context.caches.api_keys, &namespace);
        // The keys gateways serve: a key without a hash yet is in no gateway's count.
        keys.retain(llm_gateway_crds::snapshot::issued);
        let quotas = in_namespace(&context.caches.quotas, &namespace);
        let desired = desired_status(&quota, &quotas, &keys);
        crate::status::update(
            &context,
            &*quota,
            quota.status.as_ref(),
            &desired,
            |s: &LlmQuotaStatus| &s.conditions,
        )
        .await?;
        Ok(Action::requeue(Duration::from_secs(300)))
    })
    .await
}

/// The status `quota` should have among the namespace's `quotas` and `keys`.
pub fn desired_status(quota: &LlmQuota, quotas: &[LlmQuota], keys: &[ApiKey]) -> LlmQuotaStatus {
    let current = quota.status.clone().unwrap_or_default();
    let generation = quota.meta().generation;
    let invalid = quota
        .spec
        .callers
        .api_key_selector
        .as_ref()
        .and_then(|s| Selector::try_from(s.clone()).err());
    let selected: Vec<String> = keys
        .iter()
        .filter(|k| grants::selects(quota, k))
        .map(ResourceExt::name_any)
        .collect();
    let refusals = grants::refusals(quotas, keys);
    let id = format!(
        "{}/{}",
        quota.namespace().unwrap_or_default(),
        quota.name_any()
    );
    let refused_keys = refusals
        .iter()
        .filter(|(_, r)| r.quota == id)
        .map(|(key, r)| RefusedKey {
            name: key.rsplit('/').next().unwrap_or(key).to_owned(),
            reason: r.reason.clone(),
        })
        .collect::<Vec<_>>();
    let (ready, reason, message) = match invalid {
        Some(error) => (
            false,
            "Invalid",
            format!("spec.callers.apiKeySelector: {error}"),
        ),
        None => (
            true,
            "Applied",
            applied_message(quota, selected.len(), refused_keys.len()),
        ),
    };
    LlmQuotaStatus {
        observed_generation: generation,
        key_count: Some(u32::try_from(selected.len()).unwrap_or(u32::MAX)),
        keys: selected.into_iter().take(LISTED_KEYS).collect(),
        granted_budget_usd: grants::granted_usd(quota, keys, &refusals)
            .map(|usd| (usd * 1e6).round() / 1e6),
        refused_keys,
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

fn applied_message(quota: &LlmQuota, keys: usize, refused: usize) -> String {
    let teams = &quota.spec.callers.jwt_teams;
    let mut message = format!("shared by {keys} ApiKey(s)");
    if !teams.is_empty() {
        message.push_str(&format!(" and token teams {}", teams.join(", ")));
    }
    if refused > 0 {
        message.push_str(&format!("; its caps hold back {refused} key(s)"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str, created: &str, budget: f64) -> ApiKey {
        serde_json::from_value(json!({
            "apiVersion": "llmgateway.io/v1alpha1", "kind": "ApiKey",
            "metadata": {"name": name, "namespace": "team", "creationTimestamp": created,
                         "labels": {"tier": "batch"}},
            "spec": {"secretName": name, "owner": "o",
                     "budget": {"usd": budget, "period": "monthly"}},
        }))
        .expect("valid ApiKey")
    }

    #[test]
    fn status_counts_keys_and_names_the_refused_one() {
        let quota: LlmQuota = serde_json::from_value(json!({
            "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmQuota",
            "metadata": {"name": "q", "namespace": "team", "generation": 2},
            "spec": {"callers": {"apiKeySelector": {"matchLabels": {"tier": "batch"}}},
                     "grants": {"budget": {"usd": 100, "period": "monthly"}}},
        }))
        .expect("valid LlmQuota");
        let keys = [
            key("a", "2026-11-01T00:00:00Z", 60.0),
            key("b", "2026-11-02T00:00:00Z", 60.0),
        ];
        let status = desired_status(&quota, std::slice::from_ref(&quota), &keys);
        assert_eq!((status.key_count, status.keys.len()), (Some(2), 2));
        assert_eq!(status.granted_budget_usd, Some(60.0));
        assert_eq!(status.refused_keys.len(), 1);
        assert_eq!(status.refused_keys[0].name, "b");
        assert_eq!(status.conditions[0].reason, "Applied");
        assert_eq!(status.observed_generation, Some(2));
    }
}
