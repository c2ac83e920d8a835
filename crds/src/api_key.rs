//! `ApiKey`: one caller of the gateway, its allowed models, limits, budget and lifetime.
//!
//! The plaintext key lives only in the Secret named by `secretName` (written by the operator,
//! or by hand in standalone mode). Gateways keep only a keyed hash of it. An ApiKey may name a
//! Kubernetes ServiceAccount instead (`serviceAccountRef`): its workloads then call with their
//! projected ServiceAccount token, and there is no key to generate, distribute or rotate.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::{Budget, RateLimits};

/// The key inside the Secret that holds the plaintext API key.
pub const SECRET_KEY_FIELD: &str = "apiKey";

/// The key inside the Secret that holds the key being rotated out; it keeps working until
/// [`SECRET_PREVIOUS_EXPIRES_FIELD`].
pub const SECRET_PREVIOUS_KEY_FIELD: &str = "previousApiKey";

/// The key inside the Secret that holds the end (RFC 3339) of the previous key's grace period.
pub const SECRET_PREVIOUS_EXPIRES_FIELD: &str = "previousApiKeyExpiresAt";

/// A caller of the gateway.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "llmgateway.io",
    version = "v1alpha1",
    kind = "ApiKey",
    doc = "A caller of the gateway: allowed models, limits, budget and lifetime of one API key.",
    plural = "apikeys",
    shortname = "llmkey",
    category = "llm",
    namespaced,
    status = "ApiKeyStatus",
    printcolumn = r#"{"name":"Owner","type":"string","jsonPath":".spec.owner"}"#,
    printcolumn = r#"{"name":"Key ID","type":"string","jsonPath":".status.keyId"}"#,
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Spend USD","type":"number","jsonPath":".status.usage.spendUsd"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretName) != has(self.serviceAccountRef)").message("set exactly one of secretName or serviceAccountRef"))]
pub struct ApiKeySpec {
    /// Secret (same namespace) holding the plaintext key under `apiKey`. The operator writes a
    /// generated key there; in standalone mode you provide it.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// A ServiceAccount whose projected tokens authenticate as this ApiKey, instead of a key
    /// in a Secret: no Secret is generated and nothing needs rotating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountRef>,
    /// Team or application the key belongs to; used in metrics, logs and usage reports.
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
        length(min = 1, max = 63)
    )]
    pub owner: String,
    /// Route models this key may call, as globs (`gpt-4o`, `claude-*`). Empty allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub models: Vec<String>,
    /// Rate and concurrency limits for this key, across all gateway replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<RateLimits>,
    /// Spend cap for this key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Instant (RFC 3339) after which the key is refused.
    #[schemars(extend("format" = "date-time"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Refuse the key without deleting it.
    #[serde(default)]
    pub disabled: bool,
}

/// A Kubernetes ServiceAccount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    /// Namespace of the ServiceAccount; the ApiKey's own when unset.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the ServiceAccount.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
}

impl ServiceAccountRef {
    /// The token subject Kubernetes gives the ServiceAccount:
    /// `system:serviceaccount:<namespace>:<name>`, the namespace defaulting to `default_ns`.
    pub fn subject(&self, default_ns: &str) -> String {
        let namespace = self.namespace.as_deref().unwrap_or(default_ns);
        format!("system:serviceaccount:{namespace}:{}", self.name)
    }
}

/// Usage counted for the current budget period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Start of the current period (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_start: Option<String>,
    /// Requests admitted in the period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Prompt tokens in the period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Completion tokens in the period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Dollars spent in the period, rounded to the micro-dollar for reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spend_usd: Option<f64>,
    /// The same spend exactly, in billionths of a dollar, as the gateways count it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spend_nanos: Option<i64>,
    /// Of the prompt tokens, those read from a provider's prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<u64>,
    /// Of the prompt tokens, those written to a provider's prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    /// Of the completion tokens, reasoning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// When the last request was counted (RFC 3339, to the second); kept across periods.
    #[schemars(extend("format" = "date-time"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

/// Observed state of an ApiKey.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Public identifier of the key (safe to log), e.g. `lgw_7f3a9c2b`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Keyed hash of the key that gateways verify against (`hmac-sha256:<hex>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<String>,
    /// Public identifier of the key being rotated out, while its grace period lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_key_id: Option<String>,
    /// Keyed hash of the key being rotated out; accepted until `previousKeyExpiresAt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_key_hash: Option<String>,
    /// End (RFC 3339) of the rotated-out key's grace period.
    #[schemars(extend("format" = "date-time"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_key_expires_at: Option<String>,
    /// Usage in the current budget period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Ready says whether the key's Secret exists and the key is usable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
}
