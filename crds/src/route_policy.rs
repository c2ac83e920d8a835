//! `RoutePolicy`: which model names clients may ask for, and which upstream targets serve them.
//!
//! Route model names are global across every RoutePolicy a gateway serves: two policies
//! claiming the same model is a configuration error reported on both.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;
pub use crate::policy::CacheAffinity;
use crate::policy::{CircuitBreaker, RateLimits, Retry};

/// Pattern of a model name clients may send.
pub const MODEL_NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$";

/// How a route spreads traffic over its targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// In proportion to `weight`, deterministically interleaved.
    #[default]
    Weighted,
    /// The first healthy target in list order; the rest are failovers.
    Priority,
    /// The target with the lowest recent time to first byte.
    LeastLatency,
    /// The target with the fewest requests in flight.
    LeastInflight,
}

/// One upstream a route can send a request to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Name of an LlmProvider in the RoutePolicy's namespace.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub provider: String,
    /// Model name sent upstream; defaults to the route's model.
    #[schemars(length(min = 1, max = 256))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Share of traffic for the weighted strategy (0 takes none unless others fail).
    #[serde(default = "Target::default_weight")]
    #[schemars(range(min = 0, max = 10000))]
    pub weight: u32,
}

impl Target {
    fn default_weight() -> u32 {
        1
    }
}

/// One model name clients may request, and where it goes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.strategy != 'weighted' || self.targets.exists(t, t.weight > 0)").message("a weighted route needs at least one target with weight > 0"))]
#[x_kube(validation = Rule::new("!has(self.fallbacks) || !(self.model in self.fallbacks)").message("a route cannot fall back to itself"))]
pub struct Route {
    /// The model name clients send (may be an alias for different upstream models).
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"),
        length(min = 1, max = 256)
    )]
    pub model: String,
    /// How traffic is spread over the targets.
    #[serde(default)]
    pub strategy: Strategy,
    /// For a weighted route: what keeps a conversation on one target (its weights still hold
    /// across conversations).
    #[serde(default)]
    pub cache_affinity: CacheAffinity,
    /// Upstreams that serve this model.
    #[schemars(length(min = 1, max = 64))]
    pub targets: Vec<Target>,
    /// Other route models to try, in order, when every target fails with a retryable error or
    /// cannot serve the request (e.g. a translation that cannot carry a built-in tool).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub fallbacks: Vec<String>,
}

/// Model routes with their retry, timeout, limit and circuit-breaker policy.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "llmgateway.io",
    version = "v1alpha1",
    kind = "RoutePolicy",
    doc = "Model routes clients may call, with targets, fallbacks, retries, timeouts and limits.",
    plural = "routepolicies",
    shortname = "llmroute",
    category = "llm",
    namespaced,
    status = "RoutePolicyStatus",
    printcolumn = r#"{"name":"Models","type":"string","jsonPath":".spec.routes[*].model"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RoutePolicySpec {
    /// Routes, one per client-facing model name (a list-map keyed by `model`, so a model may
    /// appear only once).
    #[schemars(length(min = 1, max = 1000))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["model".into()]))]
    pub routes: Vec<Route>,
    /// Retries of failed upstream attempts (before anything reached the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Deadline for a whole request through these routes, retries included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Limits shared by all callers of these routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<RateLimits>,
    /// Overrides the providers' circuit-breaker thresholds for these routes' targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Puts prompts and completions of these routes on their trace spans
    /// (`gen_ai.input.messages`, `gen_ai.output.messages`) when traces are on. Off by default:
    /// whoever reads the traces then reads the conversations.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capture_content: bool,
}

/// Observed state of a RoutePolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutePolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Providers named by targets that do not exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved_providers: Vec<String>,
    /// Ready says whether every route compiled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
}
