//! Which callers an `LlmQuota` selects, and which ApiKeys its caps (`spec.grants`) refuse.
//!
//! Pure functions shared by the gateways (which refuse such keys) and the operator (which
//! marks them `Ready=False` and lists them in the quota's status), so both always agree.
//!
//! Keys are weighed in the order they were created (then by name): the keys that fit keep
//! working, and a key created later that would take the namespace past a cap is the one
//! refused, so creating a key can never take service away from an existing one.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::api_key::ApiKey;
use crate::compile::namespace_of;
use crate::policy::{Budget, BudgetPeriod};
use crate::quota::LlmQuota;

/// Why a quota's caps refuse an ApiKey.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantRefusal {
    /// `namespace/name` of the refusing LlmQuota.
    pub quota: String,
    /// What the key asks for that the caps do not allow.
    pub reason: String,
}

/// Whether `quota` makes `key` share its limits and budget.
pub fn selects(quota: &LlmQuota, key: &ApiKey) -> bool {
    if namespace_of(quota) != namespace_of(key) {
        return false;
    }
    let callers = &quota.spec.callers;
    callers.owners.contains(&key.spec.owner)
        || callers
            .api_key_selector
            .as_ref()
            .and_then(|selector| Selector::try_from(selector.clone()).ok())
            .is_some_and(|selector| selector.matches(key.labels()))
}

/// The keys every quota's caps refuse, by `namespace/name`, with the first refusal found.
pub fn refusals(quotas: &[LlmQuota], keys: &[ApiKey]) -> BTreeMap<String, GrantRefusal> {
    let mut ordered: Vec<&ApiKey> = keys.iter().filter(|k| !k.spec.disabled).collect();
    ordered.sort_by(|a, b| {
        let created = |k: &ApiKey| k.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    let mut refused = BTreeMap::new();
    for quota in quotas {
        let Some(caps) = &quota.spec.grants else {
            continue;
        };
        let quota_id = crate::compile::object_id(quota);
        let mut granted = 0.0;
        for key in ordered
            .iter()
            .filter(|k| namespace_of(**k) == namespace_of(quota))
        {
            let key_id = crate::compile::object_id(*key);
            if refused.contains_key(&key_id) {
                continue;
            }
            let reason = models_refusal(&key.spec.models, &caps.models).or_else(|| {
                let cap = caps.budget.as_ref()?;
                let (reason, counted) = budget_refusal(key.spec.budget.as_ref(), cap, granted);
                granted += counted;
                reason
            });
            if let Some(reason) = reason {
                let quota = quota_id.clone();
                refused.insert(key_id, GrantRefusal { quota, reason });
            }
        }
    }
    refused
}

/// The keys' budgets as counted against `quota`'s budget cap, refused keys left out.
pub fn granted_usd(
    quota: &LlmQuota,
    keys: &[ApiKey],
    refused: &BTreeMap<String, GrantRefusal>,
) -> Option<f64> {
    let cap = quota.spec.grants.as_ref()?.budget.as_ref()?;
    let total = keys
        .iter()
        .filter(|k| !k.spec.disabled && namespace_of(*k) == namespace_of(quota))
        .filter(|k| !refused.contains_key(&crate::compile::object_id(*k)))
        .filter_map(|k| k.spec.budget.as_ref())
        .map(|b| most_in(b, cap.period))
        .sum();
    Some(total)
}

fn models_refusal(models: &[String], allowed: &[String]) -> Option<String> {
    if allowed.is_empty() {
        return None;
    }
    if models.is_empty() {
        return Some(format!(
            "spec.models is empty (every model) but the namespace may only grant {}",
            allowed.join(", ")
        ));
    }
    let outside = models
        .iter()
        .find(|model| !allowed.iter().any(|cap| glob_within(model, cap)))?;
    Some(format!(
        "spec.models allows {outside:?}, outside what the namespace may grant ({})",
        allowed.join(", ")
    ))
}

/// The refusal, if any, of a key budget `budget` when `granted` dollars are already counted
/// against `cap`, and what the key adds to the count.
fn budget_refusal(budget: Option<&Budget>, cap: &Budget, granted: f64) -> (Option<String>, f64) {
    let Some(budget) = budget else {
        return (
            Some("the key has no spec.budget but the namespace caps granted budgets".to_owned()),
            0.0,
        );
    };
    let counted = most_in(budget, cap.period);
    // A hundredth of a micro-dollar of slack absorbs float error in the running sum.
    if granted + counted > cap.usd + 1e-8 {
        let reason = format!(
            "its budget counts ${counted:.2} per {} period; with ${granted:.2} granted to earlier \
             keys that exceeds the namespace cap of ${:.2}",
            cap.period.name(),
            cap.usd
        );
        return (Some(reason), 0.0);
    }
    (None, counted)
}

/// The most a key with `budget` can spend within one period of `kind`: a budget of a shorter
/// period starts over that many times (31 days, 5 ISO weeks overlap a month, 7 days a week).
fn most_in(budget: &Budget, kind: BudgetPeriod) -> f64 {
    use BudgetPeriod::{Daily, Monthly, Weekly};
    let times = match (budget.period, kind) {
        (Daily, Monthly) => 31.0,
        (Weekly, Monthly) => 5.0,
        (Daily, Weekly) => 7.0,
        _ => 1.0,
    };
    budget.usd * times
}

/// Whether every model the glob `inner` matches is also matched by the glob `outer`.
///
/// Glob inclusion in general is hard; this is a sound approximation: `inner` is read
/// literally, and its wildcards (`*`, `?`) may only be covered by a `*` of `outer`. A
/// wildcard of `outer` other than `*` and `?`, or a class or alternation in `inner`, makes
/// this answer no unless `outer` is `*` or the globs are equal: such keys are refused rather
/// than risk granting a model the cap does not allow.
pub fn glob_within(inner: &str, outer: &str) -> bool {
    if inner == outer || outer == "*" || outer == "**" {
        return true;
    }
    // `**` matches across `/` differently (`**/*` matches `gpt-4o`); classes and alternations
    // are not compared at all.
    if inner.contains("**") || inner.contains(['[', ']', '{', '}', '\\']) {
        return false;
    }
    let inner: Vec<char> = inner.chars().collect();
    let outer: Vec<char> = outer.chars().collect();
    // covered[j] after row i: outer[..j] covers inner[..i].
    let mut covered = vec![false; outer.len() + 1];
    covered[0] = true;
    for j in 1..=outer.len() {
        covered[j] = covered[j - 1] && outer[j - 1] == '*';
    }
    for c in &inner {
        let wild = matches!(c, '*' | '?');
        let mut next = vec![false; outer.len() + 1];
        for j in 1..=outer.len() {
            next[j] = match outer[j - 1] {
                '*' => covered[j] || next[j - 1],
                // globset matches bytes: `?` is one byte, so only an ASCII character.
                '?' => !wild && c.is_ascii() && covered[j - 1],
                '[' | ']' | '{' | '}' | '\\' => false,
                o => !wild && o == *c && covered[j - 1],
            };
        }
        covered = next;
    }
    covered[outer.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_narrower_glob_is_within_a_wider_one() {
        for (inner, outer) in [
            ("claude-sonnet-*", "claude-*"),
            ("claude-*", "claude-*"),
            ("gpt-4o", "gpt-?o"),
            ("gpt-4o-mini", "gpt-*"),
            ("anything", "*"),
            ("a/b", "*"),
        ] {
            assert!(glob_within(inner, outer), "{inner} within {outer}");
        }
    }

    #[test]
    fn a_wider_or_unclear_glob_is_not() {
        for (inner, outer) in [
            ("*", "claude-*"),
            ("claude-?", "claude-"),
            ("gpt-*", "gpt-?"),
            ("gpt-[45]o", "gpt-*o"),
            ("gpt-{4o,5}", "gpt-*"),
            ("gpt-4o", "gpt-[45]o"),
            ("claude-opus", "claude-sonnet*"),
            ("**/*", "*/*"),
            ("a/**/b", "a/*/b"),
            ("gpt-é", "gpt-?"),
        ] {
            assert!(!glob_within(inner, outer), "{inner} not within {outer}");
        }
    }

    fn key(name: &str, created: &str, extra: &str) -> ApiKey {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "llmgateway.io/v1alpha1", "kind": "ApiKey",
            "metadata": {"name": name, "namespace": "team", "creationTimestamp": created,
                         "labels": {"team": "a"}},
            "spec": serde_json::from_str::<serde_json::Value>(&format!(
                r#"{{"secretName": "{name}", "owner": "o"{extra}}}"#)).unwrap(),
        }))
        .unwrap()
    }

    fn quota(spec: serde_json::Value) -> LlmQuota {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmQuota",
            "metadata": {"name": "q", "namespace": "team"}, "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn the_key_created_last_is_the_one_over_the_cap() {
        let monthly = r#", "budget": {"usd": 300, "period": "monthly"}"#;
        let keys = [
            key("late", "2026-11-03T00:00:00Z", monthly),
            key("early", "2026-11-01T00:00:00Z", monthly),
            key(
                "daily",
                "2026-11-02T00:00:00Z",
                r#", "budget": {"usd": 5, "period": "daily"}"#,
            ),
        ];
        let quota =
            quota(serde_json::json!({"grants": {"budget": {"usd": 500, "period": "monthly"}}}));
        let refused = refusals(std::slice::from_ref(&quota), &keys);
        assert_eq!(refused.keys().collect::<Vec<_>>(), ["team/late"]);
        assert!(
            refused["team/late"].reason.contains("$300.00"),
            "{:?}",
            refused
        );
        assert_eq!(granted_usd(&quota, &keys, &refused), Some(455.0));
    }

    #[test]
    fn keys_without_a_budget_or_outside_the_models_are_refused() {
        let keys = [
            key("free", "2026-11-01T00:00:00Z", ""),
            key("all", "2026-11-01T00:00:00Z", r#", "models": ["*"]"#),
            key(
                "ok",
                "2026-11-01T00:00:00Z",
                r#", "models": ["claude-sonnet-*"]"#,
            ),
        ];
        let models = quota(serde_json::json!({"grants": {"models": ["claude-*"]}}));
        let refused = refusals(std::slice::from_ref(&models), &keys);
        assert_eq!(
            refused.keys().collect::<Vec<_>>(),
            ["team/all", "team/free"]
        );
        let budget =
            quota(serde_json::json!({"grants": {"budget": {"usd": 1, "period": "daily"}}}));
        assert!(
            refusals(&[budget], &keys[..1])["team/free"]
                .reason
                .contains("no spec.budget")
        );
    }

    #[test]
    fn selection_is_by_label_or_owner_in_the_same_namespace() {
        let k = key("k", "2026-11-01T00:00:00Z", "");
        assert!(selects(
            &quota(
                serde_json::json!({"callers": {"apiKeySelector": {"matchLabels": {"team": "a"}}}})
            ),
            &k
        ));
        assert!(selects(
            &quota(serde_json::json!({"callers": {"owners": ["o"]}})),
            &k
        ));
        assert!(!selects(
            &quota(serde_json::json!({"callers": {"owners": ["p"]}})),
            &k
        ));
        assert!(!selects(&quota(serde_json::json!({"callers": {}})), &k));
    }
}
