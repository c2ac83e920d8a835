//! LlmQuota → the shared limits each caller draws from, and the keys its caps refuse.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::ResourceExt;
use kube::core::Selector;

use super::{ConfigError, namespace_of, object_id};
use crate::api_key::ApiKey;
use crate::compiled::{CompiledQuota, Quotas};
use crate::grants::{self, GrantRefusal};
use crate::quota::{LlmQuota, quota_account};

const KIND: &str = "LlmQuota";

/// The quotas, resolved against the callers they select.
#[derive(Debug, Default)]
pub(super) struct QuotaPlan {
    /// Every quota with shared limits or a shared budget.
    pub quotas: Quotas,
    /// Quotas by the `namespace/name` of the ApiKeys they select.
    by_key: HashMap<String, Quotas>,
    /// Quotas by JWT team.
    pub by_team: BTreeMap<String, Quotas>,
    /// Keys the caps refuse.
    refused: BTreeMap<String, GrantRefusal>,
}

impl QuotaPlan {
    /// The quotas the ApiKey `id` draws from.
    pub fn for_key(&self, id: &str) -> Quotas {
        self.by_key.get(id).cloned().unwrap_or_default()
    }

    /// The refusing quota and reason, when the caps refuse the ApiKey `id`.
    pub fn refusal(&self, id: &str) -> Option<(String, String)> {
        self.refused
            .get(id)
            .map(|r| (r.quota.clone(), r.reason.clone()))
    }
}

/// Validates every quota and resolves whom it applies to.
pub(super) fn compile(
    quotas: &[LlmQuota],
    keys: &[ApiKey],
    errors: &mut Vec<ConfigError>,
) -> QuotaPlan {
    let mut plan = QuotaPlan::default();
    for quota in quotas {
        if !valid(quota, errors) {
            continue;
        }
        let spec = &quota.spec;
        if spec.limits.is_none() && spec.budget.is_none() {
            continue;
        }
        let compiled = Arc::new(CompiledQuota {
            id: object_id(quota),
            account: quota_account(namespace_of(quota), &quota.name_any()),
            limits: spec.limits.clone(),
            budget: spec.budget.clone(),
        });
        for key in keys.iter().filter(|key| grants::selects(quota, key)) {
            let entry = plan.by_key.entry(object_id(key)).or_default();
            entry.push(compiled.clone());
        }
        // A team (or key) listed twice must still count each request once.
        let teams: std::collections::BTreeSet<&String> = spec.callers.jwt_teams.iter().collect();
        for team in teams {
            plan.by_team
                .entry(team.clone())
                .or_default()
                .push(compiled.clone());
        }
        plan.quotas.push(compiled);
    }
    plan.refused = grants::refusals(quotas, keys);
    plan
}

fn valid(quota: &LlmQuota, errors: &mut Vec<ConfigError>) -> bool {
    let before = errors.len();
    let mut fail = |field: &str, message: String| {
        errors.push(ConfigError {
            kind: KIND,
            object: object_id(quota),
            field: field.to_owned(),
            message,
        });
    };
    if let Some(selector) = &quota.spec.callers.api_key_selector
        && let Err(e) = Selector::try_from(selector.clone())
    {
        fail("spec.callers.apiKeySelector", e.to_string());
    }
    if let Some(grants) = &quota.spec.grants {
        super::keys::model_globs(&grants.models, "spec.grants.models", &mut fail);
    }
    for (field, budget) in [
        ("spec.budget.usd", quota.spec.budget.as_ref()),
        (
            "spec.grants.budget.usd",
            quota.spec.grants.as_ref().and_then(|g| g.budget.as_ref()),
        ),
    ] {
        if budget.is_some_and(|b| !(b.usd.is_finite() && b.usd >= 0.0)) {
            fail(field, "must be a dollar amount of 0 or more".to_owned());
        }
    }
    errors.len() == before
}
