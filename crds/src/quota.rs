//! `LlmQuota`: limits and a budget shared by a group of callers, and caps on what the ApiKeys
//! of a namespace may be granted, in the spirit of a `ResourceQuota`.
//!
//! The shared limits are enforced by the same admission as a key's own (one Redis script,
//! exact across replicas). The caps let a platform team delegate key creation through RBAC:
//! a key that would take the namespace past them is `Ready=False` and refused by the gateways,
//! while every other key keeps serving (see [`crate::compile`]'s `grants`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api_key::Usage;
use crate::policy::{Budget, RateLimits};

/// Limits and a budget shared by a group of callers, and caps on what ApiKeys may be granted.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "llmgateway.io",
    version = "v1alpha1",
    kind = "LlmQuota",
    doc = "Limits and a budget shared by a group of callers, and caps on what the namespace's ApiKeys may be granted.",
    plural = "llmquotas",
    shortname = "llmquota",
    category = "llm",
    namespaced,
    status = "LlmQuotaStatus",
    printcolumn = r#"{"name":"Keys","type":"integer","jsonPath":".status.keyCount"}"#,
    printcolumn = r#"{"name":"Spend USD","type":"number","jsonPath":".status.usage.spendUsd"}"#,
    printcolumn = r#"{"name":"Budget USD","type":"number","jsonPath":".spec.budget.usd"}"#,
    printcolumn = r#"{"name":"Granted USD","type":"number","jsonPath":".status.grantedBudgetUsd"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LlmQuotaSpec {
    /// The callers that share `limits` and `budget`.
    #[serde(default)]
    pub callers: QuotaCallers,
    /// Request, token and concurrency limits shared by all selected callers together, across
    /// all gateway replicas (on top of each caller's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<RateLimits>,
    /// A spend cap shared by all selected callers together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Caps on what every ApiKey of this namespace may be granted, selected or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grants: Option<GrantCaps>,
}

/// Who shares a quota: a caller is selected when any of the three matches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaCallers {
    /// ApiKeys of this namespace whose labels match (`{}` selects every key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_selector: Option<LabelSelector>,
    /// ApiKeys of this namespace whose `spec.owner` is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub owners: Vec<String>,
    /// JSON Web Token callers whose team claim (`spec.auth.jwt.teamClaim` of the LlmGateway,
    /// else `sub`) is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub jwt_teams: Vec<String>,
}

/// What the ApiKeys of the namespace may be granted, together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantCaps {
    /// The most all keys' budgets may add up to per `period`. Each key counts for the most it
    /// could spend in one such period (a daily $10 key counts $310 against a monthly cap); a
    /// key without a budget cannot be granted at all. Disabled keys do not count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Globs every key's `spec.models` must stay within (`claude-*` allows a key for
    /// `claude-sonnet-*`, not one for `*`); a key naming no models cannot be granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub models: Vec<String>,
}

/// Observed state of an LlmQuota.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LlmQuotaStatus {
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Shared usage in the current period of `spec.budget` (monthly without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Number of ApiKeys that share the quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_count: Option<u32>,
    /// Names of the ApiKeys that share the quota (the first 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// The keys' budgets as counted against `spec.grants.budget`, in its period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_budget_usd: Option<f64>,
    /// ApiKeys refused because they would exceed `spec.grants`, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_keys: Vec<RefusedKey>,
    /// Ready says whether the quota is valid and applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// An ApiKey a quota's caps refuse.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefusedKey {
    /// Name of the ApiKey.
    pub name: String,
    /// Why it cannot be granted.
    pub reason: String,
}

/// The account a quota's shared limits and usage are kept under.
pub fn quota_account(namespace: &str, name: &str) -> String {
    format!("quota:{namespace}/{name}")
}
